//! Our signed checkpoints, checked by an independent implementation of C2SP
//! signed notes: Go's golang.org/x/mod/sumdb/note (tests/interop/c2sp-note),
//! built offline from Debian's golang-go and golang-golang-x-mod-dev in GOPATH
//! mode. A missing Go toolchain fails these tests; it never skips them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use qvault_attest::note::{Checkpoint, Verifier};
use qvault_e2e::go::build_go_interop;
use qvault_e2e::*;

/// Builds tests/interop/c2sp-note into `dir`.
fn build_go_verifier(dir: &Path) -> PathBuf {
    build_go_interop("c2sp-note", "golang.org/x/mod/sumdb/note/note.go", "golang-golang-x-mod-dev", dir)
}

/// `qvault log <sub> --home <vault>` (`qvault log` takes --home after its
/// subcommand, not before it).
fn log_cmd(w: &World, sub: &str) -> String {
    let o = run(Command::new(bin("qvault")).args(["log", sub, "--home"]).arg(&w.vault_home).env("QVAULT_LOG", "warn"));
    assert_ok(&o);
    stdout(&o)
}

fn sign_something(w: &World, data: &[u8]) {
    let o = run_with_input(&mut w.shim(&["-bsa"]), data);
    assert_ok(&o);
    assert!(stdout(&o).starts_with("-----BEGIN PGP SIGNATURE-----"), "{}", stdout(&o));
}

/// Runs the Go verifier on `note` with verifier key `key`.
fn go_verify(w: &World, go: &Path, key: &str, note: &str) -> Output {
    let p = w.path("checkpoint.note");
    std::fs::write(&p, note).expect("write note");
    run(Command::new(go).arg(key).arg(&p))
}

fn note_text(note: &str) -> &str {
    let split = note.rfind("\n\n").expect("signed note has a blank line");
    &note[..split + 1]
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn go_sumdb_note_accepts_our_checkpoints_as_the_log_grows() {
    let w = World::new();
    let go = build_go_verifier(w.dir.path());
    let key = log_cmd(&w, "key").trim().to_owned();
    let v = Verifier::parse(&key).expect("our own parser reads the log key");

    let mut last_size = None;
    for round in 0..3 {
        if round > 0 {
            sign_something(&w, format!("data {round}").as_bytes());
        }
        let note = log_cmd(&w, "checkpoint");
        let ours = Checkpoint::open(&note, &v).expect("our own verifier accepts the checkpoint");
        let o = go_verify(&w, &go, &key, &note);
        assert_ok(&o);
        assert_eq!(stdout(&o), note_text(&note), "Go's verified text is the checkpoint body");
        let summary = stderr(&o);
        let want = format!("ok: origin={} size={} root={} sigs=1 unverified=0", v.name, ours.size, hex(&ours.root));
        assert_eq!(summary.trim(), want, "Go parses the checkpoint as we do");
        if let Some(prev) = last_size {
            assert!(ours.size > prev, "signing grows the log: {prev} -> {}", ours.size);
        }
        last_size = Some(ours.size);
    }
}

#[test]
fn go_sumdb_note_rejects_a_changed_tree_size_or_root() {
    let w = World::new();
    let go = build_go_verifier(w.dir.path());
    sign_something(&w, b"data");
    let key = log_cmd(&w, "key").trim().to_owned();
    let v = Verifier::parse(&key).expect("log key");
    let note = log_cmd(&w, "checkpoint");
    assert_ok(&go_verify(&w, &go, &key, &note));

    let lines: Vec<&str> = note.split('\n').collect();
    let size_line = lines[1];
    assert!(!size_line.is_empty() && size_line.bytes().all(|b| b.is_ascii_digit()), "size line: {size_line:?}");
    // One byte of the size: its last digit, so the number stays canonical.
    let offset = lines[0].len() + 1 + size_line.len() - 1;
    let mut forged = note.clone().into_bytes();
    forged[offset] = if forged[offset] == b'9' { b'8' } else { forged[offset] + 1 };
    let forged = String::from_utf8(forged).expect("utf8");
    assert_ne!(forged, note);
    assert!(Checkpoint::open(&forged, &v).is_err(), "our verifier rejects the changed size");
    let o = go_verify(&w, &go, &key, &forged);
    assert_code(&o, 1);
    let err = stderr(&o);
    assert!(err.contains(&format!("invalid signature for key {}+", v.name)), "Go's error: {err}");

    // One byte of the root hash: the first base64 character (always free).
    let offset = lines[0].len() + 1 + size_line.len() + 1;
    let mut forged = note.clone().into_bytes();
    forged[offset] = if forged[offset] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("utf8");
    assert!(Checkpoint::open(&forged, &v).is_err(), "our verifier rejects the changed root");
    let o = go_verify(&w, &go, &key, &forged);
    assert_code(&o, 1);
    assert!(stderr(&o).contains("invalid signature for key"), "Go's error: {}", stderr(&o));
}

#[test]
fn go_sumdb_note_rejects_another_vaults_log_key() {
    let w = World::new();
    let other = World::new();
    let go = build_go_verifier(w.dir.path());
    sign_something(&w, b"data");
    let key = log_cmd(&w, "key").trim().to_owned();
    let other_key = log_cmd(&other, "key").trim().to_owned();
    assert_ne!(key, other_key);
    let note = log_cmd(&w, "checkpoint");
    assert_ok(&go_verify(&w, &go, &key, &note));

    // The other vault's key as it is (another origin, another key).
    let o = go_verify(&w, &go, &other_key, &note);
    assert_code(&o, 1);
    assert!(stderr(&o).contains("note has no verifiable signatures"), "Go's error: {}", stderr(&o));

    // The other vault's public key under this log's name: same name, new key ID.
    let v = Verifier::parse(&key).expect("log key");
    let impostor = Verifier { name: v.name.clone(), key: Verifier::parse(&other_key).expect("other key").key };
    assert!(Checkpoint::open(&note, &impostor).is_err());
    let o = go_verify(&w, &go, &impostor.encode(), &note);
    assert_code(&o, 1);
    assert!(stderr(&o).contains("note has no verifiable signatures"), "Go's error: {}", stderr(&o));

    // This log's name and key ID with the other public key: Go refuses the key.
    // (Names and key IDs have no '+'; the base64 key may.)
    let [name, id, _]: [&str; 3] = key.splitn(3, '+').collect::<Vec<_>>().try_into().expect("name+id+key");
    let other_b64 = other_key.splitn(3, '+').nth(2).expect("other key");
    let mismatched = format!("{name}+{id}+{other_b64}");
    let o = go_verify(&w, &go, &mismatched, &note);
    assert_code(&o, 1);
    assert!(stderr(&o).contains("invalid verifier hash"), "Go's error: {}", stderr(&o));
}
