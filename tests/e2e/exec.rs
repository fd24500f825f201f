//! The exec service (`qvault rpc`, one process per qrexec call) is as safe as
//! `serve`: a call qrexec did not name, or named for a service that is not
//! ours, is refused before anything is signed or logged; a caller that stalls
//! ends its own call after `--io-timeout` while other calls are served.

use std::io::{Read as _, Write as _};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use qubes_rpc::{ClientFrame, ErrorCode, Op, Request, ServerFrame};
use qvault_e2e::*;

/// A whole detached-signature call: request, data, end.
fn sign_call() -> Vec<u8> {
    [
        frame(&ClientFrame::Request(detached_sign_request())),
        frame(&ClientFrame::Data(b"data")),
        frame(&ClientFrame::End),
    ]
    .concat()
}

#[test]
fn exec_calls_without_or_with_an_unknown_service_are_refused_and_nothing_is_logged() {
    let w = World::new();
    let entries = w.log_entries();
    let cases: [(Option<&str>, &str); 4] = [
        (
            None,
            "no qrexec service name (QREXEC_SERVICE_FULL_NAME is not set): qvault rpc serves only calls qrexec names",
        ),
        (Some("qvault.Other"), r#"unknown service "qvault.Other": this vault serves qvault.Gpg and qvault.LogRead"#),
        (
            Some("qvault.Other+qvault.Gpg"),
            r#"unknown service "qvault.Other": this vault serves qvault.Gpg and qvault.LogRead"#,
        ),
        (Some("qvault.Gpg\n"), r#"service name "qvault.Gpg\n" is not a qrexec service name"#),
    ];
    for (service, message) in cases {
        let o = run_with_input(&mut w.rpc(service, &[]), &sign_call());
        let got = answers(&o.stdout);
        assert!(
            matches!(got.as_slice(), [ServerFrame::Error(e)] if e.code == ErrorCode::Denied && e.message == message),
            "{service:?}: {got:?}; stderr: {}",
            stderr(&o)
        );
        assert_code(&o, 3);
        assert!(stderr(&o).contains(message), "{}", stderr(&o));
    }
    assert_eq!(w.log_entries(), entries, "a refused call appends nothing to the log");
    // The named services still work.
    let o = run_with_input(&mut w.rpc(Some("qvault.Gpg+"), &[]), &sign_call());
    assert!(matches!(answers(&o.stdout).as_slice(), [ServerFrame::Ready(_), ServerFrame::Signed(_)]), "{}", stderr(&o));
    let log = frame(&ClientFrame::Request(Request::new(Op::Checkpoint { old_size: None })));
    let o = run_with_input(&mut w.rpc(Some("qvault.LogRead"), &[]), &log);
    assert!(matches!(answers(&o.stdout).as_slice(), [ServerFrame::Checkpoint(_)]), "{}", stderr(&o));
}

#[test]
fn serve_refuses_an_unknown_service_with_an_error_frame() {
    let mut w = World::new();
    w.serve();
    let mut s = std::os::unix::net::UnixStream::connect(w.socket.as_ref().unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"qvault.Other work\0").unwrap();
    let _ = s.write_all(&sign_call());
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let got = answers(&out);
    assert!(
        matches!(got.as_slice(), [ServerFrame::Error(e)] if e.code == ErrorCode::Denied
            && e.message == r#"unknown service "qvault.Other": this vault serves qvault.Gpg and qvault.LogRead"#),
        "{got:?}"
    );
}

#[test]
fn a_stalled_exec_caller_ends_its_own_call_and_others_are_served() {
    let w = World::new();
    let mut stalled = w
        .rpc(Some("qvault.Gpg"), &["--io-timeout", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qvault rpc");
    // Half a frame header, and then nothing; the pipe stays open.
    let mut input = stalled.stdin.take().expect("stdin");
    input.write_all(&[0, 0]).expect("partial request");
    let mut out = stalled.stdout.take().expect("stdout");
    let mut err = stalled.stderr.take().expect("stderr");
    // Wait for the process to exit on its own; a generous bound only turns a
    // hang (the bug) into a failure.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut o = Vec::new();
        let mut e = String::new();
        let _ = out.read_to_end(&mut o);
        let _ = err.read_to_string(&mut e);
        let _ = tx.send((stalled.wait(), o, e));
    });
    // Meanwhile another caller is served.
    let o = exec_call(&w, &sign_call());
    assert!(matches!(answers(&o.stdout).as_slice(), [ServerFrame::Ready(_), ServerFrame::Signed(_)]), "{}", stderr(&o));
    let (status, stdout, stderr) = rx.recv_timeout(Duration::from_secs(60)).expect("the stalled call ended");
    assert_eq!(status.expect("wait").code(), Some(4), "{stderr}");
    assert!(stdout.is_empty(), "no answer to a call that never arrived: {stdout:?}");
    assert!(stderr.contains("the caller stalled for more than 1s: call ended"), "{stderr}");
    // The caller's end of the pipe was open all along.
    drop(input);
}

#[test]
fn a_stalled_exec_caller_does_not_hold_up_others() {
    // The issue's reproduction: `qvault rpc` held the log's lock for the whole
    // call, so a caller that stalled made every other call wait, then fail.
    let w = World::new();
    let mut stalled = w
        .rpc(Some("qvault.Gpg"), &["--io-timeout", "600"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("qvault rpc");
    let mut input = stalled.stdin.take().expect("stdin");
    // A whole request and half of its data: the call is inside the vault.
    let mut bytes = sign_call();
    bytes.truncate(bytes.len() - 3);
    input.write_all(&bytes).expect("partial call");
    let mut out = stalled.stdout.take().expect("stdout");
    // Its Ready answer shows the stalled call is being served.
    let mut header = [0u8; 4];
    out.read_exact(&mut header).expect("the stalled call got its Ready answer");
    for _ in 0..3 {
        let o = exec_call(&w, &sign_call());
        assert!(
            matches!(answers(&o.stdout).as_slice(), [ServerFrame::Ready(_), ServerFrame::Signed(_)]),
            "{}",
            stderr(&o)
        );
        assert!(stalled.try_wait().expect("try_wait").is_none(), "the stalled call is still there");
    }
    let _ = stalled.kill();
    let _ = stalled.wait();
    drop(input);
}
