//! The vault's policy, confirmation and hardening, through the real binaries.

use std::process::Command;
use std::time::Duration;

use qvault_e2e::*;

fn set_policy(w: &World, text: &str) {
    std::fs::write(w.vault_home.join("policy.toml"), text).unwrap();
}

fn sign_as(w: &World, caller: &str, args: &[&str], data: &[u8]) -> std::process::Output {
    let mut c = w.shim(args);
    c.env("QVAULT_SIM_SOURCE", caller);
    run_with_input(&mut c, data)
}

fn confirm_section(w: &World, script: &str, timeout: u64) -> String {
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
    for caller in ["personal", "untrusted", "buildx"] {
        let o = sign_as(&w, caller, &["-bsa"], b"x");
        assert_code(&o, 2);
        assert!(stderr(&o).contains("policy does not allow sign-detached"), "{caller}: {}", stderr(&o));
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
    set_policy(&w, &format!("{rule}{}", confirm_section(&w, "sleep 30", 1)));
    let o = sign_as(&w, "work", &["-bsa"], b"x");
    assert_code(&o, 2);
    assert!(stderr(&o).contains("the confirmation timed out"), "{}", stderr(&o));
    // The default question is zenity's; without a display or zenity it denies.
    set_policy(&w, rule);
    let o = sign_as(&w, "work", &["-bsa"], b"x");
    assert_code(&o, 2);
}

#[test]
fn auto_accept_window_expires() {
    for serve in [false, true] {
        let mut w = World::new();
        set_policy(
            &w,
            &format!(
                "version = 1\n[[rule]]\ncaller = \"*\"\nkeys = \"*\"\noperations = [\"sign-detached\"]\nconfirm = \"ask\"\nauto_accept_seconds = 2\n{}",
                confirm_section(&w, "exit 0", 10)
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
        std::thread::sleep(Duration::from_millis(3100));
        assert_ok(&sign_as(&w, "work", &["-bsa"], b"4"));
        assert_eq!(asked(&w), 3, "after the window it asks again (serve={serve})");
    }
}

#[test]
fn one_pending_question_per_caller() {
    let mut w = World::new();
    set_policy(
        &w,
        &format!(
            "version = 1\n[[rule]]\ncaller = \"*\"\nkeys = \"*\"\noperations = [\"sign-detached\"]\nconfirm = \"ask\"\n{}",
            confirm_section(&w, "sleep 2; exit 0", 10)
        ),
    );
    w.serve();
    let w = std::sync::Arc::new(w);
    let spawn = |caller: &'static str, delay: u64| {
        let w = w.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(delay));
            sign_as(&w, caller, &["-bsa"], b"x")
        })
    };
    let first = spawn("work", 0);
    let second = spawn("work", 700);
    let other = spawn("other", 700);
    assert_ok(&first.join().unwrap());
    let s = second.join().unwrap();
    assert_code(&s, 2);
    assert!(stderr(&s).contains("a confirmation for qube work is already pending"), "{}", stderr(&s));
    assert_ok(&other.join().unwrap());
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
    // Exec mode: the caller is told the vault cannot serve; nothing is signed.
    let s = sign_as(&w, "work", &["-bsa"], b"x");
    assert_code(&s, 2);
    assert!(stderr(&s).contains("the vault cannot serve"), "{}", stderr(&s));
    assert!(s.stdout.is_empty());
    // The daemon does not start.
    let mut c = w.qvault(&["serve", "--socket", w.path("s").to_str().unwrap(), "--allow-network"]);
    let o = run(&mut c);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("invalid policy") && stderr(&o).contains("line 5"), "{}", stderr(&o));
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
    let hs: Vec<_> = (0..4)
        .map(|i| {
            let sock = sock.clone();
            std::thread::spawn(move || {
                (0..50).filter(|j| sign_raw(&sock, "work", format!("{i} {j}").as_bytes()).is_ok()).count()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
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
