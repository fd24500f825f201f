//! Bad input: refused options, unknown keys, an unreachable vault, and hostile
//! bytes sent straight to the daemon. Each gets a clear message and the right
//! exit code, and the daemon keeps serving.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use qubes_rpc::{ClientFrame, ErrorCode, Op, Request, ServerFrame, PROTOCOL_VERSION};
use qvault_e2e::*;

fn call_log(w: &World) -> String {
    std::fs::read_to_string(w.path("calls.log")).unwrap_or_default()
}

#[test]
fn refused_options_never_reach_the_vault() {
    let w = World::new();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--options", "/tmp/x", "-bsa"],
            "option \"--options\" is refused by qvault-gpg: it reads or writes local files",
        ),
        (
            &["--export-secret-keys"],
            "option \"--export-secret-keys\" is refused by qvault-gpg: it creates, exports or changes secret keys",
        ),
        (
            &["--keyserver", "hkps://keys.example", "--recv-keys", "ABCD"],
            "option \"--keyserver\" is refused by qvault-gpg: it reaches the network",
        ),
        (
            &["--load-extension", "x.so", "-s"],
            "option \"--load-extension\" is refused by qvault-gpg: it runs or loads programs",
        ),
        (
            &["--keyring", "/tmp/k", "-k"],
            "option \"--keyring\" is refused by qvault-gpg: it selects or changes a local keyring",
        ),
        (&["--gen-key"], "option \"--gen-key\" is refused"),
        (&["--edit-key", "alice"], "option \"--edit-key\" is refused"),
        (&["--optio=/x", "-s"], "option \"--options\" is refused"),
        (&["-e", "-r", "bob"], "option \"--encrypt\" is refused by qvault-gpg: qvault-gpg only signs"),
        (&["--passphrase-file", "/tmp/p", "-s"], "option \"--passphrase-file\" is refused"),
        (&["--frobnicate"], "gpg: invalid option \"--frobnicate\""),
        (&["--ver"], "is ambiguous"),
    ];
    for (args, msg) in cases {
        let mut c = w.shim(args);
        c.env("QVAULT_SIM_CALL_LOG", w.path("calls.log"));
        let o = run_with_input(&mut c, b"data");
        assert_code(&o, 2);
        assert!(stderr(&o).contains(msg), "{args:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(call_log(&w), "", "no refused invocation may call the vault");
}

#[test]
fn every_option_in_the_refusal_table_is_refused() {
    let w = World::new();
    // The table has more than 100 entries; each is refused by exact name and
    // none reaches the vault.
    let names: Vec<&str> = qvault_gpg::refused::REFUSED.iter().map(|r| r.0).collect();
    assert!(names.len() >= 100, "{}", names.len());
    for n in &names {
        let flag = format!("--{n}");
        let mut c = w.shim(&[&flag, "x", "y"]);
        c.env("QVAULT_SIM_CALL_LOG", w.path("calls.log"));
        let o = run(&mut c);
        assert_code(&o, 2);
        assert!(stderr(&o).contains(&format!("option \"--{n}\" is refused")), "{n}: {}", stderr(&o));
    }
    assert_eq!(call_log(&w), "");
}

#[test]
fn unknown_key_gives_inv_sgnr_and_exit_2() {
    let w = World::new();
    let o = run_with_input(&mut w.shim(&["--status-fd=1", "-bsau", "nobody@example.org"]), b"data");
    assert_code(&o, 2);
    let out = stdout(&o);
    assert!(out.contains("[GNUPG:] INV_SGNR 9 nobody@example.org\n"), "{out}");
    assert!(out.contains("[GNUPG:] FAILURE sign 17\n"), "{out}");
    assert!(!out.contains("SIG_CREATED"));
    assert!(
        stderr(&o).contains(
            "gpg: skipped \"nobody@example.org\": No secret key\n\
             gpg: signing failed: No secret key (no secret key in the vault matches \"nobody@example.org\")"
        ),
        "{}",
        stderr(&o)
    );
}

#[test]
fn unreachable_vault_is_reported() {
    let mut w = World::new();
    let mut c = if w.is_real() {
        // Over the real stack: the vault's socket service is down.
        w.serve();
        w.kill_daemon();
        w.shim(&["-bsa"])
    } else {
        let mut c = w.shim(&["-bsa"]);
        c.env_remove("QVAULT_SIM_VAULT_HOME");
        c
    };
    let o = run_with_input(&mut c, b"data");
    assert_code(&o, 2);
    assert!(stderr(&o).contains("vault qube \"vault\" unreachable"), "{}", stderr(&o));
    // dom0 refuses: the real policy daemon for disp1 (the harness's rules).
    let mut c = w.shim(&["-bsa"]);
    w.in_qube(&mut c, "disp1");
    c.env("QVAULT_SIM_POLICY_DENY", "1");
    let o = run_with_input(&mut c, b"data");
    assert_code(&o, 2);
    assert!(stderr(&o).contains("unreachable: dom0's qrexec policy refused the call"), "{}", stderr(&o));
    let mut c = w.shim(&["-bsa"]);
    c.env_remove("QUBES_GPG_DOMAIN");
    let o = run_with_input(&mut c, b"data");
    assert_code(&o, 2);
    assert!(stderr(&o).contains("no vault qube configured"), "{}", stderr(&o));
}

fn error_code(bytes: &[u8]) -> Option<ErrorCode> {
    match answers(bytes).as_slice() {
        [ServerFrame::Error(e)] => Some(e.code),
        _ => None,
    }
}

fn list_request() -> Vec<u8> {
    frame(&ClientFrame::Request(Request::new(Op::ListKeys { secret: true, selectors: vec![] })))
}

fn assert_still_serving(w: &World) {
    let a = raw_call(w, &list_request());
    match answers(&a).as_slice() {
        [ServerFrame::Keys(k)] => assert_eq!(k.len(), 1),
        other => panic!("daemon stopped serving: {other:?}"),
    }
}

#[test]
fn daemon_answers_malformed_frames_and_keeps_serving() {
    let mut w = World::new();
    w.serve();
    assert_still_serving(&w);

    // Oversized length: refused before allocation, with a protocol error.
    let a = raw_call(&w, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    assert_eq!(error_code(&a), Some(ErrorCode::BadRequest));
    assert_still_serving(&w);

    // Truncated frame: the header promises more than arrives; the call just ends.
    let a = raw_call(&w, &[0, 0, 0, 100, 1, 2, 3]);
    assert!(a.is_empty(), "{a:?}");
    assert_still_serving(&w);

    // Garbage payload.
    let a = raw_call(&w, &[0, 0, 0, 5, 0xde, 0xad, 0xbe, 0xef, 0x99]);
    assert_eq!(error_code(&a), Some(ErrorCode::BadRequest));
    assert_still_serving(&w);

    // Wrong protocol version.
    let mut req = Request::new(Op::ListKeys { secret: false, selectors: vec![] });
    req.version = 99;
    let a = raw_call(&w, &frame(&ClientFrame::Request(req)));
    match answers(&a).as_slice() {
        [ServerFrame::Error(e)] => {
            assert_eq!(e.code, ErrorCode::UnsupportedVersion);
            assert_eq!(e.message, format!("unsupported protocol version 99 (this vault speaks {PROTOCOL_VERSION})"));
        }
        other => panic!("{other:?}"),
    }
    assert_still_serving(&w);
    // A version-1 sign request (its SignRequest had no `client_hash` byte, so it
    // would not even decode as the current version): the version is named, not a decode error.
    let v1 = [0u8, 1, 2, 0, 0, 0, 0, 0, 0];
    let mut bytes = (v1.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&v1);
    let a = raw_call(&w, &bytes);
    match answers(&a).as_slice() {
        [ServerFrame::Error(e)] => {
            assert_eq!(e.code, ErrorCode::UnsupportedVersion);
            assert_eq!(e.message, format!("unsupported protocol version 1 (this vault speaks {PROTOCOL_VERSION})"));
        }
        other => panic!("{other:?}"),
    }

    // Data before any request.
    let a = raw_call(&w, &frame(&ClientFrame::Data(b"x")));
    assert_eq!(error_code(&a), Some(ErrorCode::BadRequest));

    // Client disconnects in the middle of a signing stream.
    let mut bytes = frame(&ClientFrame::Request(detached_sign_request()));
    bytes.extend(frame(&ClientFrame::Data(&[7u8; 1000])));
    bytes.extend_from_slice(&[0, 0, 0, 50, 1]);
    let a = raw_call(&w, &bytes);
    assert!(matches!(answers(&a).as_slice(), [ServerFrame::Ready(_)]), "only the plan, never a signature");
    assert_still_serving(&w);

    // A bad descriptor closes the connection without an answer.
    let mut s = UnixStream::connect(w.socket.as_ref().unwrap()).unwrap();
    s.write_all(b"qvault.Gpg ../../etc\0").unwrap();
    let _ = s.write_all(&list_request()); // the daemon may already have closed
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(out.is_empty());
    assert!(w.daemon_alive());
    assert_still_serving(&w);
}

#[test]
fn exec_mode_rejects_garbage_on_stdin() {
    let w = World::new();
    let o = run_with_input(&mut w.rpc(Some("qvault.Gpg"), &[]), &[0, 0, 0, 3, 0xff, 0xff, 0xff]);
    assert_eq!(error_code(&o.stdout), Some(ErrorCode::BadRequest));
    // A caller name qrexec would never give: the vault does not serve, and
    // says so in the only place the caller sees.
    let mut c = w.rpc(Some("qvault.Gpg"), &[]);
    c.env("QREXEC_REMOTE_DOMAIN", "not a qube");
    let o = run_with_input(&mut c, &list_request());
    assert!(!o.status.success());
    assert_eq!(error_code(&o.stdout), Some(ErrorCode::Unavailable));
}
