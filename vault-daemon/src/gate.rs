//! Per-caller state that policy decisions need between calls: signatures in the
//! last minute (rate limits), approvals still inside their auto-accept window,
//! and the one question allowed to be pending per caller. In memory under
//! `qvault serve`; in `state/gate.json` (under a lock) in exec-service mode,
//! where every call is a new process.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::fsutil;

#[derive(Default, Serialize, Deserialize)]
struct GateState {
    /// "<rule line>/<caller>" -> signing times (seconds) in the last minute.
    recent: HashMap<String, Vec<i64>>,
    /// "<caller>/<key fingerprint>" -> auto-accept window end (seconds).
    approved: HashMap<String, i64>,
}

pub struct Gate {
    dir: Option<PathBuf>,
    mem: Mutex<GateState>,
    pending: Arc<Mutex<HashSet<String>>>,
}

/// Held while a question is pending for a caller.
pub enum Pending {
    Mem(Arc<Mutex<HashSet<String>>>, String),
    File(#[allow(dead_code)] Flock<File>),
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Pending::Mem(set, caller) = self {
            set.lock().unwrap_or_else(|p| p.into_inner()).remove(caller);
        }
    }
}

fn now() -> i64 {
    crate::clock::now_secs()
}

impl Gate {
    pub fn in_memory() -> Gate {
        Gate { dir: None, mem: Mutex::new(GateState::default()), pending: Arc::default() }
    }

    pub fn on_disk(dir: PathBuf) -> std::io::Result<Gate> {
        fsutil::ensure_private_dir(&dir)?;
        Ok(Gate { dir: Some(dir), mem: Mutex::new(GateState::default()), pending: Arc::default() })
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut GateState) -> R) -> std::io::Result<R> {
        let Some(dir) = &self.dir else {
            return Ok(f(&mut self.mem.lock().unwrap_or_else(|p| p.into_inner())));
        };
        let lock =
            OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(dir.join("gate.lock"))?;
        let _lock = Flock::lock(lock, FlockArg::LockExclusive).map_err(|(_, e)| std::io::Error::from(e))?;
        let path = dir.join("gate.json");
        let mut st: GateState =
            std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        let r = f(&mut st);
        let t = now();
        st.recent.retain(|_, v| {
            v.retain(|&x| x > t - 60);
            !v.is_empty()
        });
        st.approved.retain(|_, &mut until| until > t);
        fsutil::write_private(&path, &serde_json::to_vec(&st).unwrap_or_default())?;
        Ok(r)
    }

    /// Counts a signature against `limit` per minute; false when over.
    pub fn rate_ok(&self, rule_line: usize, caller: &str, limit: u32) -> std::io::Result<bool> {
        let key = format!("{rule_line}/{caller}");
        self.with_state(|st| {
            let t = now();
            let v = st.recent.entry(key).or_default();
            v.retain(|&x| x > t - 60);
            if v.len() >= limit as usize {
                false
            } else {
                v.push(t);
                true
            }
        })
    }

    pub fn auto_accepted(&self, caller: &str, fpr: &str) -> std::io::Result<bool> {
        let key = format!("{caller}/{fpr}");
        self.with_state(|st| st.approved.get(&key).is_some_and(|&until| until > now()))
    }

    pub fn approve(&self, caller: &str, fpr: &str, window: Duration) -> std::io::Result<()> {
        let key = format!("{caller}/{fpr}");
        self.with_state(|st| {
            st.approved.insert(key, now() + window.as_secs() as i64);
        })
    }

    /// Claims the caller's single pending-question slot; `None` if taken.
    pub fn begin_question(&self, caller: &str) -> std::io::Result<Option<Pending>> {
        match &self.dir {
            None => {
                let mut set = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                if !set.insert(caller.to_owned()) {
                    return Ok(None);
                }
                Ok(Some(Pending::Mem(self.pending.clone(), caller.to_owned())))
            }
            Some(dir) => {
                // Caller names are validated qube names: safe in a file name.
                let f = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o600)
                    .open(dir.join(format!("ask-{caller}.lock")))?;
                match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                    Ok(l) => Ok(Some(Pending::File(l))),
                    Err(_) => Ok(None),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_and_auto_accept_in_memory_and_on_disk() {
        let d = tempfile::tempdir().unwrap();
        for g in [Gate::in_memory(), Gate::on_disk(d.path().join("state")).unwrap()] {
            assert!(g.rate_ok(3, "work", 2).unwrap());
            assert!(g.rate_ok(3, "work", 2).unwrap());
            assert!(!g.rate_ok(3, "work", 2).unwrap());
            assert!(g.rate_ok(3, "other", 2).unwrap());
            assert!(!g.auto_accepted("work", "F").unwrap());
            g.approve("work", "F", Duration::from_secs(60)).unwrap();
            assert!(g.auto_accepted("work", "F").unwrap());
            assert!(!g.auto_accepted("work", "G").unwrap());
            assert!(!g.auto_accepted("other", "F").unwrap());
            let p = g.begin_question("work").unwrap();
            assert!(p.is_some());
            assert!(g.begin_question("other").unwrap().is_some());
            drop(p);
            assert!(g.begin_question("work").unwrap().is_some());
        }
    }

    #[test]
    fn one_pending_question_per_caller() {
        let g = Gate::in_memory();
        let held = g.begin_question("work").unwrap();
        assert!(held.is_some());
        assert!(g.begin_question("work").unwrap().is_none());
    }
}
