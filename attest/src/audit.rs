//! The auditor's checks, shared by `qvault-audit` and the tests: full log
//! replay, one signature with its receipt or the log, consistency of two
//! checkpoints. Each returns a report; none trusts the client qube.

use std::collections::BTreeMap;
use std::io::BufRead;

use openpgp::packet::Signature;
use openpgp::parse::stream::{DetachedVerifierBuilder, MessageLayer, MessageStructure, VerificationHelper};
use openpgp::parse::{PacketParser, PacketParserResult, Parse as _};
use openpgp::policy::StandardPolicy;
use openpgp::serialize::Marshal as _;
use openpgp::{Cert, KeyHandle, Packet};
use sequoia_openpgp as openpgp;
use serde::Serialize;

use crate::bundle::{self, Record};
use crate::entry::{Entry, Event};
use crate::merkle::{leaf_hash, Hash, MemTree, Subtrees as _};
use crate::note::{Checkpoint, Verifier};
pub use crate::receipt::sig_digest;
use crate::receipt::{check_signature_entry, check_signature_receipt, decode_cert, signature_position, Receipt};

/// Stop collecting problems after this many; the verdict is already "failed".
const MAX_PROBLEMS: usize = 50;

#[derive(Debug, Clone, Serialize)]
pub struct KeyRecord {
    pub fingerprint: String,
    pub origin: &'static str,
    pub time: i64,
    pub index: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct LogReport {
    pub ok: bool,
    pub entries: u64,
    pub root: String,
    pub origin: Option<String>,
    pub checkpoints_verified: usize,
    pub latest_checkpoint_size: Option<u64>,
    pub signatures: u64,
    pub keys: Vec<KeyRecord>,
    pub problems: Vec<String>,
    #[serde(skip)]
    pub tree: MemTree,
    #[serde(skip)]
    pub entry_bytes: Vec<Vec<u8>>,
}

impl LogReport {
    fn problem(&mut self, p: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(p);
        }
    }
}

/// Replays a log export: every entry well-formed and in place, the root
/// recomputed, every checkpoint (stored, and `extra` ones from clients or
/// receipts) signed by the log key and consistent with the entries, and the
/// newest checkpoint covering every entry. `keep_entries` keeps the entries'
/// bytes for later lookups.
pub fn verify_log<R: BufRead>(input: R, key: &Verifier, extra: &[String], keep_entries: bool) -> LogReport {
    let mut rep = LogReport::default();
    let mut notes: Vec<(String, String)> = Vec::new();
    // This thread reads and hashes the tree; a pool of parsers (JSON parsing is
    // the larger part of the work) takes batches of entries from a queue. Each
    // batch's findings are merged in log order at the end.
    const BATCH: usize = 2048;
    let parsers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
    // A batch is its entries' bytes back to back and where each one ends: one
    // allocation per batch, not per entry.
    type Batch = (u64, Vec<u8>, Vec<usize>);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(8);
    let rx = std::sync::Mutex::new(rx);
    let facts = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..parsers)
            .map(|_| {
                let rx = &rx;
                scope.spawn(move || {
                    let mut parts = Vec::new();
                    loop {
                        let next = rx.lock().map_or(None, |r| r.recv().ok());
                        let Some((start, buf, ends)) = next else { break };
                        let mut facts = LogReport::default();
                        let mut from = 0;
                        for (i, &end) in ends.iter().enumerate() {
                            let (bytes, pos) = (&buf[from..end], start + i as u64);
                            from = end;
                            match Entry::parse(bytes, pos) {
                                Ok(e) => account(&mut facts, &e, key),
                                Err(err) => facts.problem(format!("entry {pos}: {err}")),
                            }
                            if keep_entries {
                                facts.entry_bytes.push(bytes.to_vec());
                            }
                        }
                        parts.push((start, facts));
                    }
                    parts
                })
            })
            .collect();
        let mut batch: Vec<u8> = Vec::with_capacity(BATCH * 512);
        let mut ends: Vec<usize> = Vec::with_capacity(BATCH);
        let mut start = 0u64;
        match bundle::Reader::new(input) {
            Err(e) => rep.problem(e.to_string()),
            Ok(mut r) => loop {
                match r.next_record() {
                    Ok(None) => break,
                    Ok(Some(Record::Entry(bytes))) => {
                        rep.tree.push_leaf(leaf_hash(bytes));
                        batch.extend_from_slice(bytes);
                        ends.push(batch.len());
                        if ends.len() == BATCH {
                            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH * 512));
                            let full_ends = std::mem::replace(&mut ends, Vec::with_capacity(BATCH));
                            let _ = tx.send((start, full, full_ends));
                            start = rep.tree.size();
                        }
                    }
                    Ok(Some(Record::Checkpoint(n))) => {
                        let line = r.line();
                        notes.push((format!("stored checkpoint (line {line})"), n))
                    }
                    Err(e) => {
                        rep.problem(e.to_string());
                        break;
                    }
                }
            },
        }
        if !ends.is_empty() {
            let _ = tx.send((start, batch, ends));
        }
        drop(tx);
        let mut parts: Vec<(u64, LogReport)> = workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect();
        parts.sort_unstable_by_key(|(start, _)| *start);
        let mut facts = LogReport::default();
        for (_, mut p) in parts {
            for problem in p.problems {
                facts.problem(problem);
            }
            facts.keys.append(&mut p.keys);
            facts.signatures += p.signatures;
            facts.origin = facts.origin.or(p.origin);
            facts.entry_bytes.append(&mut p.entry_bytes);
        }
        facts
    });
    let mut problems = facts.problems;
    problems.append(&mut rep.problems);
    rep.problems = problems;
    rep.keys = facts.keys;
    rep.signatures = facts.signatures;
    rep.origin = facts.origin;
    rep.entry_bytes = facts.entry_bytes;
    for (i, n) in extra.iter().enumerate() {
        notes.push((format!("given checkpoint #{}", i + 1), n.clone()));
    }
    rep.entries = rep.tree.size();
    rep.root = hex::encode(rep.tree.root());
    if rep.entries == 0 {
        rep.problem("the log has no entries".into());
    }
    let mut by_size: BTreeMap<u64, (String, Hash, String)> = BTreeMap::new();
    for (what, note) in &notes {
        let cp = match Checkpoint::open(note, key) {
            Ok(cp) => cp,
            Err(e) => {
                rep.problem(format!("{what}: {e}"));
                continue;
            }
        };
        if let Some((w0, root0, n0)) = by_size.get(&cp.size) {
            if *root0 != cp.root {
                rep.problem(format!(
                    "equivocation: two checkpoints signed by the log key for size {} with different roots\n--- {w0}:\n{n0}--- {what}:\n{note}",
                    cp.size
                ));
                continue;
            }
        }
        if cp.size > rep.entries {
            rep.problem(format!(
                "log truncated or rolled back: {what} covers {} entries but the log has {}\n{note}",
                cp.size, rep.entries
            ));
            continue;
        }
        let Ok(root) = rep.tree.range(0, cp.size);
        if root != cp.root {
            rep.problem(format!(
                "{what} for size {} does not match the log's entries (tampered or forked log)\n{note}",
                cp.size
            ));
            continue;
        }
        rep.checkpoints_verified += 1;
        by_size.insert(cp.size, (what.clone(), cp.root, note.clone()));
    }
    rep.latest_checkpoint_size = by_size.keys().next_back().copied();
    match rep.latest_checkpoint_size {
        None => rep.problem("no valid checkpoint signed by the log key".into()),
        Some(s) if s < rep.entries => rep.problem(format!(
            "entries {s}..{} are not covered by any checkpoint signed by the log key",
            rep.entries - 1
        )),
        _ => {}
    }
    rep.ok = rep.problems.is_empty();
    rep
}

fn account(rep: &mut LogReport, e: &Entry, key: &Verifier) {
    if let Event::LogCreated { origin, log_key, .. } = &e.event {
        if e.index != 0 {
            rep.problem(format!("entry {}: a second log_created entry", e.index));
        }
        if *log_key != key.encode() || *origin != key.name {
            rep.problem(format!("entry {}: the log was created with a different log key or origin", e.index));
        }
        rep.origin = Some(origin.clone());
    } else if e.index == 0 {
        rep.problem("entry 0 is not log_created".into());
    }
    if let Some((fpr, origin, _)) = e.key_fact() {
        rep.keys.push(KeyRecord { fingerprint: fpr.to_owned(), origin, time: e.time, index: e.index });
    }
    if matches!(e.event, Event::Signature { .. }) {
        rep.signatures += 1;
    }
}

/// The log position a signature claims: `(origin, index)` from its notation,
/// read as strictly as [`signature_position`] does.
pub fn log_position(sig: &Signature) -> Option<(String, u64)> {
    signature_position(sig).ok()
}

#[derive(Debug, Default, Serialize)]
pub struct SignatureReport {
    pub ok: bool,
    pub signature_valid: bool,
    pub signer: Option<String>,
    pub primary: Option<String>,
    pub log_index: Option<u64>,
    pub logged: bool,
    pub key_origin: Option<String>,
    pub key_time: Option<i64>,
    pub key_index: Option<u64>,
    pub checkpoint_size: Option<u64>,
    pub signed_at: Option<i64>,
    pub caller: Option<String>,
    /// Who hashed the data: `vault` (it streamed through the vault) or
    /// `client` (the vault signed the calling qube's hash state).
    pub hashed_by: Option<String>,
    pub problems: Vec<String>,
}

/// Where `verify-signature` finds the entries.
pub enum Evidence<'a> {
    Receipt(&'a [u8]),
    Log(Box<LogReport>),
}

pub(crate) fn signatures_in(bytes: &[u8]) -> Vec<Signature> {
    let mut out = Vec::new();
    let Ok(mut ppr) = PacketParser::from_bytes(bytes) else { return out };
    while let PacketParserResult::Some(pp) = ppr {
        match pp.next() {
            Ok((Packet::Signature(s), next)) => {
                out.push(s);
                ppr = next;
            }
            Ok((_, next)) => ppr = next,
            Err(_) => break,
        }
    }
    out
}

pub(crate) struct OneCert(pub(crate) Cert);

impl VerificationHelper for OneCert {
    fn get_certs(&mut self, _: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(vec![self.0.clone()])
    }
    fn check(&mut self, s: MessageStructure<'_>) -> openpgp::Result<()> {
        for layer in s {
            if let MessageLayer::SignatureGroup { results } = layer {
                if results.iter().any(|r| r.is_ok()) {
                    return Ok(());
                }
            }
        }
        Err(anyhow::anyhow!("no valid signature"))
    }
}

/// The signature's entry and its key's entry, read from a verified whole log
/// (strictly, each at its own index) and checked with [`check_signature_entry`].
pub(crate) fn entry_in_log(log: &LogReport, sig: &Signature, key: &Verifier) -> Result<(Entry, Option<Entry>), String> {
    if !log.ok {
        return Err("the log does not verify (run verify-log for details)".into());
    }
    let (_, index) = signature_position(sig).map_err(|e| e.to_string())?;
    let bytes = log.entry_bytes.get(index as usize).ok_or_else(|| format!("the log has no entry {index}"))?;
    let entry = Entry::parse(bytes, index).map_err(|e| format!("entry {index}: {e}"))?;
    let key_entry = match &entry.event {
        Event::Signature { primary, .. } => {
            match log.keys.iter().find(|k| k.fingerprint == *primary && k.index < index) {
                Some(k) => {
                    let b = log
                        .entry_bytes
                        .get(k.index as usize)
                        .ok_or_else(|| format!("the log has no entry {}", k.index))?;
                    Some(Entry::parse(b, k.index).map_err(|e| format!("entry {}: {e}", k.index))?)
                }
                None => None,
            }
        }
        _ => None,
    };
    check_signature_entry(sig, &entry, key_entry.as_ref(), key).map_err(|e| format!("log: {e}"))?;
    Ok((entry, key_entry))
}

/// Verifies a detached signature over `data` and its log entry.
pub fn verify_signature(
    data: &mut (dyn std::io::Read + Send + Sync),
    sig_bytes: &[u8],
    evidence: Evidence<'_>,
    key: &Verifier,
) -> SignatureReport {
    let mut rep = SignatureReport::default();
    let sigs = signatures_in(sig_bytes);
    let Some(sig) = sigs.first() else {
        rep.problems.push("no OpenPGP signature found".into());
        return rep;
    };
    rep.signed_at = sig
        .signature_creation_time()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64);
    // Every check that ties the entry to this signature is the shared one
    // (`check_signature_receipt`, or `check_signature_entry` for a whole log),
    // the same the client runs; this function only reports, and then verifies
    // the signature over the data with the key the log names.
    let checked = match evidence {
        Evidence::Receipt(bytes) => Receipt::parse(bytes)
            .and_then(|r| check_signature_receipt(&r, sig, key))
            .map(|v| {
                rep.checkpoint_size = Some(v.checkpoint.size);
                (v.entry, v.key_entry)
            })
            .map_err(|e| format!("receipt: {e}")),
        Evidence::Log(log) => {
            entry_in_log(&log, sig, key).inspect(|_| rep.checkpoint_size = log.latest_checkpoint_size)
        }
    };
    let (entry, key_entry) = match checked {
        Ok(found) => found,
        Err(problem) => {
            rep.log_index = log_position(sig).map(|(_, i)| i);
            rep.problems.push(problem);
            return rep;
        }
    };
    rep.log_index = Some(entry.index);
    let Event::Signature { key: signer, primary, hashed_by, .. } = &entry.event else {
        // check_signature_entry refused any other kind.
        rep.problems.push(format!("log entry {} is not a signature", entry.index));
        return rep;
    };
    rep.signer = Some(signer.clone());
    rep.primary = Some(primary.clone());
    rep.caller = entry.source.clone();
    rep.hashed_by = Some(hashed_by.clone().unwrap_or_else(|| "vault".into()));
    rep.logged = true;
    let Some(ke) = key_entry else {
        rep.problems.push(format!("no log entry says where key {primary} came from"));
        return rep;
    };
    let Some((_, how, cert_b64)) = ke.key_fact() else {
        rep.problems.push("the key entry is not a key event".into());
        return rep;
    };
    rep.key_origin = Some(how.to_owned());
    rep.key_time = Some(ke.time);
    rep.key_index = Some(ke.index);
    let cert = decode_cert(cert_b64).and_then(|b| Cert::from_bytes(&b).ok());
    let Some(cert) = cert else {
        rep.problems.push("the key entry's certificate does not parse".into());
        return rep;
    };
    let p = StandardPolicy::new();
    let mut one = Vec::new();
    let _ = Packet::from(sig.clone()).serialize(&mut one);
    let valid = DetachedVerifierBuilder::from_bytes(&one)
        .and_then(|b| b.with_policy(&p, None, OneCert(cert)))
        .and_then(|mut v| v.verify_reader(data));
    match valid {
        Ok(()) => rep.signature_valid = true,
        Err(e) => rep.problems.push(format!("the signature does not verify over the file: {e}")),
    }
    rep.ok = rep.problems.is_empty() && rep.signature_valid && rep.logged;
    rep
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{write_checkpoint, write_entry, write_header};
    use crate::entry::Entry;
    use crate::merkle::Frontier;
    use crate::note::Checkpoint;
    use ed25519_dalek::SigningKey;

    /// A log of `n` entries (log_created, then policy changes), its export with
    /// one checkpoint at the end, and its verifier. `damage` rewrites entries
    /// before they are hashed and written.
    fn log(n: u64, damage: impl Fn(u64, Vec<u8>) -> Vec<u8>) -> (Vec<u8>, Verifier) {
        let sk = SigningKey::from_bytes(&[9u8; 32]);
        let v = Verifier { name: "test.invalid/log".into(), key: sk.verifying_key() };
        let mut out = Vec::new();
        write_header(&mut out).unwrap();
        let mut tree = Frontier::new();
        for i in 0..n {
            let event = if i == 0 {
                Event::LogCreated { vault: "t".into(), origin: v.name.clone(), log_key: v.encode() }
            } else {
                Event::PolicyChanged { policy_digest: format!("{i:064x}") }
            };
            let bytes = damage(i, Entry::new(i, 1_700_000_000, None, event).encode());
            tree.push(leaf_hash(&bytes));
            write_entry(&mut out, &bytes).unwrap();
        }
        let cp = Checkpoint { origin: v.name.clone(), size: n, root: tree.root() };
        write_checkpoint(&mut out, &cp.sign(&sk)).unwrap();
        (out, v)
    }

    #[test]
    fn entries_across_many_batches_verify() {
        let (bytes, v) = log(5000, |_, b| b);
        let rep = verify_log(&bytes[..], &v, &[], true);
        assert!(rep.ok, "{:?}", rep.problems);
        assert_eq!((rep.entries, rep.entry_bytes.len()), (5000, 5000));
        assert_eq!(rep.origin.as_deref(), Some("test.invalid/log"));
        // Entries are kept in log order whichever parser read them.
        for i in [0usize, 2047, 2048, 4999] {
            assert!(Entry::parse(&rep.entry_bytes[i], i as u64).is_ok(), "entry {i} out of place");
        }
    }

    #[test]
    fn problems_are_reported_in_log_order() {
        // Bad entries in three different batches of the parser pool.
        let bad = [4100u64, 10, 2500];
        let (bytes, v) = log(5000, |i, b| {
            if bad.contains(&i) {
                String::from_utf8(b).unwrap().replace("\"index\":", "\"index\":1").into_bytes()
            } else {
                b
            }
        });
        let rep = verify_log(&bytes[..], &v, &[], false);
        assert!(!rep.ok);
        let named: Vec<&str> = rep.problems.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(named, ["entry 10", "entry 2500", "entry 4100"], "{:?}", rep.problems);
    }
}
