//! The test vectors in tests/vectors/ (a real vault's log, log key, a signed
//! file, its signature and receipt), as an auditor in another language would
//! check them against docs/log-format.md, plus named negative cases.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::PathBuf;

use qvault_attest::audit::{verify_log, verify_signature, Evidence};
use qvault_attest::merkle::leaf_hash;
use qvault_attest::{Receipt, Verifier};

fn vector(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn key() -> Verifier {
    Verifier::parse(std::str::from_utf8(&vector("log.key")).unwrap()).unwrap()
}

#[test]
fn log_vector_verifies_with_the_pinned_root() {
    let rep = verify_log(&vector("log.export")[..], &key(), &[], true);
    assert!(rep.ok, "{:?}", rep.problems);
    assert_eq!(rep.entries, 5);
    assert_eq!(rep.root, "bb36d2ef844d45e9e70f7cdfa1511adc88381876937c23de74418b17c00bb902");
    // Leaf hashes are over the entry bytes exactly as exported.
    let first = &rep.entry_bytes[0];
    assert!(first.starts_with(b"{\"v\":1,\"index\":0,"));
    assert_eq!(leaf_hash(first), rep.tree.range_leaf(0));
}

#[test]
fn receipt_vector_verifies_and_binds_the_signature() {
    let r = Receipt::parse(&vector("signed.txt.receipt")).unwrap();
    let v = r.verify(&key()).unwrap();
    assert_eq!((v.entry.index, v.checkpoint.size), (3, 4));
    let rep = verify_signature(
        &mut &vector("signed.txt")[..],
        &vector("signed.txt.asc"),
        Evidence::Receipt(&vector("signed.txt.receipt")),
        &key(),
    );
    assert!(rep.ok, "{:?}", rep.problems);
    assert_eq!(rep.key_origin.as_deref(), Some("generated in the vault"));
}

fn text(name: &str) -> String {
    String::from_utf8(vector(name)).unwrap()
}

#[test]
fn log_export_defects_are_detected() {
    let log = text("log.export");
    let lines: Vec<&str> = log.lines().collect();
    let cases: Vec<(&str, String)> = vec![
        ("log_entry_byte_flipped", log.replacen("\"kind\":\"policy_changed\"", "\"kind\":\"policy_chanGed\"", 1)),
        ("log_entry_field_changed", log.replacen("\"data_len\":19", "\"data_len\":18", 1)),
        ("log_entry_deleted", [&lines[..2], &lines[3..]].concat().join("\n") + "\n"),
        ("log_entries_swapped", {
            let mut l = lines.clone();
            l.swap(2, 3);
            l.join("\n") + "\n"
        }),
        (
            "log_checkpoints_removed",
            lines.iter().filter(|l| !l.starts_with("checkpoint ")).cloned().collect::<Vec<_>>().join("\n") + "\n",
        ),
        ("log_header_missing", lines[1..].join("\n") + "\n"),
        ("log_last_line_truncated", log[..log.len() - 10].to_owned()),
    ];
    for (name, bad) in cases {
        let rep = verify_log(bad.as_bytes(), &key(), &[], false);
        assert!(!rep.ok, "{name} undetected");
    }
}

#[test]
fn receipt_defects_are_detected() {
    let r = text("signed.txt.receipt");
    let parsed = Receipt::parse(r.as_bytes()).unwrap();
    let other_key = Verifier { name: key().name, key: ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key() };
    assert!(parsed.verify(&other_key).is_err(), "receipt_checked_with_another_log_key");
    let cases: Vec<(&str, String)> = vec![
        ("receipt_inclusion_hash_changed", r.replacen(&parsed.inclusion[0], &"00".repeat(32), 1)),
        ("receipt_index_changed", r.replacen("\"index\": 3", "\"index\": 2", 1)),
        ("receipt_entry_changed", r.replacen("data_len\\\":19", "data_len\\\":20", 1)),
        ("receipt_checkpoint_size_changed", r.replacen("\\n4\\n", "\\n5\\n", 1)),
        ("receipt_unknown_field", r.replacen("\"v\": 1,", "\"v\": 1, \"extra\": 0,", 1)),
        ("receipt_version_2", r.replacen("\"v\": 1,", "\"v\": 2,", 1)),
    ];
    for (name, bad) in cases {
        assert_ne!(bad, r, "{name} changed nothing");
        let res = Receipt::parse(bad.as_bytes()).and_then(|x| x.verify(&key()));
        assert!(res.is_err(), "{name} undetected");
    }
}

/// The entries issue 14 added (a signature's `summary`, `vault_state`), with
/// their leaf hashes: they parse at their index and re-encode to the same bytes.
#[test]
fn upload_entry_vectors_parse_and_hash_as_pinned() {
    let t = text("upload-entries.txt");
    let mut kinds = Vec::new();
    for line in t.lines().filter(|l| !l.starts_with('#')) {
        let (hash, json) = line.split_once(' ').unwrap();
        assert_eq!(hex::encode(leaf_hash(json.as_bytes())), hash);
        let index: u64 = serde_json::from_str::<serde_json::Value>(json).unwrap()["index"].as_u64().unwrap();
        let e = qvault_attest::Entry::parse(json.as_bytes(), index).unwrap();
        assert_eq!(e.encode(), json.as_bytes(), "the encoder writes the pinned bytes");
        kinds.push(e.kind());
        if let qvault_attest::Event::Signature { summary, .. } = &e.event {
            assert!(summary.as_deref().unwrap().starts_with("Debian upload (.changes): hello 1.0"));
        }
    }
    assert_eq!(kinds, ["vault_state", "signature"]);
}

/// tests/vectors/tiles: log.export as C2SP tlog-tiles, written by Go's
/// golang.org/x/mod/sumdb/tlog (tests/interop/tlog-tiles). Our writer makes
/// the same bytes; our reader verifies the log from them alone.
#[test]
fn tiles_vector_is_what_we_write_and_verifies() {
    use qvault_attest::tiles;
    let (entries, note) = tiles::from_export(&vector("log.export")[..]).unwrap();
    assert_eq!(note, text("tiles/checkpoint"));
    let files = tiles::build(&entries).unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["tile/0/000.p/5", "tile/entries/000.p/5"]);
    for f in &files {
        assert_eq!(f.bytes, vector(&format!("tiles/{}", f.path)), "{}", f.path);
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/tiles");
    let log = tiles::read_dir(&dir, &key()).unwrap();
    assert_eq!((log.checkpoint.size, log.files), (5, 2));
    assert_eq!(log.entries, entries);
    let rep = verify_log(&tiles::to_export(&log)[..], &key(), &[], false);
    assert!(rep.ok, "{:?}", rep.problems);
}

/// tests/vectors/signed.txt.tlog-proof: signed.txt.receipt as a C2SP
/// tlog-proof (Go's sumdb/note and sumdb/tlog accept it:
/// tests/e2e/tlog_proof.rs). It is exactly what we encode, parses back to the
/// receipt, and proves the signature as the receipt does.
#[test]
fn tlog_proof_vector_is_the_receipt_and_proves_the_signature() {
    use qvault_attest::tlog_proof;
    let proof = vector("signed.txt.tlog-proof");
    let receipt = Receipt::parse(&vector("signed.txt.receipt")).unwrap();
    assert_eq!(tlog_proof::encode(&receipt).unwrap().as_bytes(), &proof[..]);
    assert_eq!(Receipt::parse(&proof).unwrap(), receipt);
    let text = String::from_utf8(proof.clone()).unwrap();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "));
    assert!(text.contains(
        "\nindex 3\nZTZa/hBwns0u5I8kOBynHs4c2m2sbaTtAVfK5Io7hjg=\n3CyVh3E8vvUVE1+KCt6JS6aNKv6DBOJAJEKDHH7/qt8=\n\n"
    ));
    let rep =
        verify_signature(&mut &vector("signed.txt")[..], &vector("signed.txt.asc"), Evidence::Receipt(&proof), &key());
    assert!(rep.ok, "{:?}", rep.problems);
    // A proof line changed: not included.
    let bad =
        text.replace("ZTZa/hBwns0u5I8kOBynHs4c2m2sbaTtAVfK5Io7hjg=", "ZTZa/hBwns0u5I8kOBynHs4c2m2sbaTtAVfK5Io7hjk=");
    let rep = verify_signature(
        &mut &vector("signed.txt")[..],
        &vector("signed.txt.asc"),
        Evidence::Receipt(bad.as_bytes()),
        &key(),
    );
    assert!(!rep.ok && rep.problems.iter().any(|p| p.contains("not included")), "{:?}", rep.problems);
}

/// tests/vectors/signed.txt.witnessed.tlog-proof: the signature's proof
/// re-anchored (`qvault-audit witness --proof`) at the 5-entry checkpoint
/// after a real aics-witness cosigned it; tests/vectors/witnesses.policy
/// names that witness. The cosignature meets the quorum; changed, it does not.
#[test]
fn witnessed_proof_vector_meets_the_policy_quorum() {
    use qvault_attest::note::Checkpoint;
    use qvault_attest::witness::Policy;
    let proof = vector("signed.txt.witnessed.tlog-proof");
    let rep =
        verify_signature(&mut &vector("signed.txt")[..], &vector("signed.txt.asc"), Evidence::Receipt(&proof), &key());
    assert!(rep.ok, "{:?}", rep.problems);
    assert_eq!(rep.checkpoint_size, Some(5));
    let policy = Policy::parse(&text("witnesses.policy")).unwrap();
    let note = Receipt::parse(&proof).unwrap().checkpoint;
    let cp = Checkpoint::open(&note, &key()).unwrap();
    assert_eq!(policy.cosigners(&note, &cp), [true]);
    assert!(policy.quorum_met(&[true]));
    // One bit of the cosignature's timestamp changed: not a cosignature.
    let line = note.lines().last().unwrap();
    assert!(line.starts_with("\u{2014} witness1.example aPwfCQAAAABrDSDV"));
    let forged = note.replace("aPwfCQAAAABrDSDV", "aPwfCQAAAABrDSDW");
    assert_eq!(policy.cosigners(&forged, &cp), [false]);
    // A cosignature is over the checkpoint: not valid for another size.
    let other = Checkpoint { size: 4, ..cp };
    assert_eq!(policy.cosigners(&note, &other), [false]);
}
