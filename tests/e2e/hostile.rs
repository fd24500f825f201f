//! A corpus of malformed and hostile protocol frames sent straight to the
//! vault, at the current protocol version so that each gets past the version
//! check: each case is refused for its own reason, pinned as the exact error
//! code and message (or, for input that just stops, a closed call), through
//! both `serve` (socket) and `rpc` (exec service). One case keeps an old
//! version to pin the version refusal. No case gets a signature; the daemon
//! keeps serving with bounded memory; a flood of stalled connections cannot
//! hold it.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use qubes_rpc::{
    ClientFrame, ErrorCode, HashAlgo, HashState, Op, Request, ServerFrame, SignMode, SignRequest, MAX_FRAME,
    PROTOCOL_VERSION,
};
use qvault_e2e::*;

/// The current version as its one-byte varint: every raw payload below uses it.
const V: u8 = PROTOCOL_VERSION as u8;
const _: () = assert!(PROTOCOL_VERSION < 0x80, "V is a one-byte varint");

fn raw(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).unwrap().parse().unwrap()
}

/// What a case must get.
#[derive(Clone, Debug)]
enum Want {
    /// One `Error` frame with this code and message.
    Refused(ErrorCode, String),
    /// `Ready` (the sign request was good), then one `Error` frame.
    ReadyThenRefused(ErrorCode, String),
    /// No answer: the input stopped inside a frame. An exec call exits 2
    /// with this reason on stderr.
    Closed,
    /// `Ready`, then no further answer (the data stream stopped inside a frame).
    ReadyThenClosed,
}

const CLOSED_MID_FRAME: &str = "connection closed in the middle of a frame";

fn bad(msg: impl Into<String>) -> Want {
    Want::Refused(ErrorCode::BadRequest, msg.into())
}

fn ready_bad(msg: impl Into<String>) -> Want {
    Want::ReadyThenRefused(ErrorCode::BadRequest, msg.into())
}

fn malformed(postcard_msg: &str) -> String {
    format!("malformed frame: {postcard_msg}")
}

fn too_large(n: u64) -> String {
    format!("frame of {n} bytes exceeds the limit of {MAX_FRAME} bytes")
}

const END_OF_BUFFER: &str = "Hit the end of buffer, expected more data";

fn sign_req(client_hash: bool) -> ClientFrame<'static> {
    ClientFrame::Request(Request::new(Op::Sign(SignRequest {
        key: None,
        mode: SignMode::Detached,
        armor: true,
        digest: None,
        text: false,
        known_log_size: Some(3),
        client_hash,
    })))
}

fn list_req(selectors: Vec<String>) -> ClientFrame<'static> {
    ClientFrame::Request(Request::new(Op::ListKeys { secret: true, selectors }))
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn corpus() -> Vec<(String, Vec<u8>, Want)> {
    let list = frame(&list_req(vec!["alice".into()]));
    let export = frame(&ClientFrame::Request(Request::new(Op::ExportPublic { selectors: vec![] })));
    let sign = frame(&sign_req(false));
    let checkpoint = frame(&ClientFrame::Request(Request::new(Op::Checkpoint { old_size: Some(1) })));
    let data = frame(&ClientFrame::Data(b"data"));
    let end = frame(&ClientFrame::End);
    let state = frame(&ClientFrame::HashState(HashState {
        algo: HashAlgo::Sha256,
        state: vec![0; 32],
        tail: b"x".to_vec(),
        len: 1,
    }));
    let mut c: Vec<(String, Vec<u8>, Want)> = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>, want: Want| c.push((name.to_owned(), bytes, want));

    // The version check, pinned once for an old and once for a newer version.
    for version in [1u16, PROTOCOL_VERSION + 1] {
        let mut r = Request::new(Op::ListKeys { secret: false, selectors: vec![] });
        r.version = version;
        add(
            &format!("version {version}"),
            frame(&ClientFrame::Request(r)),
            Want::Refused(
                ErrorCode::UnsupportedVersion,
                format!("unsupported protocol version {version} (this vault speaks {PROTOCOL_VERSION})"),
            ),
        );
    }

    // Lengths.
    for n in [MAX_FRAME as u32 + 1, 0x7fff_ffff, 0xffff_ffff] {
        add(&format!("oversized length {n:#x}"), n.to_be_bytes().to_vec(), bad(too_large(n.into())));
    }
    add("HTTP instead of frames", b"GET / HTTP/1.1\r\nHost: vault\r\n\r\n".to_vec(), bad(too_large(0x4745_5420)));
    add("empty payload", raw(&[]), bad(malformed(END_OF_BUFFER)));
    for (i, v) in [&list, &export, &sign, &checkpoint].into_iter().enumerate() {
        // Every truncation: inside the header, then inside the payload.
        for cut in 1..v.len() {
            add(&format!("request {i} truncated to {cut} bytes"), v[..cut].to_vec(), Want::Closed);
        }
        let mut longer = v.clone();
        let n = u32::from_be_bytes(longer[..4].try_into().unwrap()) + 1;
        longer[..4].copy_from_slice(&n.to_be_bytes());
        add(&format!("request {i} header one too long"), longer.clone(), Want::Closed);
        longer.push(0);
        add(&format!("request {i} with a trailing byte"), longer, bad(malformed("1 trailing bytes after the message")));
    }

    // Payloads that do not decode, each at the current version.
    for variant in 4u8..=40 {
        add(
            &format!("unknown frame variant {variant}"),
            raw(&[variant, V, 0]),
            bad(malformed("Serde Deserialization Error")),
        );
    }
    for op in 5u8..=20 {
        // There is no operation that exports secret keys, whatever its number.
        add(&format!("unknown operation {op}"), raw(&[0, V, op, 0, 0]), bad(malformed("Serde Deserialization Error")));
    }
    add("invalid UTF-8 selector", raw(&[0, V, 0, 1, 1, 2, 0xff, 0xfe]), bad(malformed("Tried to parse invalid utf-8")));
    add("huge selector count", raw(&[0, V, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f]), bad(malformed(END_OF_BUFFER)));
    add("huge string length", raw(&[0, V, 0, 1, 1, 0xff, 0xff, 0xff, 0x7f, b'a']), bad(malformed(END_OF_BUFFER)));
    add("invalid bool", raw(&[0, V, 0, 7, 0]), bad(malformed("Found a bool that wasn't 0 or 1")));
    add("invalid option", raw(&[0, V, 3, 5]), bad(malformed("Found an Option discriminant that wasn't 0 or 1")));
    add("overlong varint", raw(&[0, V, 3, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]), {
        bad(malformed("Found a varint that didn't terminate. Is the usize too big for this platform?"))
    });

    // Requests that decode but are refused by validation.
    add(
        "control character selector",
        frame(&list_req(vec!["a\u{1b}[2J".into()])),
        bad("a key selector contains a control character"),
    );
    add(
        "65 selectors",
        frame(&ClientFrame::Request(Request::new(Op::ExportPublic { selectors: vec!["x".into(); 65] }))),
        bad("too many key selectors (65, at most 64)"),
    );
    add("selector too long", frame(&list_req(vec!["k".repeat(513)])), bad("a key selector is longer than 512 bytes"));
    add(
        "the log over qvault.Gpg",
        frame(&ClientFrame::Request(Request::new(Op::ExportLog))),
        Want::Refused(ErrorCode::Denied, "the log is exported over qvault.LogRead, not qvault.Gpg".into()),
    );

    // Frames in the wrong order.
    add("data first", data.clone(), bad("expected a request frame first"));
    add("end first", end.clone(), bad("expected a request frame first"));
    add("hash state first", state.clone(), bad("expected a request frame first"));
    add("two requests", cat(&[&list, &export]), bad("bytes after a request that takes no data"));
    add("data after a listing request", cat(&[&list, &data, &end]), bad("bytes after a request that takes no data"));
    add(
        "a request inside a signing stream",
        cat(&[&sign, &list]),
        ready_bad("unexpected request frame in the data stream"),
    );
    add(
        "a request after data",
        cat(&[&sign, &data, &checkpoint]),
        ready_bad("unexpected request frame in the data stream"),
    );
    let not_asked =
        "a hash state the vault did not ask for (client-side hashing is off for this caller, or data was sent)";
    add("hash state not asked for", cat(&[&sign, &state]), ready_bad(not_asked));
    add("hash state after data", cat(&[&frame(&sign_req(true)), &data, &state]), ready_bad(not_asked));
    add("data after End", cat(&[&sign, &data, &end, &data]), ready_bad("bytes after the end of the data"));
    add("a request after End", cat(&[&sign, &end, &list]), ready_bad("bytes after the end of the data"));

    // Bad data chunks.
    add("oversized data chunk", cat(&[&sign, &0x0020_0000u32.to_be_bytes()]), ready_bad(too_large(0x0020_0000)));
    add(
        "data chunk shorter than it claims",
        cat(&[&sign, &raw(&[1, 0x10, b'a'])]),
        ready_bad(malformed(END_OF_BUFFER)),
    );
    add(
        "data chunk with a trailing byte",
        cat(&[&sign, &raw(&[1, 1, b'a', b'b'])]),
        ready_bad(malformed("1 trailing bytes after the message")),
    );
    add("data stream without End", cat(&[&sign, &data]), Want::ReadyThenClosed);
    add("data chunk truncated", cat(&[&sign, &data[..data.len() - 1]]), Want::ReadyThenClosed);
    c
}

/// Checks one answer against what the case wants; `exec` adds the exit
/// status and stderr of an exec-service call.
#[track_caller]
fn check(mode: &str, name: &str, want: &Want, answer: &[u8], exec: Option<&std::process::Output>) {
    let got = answers(answer);
    let refused = |f: &ServerFrame<'_>, code: &ErrorCode, msg: &str| matches!(f, ServerFrame::Error(e) if e.code == *code && e.message == msg);
    let ok = match (want, got.as_slice()) {
        (Want::Refused(code, msg), [f]) => refused(f, code, msg),
        (Want::ReadyThenRefused(code, msg), [ServerFrame::Ready(_), f]) => refused(f, code, msg),
        (Want::Closed, []) | (Want::ReadyThenClosed, [ServerFrame::Ready(_)]) => match exec {
            Some(o) => o.status.code() == Some(2) && stderr(o).contains(CLOSED_MID_FRAME),
            None => true,
        },
        _ => false,
    };
    let detail = exec.map(|o| format!("exit {:?}, stderr {:?}", o.status.code(), stderr(o))).unwrap_or_default();
    assert!(ok, "{mode}: {name}: wanted {want:?}, got {got:?} {detail}");
}

#[test]
fn hostile_frames_at_the_current_version_are_refused_for_their_own_reason_over_serve_and_exec() {
    let mut w = World::new();
    let entries = w.log_entries();
    let corpus = corpus();
    assert!(corpus.len() >= 120, "{}", corpus.len());
    for (name, bytes, want) in &corpus {
        let o = exec_call(&w, bytes);
        check("exec", name, want, &o.stdout, Some(&o));
    }
    if w.is_real() {
        // The same bytes from `work` through Qubes' real qrexec to the exec
        // service (`qvault rpc` run by the vault's agent): the same answers.
        for (name, bytes, want) in &corpus {
            check("exec over qrexec", name, want, &real_call(&w, "qvault.Gpg", bytes).stdout, None);
        }
    }
    w.serve();
    // raw_call: through the real stack when it is the transport.
    for (name, bytes, want) in &corpus {
        check("serve", name, want, &raw_call(&w, bytes), None);
    }
    // Nothing was signed: the serve run logged only its start (daemon_started
    // and the vault's declared state).
    assert_eq!(w.log_entries(), entries + 2, "no hostile frame reached the log");
}

#[test]
fn random_mutations_get_no_signature_and_the_daemon_keeps_serving() {
    let mut w = World::new();
    w.serve();
    let pid = w.daemon_pid().unwrap();
    let valid: Vec<Vec<u8>> = vec![
        frame(&list_req(vec!["alice".into()])),
        frame(&ClientFrame::Request(Request::new(Op::ExportPublic { selectors: vec![] }))),
        frame(&sign_req(false)),
        frame(&ClientFrame::Request(Request::new(Op::Checkpoint { old_size: Some(1) }))),
    ];
    let good = frame(&list_req(vec![]));
    let rss_before = rss_kib(pid);
    // Seeded random bit flips of valid requests, past the length header.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for i in 0..200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut v = valid[(x % valid.len() as u64) as usize].clone();
        let pos = 4 + (x >> 8) as usize % (v.len() - 4);
        v[pos] ^= 1 << ((x >> 20) % 8);
        let a = raw_call(&w, &v);
        assert!(!answers(&a).iter().any(|f| matches!(f, ServerFrame::Signed(_))), "mutation {i} produced a signature");
        if i % 25 == 0 {
            assert!(
                matches!(answers(&raw_call(&w, &good)).as_slice(), [ServerFrame::Keys(k)] if k.len() == 1),
                "after mutation {i}"
            );
        }
    }
    assert!(w.daemon_alive());
    let rss_after = rss_kib(pid);
    eprintln!("RSS {rss_before} -> {rss_after} KiB");
    assert!(rss_after < rss_before + 32 * 1024, "memory stays bounded: {rss_before} -> {rss_after} KiB");
}

#[test]
fn a_flood_of_stalled_connections_cannot_hold_the_daemon() {
    let mut w = World::new();
    w.serve_with(&["--max-calls", "8", "--io-timeout", "1"]);
    // 64 connections that never send a byte, and 64 that stall mid-frame.
    let mut held = Vec::new();
    for i in 0..128 {
        let mut s = UnixStream::connect(w.socket.as_ref().unwrap()).unwrap();
        if i % 2 == 1 {
            let _ = s.write_all(b"qvault.Gpg work\0\0\0\0\x10");
        }
        held.push(s);
    }
    let start = Instant::now();
    let good = frame(&list_req(vec![]));
    let a = raw_call(&w, &good);
    assert!(matches!(answers(&a).as_slice(), [ServerFrame::Keys(_)]), "served after the flood");
    eprintln!("good request served {:?} after the flood began", start.elapsed());
    drop(held);
    assert!(w.daemon_alive());
}
