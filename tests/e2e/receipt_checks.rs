//! `qvault-audit verify-signature` runs the same receipt check as qvault-gpg
//! (`receipt::check_signature_receipt`): a receipt for another signature, for
//! another signer, or for another log index is refused (exit 1) with a message
//! naming the check that failed. The last two need a log the vault's operator
//! forged with the log key (a receipt whose entry logs this very signature but
//! names another key, or sits at another index): the auditor must not trust
//! the vault for them.

use std::path::{Path, PathBuf};

use qvault_attest::merkle::{leaf_hash, MemTree, Subtrees as _};
use qvault_attest::note::{Checkpoint, Verifier};
use qvault_attest::receipt::{hex_hashes, KeyEntry, Receipt, RECEIPT_VERSION};
use qvault_e2e::*;

/// Signs `data` with `key` (None: the default key), keeping the receipt.
fn sign(w: &World, key: Option<&str>, data: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (sig, receipt) = (w.path(&format!("{name}.asc")), w.path(&format!("{name}.receipt")));
    let mut args = vec!["-bsa", "--receipt-out", receipt.to_str().unwrap(), "-o", sig.to_str().unwrap()];
    if let Some(k) = key {
        args.extend(["-u", k]);
    }
    args.push(data.to_str().unwrap());
    assert_ok(&run(&mut w.shim(&args)));
    (sig, receipt)
}

fn verify(w: &World, data: &Path, sig: &Path, receipt: &Path, key: &str) -> std::process::Output {
    w.audit(&[
        "verify-signature",
        data.to_str().unwrap(),
        sig.to_str().unwrap(),
        "--receipt",
        receipt.to_str().unwrap(),
        "--log-key",
        key,
    ])
}

/// The log's entries (their exact bytes), from an export.
fn entries(export: &Path) -> Vec<String> {
    std::fs::read_to_string(export)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("entry "))
        .map(str::to_owned)
        .collect()
}

/// What the vault's operator can make with the log key: a receipt for entry
/// `index` of `entries`, with the key entry at `key_index`, under a checkpoint
/// re-signed over exactly these entries.
fn forge_receipt(w: &World, entries: &[String], index: u64, key_index: u64, key: &Verifier) -> Vec<u8> {
    let seed: [u8; 32] = std::fs::read(w.vault_home.join("log/key")).unwrap().try_into().unwrap();
    let mut tree = MemTree::default();
    for e in entries {
        tree.push_leaf(leaf_hash(e.as_bytes()));
    }
    let size = tree.size();
    let Ok(proof) = tree.inclusion_proof(index, size);
    let Ok(key_proof) = tree.inclusion_proof(key_index, size);
    let cp = Checkpoint { origin: key.name.clone(), size, root: tree.root() };
    Receipt {
        v: RECEIPT_VERSION,
        entry: entries[index as usize].clone(),
        index,
        inclusion: hex_hashes(&proof),
        key_entry: Some(KeyEntry {
            entry: entries[key_index as usize].clone(),
            index: key_index,
            inclusion: hex_hashes(&key_proof),
        }),
        checkpoint: cp.sign(&ed25519_dalek::SigningKey::from_bytes(&seed)),
        consistency_from: None,
        consistency: Vec::new(),
    }
    .encode()
}

fn index_of(entries: &[String], needle: &str) -> u64 {
    entries.iter().position(|e| e.contains(needle)).expect("entry") as u64
}

#[track_caller]
fn assert_refused(o: &std::process::Output, check: &str) {
    assert_code(o, 1);
    assert!(stdout(o).contains(check), "expected a problem naming {check:?}:\n{}", stdout(o));
}

#[test]
fn qvault_audit_refuses_a_receipt_for_another_signature_signer_or_index() {
    let mut w = World::new();
    let second = w.keygen("Bob Second <bob@example.org>", "ed25519");
    w.serve();
    let data = w.path("data");
    std::fs::write(&data, b"one file, three signatures\n").unwrap();
    let (sig1, receipt1) = sign(&w, None, &data, "one");
    let (sig2, _) = sign(&w, None, &data, "two");
    let (sig3, receipt3) = sign(&w, Some(&second), &data, "three");
    let key_str = w.log_key();
    let key = Verifier::parse(&key_str).unwrap();
    // Each receipt verifies with its own signature.
    assert_ok(&verify(&w, &data, &sig1, &receipt1, &key_str));
    assert_ok(&verify(&w, &data, &sig3, &receipt3, &key_str));

    // Another signature of the same key, with the first one's receipt.
    assert_refused(&verify(&w, &data, &sig2, &receipt1, &key_str), "receipt is for another signature");

    w.stop_daemon();
    let log = entries(&w.export_log("log.export"));
    let sig1_digest = {
        let r = Receipt::parse(&std::fs::read(&receipt1).unwrap()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&r.entry).unwrap();
        v["sig_digest"].as_str().unwrap().to_owned()
    };
    let at = index_of(&log, &sig1_digest);
    let alice_key = index_of(&log, &format!("\"fingerprint\":\"{}\"", w.fpr));
    let receipt = w.path("forged.receipt");

    // The entry logs this very signature, but names the second key as signer.
    let mut forged = log.clone();
    let signer = {
        let v: serde_json::Value = serde_json::from_str(&log[at as usize]).unwrap();
        v["key"].as_str().unwrap().to_owned()
    };
    forged[at as usize] = log[at as usize].replace(&format!("\"key\":\"{signer}\""), &format!("\"key\":\"{second}\""));
    assert_ne!(forged[at as usize], log[at as usize]);
    std::fs::write(&receipt, forge_receipt(&w, &forged, at, alice_key, &key)).unwrap();
    assert_refused(&verify(&w, &data, &sig1, &receipt, &key_str), "receipt is for another signer");

    // The entry logs this very signature, but at another index than the one
    // the signature names (a copy appended to the log).
    let mut forged = log.clone();
    let n = forged.len();
    forged.push(log[at as usize].replacen(&format!("\"index\":{at},"), &format!("\"index\":{n},"), 1));
    std::fs::write(&receipt, forge_receipt(&w, &forged, n as u64, alice_key, &key)).unwrap();
    assert_refused(&verify(&w, &data, &sig1, &receipt, &key_str), "receipt is for another log index");

    // The forger's receipt itself is well made: for the true entry it passes.
    std::fs::write(&receipt, forge_receipt(&w, &log, at, alice_key, &key)).unwrap();
    assert_ok(&verify(&w, &data, &sig1, &receipt, &key_str));
}
