//! Receipts: a log entry, its inclusion proof, and the signed checkpoint it is
//! included in; for signatures also the entry of the key that made it, so one
//! receipt says both "this signature is in the log" and where the key came from.
//! JSON, specified in `docs/log-format.md`.
//!
//! [`check_signature_receipt`] is THE check that a receipt is about a given
//! signature: the client runs it on every signature the vault returns, and
//! `qvault-audit` on every signature it is shown. Neither adds checks of its own.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use openpgp::packet::Signature;
use openpgp::serialize::Marshal as _;
use openpgp::{Fingerprint, Packet};
use sequoia_openpgp as openpgp;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::entry::{Entry, EntryError, Event, NOTATION};
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
    #[error("tlog-proof: {0}")]
    Proof(&'static str),
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
    #[error("the receipt's entry {index} is a {kind} entry, not a signature")]
    NotSignature { index: u64, kind: &'static str },
    #[error("the receipt is for another signature: entry {index} logs signature digest {logged}, this signature's is {actual}")]
    OtherSignature { index: u64, logged: String, actual: String },
    #[error("the signature names no issuer fingerprint, so its signer cannot be matched to the log")]
    NoIssuer,
    #[error("the receipt is for another signer: entry {index} logs key {logged}, this signature was made by {actual}")]
    OtherSigner { index: u64, logged: String, actual: String },
    #[error("the signature carries no {NOTATION} notation (or an unreadable one): it was not made by a qvault vault")]
    NoPosition,
    #[error("the signature carries more than one {NOTATION} notation")]
    TwoPositions,
    #[error("the signature names log {named:?}, not this log {expected:?}")]
    OtherLog { named: String, expected: String },
    #[error("the receipt is for another log index: the signature names entry {named}, the receipt's entry is {index}")]
    OtherIndex { named: u64, index: u64 },
    #[error("the receipt's key entry {index} is a {kind} entry, not a key event")]
    KeyEntryKind { index: u64, kind: &'static str },
    #[error("the receipt's key entry is for key {logged}, but the signature entry names primary key {primary}")]
    KeyEntryOtherKey { logged: String, primary: String },
    #[error("the receipt's key entry {key_index} comes after the signature's entry {index}")]
    KeyEntryLater { key_index: u64, index: u64 },
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
    /// Parses a JSON receipt or a C2SP tlog-proof (`crate::tlog_proof`).
    pub fn parse(bytes: &[u8]) -> Result<Receipt, ReceiptError> {
        if crate::tlog_proof::is_tlog_proof(bytes) {
            return crate::tlog_proof::parse(bytes);
        }
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

/// SHA-256 of a signature packet as serialized (what a Signature entry's
/// `sig_digest` holds), hex.
pub fn sig_digest(sig: &Signature) -> String {
    let mut bytes = Vec::new();
    let _ = Packet::from(sig.clone()).serialize(&mut bytes);
    hex::encode(Sha256::digest(&bytes))
}

/// The log position a signature names in its hashed area: exactly one
/// [`NOTATION`] whose value is `<origin> <index>`, the index in plain decimal.
pub fn signature_position(sig: &Signature) -> Result<(String, u64), ReceiptError> {
    let mut values = sig.notation(NOTATION);
    let value = values.next().ok_or(ReceiptError::NoPosition)?;
    if values.next().is_some() {
        return Err(ReceiptError::TwoPositions);
    }
    let text = std::str::from_utf8(value).map_err(|_| ReceiptError::NoPosition)?;
    let (origin, index) = text.rsplit_once(' ').ok_or(ReceiptError::NoPosition)?;
    let canonical =
        !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) && (index == "0" || !index.starts_with('0'));
    let index = index.parse().ok().filter(|_| canonical && !origin.is_empty()).ok_or(ReceiptError::NoPosition)?;
    Ok((origin.to_owned(), index))
}

/// Checks that `entry` (at its own index, already parsed strictly and proven
/// included) logs exactly this signature: its digest, its signer, the log
/// position the signature names, and, if given, the entry of the key it was
/// made with. The part of [`check_signature_receipt`] that does not need the
/// receipt, for an auditor that reads the entries from a whole log.
pub fn check_signature_entry(
    sig: &Signature,
    entry: &Entry,
    key_entry: Option<&Entry>,
    log_key: &Verifier,
) -> Result<(), ReceiptError> {
    let index = entry.index;
    let Event::Signature { key, primary, sig_digest: logged, .. } = &entry.event else {
        return Err(ReceiptError::NotSignature { index, kind: entry.kind() });
    };
    let actual = sig_digest(sig);
    if *logged != actual {
        return Err(ReceiptError::OtherSignature { index, logged: logged.clone(), actual });
    }
    let issuer: &Fingerprint = sig.issuer_fingerprints().next().ok_or(ReceiptError::NoIssuer)?;
    if key.parse::<Fingerprint>().ok().as_ref() != Some(issuer) {
        return Err(ReceiptError::OtherSigner { index, logged: key.clone(), actual: issuer.to_hex() });
    }
    let (origin, named) = signature_position(sig)?;
    if origin != log_key.name {
        return Err(ReceiptError::OtherLog { named: origin, expected: log_key.name.clone() });
    }
    if named != index {
        return Err(ReceiptError::OtherIndex { named, index });
    }
    if let Some(k) = key_entry {
        let Some((fpr, _, _)) = k.key_fact() else {
            return Err(ReceiptError::KeyEntryKind { index: k.index, kind: k.kind() });
        };
        if fpr.parse::<Fingerprint>().ok() != primary.parse::<Fingerprint>().ok() {
            return Err(ReceiptError::KeyEntryOtherKey { logged: fpr.to_owned(), primary: primary.clone() });
        }
        if k.index >= index {
            return Err(ReceiptError::KeyEntryLater { key_index: k.index, index });
        }
    }
    Ok(())
}

/// The one check that `receipt` proves `sig` is in the log whose key is
/// `log_key`: the checkpoint is signed by the log key, the entry (and the key
/// entry, if any) is parsed strictly at its own index and included in that
/// checkpoint, and [`check_signature_entry`] holds. The error says which check
/// failed.
pub fn check_signature_receipt(
    receipt: &Receipt,
    sig: &Signature,
    log_key: &Verifier,
) -> Result<Verified, ReceiptError> {
    let v = receipt.verify(log_key)?;
    check_signature_entry(sig, &v.entry, v.key_entry.as_ref(), log_key)?;
    Ok(v)
}

/// Base64 helper for certificates in key entries.
pub fn decode_cert(b64: &str) -> Option<Vec<u8>> {
    B64.decode(b64).ok()
}

pub fn encode_cert(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{MemTree, Subtrees as _};
    use openpgp::cert::prelude::*;
    use openpgp::packet::signature::subpacket::NotationDataFlags;
    use openpgp::packet::signature::SignatureBuilder;
    use openpgp::policy::StandardPolicy;
    use openpgp::types::SignatureType;
    use openpgp::Cert;

    const ORIGIN: &str = "test.invalid/log";

    fn log_key() -> (ed25519_dalek::SigningKey, Verifier) {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let v = Verifier { name: ORIGIN.into(), key: sk.verifying_key() };
        (sk, v)
    }

    fn cert() -> Cert {
        CertBuilder::new().add_userid("t <t@example.org>").add_signing_subkey().generate().unwrap().0
    }

    fn signing_fpr(cert: &Cert) -> String {
        let p = StandardPolicy::new();
        cert.keys().with_policy(&p, None).for_signing().next().unwrap().key().fingerprint().to_hex()
    }

    /// A signature by `cert`'s signing subkey with one log notation per value.
    fn sig(cert: &Cert, positions: &[&str]) -> Signature {
        let p = StandardPolicy::new();
        let key = cert.keys().with_policy(&p, None).for_signing().secret().next().unwrap().key().clone();
        let mut pair = key.into_keypair().unwrap();
        let mut b = SignatureBuilder::new(SignatureType::Binary);
        for v in positions {
            b = b.add_notation(NOTATION, v.as_bytes(), NotationDataFlags::empty().set_human_readable(), false).unwrap();
        }
        b.sign_message(&mut pair, b"data").unwrap()
    }

    fn key_event(cert: &Cert) -> Event {
        let mut public = Vec::new();
        cert.serialize(&mut public).unwrap();
        Event::KeyGenerated {
            fingerprint: cert.fingerprint().to_hex(),
            algorithm: "EdDSA".into(),
            created: 0,
            cert: encode_cert(&public),
        }
    }

    fn sig_event(signer: &str, primary: &str, digest: &str) -> Event {
        Event::Signature {
            key: signer.into(),
            primary: primary.into(),
            sig_type: "binary".into(),
            mode: "detached".into(),
            hash_algo: "SHA256".into(),
            data_digest: "00".repeat(32),
            data_len: 4,
            sig_digest: digest.into(),
            decision: "allow".into(),
            hashed_by: None,
            summary: None,
        }
    }

    /// A log of `events` (after its log_created entry at 0) and a receipt for
    /// entry `index` with the key entry at `key_index`.
    fn receipt(events: Vec<Event>, index: u64, key_index: Option<u64>) -> Receipt {
        let (sk, v) = log_key();
        let mut all = vec![Event::LogCreated { vault: "t".into(), origin: ORIGIN.into(), log_key: v.encode() }];
        all.extend(events);
        let entries: Vec<Vec<u8>> =
            all.into_iter().enumerate().map(|(i, e)| Entry::new(i as u64, 1, None, e).encode()).collect();
        let mut tree = MemTree::default();
        for e in &entries {
            tree.push_leaf(leaf_hash(e));
        }
        let size = tree.size();
        let Ok(proof) = tree.inclusion_proof(index, size);
        let key_entry = key_index.map(|k| {
            let Ok(p) = tree.inclusion_proof(k, size);
            KeyEntry {
                entry: String::from_utf8(entries[k as usize].clone()).unwrap(),
                index: k,
                inclusion: hex_hashes(&p),
            }
        });
        Receipt {
            v: RECEIPT_VERSION,
            entry: String::from_utf8(entries[index as usize].clone()).unwrap(),
            index,
            inclusion: hex_hashes(&proof),
            key_entry,
            checkpoint: Checkpoint { origin: ORIGIN.into(), size, root: tree.root() }.sign(&sk),
            consistency_from: None,
            consistency: Vec::new(),
        }
    }

    fn check(r: &Receipt, s: &Signature) -> Result<Verified, ReceiptError> {
        check_signature_receipt(r, s, &log_key().1)
    }

    #[test]
    fn a_receipt_for_this_signature_passes() {
        let c = cert();
        let s = sig(&c, &[&format!("{ORIGIN} 2")]);
        let r = receipt(
            vec![key_event(&c), sig_event(&signing_fpr(&c), &c.fingerprint().to_hex(), &sig_digest(&s))],
            2,
            Some(1),
        );
        let v = check(&r, &s).unwrap();
        assert_eq!((v.entry.index, v.key_entry.map(|k| k.index)), (2, Some(1)));
    }

    #[test]
    fn a_receipt_for_another_signature_is_refused() {
        let c = cert();
        let (logged, shown) = (sig(&c, &[&format!("{ORIGIN} 2")]), sig(&c, &[&format!("{ORIGIN} 2")]));
        assert_ne!(sig_digest(&logged), sig_digest(&shown), "two signatures, two digests (salted or timed)");
        let r = receipt(
            vec![key_event(&c), sig_event(&signing_fpr(&c), &c.fingerprint().to_hex(), &sig_digest(&logged))],
            2,
            Some(1),
        );
        assert!(matches!(check(&r, &shown), Err(ReceiptError::OtherSignature { index: 2, .. })));
    }

    #[test]
    fn a_receipt_for_another_signer_is_refused() {
        let (c, other) = (cert(), cert());
        // The entry logs this signature's digest but names another key.
        let s = sig(&other, &[&format!("{ORIGIN} 2")]);
        let r = receipt(
            vec![key_event(&c), sig_event(&signing_fpr(&c), &c.fingerprint().to_hex(), &sig_digest(&s))],
            2,
            Some(1),
        );
        let e = check(&r, &s).unwrap_err();
        assert!(matches!(&e, ReceiptError::OtherSigner { actual, .. } if *actual == signing_fpr(&other)), "{e}");
        assert!(e.to_string().contains("another signer"), "{e}");
    }

    #[test]
    fn a_receipt_for_another_index_or_log_is_refused() {
        let c = cert();
        let primary = c.fingerprint().to_hex();
        for (notation, expected) in [
            (format!("{ORIGIN} 5"), ReceiptError::OtherIndex { named: 5, index: 2 }),
            (
                "other.invalid/log 2".to_owned(),
                ReceiptError::OtherLog { named: "other.invalid/log".into(), expected: ORIGIN.into() },
            ),
        ] {
            let s = sig(&c, &[&notation]);
            let r = receipt(vec![key_event(&c), sig_event(&signing_fpr(&c), &primary, &sig_digest(&s))], 2, Some(1));
            assert_eq!(check(&r, &s).unwrap_err(), expected, "{notation}");
        }
    }

    #[test]
    fn the_log_position_is_read_strictly() {
        let c = cert();
        let primary = c.fingerprint().to_hex();
        for (notations, expected) in [
            (vec![], ReceiptError::NoPosition),
            (vec![format!("{ORIGIN} 02")], ReceiptError::NoPosition),
            (vec![format!("{ORIGIN} +2")], ReceiptError::NoPosition),
            (vec![format!("{ORIGIN}2")], ReceiptError::NoPosition),
            (vec![" 2".to_owned()], ReceiptError::NoPosition),
            (vec![format!("{ORIGIN} 2"), format!("{ORIGIN} 2")], ReceiptError::TwoPositions),
        ] {
            let refs: Vec<&str> = notations.iter().map(String::as_str).collect();
            let s = sig(&c, &refs);
            let r = receipt(vec![key_event(&c), sig_event(&signing_fpr(&c), &primary, &sig_digest(&s))], 2, Some(1));
            assert_eq!(check(&r, &s).unwrap_err(), expected, "{notations:?}");
        }
    }

    #[test]
    fn the_entry_must_be_a_signature() {
        let c = cert();
        let s = sig(&c, &[&format!("{ORIGIN} 1")]);
        let r = receipt(vec![key_event(&c)], 1, None);
        assert_eq!(check(&r, &s).unwrap_err(), ReceiptError::NotSignature { index: 1, kind: "key_generated" });
    }

    #[test]
    fn the_key_entry_must_be_the_signing_key_logged_before() {
        let (c, other) = (cert(), cert());
        let primary = c.fingerprint().to_hex();
        let s = sig(&c, &[&format!("{ORIGIN} 3")]);
        let events = || vec![key_event(&other), key_event(&c), sig_event(&signing_fpr(&c), &primary, &sig_digest(&s))];
        assert!(check(&receipt(events(), 3, Some(2)), &s).is_ok());
        assert!(matches!(check(&receipt(events(), 3, Some(1)), &s), Err(ReceiptError::KeyEntryOtherKey { .. })));
        assert_eq!(
            check(&receipt(events(), 3, Some(0)), &s).unwrap_err(),
            ReceiptError::KeyEntryKind { index: 0, kind: "log_created" }
        );
        // A key entry logged after the signature.
        let s = sig(&c, &[&format!("{ORIGIN} 1")]);
        let later = vec![sig_event(&signing_fpr(&c), &primary, &sig_digest(&s)), key_event(&c)];
        assert_eq!(
            check(&receipt(later, 1, Some(2)), &s).unwrap_err(),
            ReceiptError::KeyEntryLater { key_index: 2, index: 1 }
        );
    }

    #[test]
    fn entries_are_parsed_strictly_at_their_own_index() {
        let c = cert();
        let s = sig(&c, &[&format!("{ORIGIN} 2")]);
        let good = receipt(
            vec![key_event(&c), sig_event(&signing_fpr(&c), &c.fingerprint().to_hex(), &sig_digest(&s))],
            2,
            Some(1),
        );
        // A key entry presented at another index than it claims.
        let mut r = good.clone();
        if let Some(k) = &mut r.key_entry {
            k.index = 0;
        }
        assert_eq!(check(&r, &s).unwrap_err(), ReceiptError::Entry(EntryError::Index { claimed: 1, actual: 0 }));
        // A key entry with a field of another kind: refused, never read loosely.
        let mut r = good.clone();
        if let Some(k) = &mut r.key_entry {
            k.entry = k.entry.replacen("\"kind\"", "\"vault\":\"x\",\"kind\"", 1);
        }
        assert!(matches!(check(&r, &s), Err(ReceiptError::Entry(EntryError::Json(_)))));
    }
}
