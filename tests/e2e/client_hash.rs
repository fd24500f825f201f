//! Client-side hashing (policy `client_hash = true`): the client hashes the data
//! and sends the SHA-256 state; the vault builds the trailer, signs and logs
//! `"hashed_by":"client"`. Both data paths, through the real binaries.

use qubes_rpc::{ClientFrame, ErrorCode, HashAlgo, HashState, Op, ServerFrame};
use qvault_e2e::*;

const POLICY: &str = r#"version = 1
[[rule]]
caller = "work"
keys = "*"
operations = ["list", "export", "sign-detached", "sign-cleartext", "sign-inline"]
confirm = "allow"
client_hash = true
[[rule]]
caller = "*"
keys = "*"
operations = ["list", "export", "sign-detached", "sign-cleartext", "sign-inline"]
confirm = "allow"
"#;

/// Data that exercises every canonicalization: CR LF and bare LF, trailing
/// spaces and tabs, dash lines, no final newline, and more than one block.
/// Over 64 KiB: qvault-gpg sends smaller data whole with its request, and
/// does not offer to hash it.
fn awkward_data() -> Vec<u8> {
    let mut d = b"From: alice\r\n-----BEGIN not a signature\ntrailing   \t\r\n- dash\n\n".to_vec();
    for i in 0..2500 {
        d.extend_from_slice(format!("line {i} with spaces at the end   \n").as_bytes());
    }
    d.extend_from_slice(b"last line, no newline  ");
    d
}

fn set_policy(w: &World) {
    std::fs::write(w.vault_home.join("policy.toml"), POLICY).unwrap();
}

/// The `hashed_by` field of every signature entry in the exported log, in order.
fn hashed_by(export: &std::path::Path) -> Vec<Option<String>> {
    let text = String::from_utf8(std::fs::read(export).unwrap()).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("entry "))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "signature")
        .map(|v| v.get("hashed_by").and_then(|h| h.as_str()).map(str::to_owned))
        .collect()
}

#[test]
fn client_hashed_signatures_verify_in_every_mode_and_are_logged_as_such() {
    for serve in [true, false] {
        let mut w = World::new();
        set_policy(&w);
        if serve {
            w.serve();
        }
        let data = w.path("data");
        std::fs::write(&data, awkward_data()).unwrap();
        let mut expected = Vec::new();
        // Detached, binary and text, armored and not: gpgv and sqv verify.
        for (args, name, by) in [
            (vec!["-bsa"], "bin.asc", Some("client")),
            (vec!["-bs"], "bin.sig", Some("client")),
            (vec!["--textmode", "-bsa"], "text.asc", Some("client")),
            // Client-side hashing is defined for SHA-256 only: SHA-512 streams.
            (vec!["--digest-algo", "SHA512", "-bsa"], "sha512.asc", None),
        ] {
            let sig = w.path(name);
            let mut full = args.clone();
            full.extend(["-o", sig.to_str().unwrap(), data.to_str().unwrap()]);
            assert_ok(&run(&mut w.shim(&full)));
            assert_ok(&gpgv(&w, &[&sig, &data]));
            assert_ok(&sqv(&w, &sig, &data));
            expected.push(by);
        }
        // Cleartext and inline: gpg verifies the whole message, and the
        // message carries the original text.
        for (args, name) in
            [(vec!["--clearsign"], "clear.asc"), (vec!["-sa"], "inline.asc"), (vec!["--textmode", "-s"], "inline.gpg")]
        {
            let out = w.path(name);
            let mut full = args.clone();
            full.extend(["-o", out.to_str().unwrap(), data.to_str().unwrap()]);
            assert_ok(&run(&mut w.shim(&full)));
            let o = gpgv(&w, &[&out]);
            assert_ok(&o);
            expected.push(Some("client"));
        }
        // Small data goes whole with the request (no round trip for the
        // plan), in every mode: the vault hashes it even where the rule would
        // let the client hash.
        let small = w.path("small");
        std::fs::write(&small, &awkward_data()[..64 << 10]).unwrap();
        for (args, name) in [(vec!["-bsa"], "small.asc"), (vec!["--textmode", "--clearsign"], "small-clear.asc")] {
            let out = w.path(name);
            let mut full = args.clone();
            full.extend(["-o", out.to_str().unwrap(), small.to_str().unwrap()]);
            assert_ok(&run(&mut w.shim(&full)));
            if name == "small.asc" {
                assert_ok(&gpgv(&w, &[&out, &small]));
            } else {
                assert_ok(&gpgv(&w, &[&out]));
            }
            expected.push(None);
        }
        // Another caller, whose rule does not allow it: the vault hashes.
        let mut c = w.shim(&["-bsa", "-o", w.path("other.asc").to_str().unwrap(), data.to_str().unwrap()]);
        w.in_qube(&mut c, "other");
        assert_ok(&run(&mut c));
        assert_ok(&gpgv(&w, &[&w.path("other.asc"), &data]));
        expected.push(None);

        // The receipt path: qvault-audit verifies the client-hashed signature
        // against the file and says who hashed.
        let receipt = w.path("r.json");
        let sig = w.path("receipt.asc");
        let o = run(&mut w.shim(&[
            "-bsa",
            "--receipt-out",
            receipt.to_str().unwrap(),
            "-o",
            sig.to_str().unwrap(),
            data.to_str().unwrap(),
        ]));
        assert_ok(&o);
        expected.push(Some("client"));
        let key = w.log_key();
        let o = w.audit(&[
            "verify-signature",
            data.to_str().unwrap(),
            sig.to_str().unwrap(),
            "--receipt",
            receipt.to_str().unwrap(),
            "--log-key",
            &key,
        ]);
        assert_ok(&o);
        assert!(stdout(&o).contains("data hashed: by the calling qube"), "{}", stdout(&o));
        // A file other than the one hashed is refused.
        std::fs::write(w.path("changed"), b"something else").unwrap();
        let o = w.audit(&[
            "verify-signature",
            w.path("changed").to_str().unwrap(),
            sig.to_str().unwrap(),
            "--receipt",
            receipt.to_str().unwrap(),
            "--log-key",
            &key,
        ]);
        assert_code(&o, 1);

        w.stop_daemon();
        let export = w.export_log("log.export");
        assert_ok(&w.audit(&["verify-log", export.to_str().unwrap(), "--log-key", &key]));
        let expected: Vec<Option<String>> = expected.into_iter().map(|e| e.map(str::to_owned)).collect();
        assert_eq!(hashed_by(&export), expected, "serve = {serve}");
    }
}

fn sign_request(client_hash: bool) -> Vec<u8> {
    let mut req = detached_sign_request();
    if let Op::Sign(s) = &mut req.op {
        s.client_hash = client_hash;
    }
    frame(&ClientFrame::Request(req))
}

fn state(data: &[u8]) -> HashState {
    let mut m = qubes_rpc::prehash::Sha256Midstate::new();
    m.update(data);
    m.to_wire()
}

/// The error the vault answered with, after its `Ready`.
fn refusal(answer: &[u8]) -> (ErrorCode, String) {
    let frames = answers(answer);
    match frames.last() {
        Some(ServerFrame::Error(e)) => (e.code, e.message.clone()),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn hash_states_the_vault_did_not_ask_for_are_refused() {
    let mut w = World::new();
    set_policy(&w);
    w.serve();
    let good = state(b"hello");

    // The plan says whether to hash: only for a caller whose rule allows it,
    // and only if the client offered.
    let offered = raw_call(&w, &sign_request(true));
    assert!(matches!(answers(&offered).first(), Some(ServerFrame::Ready(p)) if p.client_hash));
    let not_offered = raw_call(&w, &sign_request(false));
    assert!(matches!(answers(&not_offered).first(), Some(ServerFrame::Ready(p)) if !p.client_hash));

    // Not offered, so not planned: a state is refused and nothing is signed.
    let mut b = sign_request(false);
    b.extend(frame(&ClientFrame::HashState(good.clone())));
    let (code, msg) = refusal(&raw_call(&w, &b));
    assert_eq!(code, ErrorCode::BadRequest);
    assert!(msg.contains("did not ask for"), "{msg}");

    // Data first, then a state: refused.
    let mut b = sign_request(true);
    b.extend(frame(&ClientFrame::Data(b"x")));
    b.extend(frame(&ClientFrame::HashState(good.clone())));
    assert_eq!(refusal(&raw_call(&w, &b)).0, ErrorCode::BadRequest);

    // Malformed states: wrong algorithm, short chaining value, a tail of a
    // whole block, a length that does not fit the tail.
    let mut bad = vec![];
    let mut h = good.clone();
    h.algo = HashAlgo::Sha512;
    bad.push(h);
    let mut h = good.clone();
    h.state.truncate(31);
    bad.push(h);
    let mut h = good.clone();
    h.tail = vec![0; 64];
    h.len = 64;
    bad.push(h);
    let mut h = good.clone();
    h.len = 6;
    bad.push(h);
    for h in bad {
        let mut b = sign_request(true);
        b.extend(frame(&ClientFrame::HashState(h.clone())));
        let (code, msg) = refusal(&raw_call(&w, &b));
        assert_eq!(code, ErrorCode::BadRequest, "{h:?}");
        assert!(msg.contains("hash state") || msg.contains("SHA-256"), "{msg}");
    }

    // A caller whose rule has a size limit: the state's length counts.
    // And the good state is signed: the signature verifies over the data.
    let mut b = sign_request(true);
    b.extend(frame(&ClientFrame::HashState(good)));
    let answer = raw_call(&w, &b);
    let Some(ServerFrame::Signed(r)) = answers(&answer).last().cloned() else { panic!("not signed") };
    std::fs::write(w.path("hello"), b"hello").unwrap();
    std::fs::write(w.path("hello.sig"), &r.signature).unwrap();
    assert_ok(&gpgv(&w, &[&w.path("hello.sig"), &w.path("hello")]));
    w.stop_daemon();
    let export = w.export_log("log.export");
    assert_eq!(hashed_by(&export), vec![Some("client".to_owned())], "one signature, client-hashed");
}

#[test]
fn the_size_limit_applies_to_the_hashed_length() {
    let mut w = World::new();
    std::fs::write(
        w.vault_home.join("policy.toml"),
        POLICY.replacen("client_hash = true", "client_hash = true\nmax_data_bytes = 100", 1),
    )
    .unwrap();
    w.serve();
    let o = run_with_input(&mut w.shim(&["-bsa"]), &[b'x'; 101]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("exceeds this qube's limit of 100 bytes"), "{}", stderr(&o));
    assert_ok(&run_with_input(&mut w.shim(&["-bsa"]), &[b'x'; 100]));
}

/// An endless input stops at the caller's size limit on both data paths, with
/// the same error: streamed, the vault counts and refuses; client-hashed, the
/// client stops at the limit the vault's plan gave it. `timeout` is only a
/// safety net (it would answer 124): the assertion is the size-limit error.
#[test]
fn an_endless_input_stops_at_the_size_limit_whoever_hashes() {
    let mut w = World::new();
    std::fs::write(
        w.vault_home.join("policy.toml"),
        r#"version = 1
[[rule]]
caller = "work"
keys = "*"
operations = ["list", "export", "sign-detached", "sign-cleartext", "sign-inline"]
confirm = "allow"
client_hash = true
max_data_bytes = 100000
[[rule]]
caller = "*"
keys = "*"
operations = ["list", "export", "sign-detached", "sign-cleartext", "sign-inline"]
confirm = "allow"
max_data_bytes = 100000
"#,
    )
    .unwrap();
    w.serve();
    let mut answers = Vec::new();
    for (caller, args) in [
        ("work", vec!["-bsa"]),
        ("work", vec!["--clearsign"]),
        ("work", vec!["--textmode", "-s"]),
        ("other", vec!["-bsa"]),
    ] {
        let out = w.path("never.asc");
        let mut c = w.client_cmd("timeout");
        c.arg("120").arg(bin("qvault-gpg")).args(&args).arg("-o").arg(&out).arg("/dev/zero");
        w.in_qube(&mut c, caller);
        let o = run(&mut c);
        assert_code(&o, 2);
        assert!(!out.exists(), "nothing written");
        answers.push(stderr(&o).lines().filter(|l| l.contains("limit")).map(str::to_owned).collect::<Vec<_>>());
    }
    assert_eq!(
        answers[0],
        vec!["gpg: signing failed: the vault refused: the data exceeds this qube's limit of 100000 bytes".to_owned()]
    );
    assert!(answers.iter().all(|a| *a == answers[0]), "the same error on both paths: {answers:?}");
    // The daemon is still serving, and logged nothing.
    assert_ok(&run_with_input(&mut w.shim(&["-bsa"]), b"small"));
}
