//! `log/head`: the vault's newest durable checkpoint, and how many bytes of
//! `log/entries` it covers. Written before any entry it covers is released, so
//! at start the vault knows exactly which entries it has vouched for.
//!
//! Two fixed slots of 4096 bytes, written alternately with one `pwrite` and one
//! `fdatasync`: a write torn by a crash spoils at most the slot being written,
//! and the other still holds the previous head. A slot is
//! `"qvhead1\n" | covered bytes (u64 LE) | note length (u32 LE) | note |
//! SHA-256 of all before`; it counts only if the digest matches and the note
//! verifies with the log key.

use std::fs::File;
use std::os::unix::fs::FileExt;

use qvault_attest::note::{Checkpoint, Verifier};
use sha2::{Digest, Sha256};

const SLOT: usize = 4096;
const MAGIC: &[u8; 8] = b"qvhead1\n";
pub const FILE: &str = "head";

#[derive(Clone, Debug)]
pub struct Head {
    pub checkpoint: Checkpoint,
    pub note: String,
    /// Length of `log/entries` holding exactly `checkpoint.size` entries.
    pub bytes: u64,
    /// The slot it was read from or written to.
    pub slot: u64,
}

fn encode(bytes: u64, note: &str) -> std::io::Result<Vec<u8>> {
    let mut rec = Vec::with_capacity(SLOT);
    rec.extend_from_slice(MAGIC);
    rec.extend_from_slice(&bytes.to_le_bytes());
    rec.extend_from_slice(&(note.len() as u32).to_le_bytes());
    rec.extend_from_slice(note.as_bytes());
    let digest = Sha256::digest(&rec);
    rec.extend_from_slice(&digest);
    if rec.len() > SLOT {
        return Err(std::io::Error::other("checkpoint note too long for the head file"));
    }
    rec.resize(SLOT, 0);
    Ok(rec)
}

fn decode(rec: &[u8], v: &Verifier) -> Option<(Checkpoint, String, u64)> {
    let body = rec.strip_prefix(MAGIC)?;
    let bytes = u64::from_le_bytes(body.get(..8)?.try_into().ok()?);
    let len = u32::from_le_bytes(body.get(8..12)?.try_into().ok()?) as usize;
    let note = body.get(12..12usize.checked_add(len)?)?;
    let end = MAGIC.len() + 12 + len;
    let digest = rec.get(end..end + 32)?;
    if Sha256::digest(&rec[..end]).as_slice() != digest {
        return None;
    }
    let note = std::str::from_utf8(note).ok()?.to_owned();
    let cp = Checkpoint::open(&note, v).ok()?;
    Some((cp, note, bytes))
}

/// The newest valid slot, if any.
pub fn read(f: &File, v: &Verifier) -> std::io::Result<Option<Head>> {
    let mut best: Option<Head> = None;
    for slot in 0..2u64 {
        let mut rec = vec![0u8; SLOT];
        let n = read_upto(f, &mut rec, slot * SLOT as u64)?;
        if let Some((checkpoint, note, bytes)) = decode(&rec[..n], v) {
            if best.as_ref().is_none_or(|b| checkpoint.size > b.checkpoint.size) {
                best = Some(Head { checkpoint, note, bytes, slot });
            }
        }
    }
    Ok(best)
}

fn read_upto(f: &File, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], at + n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Writes a new head into the slot `previous` does not use, durably.
pub fn write(
    f: &File,
    previous: Option<u64>,
    checkpoint: Checkpoint,
    note: String,
    bytes: u64,
) -> std::io::Result<Head> {
    let slot = previous.map_or(0, |s| 1 - s);
    f.write_all_at(&encode(bytes, &note)?, slot * SLOT as u64)?;
    f.sync_data()?;
    Ok(Head { checkpoint, note, bytes, slot })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn setup() -> (SigningKey, Verifier) {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let v = Verifier { name: "example.org/log".into(), key: key.verifying_key() };
        (key, v)
    }

    fn cp(size: u64) -> Checkpoint {
        Checkpoint { origin: "example.org/log".into(), size, root: [size as u8; 32] }
    }

    #[test]
    fn newest_slot_wins_and_a_torn_slot_leaves_the_other() {
        let (key, v) = setup();
        let d = tempfile::tempdir().unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(d.path().join("h"))
            .unwrap();
        assert!(read(&f, &v).unwrap().is_none());
        let h1 = write(&f, None, cp(1), cp(1).sign(&key), 10).unwrap();
        let h2 = write(&f, Some(h1.slot), cp(2), cp(2).sign(&key), 20).unwrap();
        assert_ne!(h1.slot, h2.slot);
        let got = read(&f, &v).unwrap().unwrap();
        assert_eq!((got.checkpoint.size, got.bytes, got.slot), (2, 20, h2.slot));
        // A write torn in the newest slot: the previous head is what counts.
        f.write_all_at(b"garbage", h2.slot * SLOT as u64 + 30).unwrap();
        let got = read(&f, &v).unwrap().unwrap();
        assert_eq!((got.checkpoint.size, got.bytes), (1, 10));
        // A note signed by another key does not count.
        let other = SigningKey::from_bytes(&[8u8; 32]);
        write(&f, Some(h1.slot), cp(9), cp(9).sign(&other), 90).unwrap();
        assert_eq!(read(&f, &v).unwrap().unwrap().checkpoint.size, 1);
    }
}
