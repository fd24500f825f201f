//! The wire protocol as the vault and the client read it from the other side.
//!
//! Every input is used four ways:
//! - as one frame payload: `frame::decode` as a `ClientFrame` and as a `ServerFrame`;
//! - as a stream (exec-service mode): `FrameReader` until the end or the first
//!   error, each payload decoded both ways, each decoded `Request` validated;
//! - as a socket-service connection: `read_descriptor` (and `parse_descriptor`
//!   on the bytes before the first NUL and on the whole input), then the rest
//!   as a frame stream;
//! - as data to sign: `Canonicalizer` in each mode, fed whole, split in two at a
//!   point taken from the first two bytes, and one byte at a time; the three
//!   outputs must be equal and equal to a whole-input statement of the rule.
//!
//! Decoded frames must also survive `encode_into` then `decode` unchanged. A
//! decoded `HashState` that the vault would accept must resume, take a trailer
//! and finish without panicking, and survive a wire round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qubes_rpc::canon::{Canon, Canonicalizer};
use qubes_rpc::{frame, transport, ClientFrame, FrameReader, ServerFrame};

fn roundtrip_client(f: &ClientFrame<'_>) {
    let mut out = Vec::new();
    if frame::encode_into(f, &mut out).is_ok() {
        let back: ClientFrame<'_> = frame::decode(&out[4..]).expect("re-encoded ClientFrame must decode");
        assert_eq!(&back, f, "ClientFrame changed in an encode/decode round trip");
    }
}

fn roundtrip_server(f: &ServerFrame<'_>) {
    let mut out = Vec::new();
    if frame::encode_into(f, &mut out).is_ok() {
        let back: ServerFrame<'_> = frame::decode(&out[4..]).expect("re-encoded ServerFrame must decode");
        assert_eq!(&back, f, "ServerFrame changed in an encode/decode round trip");
    }
}

fn payload(p: &[u8]) {
    let _ = qubes_rpc::messages::request_version(p);
    if let Ok(f) = frame::decode::<ClientFrame<'_>>(p) {
        if let ClientFrame::Request(r) = &f {
            if let Err(e) = r.validate() {
                let _ = e.to_string();
            }
        }
        if let ClientFrame::HashState(h) = &f {
            if let Ok(m) = qubes_rpc::prehash::Sha256Midstate::from_wire(h) {
                assert_eq!(&m.to_wire(), h, "an accepted hash state must round-trip");
                let mut m = m;
                m.update(&p[..p.len().min(100)]);
                let _ = m.finalize();
            }
        }
        roundtrip_client(&f);
    }
    if let Ok(f) = frame::decode::<ServerFrame<'_>>(p) {
        roundtrip_server(&f);
    }
}

fn stream(bytes: &[u8]) {
    let mut r = FrameReader::new(bytes);
    loop {
        match r.next_payload() {
            Ok(Some(p)) => payload(p),
            Ok(None) => break,
            Err(e) => {
                let _ = (e.is_disconnect(), e.to_string());
                break;
            }
        }
    }
}

/// Lone LF becomes CR LF (RFC 4880 5.2.1), over the whole input at once.
fn text_reference(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 2);
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' && (i == 0 || data[i - 1] != b'\r') {
            out.extend_from_slice(b"\r\n");
        } else {
            out.push(b);
        }
    }
    out
}

/// Each line without trailing spaces, tabs and CRs, lines joined by CR LF, the
/// final line ending dropped (RFC 4880 7.1, as GnuPG does).
fn cleartext_reference(data: &[u8]) -> Vec<u8> {
    let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    if data.last() == Some(&b'\n') {
        lines.pop();
    }
    let stripped: Vec<&[u8]> = lines
        .iter()
        .map(|l| {
            let end = l.iter().rposition(|b| !matches!(b, b' ' | b'\t' | b'\r')).map_or(0, |p| p + 1);
            &l[..end]
        })
        .collect();
    stripped.join(&b"\r\n"[..])
}

fn canon(mode: Canon, chunks: &mut dyn Iterator<Item = &[u8]>) -> Vec<u8> {
    let mut c = Canonicalizer::new(mode);
    let mut out = Vec::new();
    for ch in chunks {
        c.update(ch, &mut |b| out.extend_from_slice(b)).expect("inputs are far below MAX_WS_RUN");
    }
    out
}

fn canonicalize(data: &[u8]) {
    let split = match data {
        [a, b, ..] => usize::from(u16::from_le_bytes([*a, *b])) % (data.len() + 1),
        _ => 0,
    };
    let (head, tail) = data.split_at(split);
    for mode in [Canon::Binary, Canon::Text, Canon::Cleartext] {
        let whole = canon(mode, &mut std::iter::once(data));
        let two = canon(mode, &mut [head, tail].into_iter());
        let bytewise = canon(mode, &mut data.chunks(1));
        assert_eq!(whole, two, "{mode:?}: output depends on where the input was split ({split})");
        assert_eq!(whole, bytewise, "{mode:?}: byte-at-a-time output differs");
        let want = match mode {
            Canon::Binary => data.to_vec(),
            Canon::Text => text_reference(data),
            Canon::Cleartext => cleartext_reference(data),
        };
        assert_eq!(whole, want, "{mode:?}: output differs from the whole-input rule");
    }
}

fuzz_target!(|data: &[u8]| {
    payload(data);
    stream(data);

    if let Some(nul) = data.iter().position(|&b| b == 0) {
        let _ = transport::parse_descriptor(&data[..nul]);
    }
    let _ = transport::parse_descriptor(data);
    let mut rest = data;
    match transport::read_descriptor(&mut rest) {
        Ok(_) => stream(rest),
        Err(e) => {
            let _ = e.to_string();
        }
    }

    canonicalize(data);
});
