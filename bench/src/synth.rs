//! A synthetic attestation log in the export format, made with the same
//! `qvault_attest` APIs the vault writes with (`Entry`, `Frontier`, `Checkpoint`,
//! `bundle`): entry 0 `log_created`, a `daemon_started`, a `key_generated`, then
//! `signature` entries shaped like the daemon's (same fields, same lengths), and
//! a signed history checkpoint every 1024 entries plus the newest one, as
//! `qvault log export` writes them. `qvault-audit verify-log` accepts it.

use std::io::Write;

use base64::Engine as _;
use ed25519_dalek::SigningKey;
use qvault_attest::bundle;
use qvault_attest::entry::{Entry, Event};
use qvault_attest::merkle::{leaf_hash, Frontier};
use qvault_attest::note::{Checkpoint, Verifier};
use sha2::{Digest, Sha256};

/// The daemon stores a history checkpoint every this many entries.
pub const HISTORY_EVERY: u64 = 1024;
/// Time of the first entry (seconds since the epoch).
const T0: i64 = 1_750_000_000;

/// The fixed log key of synthetic logs (a benchmark needs no secret).
pub fn log_key() -> SigningKey {
    SigningKey::from_bytes(&[0x42; 32])
}

pub fn verifier() -> Verifier {
    Verifier { name: "qvault.invalid/bench/0011223344556677".into(), key: log_key().verifying_key() }
}

/// What was written.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub entries: u64,
    pub checkpoints: u64,
    pub bytes: u64,
}

fn hex_of(i: u64, salt: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(i.to_be_bytes());
    hex::encode(h.finalize())
}

/// The `i`-th entry (`i` from 0) of the synthetic log, encoded.
pub fn entry(i: u64, v: &Verifier) -> Vec<u8> {
    let key_fpr = hex_of(0, b"key").to_ascii_uppercase()[..40].to_owned();
    let event = match i {
        0 => Event::LogCreated { vault: "bench".into(), origin: v.name.clone(), log_key: v.encode() },
        1 => Event::DaemonStarted { version: "0.1.0".into(), interfaces: vec!["lo".into()] },
        2 => {
            // A certificate-sized blob: an ed25519 certificate with one user ID
            // and a signing subkey is about 450 bytes.
            let cert: Vec<u8> = (0..450u32).map(|b| (b.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
            Event::KeyGenerated {
                fingerprint: key_fpr,
                algorithm: "ed25519".into(),
                created: T0,
                cert: base64::engine::general_purpose::STANDARD.encode(cert),
            }
        }
        _ => Event::Signature {
            key: hex_of(1, b"key").to_ascii_uppercase()[..40].to_owned(),
            primary: key_fpr,
            sig_type: "binary".into(),
            mode: "detached".into(),
            hash_algo: "SHA256".into(),
            data_digest: hex_of(i, b"data"),
            data_len: 6,
            sig_digest: hex_of(i, b"sig"),
            decision: "allow".into(),
            hashed_by: None,
            summary: None,
        },
    };
    let source = if i >= 3 { Some("work".to_owned()) } else { None };
    Entry::new(i, T0 + (i / 2000) as i64, source, event).encode()
}

struct Counter<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes an export of `n` (at least 3) entries to `out`.
pub fn write_log<W: Write>(n: u64, out: W) -> std::io::Result<Written> {
    let n = n.max(3);
    let key = log_key();
    let v = verifier();
    let mut out = Counter { inner: out, n: 0 };
    bundle::write_header(&mut out)?;
    let mut frontier = Frontier::new();
    let mut notes = Vec::new();
    for i in 0..n {
        let e = entry(i, &v);
        frontier.push(leaf_hash(&e));
        bundle::write_entry(&mut out, &e)?;
        let size = i + 1;
        if size == 1 || size % HISTORY_EVERY == 0 || size == n {
            notes.push(Checkpoint { origin: v.name.clone(), size, root: frontier.root() }.sign(&key));
        }
    }
    for note in &notes {
        bundle::write_checkpoint(&mut out, note)?;
    }
    out.flush()?;
    Ok(Written { entries: n, checkpoints: notes.len() as u64, bytes: out.n })
}

#[cfg(test)]
mod tests {
    use super::*;
    use qvault_attest::audit::verify_log;

    #[test]
    fn synthetic_log_verifies() {
        let mut buf = Vec::new();
        let w = write_log(3000, &mut buf).unwrap();
        assert_eq!(w.entries, 3000);
        assert_eq!(w.bytes, buf.len() as u64);
        let rep = verify_log(&buf[..], &verifier(), &[], false);
        assert!(rep.ok, "{:?}", rep.problems);
        assert_eq!(rep.entries, 3000);
        assert_eq!(rep.signatures, 2997);
        assert_eq!(rep.checkpoints_verified, 4);
    }
}
