//! The vault's policy, confirmation and hardening, through the real binaries.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use qvault_e2e::*;

fn set_policy(w: &World, text: &str) {
    std::fs::write(w.vault_home.join("policy.toml"), text).unwrap();
}

fn sign_as(w: &World, caller: &str, args: &[&str], data: &[u8]) -> std::process::Output {
    let mut c = w.shim(args);
    w.in_qube(&mut c, caller);
    run_with_input(&mut c, data)
}

fn confirm_section(w: &World, script: &str, timeout: u64) -> String {
    // The vault may run as another user (nobody, over the real stack's exec
    // service): it appends to this file.
    std::fs::OpenOptions::new().create(true).append(true).open(w.path("asked")).unwrap();
    std::fs::set_permissions(w.path("asked"), std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let path = w.path("confirm.sh");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho \"$QVAULT_CALLER $QVAULT_OPERATION $QVAULT_DATA_SIZE $QVAULT_KEY\" >> {}\n{script}\n",
            w.path("asked").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    format!("[confirm]\ncommand = [\"{}\"]\ntimeout_seconds = {timeout}\n", path.display())
}

fn asked(w: &World) -> usize {
    std::fs::read_to_string(w.path("asked")).map(|s| s.lines().count()).unwrap_or(0)
}

fn mkfifo(path: &Path) -> PathBuf {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success(), "mkfifo {}", path.display());
    path.to_owned()
}

/// Entries `qvault-audit show` reports as policy changes (stops a daemon first:
/// the log is exported by a process of its own).
fn policy_changes(w: &mut World, name: &str) -> usize {
    w.stop_daemon();
    let export = w.export_log(name);
    let o = w.audit(&["show", export.to_str().unwrap()]);
    assert_ok(&o);
    stdout(&o).matches("policy changed").count()
}

#[test]
fn policy_decides_per_caller_key_and_operation() {
    let w = World::new();
    set_policy(
        &w,
        r#"version = 1
[[rule]]
caller = "work"
keys = ["*@example.org"]
operations = ["list", "export", "sign-detached"]
confirm = "allow"
[[rule]]
caller = "build-*"
keys = "*"
operations = ["sign-detached", "sign-cleartext"]
confirm = "allow"
[[rule]]
caller = "personal"
keys = "*"
operations = ["list", "sign-detached"]
confirm = "deny"
"#,
    );
    assert_ok(&sign_as(&w, "work", &["-bsa"], b"x"));
    let o = sign_as(&w, "work", &["--clearsign"], b"x");
    assert_code(&o, 2);
    assert!(stderr(&o).contains("policy does not allow sign-cleartext with key"), "{}", stderr(&o));
    assert!(stderr(&o).contains("for qube work"), "{}", stderr(&o));
    assert_ok(&sign_as(&w, "build-42", &["--clearsign"], b"x"));
    // A qube allowed nothing with the key does not learn it exists.
    for caller in ["personal", "untrusted", "buildx"] {
        let o = sign_as(&w, caller, &["-bsa"], b"x");
        assert_code(&o, 2);
        assert!(stderr(&o).contains("No secret key"), "{caller}: {}", stderr(&o));
        assert!(!stderr(&o).contains(&w.fpr), "{caller}: {}", stderr(&o));
    }
    // Listings show only what the caller may use.
    let o = sign_as(&w, "work", &["-K", "--with-colons"], b"");
    assert!(stdout(&o).contains(&w.fpr));
    let o = sign_as(&w, "untrusted", &["-K", "--with-colons"], b"");
    assert_ok(&o);
    assert!(!stdout(&o).contains(&w.fpr), "{}", stdout(&o));
    let o = sign_as(&w, "untrusted", &["--export"], b"");
    assert!(o.stdout.is_empty());
}

#[test]
fn confirmation_approve_deny_and_timeout() {
    let w = World::new();
    let rule =
        "version = 1\n[[rule]]\ncaller = \"*\"\nkeys = \"*\"\noperations = [\"sign-detached\"]\nconfirm = \"ask\"\n";
    set_policy(&w, &format!("{rule}{}", confirm_section(&w, "exit 0", 10)));
    assert_ok(&sign_as(&w, "work", &["-bsa"], b"12345"));
    let line = std::fs::read_to_string(w.path("asked")).unwrap();
    assert_eq!(
        line.trim(),
        format!("work sign-detached 5 {}", w.fpr),
        "the question names caller, operation, size, key"
    );
    set_policy(&w, &format!("{rule}{}", confirm_section(&w, "exit 1", 10)));
    let o = sign_as(&w, "work", &["-bsa"], b"x");
    assert_code(&o, 2);
    assert!(stderr(&o).contains("the request was denied in the vault"), "{}", stderr(&o));
    // Nobody answers: the question blocks on a FIFO no one writes.
    let never = mkfifo(&w.path("never"));
    set_policy(&w, &format!("{rule}{}", confirm_section(&w, &format!("read a < {}", never.display()), 1)));
    let o = sign_as(&w, "work", &["-bsa"], b"x");
    assert_code(&o, 2);
    assert!(stderr(&o).contains("the confirmation timed out"), "{}", stderr(&o));
    // The default question is zenity's; without a display or zenity it denies.
    set_policy(&w, rule);
    let o = sign_as(&w, "work", &["-bsa"], b"x");
    assert_code(&o, 2);
}

/// The window's end is tested without waiting in `gate.rs` (an injected clock);
/// here, with a window longer than the test, that it holds per caller.
#[test]
fn auto_accept_window_is_per_caller() {
    for serve in [false, true] {
        let mut w = World::new();
        set_policy(
            &w,
            &format!(
                "version = 1\n[[rule]]\ncaller = \"*\"\nkeys = \"*\"\noperations = [\"sign-detached\"]\nconfirm = \"ask\"\nauto_accept_seconds = 3600\n{}",
                confirm_section(&w, "exit 0", 60)
            ),
        );
        if serve {
            w.serve();
        }
        assert_ok(&sign_as(&w, "work", &["-bsa"], b"1"));
        assert_eq!(asked(&w), 1);
        assert_ok(&sign_as(&w, "work", &["-bsa"], b"2"));
        assert_eq!(asked(&w), 1, "inside the window no question (serve={serve})");
        assert_ok(&sign_as(&w, "other", &["-bsa"], b"3"));
        assert_eq!(asked(&w), 2, "the window is per caller");
    }
}

/// A confirm script that reports each question on the FIFO `questions` (the
/// caller's name) and answers with the exit status read from `answer-<caller>`.
fn fifo_confirm_section(w: &World) -> String {
    mkfifo(&w.path("questions"));
    for caller in ["work", "other"] {
        mkfifo(&w.path(&format!("answer-{caller}")));
    }
    let dir = w.dir.path().display();
    confirm_section(
        w,
        &format!("echo \"$QVAULT_CALLER\" > {dir}/questions\nread a < {dir}/answer-$QVAULT_CALLER\nexit $a"),
        60,
    )
}

/// Blocks until the vault asks its next question; returns the caller's name.
fn next_question(w: &World) -> String {
    std::fs::read_to_string(w.path("questions")).unwrap().trim().to_owned()
}

fn answer(w: &World, caller: &str, status: u8) {
    std::fs::write(w.path(&format!("answer-{caller}")), format!("{status}\n")).unwrap();
}

#[test]
fn one_pending_question_per_caller() {
    let mut w = World::new();
    let section = fifo_confirm_section(&w);
    set_policy(
        &w,
        &format!(
            "version = 1\n[[rule]]\ncaller = \"*\"\nkeys = \"*\"\noperations = [\"sign-detached\"]\nconfirm = \"ask\"\n{section}"
        ),
    );
    w.serve();
    let w = std::sync::Arc::new(w);
    let spawn = |caller: &'static str| {
        let w = w.clone();
        std::thread::spawn(move || sign_as(&w, caller, &["-bsa"], b"x"))
    };
    let first = spawn("work");
    assert_eq!(next_question(&w), "work");
    // While work's question is up, a second one from work is refused at once...
    let s = sign_as(&w, "work", &["-bsa"], b"x");
    assert_code(&s, 2);
    assert!(stderr(&s).contains("a confirmation for qube work is already pending"), "{}", stderr(&s));
    // ...and another qube is asked.
    let other = spawn("other");
    assert_eq!(next_question(&w), "other");
    answer(&w, "other", 0);
    assert_ok(&other.join().unwrap());
    answer(&w, "work", 0);
    assert_ok(&first.join().unwrap());
    assert_eq!(asked(&w), 2);
}

#[test]
fn rate_and_size_limits() {
    for serve in [false, true] {
        let mut w = World::new();
        set_policy(
            &w,
            "version = 1\n[[rule]]\ncaller = \"*\"\nkeys = \"*\"\noperations = [\"sign-detached\"]\nconfirm = \"allow\"\nrate_per_minute = 2\nmax_data_bytes = 100\n",
        );
        if serve {
            w.serve();
        }
        let o = sign_as(&w, "work", &["-bsa"], &[b'x'; 101]);
        assert_code(&o, 2);
        assert!(stderr(&o).contains("exceeds this qube's limit of 100 bytes"), "{}", stderr(&o));
        assert_ok(&sign_as(&w, "work", &["-bsa"], &[b'x'; 100]));
        let o = sign_as(&w, "work", &["-bsa"], b"x");
        assert_code(&o, 2);
        assert!(stderr(&o).contains("rate limit: at most 2 signatures per minute for qube work"), "{}", stderr(&o));
        assert_ok(&sign_as(&w, "elsewhere", &["-bsa"], b"x"));
    }
}

#[test]
fn bad_policy_is_explained_and_stops_the_vault() {
    let mut w = World::new();
    set_policy(
        &w,
        "version = 1\n[[rule]]\ncaller = \"*\"\nkeys = \"*\"\noperations = [\"sign-detatched\"]\nconfirm = \"allow\"\n",
    );
    let o = run(&mut w.qvault(&["policy", "check"]));
    assert_code(&o, 2);
    assert!(stderr(&o).contains("policy.toml:line 5: unknown operation \"sign-detatched\""), "{}", stderr(&o));
    // Exec mode: the caller is told which file is wrong and why; nothing is signed.
    let s = sign_as(&w, "work", &["-bsa"], b"x");
    assert_code(&s, 2);
    assert!(stderr(&s).contains("policy.toml is invalid: line 5: unknown operation"), "{}", stderr(&s));
    assert!(s.stdout.is_empty());
    // The daemon does not start.
    let mut c = w.qvault(&["serve", "--socket", w.path("s").to_str().unwrap(), "--allow-network"]);
    let o = run(&mut c);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("policy.toml is invalid: line 5"), "{}", stderr(&o));
    assert!(!w.path("s").exists());
    // A valid file passes the check, and a change is logged.
    set_policy(
        &w,
        "version = 1\n[[rule]]\ncaller = \"*\"\nkeys = \"*\"\noperations = [\"sign-detached\"]\nconfirm = \"allow\"\n",
    );
    assert_ok(&run(&mut w.qvault(&["policy", "check"])));
    assert_ok(&sign_as(&w, "work", &["-bsa"], b"x"));
    let export = w.export_log("p.export");
    let o = w.audit(&["show", export.to_str().unwrap()]);
    assert_eq!(stdout(&o).matches("policy changed").count(), 2, "{}", stdout(&o));
    w.use_exec_mode();
}

fn serve_in_netns(w: &World, setup: &str, extra: &str) -> std::process::Output {
    let script = format!(
        "{setup} exec {} serve --home {} --socket {} {extra}",
        bin("qvault").display(),
        w.vault_home.display(),
        w.path("ns.sock").display()
    );
    let mut c = Command::new("timeout");
    c.args(["3", "unshare", "-n", "sh", "-c", &script]).env("QVAULT_LOG", "warn");
    run(&mut c)
}

#[test]
fn serve_refuses_to_start_with_a_network_interface_up() {
    assert!(can_unshare_net(), "this test needs network namespaces (root or user namespaces)");
    let w = World::new();
    let up = "ip link add qv0 type veth peer name qv1 && ip link set qv0 up && ip link set qv1 up &&";
    let o = serve_in_netns(&w, up, "");
    assert_code(&o, 2);
    assert!(stderr(&o).contains("network interfaces are up (qv0, qv1)"), "{}", stderr(&o));
    // With --allow-network it starts (and `timeout` ends it: 124).
    let o = serve_in_netns(&w, up, "--allow-network");
    assert_code(&o, 124);
    // With only loopback it starts.
    let o = serve_in_netns(&w, "", "");
    assert_code(&o, 124);
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

#[test]
fn serve_is_hardened_and_shuts_down_cleanly_on_sigterm() {
    let mut w = World::new();
    w.serve();
    let sock = w.socket.clone().unwrap();
    let pid = w.daemon_pid().unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap();
    assert!(core.split_whitespace().nth(4) == Some("0"), "{core}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let umask = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    assert!(umask.ends_with("0077"), "{umask}");
    // Memory is locked (root may always lock it). VmLck counts whole locked
    // mappings; with MCL_ONFAULT they are not populated up front, so the
    // resident set stays far below it.
    let kib = |name: &str| -> u64 {
        let l = status.lines().find(|l| l.starts_with(name)).unwrap();
        l.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    if is_root() {
        assert!(kib("VmLck:") > 0, "mlockall did not take effect");
        assert!(kib("VmRSS:") < kib("VmLck:"), "every locked mapping was populated: {status}");
    }
    // SIGTERM while clients sign: every client gets an answer or a closed
    // connection, the daemon exits 0, and the log verifies.
    let (signed, first) = std::sync::mpsc::channel();
    let hs: Vec<_> = (0..4)
        .map(|i| {
            let sock = sock.clone();
            let signed = signed.clone();
            std::thread::spawn(move || {
                (0..50)
                    .filter(|j| {
                        let ok = sign_raw(&sock, "work", format!("{i} {j}").as_bytes()).is_ok();
                        if ok {
                            let _ = signed.send(());
                        }
                        ok
                    })
                    .count()
            })
        })
        .collect();
    // SIGTERM once clients are signing (the first signature is back).
    first.recv().unwrap();
    let st = w.stop_daemon().unwrap();
    assert!(st.success(), "{st:?}");
    let done: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(done > 0);
    let export = w.export_log("term.export");
    let key = w.log_key();
    let o = w.audit(&["verify-log", export.to_str().unwrap(), "--log-key", &key]);
    assert_ok(&o);
    assert!(!sock.exists(), "the socket is removed on shutdown");
}

/// Lists for every qube; signs detached signatures as `mode` says.
fn list_and_sign(mode: &str) -> String {
    format!(
        "version = 1\n[[rule]]\ncaller = \"*\"\nkeys = \"*\"\noperations = [\"list\"]\nconfirm = \"allow\"\n\
         [[rule]]\ncaller = \"*\"\nkeys = \"*\"\noperations = [\"sign-detached\"]\nconfirm = \"{mode}\"\n"
    )
}

/// Fails on main in serve mode (the daemon keeps signing after the edit to
/// deny) and in exec mode (an invalid policy answers only "the vault cannot
/// serve", not which file and why).
#[test]
fn a_policy_edit_reaches_the_running_vault() {
    for serve in [true, false] {
        let mut w = World::new();
        set_policy(&w, &list_and_sign("allow"));
        if serve {
            w.serve();
        }
        assert_ok(&sign_as(&w, "work", &["-bsa"], b"1"));
        // Edited in place (truncate and write), as `echo > policy.toml` does.
        set_policy(&w, &list_and_sign("deny"));
        let o = sign_as(&w, "work", &["-bsa"], b"2");
        assert_code(&o, 2);
        assert!(stderr(&o).contains("policy does not allow sign-detached"), "serve={serve}: {}", stderr(&o));
        // Broken: every call is refused, saying which file and why.
        set_policy(&w, &list_and_sign("allow").replace("sign-detached", "sign-detatched"));
        for args in [&["-bsa"][..], &["-k"][..]] {
            let o = sign_as(&w, "work", args, b"3");
            assert_code(&o, 2);
            let e = stderr(&o);
            assert!(
                e.contains(&format!("{}/policy.toml is invalid: line 10: unknown operation", w.vault_home.display())),
                "serve={serve}: {e}"
            );
            assert!(e.contains("every call is refused until it is fixed"), "serve={serve}: {e}");
        }
        // Unreadable: the same.
        std::fs::remove_file(w.vault_home.join("policy.toml")).unwrap();
        let o = sign_as(&w, "work", &["-bsa"], b"4");
        assert_code(&o, 2);
        assert!(stderr(&o).contains("policy.toml cannot be read"), "serve={serve}: {}", stderr(&o));
        // Fixed: signing again, by the same daemon.
        set_policy(&w, &list_and_sign("allow"));
        assert_ok(&sign_as(&w, "work", &["-bsa"], b"5"));
        if serve {
            assert!(w.daemon_alive(), "the daemon was not restarted");
        }
        // init's policy, then allow, deny, allow: one entry per valid change.
        assert_eq!(policy_changes(&mut w, "edit.export"), 4, "serve={serve}");
    }
}

/// Two rules that ask, each with a long auto-accept window; the confirm script
/// counts questions and answers `status`.
fn two_asking_rules(w: &World, status: u8, window: u32) -> String {
    format!(
        "version = 1\n[[rule]]\ncaller = \"*\"\nkeys = \"*\"\noperations = [\"list\", \"sign-detached\"]\nconfirm = \"ask\"\nauto_accept_seconds = {window}\n\
         [[rule]]\ncaller = \"*\"\nkeys = \"*\"\noperations = [\"sign-cleartext\"]\nconfirm = \"ask\"\nauto_accept_seconds = {window}\n{}",
        confirm_section(w, &format!("exit {status}"), 60)
    )
}

/// Fails on main: after an approved detached signature, the cleartext rule's
/// signature was auto-accepted (asked stays 1).
#[test]
fn approvals_are_kept_per_rule() {
    for serve in [false, true] {
        let mut w = World::new();
        set_policy(&w, &two_asking_rules(&w, 0, 3600));
        if serve {
            w.serve();
        }
        assert_ok(&sign_as(&w, "work", &["-bsa"], b"1"));
        assert_eq!(asked(&w), 1);
        assert_ok(&sign_as(&w, "work", &["-bsa"], b"2"));
        assert_eq!(asked(&w), 1, "the detached rule's window (serve={serve})");
        assert_ok(&sign_as(&w, "work", &["--clearsign"], b"3"));
        assert_eq!(asked(&w), 2, "another rule asks for itself (serve={serve})");
        assert_ok(&sign_as(&w, "work", &["--clearsign"], b"4"));
        assert_eq!(asked(&w), 2, "the cleartext rule's window (serve={serve})");
        // An edited rule is another rule: its approvals start afresh.
        set_policy(&w, &two_asking_rules(&w, 0, 3599));
        assert_ok(&sign_as(&w, "work", &["-bsa"], b"5"));
        assert_eq!(asked(&w), 3, "the edited rule asks (serve={serve})");
    }
}

/// Fails on main: the second request is asked again (asked == 2).
#[test]
fn a_no_is_remembered_within_its_window() {
    for serve in [false, true] {
        let mut w = World::new();
        set_policy(&w, &two_asking_rules(&w, 1, 3600));
        if serve {
            w.serve();
        }
        let o = sign_as(&w, "work", &["-bsa"], b"1");
        assert_code(&o, 2);
        assert!(stderr(&o).contains("the request was denied in the vault"), "{}", stderr(&o));
        assert_eq!(asked(&w), 1);
        let o = sign_as(&w, "work", &["-bsa"], b"1");
        assert_code(&o, 2);
        assert!(stderr(&o).contains("a \"no\" to this request is remembered"), "{}", stderr(&o));
        assert_eq!(asked(&w), 1, "no new question (serve={serve})");
        // Only under that rule, for that caller.
        assert_code(&sign_as(&w, "work", &["--clearsign"], b"2"), 2);
        assert_code(&sign_as(&w, "other", &["-bsa"], b"2"), 2);
        assert_eq!(asked(&w), 3, "serve={serve}");
    }
}

/// stdout, stderr and status lines of `-bsau SELECTOR` as `caller`, with the
/// selector itself (which gpg echoes) replaced by `<SEL>`.
fn sign_with(w: &World, caller: &str, selector: &str) -> (Option<i32>, String) {
    let o = sign_as(w, caller, &["--status-fd=1", "-bsau", selector], b"x");
    (o.status.code(), format!("{}\n--\n{}", stdout(&o), stderr(&o)).replace(selector, "<SEL>"))
}

/// The refusal frame the daemon sends `caller` for a sign request naming `selector`.
fn raw_refusal(w: &World, caller: &str, selector: &str) -> qubes_rpc::RpcError {
    let mut req = detached_sign_request();
    if let qubes_rpc::Op::Sign(s) = &mut req.op {
        s.key = Some(selector.to_owned());
    }
    let mut s = std::os::unix::net::UnixStream::connect(w.socket.as_ref().unwrap()).unwrap();
    s.write_all(format!("qvault.Gpg {caller}\0").as_bytes()).unwrap();
    s.write_all(&frame(&qubes_rpc::ClientFrame::Request(req))).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    match answers(&out).as_slice() {
        [qubes_rpc::ServerFrame::Error(e)] => e.clone(),
        other => panic!("{other:?}"),
    }
}

/// Fails on main: the refusal to a qube allowed nothing names the key
/// ("policy does not allow sign-detached with key <fingerprint>"), and a
/// revoked key is reported as revoked, with its fingerprint.
#[test]
fn keys_hidden_by_policy_are_never_named() {
    let mut w = World::new();
    let bob = w.keygen("Bob Builder <bob@example.net>", "ed25519");
    set_policy(
        &w,
        "version = 1\n[[rule]]\ncaller = \"work\"\nkeys = \"*\"\noperations = [\"list\", \"sign-detached\"]\nconfirm = \"allow\"\n",
    );
    let o = run(&mut w.qvault(&["revoke", &bob, "--reason", "retired"]));
    assert_ok(&o);
    let secrets = |fpr: &str, uid: &[&str]| {
        let mut v = vec![fpr.to_owned(), fpr[24..].to_owned(), fpr[32..].to_owned()];
        v.extend(uid.iter().map(|s| s.to_string()));
        v
    };
    let alice = secrets(&w.fpr, &["Alice Volunteer", "alice@example.org"]);
    let bobs = secrets(&bob, &["Bob Builder", "bob@example.net"]);
    // The work qube sees both keys: a revoked key is reported as gpg would.
    let (code, out) = sign_with(&w, "work", &bob);
    assert_eq!(code, Some(2));
    assert!(out.contains("Unusable secret key"), "{out}");
    for serve in [false, true] {
        if serve {
            w.serve();
        }
        let missing = sign_with(&w, "untrusted", "nobody@nowhere");
        let missing_fpr = sign_with(&w, "untrusted", &"AB".repeat(20));
        assert_eq!(missing.0, Some(2));
        for (sel, like, hidden) in [
            ("alice", &missing, &alice),
            ("Volunteer <alice@", &missing, &alice),
            (&w.fpr[24..], &missing_fpr, &alice),
            (&w.fpr, &missing_fpr, &alice),
            ("bob", &missing, &bobs),
            (&bob, &missing_fpr, &bobs),
        ] {
            let got = sign_with(&w, "untrusted", sel);
            assert_eq!(&got, like, "{sel} (serve={serve})");
            for s in hidden.iter() {
                assert!(!got.1.contains(s.as_str()), "{s} named to untrusted: {}", got.1);
            }
        }
        // On the wire too: no key, no expiry, the message of a missing key.
        if serve {
            for (sel, like) in [(w.fpr.clone(), "AB".repeat(20)), (bob.clone(), "AB".repeat(20))] {
                let got = raw_refusal(&w, "untrusted", &sel);
                let want = raw_refusal(&w, "untrusted", &like);
                assert_eq!((got.code, got.key, got.expired_at), (want.code, want.key, want.expired_at));
                assert_eq!(got.message.replace(&sel, "<SEL>"), want.message.replace(&like, "<SEL>"));
            }
        }
    }
}
