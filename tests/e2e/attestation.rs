//! The attestation log end to end: tamper detection on a large real log, crash
//! safety under SIGKILL, rollback and fork detection by the client, and the
//! auditor's verdict on a git commit signature.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openpgp::parse::Parse as _;
use qvault_attest::audit::{log_position, sig_digest, verify_log};
use qvault_attest::note::{Checkpoint, Verifier};
use qvault_e2e::*;
use sequoia_openpgp as openpgp;

fn signature_of(result: &qubes_rpc::SignResult) -> openpgp::packet::Signature {
    match openpgp::Packet::from_bytes(&result.signature).unwrap() {
        openpgp::Packet::Signature(s) => s,
        p => panic!("not a signature: {p:?}"),
    }
}

/// Signs `n` small messages with `workers` concurrent raw clients.
fn sign_many(w: &World, n: usize, workers: usize) -> Vec<qubes_rpc::SignResult> {
    let sock = Arc::new(w.socket.clone().unwrap());
    let per = n.div_ceil(workers);
    let hs: Vec<_> = (0..workers)
        .map(|t| {
            let sock = sock.clone();
            std::thread::spawn(move || {
                (0..per)
                    .map(|i| sign_raw(&sock, "work", format!("msg {t} {i}").as_bytes()).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
}

fn lines_of(p: &Path) -> Vec<Vec<u8>> {
    std::fs::read(p).unwrap().split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect()
}

fn write_lines(p: &Path, lines: &[Vec<u8>]) {
    let mut f = std::fs::File::create(p).unwrap();
    for l in lines {
        f.write_all(l).unwrap();
        f.write_all(b"\n").unwrap();
    }
}

/// Runs qvault-audit verify-log; returns (exit code, stdout).
fn audit_log(w: &World, log: &Path, key: &str, extra: &[&Path]) -> (i32, String) {
    let mut args = vec!["verify-log".to_owned(), log.to_str().unwrap().to_owned(), "--log-key".into(), key.into()];
    for e in extra {
        args.push("--checkpoint".into());
        args.push(e.to_str().unwrap().into());
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = w.audit(&a);
    let code = o.status.code().unwrap_or(-1);
    assert!(code == 0 || code == 1, "qvault-audit must not crash: {:?}\n{}", o.status, stderr(&o));
    (code, stdout(&o))
}

fn log_signing_key(w: &World) -> ed25519_dalek::SigningKey {
    let seed: [u8; 32] = std::fs::read(w.vault_home.join("log/key")).unwrap().try_into().unwrap();
    ed25519_dalek::SigningKey::from_bytes(&seed)
}

/// What a dishonest vault operator could do with the log key: re-sign a
/// checkpoint over whatever entries they like.
fn resign(w: &World, entries: &[Vec<u8>], key: &Verifier) -> String {
    let mut t = qvault_attest::merkle::MemTree::default();
    for e in entries {
        t.push_leaf(qvault_attest::merkle::leaf_hash(&e[b"entry ".len()..]));
    }
    Checkpoint { origin: key.name.clone(), size: t.size(), root: t.root() }.sign(&log_signing_key(w))
}

fn checkpoint_record(note: &str) -> Vec<u8> {
    use base64::Engine as _;
    format!("checkpoint {}", base64::engine::general_purpose::STANDARD.encode(note)).into_bytes()
}

#[test]
fn tamper_matrix_on_a_ten_thousand_entry_log_is_fully_detected() {
    let mut w = World::new();
    w.serve();
    let results = sign_many(&w, 10_000, 8);
    assert_eq!(results.len(), 10_000);
    w.stop_daemon();
    let key_str = w.log_key();
    let key = Verifier::parse(&key_str).unwrap();
    let export = w.export_log("log.export");
    let (code, out) = audit_log(&w, &export, &key_str, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("signatures:  10000"), "{out}");

    let lines = lines_of(&export);
    let entries: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].starts_with(b"entry ")).collect();
    assert!(entries.len() >= 10_003);
    let kind_of = |i: usize| {
        let s = String::from_utf8_lossy(&lines[i]).into_owned();
        s.split("\"kind\":\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("?").to_owned()
    };
    // Sampled positions of every entry kind, plus checkpoints and the header.
    let mut targets: Vec<usize> = Vec::new();
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for (n, &i) in entries.iter().enumerate() {
        let k = kind_of(i);
        let c = seen.entry(k).or_default();
        if *c < 3 || n % 997 == 0 {
            targets.push(i);
            *c += 1;
        }
    }
    assert!(
        seen.contains_key("log_created")
            && seen.contains_key("key_generated")
            && seen.contains_key("signature")
            && seen.contains_key("daemon_started"),
        "{seen:?}"
    );
    targets.extend((0..lines.len()).filter(|&i| lines[i].starts_with(b"checkpoint ")).take(3));
    targets.push(0);
    let mut cases = 0;
    let case = w.path("case.export");
    for &i in &targets {
        let len = lines[i].len();
        for pos in [len.min(7), len / 2, len - 2, len - 1] {
            let mut l2 = lines.clone();
            l2[i][pos] ^= 0x01;
            write_lines(&case, &l2);
            let (code, out) = audit_log(&w, &case, &key_str, &[]);
            assert_eq!(code, 1, "flip at line {i} byte {pos} undetected:\n{out}");
            assert!(out.contains("PROBLEM"), "{out}");
            cases += 1;
        }
    }
    // Deletion, reordering, duplication of entries.
    let mid = entries[entries.len() / 2];
    let mutations: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("delete", {
            let mut l = lines.clone();
            l.remove(mid);
            l
        }),
        ("reorder", {
            let mut l = lines.clone();
            l.swap(mid, mid + 1);
            l
        }),
        ("duplicate", {
            let mut l = lines.clone();
            l.insert(mid, lines[mid].clone());
            l
        }),
        ("delete first signature", {
            let mut l = lines.clone();
            l.remove(entries[3]);
            l
        }),
    ];
    for (what, l) in mutations {
        write_lines(&case, &l);
        let (code, out) = audit_log(&w, &case, &key_str, &[]);
        assert_eq!(code, 1, "{what} undetected:\n{out}");
        cases += 1;
    }
    // Truncation with a re-signed checkpoint: self-consistent, caught only by a
    // client's newer checkpoint.
    let client_cp = w.path("client.checkpoint");
    // The newest checkpoint any client received.
    let newest = results
        .iter()
        .map(|r| qvault_attest::Receipt::parse(&r.receipt).unwrap().checkpoint)
        .max_by_key(|n| Checkpoint::open(n, &key).unwrap().size)
        .unwrap();
    std::fs::write(&client_cp, &newest).unwrap();
    let kept: Vec<Vec<u8>> = entries[..entries.len() - 100].iter().map(|&i| lines[i].clone()).collect();
    let mut truncated = vec![lines[0].clone()];
    truncated.extend(kept.iter().cloned());
    truncated.push(checkpoint_record(&resign(&w, &kept, &key)));
    write_lines(&case, &truncated);
    let (code, out) = audit_log(&w, &case, &key_str, &[]);
    assert_eq!(code, 0, "a self-consistent truncated log verifies on its own:\n{out}");
    let (code, out) = audit_log(&w, &case, &key_str, &[&client_cp]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("log truncated or rolled back"), "{out}");
    cases += 1;
    // A fork signed with the same key: one signature entry rewritten.
    let mut forked: Vec<Vec<u8>> = entries.iter().map(|&i| lines[i].clone()).collect();
    let victim = forked.len() - 50;
    let text = String::from_utf8(forked[victim].clone()).unwrap();
    let altered = text.replacen("\"data_len\":", "\"data_len\":1", 1);
    assert_ne!(text, altered);
    forked[victim] = altered.into_bytes();
    let fork_cp = resign(&w, &forked, &key);
    let mut fl = vec![lines[0].clone()];
    fl.extend(forked);
    fl.push(checkpoint_record(&fork_cp));
    write_lines(&case, &fl);
    let (code, out) = audit_log(&w, &case, &key_str, &[&client_cp]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("equivocation") || out.contains("does not match the log's entries"), "{out}");
    let fork_file = w.path("fork.checkpoint");
    std::fs::write(&fork_file, &fork_cp).unwrap();
    let o = w.audit(&[
        "consistency",
        client_cp.to_str().unwrap(),
        fork_file.to_str().unwrap(),
        "--log-key",
        &key_str,
        "--log",
        export.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("equivocation"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains(&fork_cp) && stdout(&o).contains(&std::fs::read_to_string(&client_cp).unwrap()),
        "both checkpoints are shown"
    );
    cases += 2;
    assert!(cases >= 60, "{cases}");
}

#[test]
fn sigkill_during_signing_never_loses_a_released_signature() {
    let kills: usize = std::env::var("QVAULT_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let mut w = World::new();
    let mut received: Vec<qubes_rpc::SignResult> = Vec::new();
    let mut seed = 0x9e3779b97f4a7c15u64;
    for round in 0..kills {
        w.serve();
        let sock = Arc::new(w.socket.clone().unwrap());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hs: Vec<_> = (0..4)
            .map(|t| {
                let (sock, stop) = (sock.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let mut i = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        match sign_raw(&sock, "work", format!("r{round} t{t} i{i}").as_bytes()) {
                            Ok(r) => got.push(r),
                            Err(_) => break,
                        }
                        i += 1;
                    }
                    got
                })
            })
            .collect();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(std::time::Duration::from_millis(seed % 40));
        w.kill_daemon();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for h in hs {
            received.extend(h.join().unwrap());
        }
    }
    assert!(!received.is_empty());
    let key_str = w.log_key();
    let key = Verifier::parse(&key_str).unwrap();
    let export = w.export_log("crash.export");
    let (code, out) = audit_log(&w, &export, &key_str, &[]);
    assert_eq!(code, 0, "after {kills} kills the log must verify:\n{out}");
    let rep = verify_log(std::io::BufReader::new(std::fs::File::open(&export).unwrap()), &key, &[], true);
    assert!(rep.ok);
    for r in &received {
        let sig = signature_of(r);
        let (_, index) = log_position(&sig).expect("notation");
        let entry = &rep.entry_bytes[index as usize];
        let text = String::from_utf8_lossy(entry);
        assert!(text.contains(&sig_digest(&sig)), "released signature at {index} has no entry");
    }
    eprintln!("{kills} kills, {} signatures received, log of {} entries verified", received.len(), rep.entries);
}

fn shim_sign(w: &World, client: &Path, out: &Path) -> std::process::Output {
    let mut c = w.shim(&["-b", "--yes", "-o", out.to_str().unwrap()]);
    c.env("QVAULT_GPG_HOME", client);
    run_with_input(&mut c, b"release data\n")
}

fn copy_dir(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(st.success());
}

fn restore(w: &World, snapshot: &Path) {
    let log = w.vault_home.join("log");
    std::fs::remove_dir_all(&log).unwrap();
    copy_dir(snapshot, &log);
}

#[test]
fn client_fails_loudly_when_the_vault_log_is_rolled_back() {
    let w = World::new();
    let client = w.path("client-a");
    assert_ok(&shim_sign(&w, &client, &w.path("1.sig")));
    let snapshot = w.path("snapshot");
    copy_dir(&w.vault_home.join("log"), &snapshot);
    assert_ok(&shim_sign(&w, &client, &w.path("2.sig")));
    assert_ok(&shim_sign(&w, &client, &w.path("3.sig")));
    restore(&w, &snapshot);
    let out = w.path("4.sig");
    let o = shim_sign(&w, &client, &out);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("the vault's log was ROLLED BACK"), "{}", stderr(&o));
    assert!(!out.exists(), "no signature is written after a failed log check");
    let ev: Vec<PathBuf> =
        std::fs::read_dir(client.join("logs/vault/evidence")).unwrap().flatten().map(|e| e.path()).collect();
    assert!(ev.iter().any(|p| p.to_string_lossy().ends_with("rollback-old.checkpoint")), "{ev:?}");
    assert!(ev.iter().any(|p| p.to_string_lossy().ends_with("rollback-new.checkpoint")), "{ev:?}");
    // The client keeps refusing: its newest checkpoint is unchanged.
    assert_code(&shim_sign(&w, &client, &out), 2);
}

#[test]
fn client_fails_loudly_when_the_vault_log_forks() {
    let w = World::new();
    let (a, b) = (w.path("client-a"), w.path("client-b"));
    assert_ok(&shim_sign(&w, &a, &w.path("1.sig")));
    let snapshot = w.path("snapshot");
    copy_dir(&w.vault_home.join("log"), &snapshot);
    assert_ok(&shim_sign(&w, &a, &w.path("2.sig")));
    restore(&w, &snapshot);
    // Another history of the same size and beyond, signed with the same key.
    assert_ok(&shim_sign(&w, &b, &w.path("b1.sig")));
    assert_ok(&shim_sign(&w, &b, &w.path("b2.sig")));
    let o = shim_sign(&w, &a, &w.path("3.sig"));
    assert_code(&o, 2);
    assert!(stderr(&o).contains("the vault's log FORKED"), "{}", stderr(&o));
}

#[test]
fn qvault_audit_accepts_a_git_commit_signature_and_its_receipt() {
    let w = World::new();
    let r = w.path("repo");
    std::fs::create_dir_all(&r).unwrap();
    let git = |args: &[&str]| {
        let mut c = w.client_cmd("git");
        c.current_dir(&r).args(args).env("QVAULT_RECEIPT_OUT", w.path("commit.receipt"));
        let o = run(&mut c);
        assert_ok(&o);
        stdout(&o)
    };
    git(&["init", "-q"]);
    git(&["config", "user.name", "Alice Volunteer"]);
    git(&["config", "user.email", "alice@example.org"]);
    git(&["config", "gpg.program", bin("qvault-gpg").to_str().unwrap()]);
    std::fs::write(r.join("f"), "x\n").unwrap();
    git(&["add", "f"]);
    git(&["commit", "-q", "-S", "-m", "signed"]);
    git(&["verify-commit", "HEAD"]);
    // Split the commit object into the signed payload and the signature.
    let raw = git(&["cat-file", "commit", "HEAD"]);
    let mut payload = String::new();
    let mut sig = String::new();
    let mut in_sig = false;
    for line in raw.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix("gpgsig ") {
            in_sig = true;
            sig.push_str(rest);
        } else if in_sig && line.starts_with(' ') {
            sig.push_str(&line[1..]);
        } else {
            in_sig = false;
            payload.push_str(line);
        }
    }
    std::fs::write(w.path("payload"), &payload).unwrap();
    std::fs::write(w.path("commit.sig"), &sig).unwrap();
    let key = w.log_key();
    let o = w.audit(&[
        "verify-signature",
        w.path("payload").to_str().unwrap(),
        w.path("commit.sig").to_str().unwrap(),
        "--receipt",
        w.path("commit.receipt").to_str().unwrap(),
        "--log-key",
        &key,
    ]);
    assert_ok(&o);
    assert!(stdout(&o).contains("key origin:  generated in the vault"), "{}", stdout(&o));
    let export = w.export_log("git.export");
    let o = w.audit(&[
        "--json",
        "verify-signature",
        w.path("payload").to_str().unwrap(),
        w.path("commit.sig").to_str().unwrap(),
        "--log",
        export.to_str().unwrap(),
        "--log-key",
        &key,
    ]);
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "verified");
    assert_eq!(v["caller"], "work");
    // A different payload is refused, exit 1.
    std::fs::write(w.path("payload2"), payload.replace("signed", "sIgned")).unwrap();
    let o = w.audit(&[
        "verify-signature",
        w.path("payload2").to_str().unwrap(),
        w.path("commit.sig").to_str().unwrap(),
        "--receipt",
        w.path("commit.receipt").to_str().unwrap(),
        "--log-key",
        &key,
    ]);
    assert_code(&o, 1);
    // Bad input is exit 2.
    let o = w.audit(&[
        "verify-signature",
        "/nonexistent",
        w.path("commit.sig").to_str().unwrap(),
        "--receipt",
        w.path("commit.receipt").to_str().unwrap(),
        "--log-key",
        &key,
    ]);
    assert_code(&o, 2);
}

#[test]
fn audit_qube_fetches_the_log_over_logread_which_cannot_sign() {
    let w = World::new();
    assert_ok(&shim_sign(&w, &w.path("c"), &w.path("1.sig")));
    let mut c = w.client_cmd(bin("qvault-audit").to_str().unwrap());
    c.args([
        "fetch",
        "vault",
        "-o",
        w.path("fetched.log").to_str().unwrap(),
        "--checkpoint",
        w.path("fetched.cp").to_str().unwrap(),
    ]);
    w.in_qube(&mut c, "audit");
    assert_ok(&run(&mut c));
    let key = w.log_key();
    let (code, out) = audit_log(&w, &w.path("fetched.log"), &key, &[&w.path("fetched.cp")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("signatures:  1"), "{out}");
    // The read-only service refuses to sign, whatever the request says.
    let req = frame(&qubes_rpc::ClientFrame::Request(detached_sign_request()));
    let mut c = w.client_cmd("qrexec-client-vm");
    c.args(["vault", "qvault.LogRead"]);
    let o = run_with_input(&mut c, &req);
    let n = u32::from_be_bytes(o.stdout[..4].try_into().unwrap()) as usize;
    match qubes_rpc::frame::decode::<qubes_rpc::ServerFrame<'_>>(&o.stdout[4..4 + n]).unwrap() {
        qubes_rpc::ServerFrame::Error(e) => assert_eq!(e.code, qubes_rpc::ErrorCode::Denied),
        other => panic!("{other:?}"),
    }
}

#[test]
fn qvault_audit_keeps_its_verdict_when_the_reader_goes_away() {
    let w = World::new();
    let export = w.export_log("pipe.export");
    let key = w.log_key();
    // The reader closes the pipe before qvault-audit writes: the exit status
    // is still the verdict, and nothing panics.
    let mut c = std::process::Command::new(bin("qvault-audit"));
    c.args(["verify-log", export.to_str().unwrap(), "--log-key", &key]);
    c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}
