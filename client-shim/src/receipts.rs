//! Receipts from the vault's attestation log, checked before a signature is
//! reported: the receipt's checkpoint is signed by the vault's log key (pinned
//! on first use, or set in the config), its entry is the signature we got, and
//! the new checkpoint is consistent with the newest one this client has seen.
//! A rolled-back or forked log fails loudly and keeps both checkpoints.
//!
//! Layout: `<data dir>/logs/<vault>/log-key`, `checkpoint` (newest seen),
//! `receipts/<index>.json` (and `.tlog-proof`: the same as a C2SP tlog-proof),
//! `evidence/<time>-*`.

use std::path::PathBuf;

use qubes_rpc::SignResult;
use qvault_attest::note::{Checkpoint, Verifier};
use qvault_attest::receipt::{check_signature_receipt, Receipt};
use qvault_attest::tlog_proof;
use sequoia_openpgp::packet::Signature;

use crate::error::ShimError;
use crate::keyring::data_dir;

pub struct LogState {
    dir: PathBuf,
    pinned: Option<Verifier>,
    newest: Option<(Checkpoint, String)>,
}

fn safe_component(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect()
}

fn fail(msg: String) -> ShimError {
    ShimError::Log(msg)
}

impl LogState {
    pub fn load(vault: &str) -> LogState {
        let dir = data_dir().join("logs").join(safe_component(vault));
        let pinned = std::env::var("QVAULT_LOG_KEY")
            .ok()
            .or_else(|| std::fs::read_to_string(dir.join("log-key")).ok())
            .and_then(|s| Verifier::parse(s.trim()).ok());
        let newest = pinned.as_ref().and_then(|v| {
            let note = std::fs::read_to_string(dir.join("checkpoint")).ok()?;
            Some((Checkpoint::open(&note, v).ok()?, note))
        });
        LogState { dir, pinned, newest }
    }

    pub fn known_size(&self) -> Option<u64> {
        self.newest.as_ref().map(|(c, _)| c.size)
    }

    fn keep_evidence(&self, what: &str, old: &str, new: &str, receipt: &[u8]) -> PathBuf {
        let ev = self.dir.join("evidence");
        let _ = std::fs::create_dir_all(&ev);
        let stamp = format!("{}-{what}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.f"));
        let _ = std::fs::write(ev.join(format!("{stamp}-old.checkpoint")), old);
        let _ = std::fs::write(ev.join(format!("{stamp}-new.checkpoint")), new);
        let _ = std::fs::write(ev.join(format!("{stamp}-receipt.json")), receipt);
        ev
    }

    /// Verifies the receipt for `sig` and records it. On success the receipt's
    /// path is returned.
    pub fn accept(&mut self, result: &SignResult, sig: &Signature) -> Result<PathBuf, ShimError> {
        if result.receipt.is_empty() {
            return Err(fail("the vault sent no log receipt; refusing an unlogged signature".into()));
        }
        let offered =
            Verifier::parse(&result.log_key).map_err(|e| fail(format!("the vault's log key is malformed: {e}")))?;
        let key = match &self.pinned {
            Some(k) if *k != offered => {
                return Err(fail(format!(
                    "the vault's log key changed (pinned {}, offered {}): a different or re-created vault log",
                    k.encode(),
                    offered.encode()
                )))
            }
            Some(k) => k.clone(),
            None => offered,
        };
        let receipt = Receipt::parse(&result.receipt).map_err(|e| fail(format!("bad receipt: {e}")))?;
        // The one check qvault-audit runs too: the receipt is about this very
        // signature (digest, signer, the log position it names, its key).
        let v = check_signature_receipt(&receipt, sig, &key)
            .map_err(|e| fail(format!("the receipt does not match the signature: {e}")))?;
        if let Some((old, old_note)) = &self.newest {
            if v.checkpoint.size < old.size {
                let ev = self.keep_evidence("rollback", old_note, &receipt.checkpoint, &result.receipt);
                return Err(fail(format!(
                    "the vault's log was ROLLED BACK: it now has {} entries, but this client saw a checkpoint of {} \
                     entries; both checkpoints are kept in {}",
                    v.checkpoint.size,
                    old.size,
                    ev.display()
                )));
            }
            if !receipt.consistent_with(old, &v.checkpoint).unwrap_or(false) {
                let ev = self.keep_evidence("fork", old_note, &receipt.checkpoint, &result.receipt);
                return Err(fail(format!(
                    "the vault's log FORKED: its new checkpoint ({} entries) is not consistent with the one this \
                     client saw ({} entries); both checkpoints are kept in {}",
                    v.checkpoint.size,
                    old.size,
                    ev.display()
                )));
            }
        }
        let receipts = self.dir.join("receipts");
        std::fs::create_dir_all(&receipts).map_err(ShimError::io(format!("creating {}", receipts.display())))?;
        let path = receipts.join(format!("{}.json", v.entry.index));
        std::fs::write(&path, &result.receipt).map_err(ShimError::io(format!("writing {}", path.display())))?;
        // The same, as a C2SP tlog-proof (docs/log-format.md).
        let proof_path = receipts.join(format!("{}.tlog-proof", v.entry.index));
        let proof = tlog_proof::encode(&receipt).map_err(|e| fail(format!("bad receipt: {e}")))?;
        std::fs::write(&proof_path, proof).map_err(ShimError::io(format!("writing {}", proof_path.display())))?;
        if self.pinned.is_none() {
            std::fs::write(self.dir.join("log-key"), format!("{}\n", key.encode()))
                .map_err(ShimError::io("pinning the log key"))?;
            self.pinned = Some(key.clone());
        }
        self.store_newest(&key, v.checkpoint, &receipt.checkpoint)?;
        Ok(path)
    }

    /// Keeps the newest checkpoint. Several qvault-gpg processes may sign at
    /// once with one home (parallel git or debsign runs): under a lock, the
    /// stored checkpoint is re-read and replaced only by a larger one, through a
    /// temporary file of this process's own.
    fn store_newest(&mut self, key: &Verifier, cp: Checkpoint, note: &str) -> Result<(), ShimError> {
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.dir.join("lock"))
            .map_err(ShimError::io("storing the checkpoint"))?;
        lock.lock().map_err(ShimError::io("locking the checkpoint"))?;
        let path = self.dir.join("checkpoint");
        // Usually the file still holds the note verified at load: no need to
        // verify its signature again (another process may have replaced it).
        let stored = std::fs::read_to_string(&path).ok().and_then(|n| match &self.newest {
            Some((c, loaded)) if *loaded == n => Some(c.clone()),
            _ => Checkpoint::open(&n, key).ok(),
        });
        if stored.is_none_or(|s| cp.size >= s.size) {
            let mut tmp =
                tempfile::NamedTempFile::new_in(&self.dir).map_err(ShimError::io("storing the checkpoint"))?;
            std::io::Write::write_all(&mut tmp, note.as_bytes()).map_err(ShimError::io("storing the checkpoint"))?;
            tmp.persist(&path).map_err(|e| ShimError::Io("storing the checkpoint".into(), e.error))?;
        }
        drop(lock);
        if self.known_size().is_none_or(|s| cp.size >= s) {
            self.newest = Some((cp, note.to_owned()));
        }
        Ok(())
    }
}

/// `--receipt-out FILE` (or `QVAULT_RECEIPT_OUT`): a copy of the receipt for
/// upload beside the signature.
pub fn write_receipt_file(path: &std::path::Path, result: &SignResult) -> Result<(), ShimError> {
    std::fs::write(path, &result.receipt).map_err(ShimError::io(format!("writing receipt {}", path.display())))
}

/// `--proof-out FILE` (or `QVAULT_PROOF_OUT`): the receipt as a C2SP
/// tlog-proof, for upload beside the signature. Written after the receipt
/// was checked (`LogState::accept`).
pub fn write_proof_file(path: &std::path::Path, result: &SignResult) -> Result<(), ShimError> {
    let proof = Receipt::parse(&result.receipt)
        .and_then(|r| tlog_proof::encode(&r))
        .map_err(|e| fail(format!("bad receipt: {e}")))?;
    std::fs::write(path, proof).map_err(ShimError::io(format!("writing proof {}", path.display())))
}
