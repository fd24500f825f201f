//! git with `gpg.program = qvault-gpg`: signing and verifying commits and tags.

use std::process::Command;

use qvault_e2e::*;

fn git(w: &World, repo: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut c = w.client_cmd("git");
    c.current_dir(repo).args(args);
    run(&mut c)
}

fn repo(w: &World) -> std::path::PathBuf {
    let r = w.path("repo");
    std::fs::create_dir_all(&r).unwrap();
    assert_ok(&git(w, &r, &["init", "-q", "-b", "main"]));
    let shim = bin("qvault-gpg");
    for (k, v) in [
        ("user.name", "Alice Volunteer"),
        ("user.email", "alice@example.org"),
        ("gpg.program", shim.to_str().unwrap()),
        ("user.signingkey", &w.fpr),
    ] {
        assert_ok(&git(w, &r, &["config", k, v]));
    }
    std::fs::write(r.join("README"), "hello\n").unwrap();
    assert_ok(&git(w, &r, &["add", "README"]));
    r
}

#[test]
fn git_verify_commit_accepts_vault_signature() {
    let w = World::new();
    let r = repo(&w);
    assert_ok(&git(&w, &r, &["commit", "-q", "-S", "-m", "signed commit"]));
    let v = git(&w, &r, &["verify-commit", "--raw", "HEAD"]);
    assert_ok(&v);
    assert!(stderr(&v).contains("[GNUPG:] GOODSIG "), "{}", stderr(&v));
    assert!(stderr(&v).contains(&"[GNUPG:] VALIDSIG ".to_string()) && stderr(&v).contains(&w.fpr));
    let log = git(&w, &r, &["log", "--show-signature", "-1"]);
    assert_ok(&log);
    assert!(stdout(&log).contains("Good signature from \"Alice Volunteer <alice@example.org>\""), "{}", stdout(&log));
    // %G? is git's own verdict: G = good and valid.
    let fmt = git(&w, &r, &["log", "-1", "--format=%G?|%GF|%GP"]);
    assert_eq!(stdout(&fmt).trim().split('|').next(), Some("G"), "{}", stdout(&fmt));
    assert!(stdout(&fmt).contains(&w.fpr));
    // Real gpg agrees.
    let mut c = Command::new("git");
    c.current_dir(&r).env("GNUPGHOME", w.gnupg_home()).env("GIT_CONFIG_NOSYSTEM", "1").env("HOME", &w.home).args([
        "-c",
        "gpg.program=gpg",
        "verify-commit",
        "HEAD",
    ]);
    assert_ok(&run(&mut c));
}

#[test]
fn git_verify_tag_accepts_vault_signature() {
    let w = World::new();
    let r = repo(&w);
    assert_ok(&git(&w, &r, &["commit", "-q", "-m", "unsigned"]));
    assert_ok(&git(&w, &r, &["tag", "-s", "v1.0", "-m", "release 1.0"]));
    let v = git(&w, &r, &["verify-tag", "v1.0"]);
    assert_ok(&v);
    assert!(stderr(&v).contains("Good signature"), "{}", stderr(&v));
    let mut c = Command::new("git");
    c.current_dir(&r).env("GNUPGHOME", w.gnupg_home()).env("GIT_CONFIG_NOSYSTEM", "1").env("HOME", &w.home).args([
        "-c",
        "gpg.program=gpg",
        "verify-tag",
        "v1.0",
    ]);
    assert_ok(&run(&mut c));
}

#[test]
fn git_reports_tampered_commit_as_bad() {
    let w = World::new();
    let r = repo(&w);
    assert_ok(&git(&w, &r, &["commit", "-q", "-S", "-m", "pay alice 10"]));
    let raw = stdout(&git(&w, &r, &["cat-file", "commit", "HEAD"]));
    let forged = raw.replace("pay alice 10", "pay alice 99");
    assert_ne!(raw, forged);
    let mut c = w.client_cmd("git");
    c.current_dir(&r).args(["hash-object", "-t", "commit", "-w", "--stdin"]);
    let h = run_with_input(&mut c, forged.as_bytes());
    assert_ok(&h);
    let id = stdout(&h).trim().to_owned();
    let v = git(&w, &r, &["verify-commit", "--raw", &id]);
    assert!(!v.status.success(), "a forged commit must not verify");
    assert!(stderr(&v).contains("[GNUPG:] BADSIG "), "{}", stderr(&v));
    let fmt = git(&w, &r, &["log", "-1", "--format=%G?", &id]);
    assert_eq!(stdout(&fmt).trim(), "B");
}

#[test]
fn git_uses_committer_identity_when_no_signing_key_is_set() {
    let w = World::new();
    let r = repo(&w);
    assert_ok(&git(&w, &r, &["config", "--unset", "user.signingkey"]));
    assert_ok(&git(&w, &r, &["commit", "-q", "-S", "-m", "by identity"]));
    assert_ok(&git(&w, &r, &["verify-commit", "HEAD"]));
}
