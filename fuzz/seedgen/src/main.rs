//! Seed inputs for the fuzz targets that the real binaries do not make by
//! themselves. Used by `fuzz/make-seeds`; see `fuzz/README.md`.
//!
//! - `frames DIR`: requests no shipped client sends (`Checkpoint`, `ExportLog`),
//!   requests that decode but fail `Request::validate`, and hand-made hostile
//!   byte streams (oversized and truncated lengths, trailing bytes, unknown
//!   variants, huge claimed vector lengths, overlong varints, descriptors).
//! - `calls DIR`: whole calls for the `serve_call` target (sign in each mode,
//!   with client-side hashing, list, export, checkpoint, log read, one cut short).
//! - `rekey-log EXPORT OUT`: a real log export with its first entry and every
//!   checkpoint re-made for the fuzz targets' fixed log key (seed `[7; 32]`,
//!   name `fuzz.invalid/log`); the other entries keep their exact bytes.
//! - `rekey-receipt EXPORT RECEIPT OUT`: a real receipt from the same vault with
//!   its proofs and checkpoint re-made for the re-keyed log.

use std::fs;
use std::path::Path;

use ed25519_dalek::SigningKey;
use qubes_rpc::{frame, ClientFrame, HashAlgo, Op, Request, SignMode, SignRequest};
use qvault_attest::bundle::{self, Record};
use qvault_attest::merkle::{leaf_hash, MemTree, Subtrees as _};
use qvault_attest::receipt::hex_hashes;
use qvault_attest::{Checkpoint, Entry, Event, Receipt, Verifier};

const LOG_NAME: &str = "fuzz.invalid/log";

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn verifier() -> Verifier {
    Verifier { name: LOG_NAME.to_owned(), key: key().verifying_key() }
}

fn enc(frames: &[ClientFrame<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        frame::encode_into(f, &mut out).expect("seed frames are small");
    }
    out
}

fn req(op: Op) -> ClientFrame<'static> {
    ClientFrame::Request(Request::new(op))
}

fn sign(key: Option<String>) -> Op {
    Op::Sign(SignRequest {
        key,
        mode: SignMode::Detached,
        armor: true,
        digest: Some(HashAlgo::Sha384),
        text: false,
        known_log_size: Some(3),
        client_hash: true,
    })
}

fn frames(dir: &Path) -> Res<()> {
    fs::create_dir_all(dir)?;
    let w = |name: &str, bytes: &[u8]| fs::write(dir.join(name), bytes);
    // Valid requests the shipped client never sends.
    w("req-checkpoint", &enc(&[req(Op::Checkpoint { old_size: None })]))?;
    w("req-checkpoint-old", &enc(&[req(Op::Checkpoint { old_size: Some(2) })]))?;
    w("req-exportlog", &enc(&[req(Op::ExportLog)]))?;
    // Decode, then fail Request::validate.
    let mut v7 = Request::new(Op::ListKeys { secret: true, selectors: vec!["a".into()] });
    v7.version = 7;
    w("hostile-version", &enc(&[ClientFrame::Request(v7)]))?;
    w("hostile-65-selectors", &enc(&[req(Op::ExportPublic { selectors: vec!["x".into(); 65] })]))?;
    w("hostile-control-selector", &enc(&[req(Op::ListKeys { secret: false, selectors: vec!["a\u{85}b".into()] })]))?;
    w("hostile-long-key", &enc(&[req(sign(Some("k".repeat(513)))), ClientFrame::Data(b"x"), ClientFrame::End]))?;
    w("hostile-sign-control-key", &enc(&[req(sign(Some("F\nG".into()))), ClientFrame::End]))?;
    // Raw bytes.
    w("hostile-len-max", &[0xff, 0xff, 0xff, 0xff])?;
    w("hostile-len-over-limit", &[0x00, 0x10, 0x00, 0x01, 0x02])?;
    w("hostile-header-truncated", &[0x00, 0x00])?;
    w("hostile-payload-truncated", &[0x00, 0x00, 0x00, 0x05, 0x01, 0x02])?;
    w("hostile-trailing", &[0x00, 0x00, 0x00, 0x02, 0x02, 0x00])?;
    w("hostile-unknown-variant", &[0x00, 0x00, 0x00, 0x01, 0x09])?;
    // Request { version 1, ListKeys { secret false, selectors: len 2^32-1 } }.
    w("hostile-huge-vec", &[0x00, 0x00, 0x00, 0x09, 0x00, 0x01, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x0f])?;
    // Request { version: an 11-byte varint }.
    let mut overlong = vec![0x00, 0x00, 0x00, 0x0e, 0x00];
    overlong.extend_from_slice(&[0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]);
    overlong.extend_from_slice(&[0x04, 0x00]);
    w("hostile-overlong-varint", &overlong)?;
    // Data frame claiming more bytes than the frame holds.
    w("hostile-data-len", &[0x00, 0x00, 0x00, 0x03, 0x01, 0xff, 0x7f])?;
    // Socket-service descriptors, then a frame.
    let end = enc(&[ClientFrame::End]);
    w("desc-ok", &[b"qvault.Gpg+arg work\0".as_slice(), &end].concat())?;
    w("desc-bad-source", &[b"qvault.Gpg 1-bad/../x\0".as_slice(), &end].concat())?;
    w("desc-no-space", b"qvault.LogRead\0")?;
    w("desc-too-long", &[b"qvault.Gpg ".as_slice(), &[b'a'; 300], b"\0"].concat())?;
    Ok(())
}

/// Whole calls for the `serve_call` target: the caller's every byte, for
/// each operation a client can ask for, and the same calls cut short.
fn calls(dir: &Path) -> Res<()> {
    fs::create_dir_all(dir)?;
    let w = |name: &str, bytes: &[u8]| fs::write(dir.join(name), bytes);
    let data = b"hello world\nline two  \r\n\tend\n";
    let signing = |mode, text, digest, client_hash| {
        req(Op::Sign(SignRequest { key: None, mode, armor: true, digest, text, known_log_size: Some(1), client_hash }))
    };
    let detached = enc(&[signing(SignMode::Detached, false, None, false), ClientFrame::Data(data), ClientFrame::End]);
    w("sign-detached", &detached)?;
    w(
        "sign-cleartext-sha512",
        &enc(&[
            signing(SignMode::Cleartext, true, Some(HashAlgo::Sha512), false),
            ClientFrame::Data(data),
            ClientFrame::End,
        ]),
    )?;
    w(
        "sign-inline-two-chunks",
        &enc(&[
            signing(SignMode::Inline, false, None, false),
            ClientFrame::Data(&data[..7]),
            ClientFrame::Data(&data[7..]),
            ClientFrame::End,
        ]),
    )?;
    // Client-side hashing: a chaining value after one block (any 32 bytes: the
    // vault cannot check it against data it never sees), then a tail.
    let state = qubes_rpc::HashState { algo: HashAlgo::Sha256, state: vec![0x5a; 32], tail: b"tail".to_vec(), len: 68 };
    w(
        "sign-client-hash",
        &enc(&[signing(SignMode::Detached, false, Some(HashAlgo::Sha256), true), ClientFrame::HashState(state)]),
    )?;
    w("sign-by-key", &enc(&[req(sign(Some("seed@example.org".into()))), ClientFrame::Data(data), ClientFrame::End]))?;
    w("list-secret", &enc(&[req(Op::ListKeys { secret: true, selectors: vec![] })]))?;
    w("list-public-selector", &enc(&[req(Op::ListKeys { secret: false, selectors: vec!["Fuzz".into()] })]))?;
    w("export", &enc(&[req(Op::ExportPublic { selectors: vec![] })]))?;
    w("checkpoint", &enc(&[req(Op::Checkpoint { old_size: None })]))?;
    w("checkpoint-old", &enc(&[req(Op::Checkpoint { old_size: Some(1) })]))?;
    w("log-read", &enc(&[req(Op::ExportLog)]))?;
    w("sign-truncated", &detached[..detached.len() - 3])?;
    Ok(())
}

/// The size in a checkpoint note, read without checking its signature.
fn note_size(note: &str) -> Res<u64> {
    let text = &note[..note.find("\n\n").ok_or("checkpoint note has no blank line")? + 1];
    Ok(Checkpoint::parse_text(text)?.size)
}

/// A record of the re-keyed log.
enum Rec {
    Entry(Vec<u8>),
    Checkpoint(String),
}

/// The re-keyed log: the tree, and its records in the export's order.
struct Rekeyed {
    tree: MemTree,
    records: Vec<Rec>,
}

fn rekey(export: &[u8]) -> Res<Rekeyed> {
    let mut r = bundle::Reader::new(export)?;
    let (mut tree, mut records) = (MemTree::default(), Vec::new());
    while let Some(rec) = r.next_record()? {
        match rec {
            Record::Entry(bytes) => {
                let bytes = if tree.size() == 0 {
                    let mut e = Entry::parse(&bytes, 0)?;
                    let Event::LogCreated { vault, .. } = e.event else {
                        return Err("entry 0 is not log_created".into());
                    };
                    e.event = Event::LogCreated { vault, origin: LOG_NAME.to_owned(), log_key: verifier().encode() };
                    e.encode()
                } else {
                    bytes.to_vec()
                };
                tree.push_leaf(leaf_hash(&bytes));
                records.push(Rec::Entry(bytes));
            }
            Record::Checkpoint(note) => records.push(Rec::Checkpoint(note)),
        }
    }
    // Checkpoints are re-signed once the whole tree is known.
    let records = records
        .into_iter()
        .map(|rec| match rec {
            Rec::Checkpoint(note) => {
                let size = note_size(&note)?;
                Ok(Rec::Checkpoint(checkpoint(&tree, size)))
            }
            e => Ok(e),
        })
        .collect::<Res<Vec<_>>>()?;
    Ok(Rekeyed { tree, records })
}

fn checkpoint(tree: &MemTree, size: u64) -> String {
    let Ok(root) = tree.range(0, size);
    Checkpoint { origin: LOG_NAME.to_owned(), size, root }.sign(&key())
}

fn rekey_log(export: &Path, out: &Path) -> Res<()> {
    let rk = rekey(&fs::read(export)?)?;
    let mut buf = Vec::new();
    bundle::write_header(&mut buf)?;
    for rec in &rk.records {
        match rec {
            Rec::Entry(b) => bundle::write_entry(&mut buf, b)?,
            Rec::Checkpoint(n) => bundle::write_checkpoint(&mut buf, n)?,
        }
    }
    fs::write(out, buf)?;
    Ok(())
}

fn rekey_receipt(export: &Path, receipt: &Path, out: &Path) -> Res<()> {
    let rk = rekey(&fs::read(export)?)?;
    let mut r = Receipt::parse(&fs::read(receipt)?)?;
    let size = note_size(&r.checkpoint)?;
    if size > rk.tree.size() {
        return Err("the receipt's checkpoint is newer than the export".into());
    }
    let Ok(p) = rk.tree.inclusion_proof(r.index, size);
    r.inclusion = hex_hashes(&p);
    if let Some(k) = &mut r.key_entry {
        let Ok(p) = rk.tree.inclusion_proof(k.index, size);
        k.inclusion = hex_hashes(&p);
    }
    if let Some(from) = r.consistency_from {
        let Ok(p) = rk.tree.consistency_proof(from, size);
        r.consistency = hex_hashes(&p);
    }
    r.checkpoint = checkpoint(&rk.tree, size);
    r.verify(&verifier())?;
    fs::write(out, r.encode())?;
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["frames", dir] => frames(Path::new(dir)),
        ["calls", dir] => calls(Path::new(dir)),
        ["rekey-log", export, out] => rekey_log(Path::new(export), Path::new(out)),
        ["rekey-receipt", export, receipt, out] => rekey_receipt(Path::new(export), Path::new(receipt), Path::new(out)),
        ["verifier"] => {
            println!("{}", verifier().encode());
            Ok(())
        }
        _ => Err("usage: seedgen frames DIR | calls DIR | rekey-log EXPORT OUT | rekey-receipt EXPORT RECEIPT OUT | verifier".into()),
    }
}
