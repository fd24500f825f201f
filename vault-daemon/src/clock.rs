//! The vault's clock, as the log entries and key records store it: whole
//! seconds since the epoch. One place, so that every record agrees.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_secs() -> i64 {
    secs(SystemTime::now())
}

pub fn secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
