//! Receipts: a log entry, its inclusion proof, and the signed checkpoint it is
//! included in; for signatures also the entry of the key that made it, so one
//! receipt says both "this signature is in the log" and where the key came from.
//! JSON, specified in `docs/log-format.md`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::entry::{Entry, EntryError};
use crate::merkle::{leaf_hash, verify_consistency, verify_inclusion, Hash};
use crate::note::{Checkpoint, NoteError, Verifier};

pub const RECEIPT_VERSION: u32 = 1;
pub const MAX_RECEIPT: usize = 256 * 1024;
/// More proof hashes than a 2^64-leaf tree needs is malformed.
const MAX_PROOF: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub v: u32,
    /// The entry's exact bytes (JSON text).
    pub entry: String,
    pub index: u64,
    /// Inclusion proof, hex hashes, for `index` in the checkpoint's tree.
    pub inclusion: Vec<String>,
    /// The entry of the signing key, when the entry is a signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_entry: Option<KeyEntry>,
    /// The signed checkpoint note.
    pub checkpoint: String,
    /// Consistency proof from `consistency_from` (the size the client last saw)
    /// to the checkpoint's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency_from: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consistency: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub entry: String,
    pub index: u64,
    pub inclusion: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReceiptError {
    #[error("receipt is not valid JSON: {0}")]
    Json(String),
    #[error("receipt is longer than {MAX_RECEIPT} bytes")]
    TooLong,
    #[error("receipt version {0} is not supported")]
    Version(u32),
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] NoteError),
    #[error("entry: {0}")]
    Entry(#[from] EntryError),
    #[error("proof hash is not 32 bytes of hex")]
    BadHash,
    #[error("the entry is not included in the checkpoint (inclusion proof fails)")]
    NotIncluded,
    #[error("the key's entry is not included in the checkpoint")]
    KeyNotIncluded,
}

pub fn hashes(v: &[String]) -> Result<Vec<Hash>, ReceiptError> {
    if v.len() > MAX_PROOF {
        return Err(ReceiptError::BadHash);
    }
    v.iter()
        .map(|h| {
            let b = hex::decode(h).map_err(|_| ReceiptError::BadHash)?;
            b.try_into().map_err(|_| ReceiptError::BadHash)
        })
        .collect()
}

pub fn hex_hashes(v: &[Hash]) -> Vec<String> {
    v.iter().map(hex::encode).collect()
}

/// What a receipt proves, once verified.
#[derive(Debug, Clone)]
pub struct Verified {
    pub entry: Entry,
    pub checkpoint: Checkpoint,
    pub key_entry: Option<Entry>,
}

impl Receipt {
    pub fn parse(bytes: &[u8]) -> Result<Receipt, ReceiptError> {
        if bytes.len() > MAX_RECEIPT {
            return Err(ReceiptError::TooLong);
        }
        let r: Receipt = serde_json::from_slice(bytes).map_err(|e| ReceiptError::Json(e.to_string()))?;
        if r.v != RECEIPT_VERSION {
            return Err(ReceiptError::Version(r.v));
        }
        Ok(r)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Checks the checkpoint's signature and both inclusion proofs.
    pub fn verify(&self, log_key: &Verifier) -> Result<Verified, ReceiptError> {
        let checkpoint = Checkpoint::open(&self.checkpoint, log_key)?;
        let entry = Entry::parse(self.entry.as_bytes(), self.index)?;
        let proof = hashes(&self.inclusion)?;
        if !verify_inclusion(&leaf_hash(self.entry.as_bytes()), self.index, checkpoint.size, &proof, &checkpoint.root) {
            return Err(ReceiptError::NotIncluded);
        }
        let key_entry = match &self.key_entry {
            None => None,
            Some(k) => {
                let e = Entry::parse(k.entry.as_bytes(), k.index)?;
                let p = hashes(&k.inclusion)?;
                if !verify_inclusion(&leaf_hash(k.entry.as_bytes()), k.index, checkpoint.size, &p, &checkpoint.root) {
                    return Err(ReceiptError::KeyNotIncluded);
                }
                Some(e)
            }
        };
        Ok(Verified { entry, checkpoint, key_entry })
    }

    /// Checks the receipt's consistency proof from an older checkpoint.
    pub fn consistent_with(&self, old: &Checkpoint, new: &Checkpoint) -> Result<bool, ReceiptError> {
        if old.size > new.size {
            return Ok(false);
        }
        if old.size == new.size {
            return Ok(old.root == new.root);
        }
        if self.consistency_from != Some(old.size) {
            return Ok(false);
        }
        let p = hashes(&self.consistency)?;
        Ok(verify_consistency(old.size, new.size, &old.root, &new.root, &p))
    }
}

/// Base64 helper for certificates in key entries.
pub fn decode_cert(b64: &str) -> Option<Vec<u8>> {
    B64.decode(b64).ok()
}

pub fn encode_cert(bytes: &[u8]) -> String {
    B64.encode(bytes)
}
