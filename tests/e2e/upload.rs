//! What an archive sees: summaries of what the vault signed (in its log and
//! its question), the vault's declared state, and `qvault-audit
//! verify-upload` on a real source package signed by debsign through the vault.

use std::path::{Path, PathBuf};

use qvault_e2e::debian::make_source_package;
use qvault_e2e::witness::{policy, three_witnesses, witness_cmd};
use qvault_e2e::*;

/// Builds and debsigns the package; returns the .changes.
fn signed_upload(w: &World) -> PathBuf {
    let top = make_source_package(w);
    let mut c = w.client_cmd("debsign");
    c.current_dir(&top).args(["--no-conf", "-pqvault-gpg", &format!("-k{}", w.fpr), "hello_1.0_source.changes"]);
    assert_ok(&run(&mut c));
    top.join("hello_1.0_source.changes")
}

fn verify_upload(w: &World, changes: &Path, log: &Path, key: &str, json: bool) -> std::process::Output {
    let mut args = vec!["verify-upload", changes.to_str().unwrap(), "--log", log.to_str().unwrap(), "--log-key", key];
    if json {
        args.push("--json");
    }
    w.audit(&args)
}

const CHANGES_SUMMARY: &str =
    "Debian upload (.changes): hello 1.0 (source) to unstable, files: hello_1.0.dsc, hello_1.0.tar.xz";

/// The vault declares no network in its state only inside a namespace of its
/// own (the simulated qrexec gives it one where `unshare -n` is permitted).
fn needs_netns() {
    assert!(can_unshare_net(), "this test needs network namespaces (root or user namespaces)");
}

#[test]
fn verify_upload_accepts_a_debsigned_source_package() {
    needs_netns();
    let w = World::new();
    let changes = signed_upload(&w);
    let log = w.export_log("vault.log");
    let key = w.log_key();
    let o = verify_upload(&w, &changes, &log, &key, false);
    let out = stdout(&o);
    assert_ok(&o);
    assert!(out.contains(": verified"), "{out}");
    assert!(out.contains("signature on hello_1.0_source.changes: verified"), "{out}");
    assert!(out.contains("signature on hello_1.0.dsc: verified"), "{out}");
    assert!(out.contains("file hello_1.0.tar.xz: matches hello_1.0.dsc"), "{out}");
    assert!(out.contains(&format!("key:        {} generated in the vault", w.fpr)), "{out}");
    assert!(out.contains(&format!("what:       {CHANGES_SUMMARY}")), "{out}");
    assert!(out.contains("vault state (self-reported"), "{out}");
    assert!(out.contains("witness quorum: not checked"), "{out}");
    assert!(out.contains("that the log's signing key never left the vault"), "{out}");

    let o = verify_upload(&w, &changes, &log, &key, true);
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "verified");
    assert!(v["witness_quorum"].as_str().unwrap().starts_with("not checked"), "{v}");
    let sigs = v["signatures"].as_array().unwrap();
    assert_eq!(sigs.len(), 2);
    assert_eq!(sigs[0]["summary"], CHANGES_SUMMARY);
    assert_eq!(sigs[1]["summary"], "Debian source package (.dsc): hello 1.0, files: hello_1.0.tar.xz");
    for s in sigs {
        assert_eq!(s["key"]["origin"], "generated in the vault");
        assert_eq!(s["key"]["vault"], "testvault");
        let st = &s["declared_state"];
        assert_eq!(st["self_reported"], true);
        assert_eq!(st["interfaces"], serde_json::json!(["lo"]), "{st}");
        assert_eq!(st["binary_sha256"].as_str().unwrap().len(), 64);
    }
}

/// With a tlog-policy, verify-upload requires a checkpoint cosigned by the
/// policy's quorum (real aics-witnesses on 127.0.0.1) that covers every
/// signature of the upload; without one, or short of the quorum, it fails.
#[test]
fn verify_upload_checks_the_witness_quorum_of_a_tlog_policy() {
    needs_netns();
    let Some(bin) = qvault_e2e::witness::peers() else { return };
    let w = World::new();
    let changes = signed_upload(&w);
    let log = w.export_log("vault.log");
    let key = w.log_key();
    let v = qvault_attest::note::Verifier::parse(&key).unwrap();
    let [a, b, mut c] = three_witnesses(&bin, &w, &v);
    let two = policy(&w, "two.policy", &key, &[&a, &b, &c], "group q 2 A B C\nquorum q");
    let all = policy(&w, "all.policy", &key, &[&a, &b, &c], "group q all A B C\nquorum q");
    let check = |policy: &Path, checkpoint: Option<&Path>| {
        let mut args =
            vec!["verify-upload", changes.to_str().unwrap(), "--log", log.to_str().unwrap(), "--log-key", &key];
        args.extend(["--tlog-policy", policy.to_str().unwrap()]);
        if let Some(cp) = checkpoint {
            args.extend(["--checkpoint", cp.to_str().unwrap()]);
        }
        w.audit(&args)
    };

    // Not witnessed yet: the vault's own checkpoint is not enough.
    let o = check(&two, None);
    assert_code(&o, 1);
    assert!(stdout(&o).contains("witness quorum: NOT met"), "{}", stdout(&o));
    assert!(stdout(&o).contains("no checkpoint signed by the log key was given"), "{}", stdout(&o));

    // Two of three cosign (one witness is down).
    c.stop();
    let state = w.path("state");
    let o = witness_cmd(&w, &log, &key, &two, &state, &[]);
    assert_ok(&o);
    let cosigned = state.join("checkpoint");
    let o = check(&two, Some(&cosigned));
    assert_ok(&o);
    assert!(stdout(&o).contains("witness quorum: met"), "{}", stdout(&o));
    assert!(stdout(&o).contains("cosigned by A, B"), "{}", stdout(&o));

    // A policy that needs all three is not met by the same checkpoint.
    let o = check(&all, Some(&cosigned));
    assert_code(&o, 1);
    assert!(stdout(&o).contains("witness quorum: NOT met"), "{}", stdout(&o));
    assert!(stdout(&o).contains("cosigned by A, B"), "{}", stdout(&o));
    drop((a, b));
}

#[test]
fn verify_upload_rejects_a_dsc_changed_after_signing() {
    needs_netns();
    let w = World::new();
    let changes = signed_upload(&w);
    let dsc = changes.with_file_name("hello_1.0.dsc");
    let body = std::fs::read_to_string(&dsc).unwrap().replace("Binary: hello", "Binary: hellx");
    std::fs::write(&dsc, body).unwrap();
    let log = w.export_log("vault.log");
    let o = verify_upload(&w, &changes, &log, &w.log_key(), false);
    assert_code(&o, 1);
    let out = stdout(&o);
    assert!(out.contains("signature on hello_1.0.dsc: FAILED"), "{out}");
    assert!(out.contains("the signature does not verify over the document (changed after signing?)"), "{out}");
    assert!(
        out.contains("file hello_1.0.dsc: PROBLEM: SHA-256 differs from the one hello_1.0_source.changes lists"),
        "{out}"
    );
    assert!(out.contains("signature on hello_1.0_source.changes: verified"), "{out}");
}

#[test]
fn verify_upload_rejects_a_proof_from_another_log() {
    let w = World::new();
    let changes = signed_upload(&w);
    // Another vault, with the same key signing there too: its log is whole
    // and verifies, but it is not the log these signatures name.
    let other = World::empty();
    assert_ok(&run(&mut other.qvault(&["import", w.key_file().to_str().unwrap()])));
    let log = other.export_log("other.log");
    let o = verify_upload(&other, &changes, &log, &other.log_key(), false);
    assert_code(&o, 1);
    let out = stdout(&o);
    assert!(out.contains("is recorded in another log (qvault.invalid/testvault/"), "{out}");
    assert!(out.contains("its proof is from another log"), "{out}");
}

#[test]
fn verify_upload_rejects_a_key_imported_rather_than_generated() {
    let elsewhere = World::new();
    let mut w = World::empty();
    assert_ok(&run(&mut w.qvault(&["import", elsewhere.key_file().to_str().unwrap()])));
    w.fpr = elsewhere.fpr.clone();
    let changes = signed_upload(&w);
    let log = w.export_log("vault.log");
    let o = verify_upload(&w, &changes, &log, &w.log_key(), true);
    assert_code(&o, 1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "FAILED");
    let problems = v["signatures"][0]["problems"].to_string();
    assert!(
        problems.contains(&format!(
            "key {} was imported (log entry 2), not generated in the vault: its secret existed outside the vault",
            w.fpr
        )),
        "{problems}"
    );
    assert_eq!(v["signatures"][0]["key"]["generated_in_vault"], false);
}

fn set_policy(w: &World, summaries: bool) {
    // The vault may run as another user (nobody, over the real stack's exec
    // service): it appends to this file.
    std::fs::OpenOptions::new().create(true).append(true).open(w.path("asked")).unwrap();
    std::fs::set_permissions(w.path("asked"), std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let confirm = w.path("confirm.sh");
    std::fs::write(
        &confirm,
        format!("#!/bin/sh\nprintf '%s\\n' \"${{QVAULT_SUMMARY-(none)}}\" >> {}\nexit 0\n", w.path("asked").display()),
    )
    .unwrap();
    std::fs::set_permissions(&confirm, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(
        w.vault_home.join("policy.toml"),
        format!(
            "version = 1\n[[rule]]\ncaller = \"*\"\nkeys = \"*\"\noperations = [\"list\", \"export\", \"sign-detached\", \"sign-cleartext\"]\n\
confirm = \"ask\"\n{}[confirm]\ncommand = [\"{}\"]\n",
            if summaries { "" } else { "summaries = false\n" },
            confirm.display()
        ),
    )
    .unwrap();
}

/// Signs a git commit, a .changes and a Release file; returns the expected
/// summaries in signing order.
fn sign_three(w: &World) -> Vec<String> {
    let repo = w.path("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| {
        let mut c = w.client_cmd("git");
        c.current_dir(&repo).args(args);
        let o = run(&mut c);
        assert_ok(&o);
        stdout(&o)
    };
    git(&["init", "-q", "-b", "main"]);
    for (k, v) in [
        ("user.name", "Alice Volunteer"),
        ("user.email", "alice@example.org"),
        ("gpg.program", bin("qvault-gpg").to_str().unwrap()),
        ("user.signingkey", &w.fpr),
    ] {
        git(&["config", k, v]);
    }
    std::fs::write(repo.join("README"), "hello\n").unwrap();
    git(&["add", "README"]);
    git(&["commit", "-q", "-S", "-m", "Fix the frobnicator"]);
    let tree = git(&["rev-parse", "HEAD^{tree}"]).trim().to_owned();
    let changes = "Format: 1.8\nDate: Thu, 26 Nov 2026 12:00:00 +0000\nSource: hello\nArchitecture: source\n\
Version: 1.0\nDistribution: unstable\nMaintainer: Alice Volunteer <alice@example.org>\nChanges:\n hello (1.0) unstable; urgency=medium\n\
Checksums-Sha256:\n 00 10 hello_1.0.dsc\n 11 20 hello_1.0.tar.xz\nFiles:\n 0 10 misc optional hello_1.0.dsc\n 1 20 misc optional hello_1.0.tar.xz\n";
    assert_ok(&run_with_input(&mut w.shim(&["--clearsign"]), changes.as_bytes()));
    let release =
        "Origin: Debian\nLabel: Debian\nSuite: unstable\nCodename: sid\nDate: Sat, 28 Nov 2026 08:00:00 UTC\n\
SHA256:\n 00 12 main/binary-amd64/Packages\n";
    let o = run_with_input(&mut w.shim(&["-abs"]), release.as_bytes());
    assert_ok(&o);
    std::fs::write(w.path("Release"), release).unwrap();
    std::fs::write(w.path("Release.asc"), &o.stdout).unwrap();
    vec![
        format!(
            "git commit: tree {tree}, no parent, author Alice Volunteer <alice@example.org>, subject \"Fix the frobnicator\""
        ),
        CHANGES_SUMMARY.to_owned(),
        "apt Release file: origin Debian, suite unstable, codename sid, date Sat, 28 Nov 2026 08:00:00 UTC".to_owned(),
    ]
}

/// The `summary` of every signature entry in the vault's log (`null` if none).
fn logged_summaries(w: &World) -> Vec<serde_json::Value> {
    let log = w.export_log("vault.log");
    let o = w.audit(&["show", "--json", log.to_str().unwrap()]);
    assert_ok(&o);
    let entries: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    entries.as_array().unwrap().iter().filter(|e| e["kind"] == "signature").map(|e| e["summary"].clone()).collect()
}

#[test]
fn summaries_of_a_commit_a_changes_and_a_release_file_in_the_log_and_the_question() {
    let w = World::new();
    set_policy(&w, true);
    let want = sign_three(&w);
    let asked = std::fs::read_to_string(w.path("asked")).unwrap();
    assert_eq!(asked.lines().collect::<Vec<_>>(), want, "the question's QVAULT_SUMMARY");
    let logged = logged_summaries(&w);
    assert_eq!(logged, want.iter().map(|s| serde_json::json!(s)).collect::<Vec<_>>());
    let log = w.export_log("vault.log");
    let show = stdout(&w.audit(&["show", log.to_str().unwrap()]));
    assert!(show.contains(&format!("what: {}", want[1])), "{show}");
    assert!(show.contains("vault state (self-reported): qvault "), "{show}");
    // verify-bundle takes the detached signature on the Release file.
    let rel = w.path("Release.asc");
    let o =
        w.audit(&["verify-bundle", rel.to_str().unwrap(), "--log", log.to_str().unwrap(), "--log-key", &w.log_key()]);
    assert!(stdout(&o).contains(&format!("what:       {}", want[2])), "{}", stdout(&o));
    if can_unshare_net() {
        assert_ok(&o);
    }
    std::fs::write(w.path("Release"), "Suite: forged\n").unwrap();
    let o =
        w.audit(&["verify-bundle", rel.to_str().unwrap(), "--log", log.to_str().unwrap(), "--log-key", &w.log_key()]);
    assert_code(&o, 1);
    assert!(stdout(&o).contains("the signature does not verify over the file"), "{}", stdout(&o));
}

#[test]
fn summaries_off_by_policy_leave_none() {
    let w = World::new();
    set_policy(&w, false);
    sign_three(&w);
    let asked = std::fs::read_to_string(w.path("asked")).unwrap();
    assert_eq!(asked.lines().collect::<Vec<_>>(), ["(none)"; 3]);
    assert_eq!(logged_summaries(&w), [serde_json::Value::Null, serde_json::Value::Null, serde_json::Value::Null]);
}

#[test]
fn the_vault_declares_its_state_at_start_and_when_it_changes() {
    let mut w = World::new();
    // A stand-in for Qubes' qubesdb, on the daemon's PATH.
    let fake = w.path("qubesdb");
    std::fs::create_dir_all(&fake).unwrap();
    let script = fake.join("qubesdb-read");
    std::fs::write(
        &script,
        "#!/bin/sh\ncase \"$1\" in /name) echo vault-alice;; /template) echo debian-12-minimal;; *) exit 1;; esac\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap_or_default());
    w.daemon_env.push(("PATH".into(), path));
    w.serve();
    let sign = |w: &World| assert_ok(&run_with_input(&mut w.shim(&["-bsa"]), b"data"));
    sign(&w);
    // A policy edit changes the state the next signature is made under.
    let policy = w.vault_home.join("policy.toml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, format!("{text}\n# edited\n")).unwrap();
    sign(&w);
    sign(&w);
    w.stop_daemon();
    let log = w.export_log("vault.log");
    let o = w.audit(&["show", "--json", log.to_str().unwrap()]);
    assert_ok(&o);
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let kinds: Vec<&str> = entries.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    let start = kinds.iter().position(|k| *k == "daemon_started").unwrap();
    assert_eq!(
        kinds[start..],
        ["daemon_started", "vault_state", "signature", "policy_changed", "vault_state", "signature", "signature"],
        "{kinds:?}"
    );
    let states: Vec<&serde_json::Value> = entries.iter().filter(|e| e["kind"] == "vault_state").collect();
    let exe = std::fs::read(bin("qvault")).unwrap();
    let digest = run_with_input(std::process::Command::new("sha256sum").arg("-"), &exe);
    let digest = stdout(&digest).split_whitespace().next().unwrap().to_owned();
    for s in &states {
        assert_eq!(s["binary_sha256"], digest.as_str(), "the digest of the binary that ran");
        assert_eq!(s["qube_name"], "vault-alice");
        assert_eq!(s["qube_template"], "debian-12-minimal");
        assert_eq!(s["self_reported"], true);
        assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    }
    assert_eq!(states[1]["policy_digest"], entries[start + 3]["policy_digest"], "the policy now in force");
    assert_ne!(states[0]["policy_digest"], states[1]["policy_digest"]);
    if can_unshare_net() {
        assert_eq!(states[0]["interfaces"], serde_json::json!(["lo"]), "the daemon's own namespace");
    }
}
