//! What the keystore needs from the log: a place where a key event is recorded
//! durably before the key is stored. A trait, so that the keystore does not
//! depend on the log writer (and the log writer not on the keystore).

use qvault_attest::entry::Event;

pub trait Recorder {
    /// Records `event` (caused by no qrexec call) and returns its index and the
    /// entry's exact bytes, once it is durable.
    fn record(&self, event: Event) -> anyhow::Result<(u64, Vec<u8>)>;
}
