//! Receipts as C2SP tlog-proof: `qvault-gpg --proof-out` writes one with each
//! signature, `qvault-audit verify-signature --proof` checks it with the same
//! receipt check as JSON receipts, and an independent implementation (Go's
//! golang.org/x/mod/sumdb/note and sumdb/tlog, tests/interop/tlog-proof)
//! verifies its checkpoint and inclusion proof. A missing Go toolchain fails
//! these tests; it never skips them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use qvault_e2e::go::build_go_interop;
use qvault_e2e::*;

/// Signs `data`, keeping the receipt and the tlog-proof.
fn sign(w: &World, data: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let sig = w.path(&format!("{name}.asc"));
    let receipt = w.path(&format!("{name}.receipt"));
    let proof = w.path(&format!("{name}.tlog-proof"));
    assert_ok(&run(&mut w.shim(&[
        "-bsa",
        "--receipt-out",
        receipt.to_str().unwrap(),
        "--proof-out",
        proof.to_str().unwrap(),
        "-o",
        sig.to_str().unwrap(),
        data.to_str().unwrap(),
    ])));
    (sig, receipt, proof)
}

fn verify(w: &World, data: &Path, sig: &Path, flag: &str, evidence: &Path, key: &str) -> Output {
    w.audit(&[
        "verify-signature",
        data.to_str().unwrap(),
        sig.to_str().unwrap(),
        flag,
        evidence.to_str().unwrap(),
        "--log-key",
        key,
    ])
}

#[test]
fn tlog_proof_from_qvault_gpg_verifies_offline_and_with_go() {
    let w = World::new();
    let go =
        build_go_interop("tlog-proof", "golang.org/x/mod/sumdb/tlog/tlog.go", "golang-golang-x-mod-dev", w.dir.path());
    let key = w.log_key();
    let data = w.path("release.tar");
    std::fs::write(&data, b"release data\n").unwrap();
    let (sig, receipt, proof) = sign(&w, &data, "one");
    let text = std::fs::read_to_string(&proof).unwrap();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{text}");

    // The proof says what the JSON receipt says.
    let by_receipt = verify(&w, &data, &sig, "--receipt", &receipt, &key);
    let by_proof = verify(&w, &data, &sig, "--proof", &proof, &key);
    assert_ok(&by_proof);
    assert_eq!(stdout(&by_proof), stdout(&by_receipt));
    assert!(stdout(&by_proof).contains("key origin:  generated in the vault"), "{}", stdout(&by_proof));

    // Go: the checkpoint is signed by the log key, the entry is included.
    let o = run(Command::new(&go).arg(&key).arg(&proof));
    assert_ok(&o);
    let index = text.lines().nth(2).and_then(|l| l.strip_prefix("index ")).unwrap().to_owned();
    assert!(stdout(&o).starts_with(&format!("{index} ")), "{}", stdout(&o));
    // And the pinned vector.
    let vectors = workspace_dir().join("tests/vectors");
    let vkey = std::fs::read_to_string(vectors.join("log.key")).unwrap();
    let o = run(Command::new(&go).arg(vkey.trim()).arg(vectors.join("signed.txt.tlog-proof")));
    assert_ok(&o);
    assert_eq!(stdout(&o), "3 4 0\n");
    let o = run(Command::new(&go).arg(vkey.trim()).arg(vectors.join("signed.txt.witnessed.tlog-proof")));
    assert_ok(&o);
    assert_eq!(stdout(&o), "3 5 1\n", "index, size, one (witness) signature Go does not know");

    // A witness's cosignature line on the checkpoint: still the log's proof
    // (other signatures are not the log's to check).
    let cosigned = w.path("cosigned.tlog-proof");
    let witness_line = "\u{2014} witness.example AAAAAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==\n";
    std::fs::write(&cosigned, format!("{text}{witness_line}")).unwrap();
    assert_ok(&verify(&w, &data, &sig, "--proof", &cosigned, &key));
    let o = run(Command::new(&go).arg(&key).arg(&cosigned));
    assert_ok(&o);
    assert!(stdout(&o).ends_with(" 1\n"), "one unverified signature: {}", stdout(&o));

    // Another signature's proof: refused, by name of the check.
    let (sig2, _, proof2) = sign(&w, &data, "two");
    assert_ok(&verify(&w, &data, &sig2, "--proof", &proof2, &key));
    let o = verify(&w, &data, &sig, "--proof", &proof2, &key);
    assert_code(&o, 1);
    assert!(stdout(&o).contains("the receipt is for another signature"), "{}", stdout(&o));

    // One proof hash changed: not included, for us and for Go.
    let lines: Vec<&str> = text.lines().collect();
    let hash_line = lines[3];
    assert_eq!(hash_line.len(), 44, "a base64 hash: {hash_line}");
    let flipped = format!("{}{}", if hash_line.starts_with('A') { "B" } else { "A" }, &hash_line[1..]);
    let bad = w.path("bad.tlog-proof");
    std::fs::write(&bad, text.replacen(hash_line, &flipped, 1)).unwrap();
    let o = verify(&w, &data, &sig, "--proof", &bad, &key);
    assert_code(&o, 1);
    assert!(stdout(&o).contains("not included in the checkpoint"), "{}", stdout(&o));
    assert_code(&run(Command::new(&go).arg(&key).arg(&bad)), 1);

    // Another log's key: refused.
    let other = World::new();
    let o = verify(&w, &data, &sig, "--proof", &proof, &other.log_key());
    assert_code(&o, 1);
    assert_code(&run(Command::new(&go).arg(other.log_key()).arg(&proof)), 1);
}
