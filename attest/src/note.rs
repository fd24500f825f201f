//! C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys, and
//! C2SP tlog checkpoints (https://c2sp.org/tlog-checkpoint) carried in them.
//!
//! Verifier key: `<name>+<key ID hex>+<base64(0x01 || public key)>`; key ID: the
//! first 4 bytes of SHA-256(name || "\n" || 0x01 || public key). A note is its
//! text (ending in a newline), a blank line, then signature lines
//! `— <name> <base64(key ID || signature)>` (U+2014). The signed message is the
//! text, final newline included.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

pub const ALG_ED25519: u8 = 0x01;
/// Longest note accepted from outside.
pub const MAX_NOTE: usize = 16 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    #[error("malformed verifier key: {0}")]
    BadVerifierKey(&'static str),
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("note has no valid signature by {0}")]
    NoValidSignature(String),
    #[error("malformed checkpoint: {0}")]
    BadCheckpoint(&'static str),
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace) && name.len() <= 256
}

/// A note verifier: name and Ed25519 public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    pub name: String,
    pub key: VerifyingKey,
}

impl Verifier {
    pub fn id(&self) -> [u8; 4] {
        key_id(&self.name, self.key.as_bytes())
    }

    /// The verifier key string.
    pub fn encode(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex::encode(self.id()), B64.encode(raw))
    }

    pub fn parse(s: &str) -> Result<Verifier, NoteError> {
        let s = s.trim();
        // Names and key IDs have no '+'; the base64 key may.
        let mut parts = s.splitn(3, '+');
        let (Some(name), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadVerifierKey("expected name+id+key"));
        };
        if !valid_name(name) {
            return Err(NoteError::BadVerifierKey("bad name"));
        }
        let raw = B64.decode(b64).map_err(|_| NoteError::BadVerifierKey("key is not base64"))?;
        if raw.len() != 33 || raw[0] != ALG_ED25519 {
            return Err(NoteError::BadVerifierKey("not an Ed25519 key"));
        }
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&raw[1..]);
        let key = VerifyingKey::from_bytes(&pk).map_err(|_| NoteError::BadVerifierKey("invalid Ed25519 point"))?;
        let v = Verifier { name: name.to_owned(), key };
        if hex::encode(v.id()) != id.to_ascii_lowercase() {
            return Err(NoteError::BadVerifierKey("key ID does not match"));
        }
        Ok(v)
    }
}

/// Signs `text` (which must end in a newline) as a note.
pub fn sign_note(text: &str, name: &str, key: &SigningKey) -> String {
    debug_assert!(text.ends_with('\n'));
    let sig = key.sign(text.as_bytes());
    let mut blob = key_id(name, key.verifying_key().as_bytes()).to_vec();
    blob.extend_from_slice(&sig.to_bytes());
    format!("{text}\n\u{2014} {name} {}\n", B64.encode(blob))
}

/// Splits a note and checks a signature by `v`; returns the text.
pub fn open_note<'a>(note: &'a str, v: &Verifier) -> Result<&'a str, NoteError> {
    if note.len() > MAX_NOTE {
        return Err(NoteError::Malformed("too long"));
    }
    let split = note.rfind("\n\n").ok_or(NoteError::Malformed("no blank line before signatures"))?;
    let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
    if !sigs.ends_with('\n') {
        return Err(NoteError::Malformed("signature block must end with a newline"));
    }
    let want = v.id();
    for line in sigs.lines() {
        let rest =
            line.strip_prefix("\u{2014} ").ok_or(NoteError::Malformed("signature line must start with an em dash"))?;
        let (name, b64) = rest.split_once(' ').ok_or(NoteError::Malformed("signature line has no key name"))?;
        let blob = B64.decode(b64).map_err(|_| NoteError::Malformed("signature is not base64"))?;
        if blob.len() < 4 {
            return Err(NoteError::Malformed("signature too short"));
        }
        if name != v.name || blob[..4] != want || blob.len() != 68 {
            continue;
        }
        let mut sig = [0u8; 64];
        sig.copy_from_slice(&blob[4..]);
        if v.key.verify(text.as_bytes(), &ed25519_dalek::Signature::from_bytes(&sig)).is_ok() {
            return Ok(text);
        }
    }
    Err(NoteError::NoValidSignature(v.name.clone()))
}

/// A checkpoint's body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    pub fn text(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root))
    }

    pub fn parse_text(text: &str) -> Result<Checkpoint, NoteError> {
        let mut lines = text.split('\n');
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or(NoteError::BadCheckpoint("no origin"))?;
        let size = lines.next().ok_or(NoteError::BadCheckpoint("no size"))?;
        if size.is_empty() || (size.len() > 1 && size.starts_with('0')) || !size.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NoteError::BadCheckpoint("size is not a decimal number"));
        }
        let size: u64 = size.parse().map_err(|_| NoteError::BadCheckpoint("size out of range"))?;
        let root = B64
            .decode(lines.next().ok_or(NoteError::BadCheckpoint("no root hash"))?)
            .map_err(|_| NoteError::BadCheckpoint("root hash is not base64"))?;
        let root: Hash = root.try_into().map_err(|_| NoteError::BadCheckpoint("root hash is not 32 bytes"))?;
        Ok(Checkpoint { origin: origin.to_owned(), size, root })
    }

    /// Verifies a signed checkpoint note with `v` and parses it.
    pub fn open(note: &str, v: &Verifier) -> Result<Checkpoint, NoteError> {
        let text = open_note(note, v)?;
        let cp = Checkpoint::parse_text(text)?;
        if cp.origin != v.name {
            return Err(NoteError::BadCheckpoint("origin does not match the log key's name"));
        }
        Ok(cp)
    }

    pub fn sign(&self, key: &SigningKey) -> String {
        sign_note(&self.text(), &self.origin, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    #[test]
    fn checkpoint_roundtrip_and_tamper() {
        let k = key();
        let v = Verifier { name: "example.invalid/log".into(), key: k.verifying_key() };
        let enc = v.encode();
        assert_eq!(Verifier::parse(&enc).unwrap(), v);
        let cp = Checkpoint { origin: v.name.clone(), size: 42, root: [9u8; 32] };
        let note = cp.sign(&k);
        assert!(note.starts_with("example.invalid/log\n42\nCQkJ"));
        assert!(note.contains("\n\n\u{2014} example.invalid/log "));
        assert_eq!(Checkpoint::open(&note, &v).unwrap(), cp);
        let forged = note.replace("\n42\n", "\n43\n");
        assert_eq!(Checkpoint::open(&forged, &v), Err(NoteError::NoValidSignature(v.name.clone())));
        let other = Verifier { name: v.name.clone(), key: SigningKey::from_bytes(&[8u8; 32]).verifying_key() };
        assert!(Checkpoint::open(&note, &other).is_err());
    }

    #[test]
    fn verifier_keys_with_plus_in_base64_roundtrip() {
        for seed in 0..64u8 {
            let v = Verifier { name: "n.invalid/x".into(), key: SigningKey::from_bytes(&[seed; 32]).verifying_key() };
            assert_eq!(Verifier::parse(&v.encode()).unwrap(), v, "{}", v.encode());
        }
    }

    #[test]
    fn verifier_key_errors() {
        assert!(Verifier::parse("nokey").is_err());
        assert!(Verifier::parse("a+00000000+AQ==").is_err());
        let v = Verifier { name: "n".into(), key: key().verifying_key() };
        let enc = v.encode().replace("n+", "m+");
        assert_eq!(Verifier::parse(&enc), Err(NoteError::BadVerifierKey("key ID does not match")));
    }

    #[test]
    fn checkpoint_text_rules() {
        assert!(Checkpoint::parse_text("o\n01\nAAAA\n").is_err());
        assert!(Checkpoint::parse_text("o\n-1\nAAAA\n").is_err());
        assert!(Checkpoint::parse_text("\n1\nAAAA\n").is_err());
    }
}
