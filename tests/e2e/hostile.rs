//! A corpus of malformed and hostile protocol frames sent straight to the
//! daemon: each is answered with a protocol error or a closed connection, never
//! a signature; the daemon keeps serving the next good request, with bounded
//! memory; a flood of stalled connections cannot hold it forever.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use qubes_rpc::{ClientFrame, Op, Request, ServerFrame, SignMode, SignRequest};
use qvault_e2e::*;

fn raw(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).unwrap().parse().unwrap()
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let sign = |mode| {
        ClientFrame::Request(Request::new(Op::Sign(SignRequest {
            key: None,
            mode,
            armor: true,
            digest: None,
            text: false,
            known_log_size: Some(3),
            client_hash: false,
        })))
    };
    let valid: Vec<Vec<u8>> = vec![
        frame(&ClientFrame::Request(Request::new(Op::ListKeys { secret: true, selectors: vec!["alice".into()] }))),
        frame(&ClientFrame::Request(Request::new(Op::ExportPublic { selectors: vec![] }))),
        frame(&sign(SignMode::Detached)),
        frame(&sign(SignMode::Cleartext)),
        frame(&ClientFrame::Request(Request::new(Op::Checkpoint { old_size: Some(1) }))),
    ];
    let mut c: Vec<(String, Vec<u8>)> = Vec::new();
    // Every truncation of every valid request.
    for (i, v) in valid.iter().enumerate() {
        for cut in 1..v.len() {
            c.push((format!("request {i} truncated to {cut}"), v[..cut].to_vec()));
        }
        let mut longer = v.clone();
        let n = u32::from_be_bytes(longer[..4].try_into().unwrap()) + 1;
        longer[..4].copy_from_slice(&n.to_be_bytes());
        c.push((format!("request {i} header one too long"), longer.clone()));
        longer.push(0);
        c.push((format!("request {i} with a trailing byte"), longer));
    }
    for n in [0x0010_0001u32, 0x7fff_ffff, 0xffff_ffff] {
        c.push((format!("oversized length {n:#x}"), n.to_be_bytes().to_vec()));
    }
    c.push(("empty payload".into(), raw(&[])));
    for version in [0u16, 2, 999, 65535] {
        let mut r = Request::new(Op::ListKeys { secret: false, selectors: vec![] });
        r.version = version;
        c.push((format!("version {version}"), frame(&ClientFrame::Request(r))));
    }
    for variant in 3u8..=40 {
        c.push((format!("unknown frame variant {variant}"), raw(&[variant, 1, 0])));
    }
    for op in 5u8..=20 {
        // Request, version 1, then an operation that does not exist (there is no
        // operation that exports secret keys, whatever its number).
        c.push((format!("unknown operation {op}"), raw(&[0, 1, op, 0, 0])));
    }
    c.push(("invalid UTF-8 selector".into(), raw(&[0, 1, 0, 1, 1, 2, 0xff, 0xfe])));
    c.push((
        "control character selector".into(),
        frame(&ClientFrame::Request(Request::new(Op::ListKeys { secret: true, selectors: vec!["a\u{1b}[2J".into()] }))),
    ));
    c.push(("huge selector count".into(), raw(&[0, 1, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f])));
    c.push(("huge string length".into(), raw(&[0, 1, 0, 1, 1, 0xff, 0xff, 0xff, 0x7f, b'a'])));
    c.push(("invalid bool".into(), raw(&[0, 1, 0, 7, 0])));
    c.push((
        "65 selectors".into(),
        frame(&ClientFrame::Request(Request::new(Op::ExportPublic { selectors: vec!["x".into(); 65] }))),
    ));
    c.push(("data first".into(), frame(&ClientFrame::Data(b"data"))));
    c.push(("end first".into(), frame(&ClientFrame::End)));
    let mut two = valid[0].clone();
    two.extend(valid[1].clone());
    c.push(("two requests".into(), two));
    let mut nested = valid[2].clone();
    nested.extend(valid[0].clone());
    c.push(("request inside a signing stream".into(), nested));
    let mut oversized_chunk = valid[2].clone();
    oversized_chunk.extend(0x0020_0000u32.to_be_bytes());
    c.push(("oversized data chunk".into(), oversized_chunk));
    c.push(("garbage".into(), b"GET / HTTP/1.1\r\nHost: vault\r\n\r\n".to_vec()));
    // Seeded random mutations of valid frames.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for i in 0..120 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut v = valid[(x % valid.len() as u64) as usize].clone();
        let pos = 4 + (x >> 8) as usize % (v.len() - 4);
        v[pos] ^= 1 << ((x >> 20) % 8);
        c.push((format!("mutation {i}"), v));
    }
    c
}

#[test]
fn hostile_frames_get_errors_and_the_daemon_keeps_serving() {
    let mut w = World::new();
    w.serve();
    let pid = w.daemon_pid().unwrap();
    let corpus = corpus();
    assert!(corpus.len() >= 200, "{}", corpus.len());
    let good = frame(&ClientFrame::Request(Request::new(Op::ListKeys { secret: true, selectors: vec![] })));
    let rss_before = rss_kib(pid);
    let mut errors = 0;
    let mut closed = 0;
    for (i, (name, bytes)) in corpus.iter().enumerate() {
        let a = raw_call(&w, bytes);
        for f in answers(&a) {
            match f {
                ServerFrame::Error(_) => errors += 1,
                ServerFrame::Signed(_) => panic!("{name}: a hostile frame produced a signature"),
                // Mutations may still be valid requests; their answers are fine.
                _ => {}
            }
        }
        if a.is_empty() {
            closed += 1;
        }
        if i % 25 == 0 {
            assert!(
                matches!(answers(&raw_call(&w, &good)).as_slice(), [ServerFrame::Keys(k)] if k.len() == 1),
                "after {name}"
            );
        }
    }
    assert!(w.daemon_alive());
    assert!(matches!(answers(&raw_call(&w, &good)).as_slice(), [ServerFrame::Keys(_)]));
    let rss_after = rss_kib(pid);
    eprintln!("{} frames: {errors} error answers, {closed} closed; RSS {rss_before} -> {rss_after} KiB", corpus.len());
    assert!(errors > 100 && closed > 50);
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
    let good = frame(&ClientFrame::Request(Request::new(Op::ListKeys { secret: true, selectors: vec![] })));
    let a = raw_call(&w, &good);
    assert!(matches!(answers(&a).as_slice(), [ServerFrame::Keys(_)]), "served after the flood");
    eprintln!("good request served {:?} after the flood began", start.elapsed());
    drop(held);
    assert!(w.daemon_alive());
}
