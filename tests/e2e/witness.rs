//! Witnessing from the client side: `qvault-audit witness` submits a vault's
//! newest checkpoint to real C2SP tlog-witnesses (PyPI's aics-witness, three
//! of them on 127.0.0.1, installed by scripts/tlog-peers), keeps their
//! cosignatures and checks a tlog-policy quorum; aics-tlog verifies the
//! cosigned checkpoint independently. Over https://, one of them sits
//! behind tests/interop/https-front (Python's ssl) with a throwaway CA made
//! by openssl: trusted with --ca-file, refused without it or for a
//! certificate naming another host. A missing aics-witness fails these
//! tests under CI=true and skips them with a printed reason elsewhere.

use std::path::Path;
use std::process::Command;

use qvault_attest::merkle::{leaf_hash, MemTree};
use qvault_attest::note::{Checkpoint, Verifier};
use qvault_e2e::witness::{peers, policy, three_witnesses, witness_cmd, AicsWitness, HttpsFront, TestCa};
use qvault_e2e::*;

fn export(w: &World, path: &Path) {
    let o = run(&mut w.qvault(&["log", "export"]));
    assert_ok(&o);
    std::fs::write(path, &o.stdout).expect("write export");
}

fn sign(w: &World, data: &[u8]) {
    assert_ok(&run_with_input(&mut w.shim(&["-bsa"]), data));
}

#[test]
fn two_of_three_witnesses_cosign_with_one_stopped_and_aics_tlog_agrees() {
    let Some(bin) = peers() else { return };
    let w = World::new();
    let key = w.log_key();
    let v = Verifier::parse(&key).expect("log key");
    let [a, b, mut c] = three_witnesses(&bin, &w, &v);
    let two = policy(&w, "two.policy", &key, &[&a, &b, &c], "group q 2 A B C\nquorum q");
    let all = policy(&w, "all.policy", &key, &[&a, &b, &c], "group q all A B C\nquorum q");
    let state = w.path("state");

    // A signature with its tlog-proof: not witnessed yet.
    let data = w.path("upload.dsc");
    std::fs::write(&data, b"Source: hello\n").expect("data");
    let (sig, proof) = (w.path("upload.dsc.asc"), w.path("upload.dsc.tlog-proof"));
    assert_ok(&run(&mut w.shim(&[
        "-bsa",
        "--proof-out",
        proof.to_str().unwrap(),
        "-o",
        sig.to_str().unwrap(),
        data.to_str().unwrap(),
    ])));
    let verify_sig = |policy: &Path| {
        w.audit(&[
            "verify-signature",
            data.to_str().unwrap(),
            sig.to_str().unwrap(),
            "--proof",
            proof.to_str().unwrap(),
            "--log-key",
            &key,
            "--policy",
            policy.to_str().unwrap(),
        ])
    };
    let o = verify_sig(&two);
    assert_code(&o, 1);
    assert!(
        stdout(&o).contains("the witness quorum of") && stdout(&o).contains("no witness of the policy"),
        "{}",
        stdout(&o)
    );

    sign(&w, b"one");
    let log = w.path("vault.log");
    export(&w, &log);
    c.stop();
    let o = w.audit(&[
        "witness",
        log.to_str().unwrap(),
        "--log-key",
        &key,
        "--policy",
        two.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--proof",
        proof.to_str().unwrap(),
    ]);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(out.contains("quorum met"), "{out}");
    assert!(out.contains("witness A: cosigned") && out.contains("witness B: cosigned"), "{out}");
    assert!(out.contains("witness C: unreachable"), "{out}");

    // aics-tlog checks the two cosignatures over our checkpoint.
    let cosigned = state.join("checkpoint");
    let verify = |quorum: &str| {
        run(Command::new(bin.join("aics-tlog"))
            .args(["verify-checkpoint", "--note"])
            .arg(&cosigned)
            .args(["--log-key", &key, "--witness-key", &a.vkey, "--witness-key", &b.vkey, "--witness-key", &c.vkey])
            .args(["--quorum", quorum]))
    };
    assert_ok(&verify("2"));
    assert!(!verify("3").status.success(), "only two cosigned");

    // The signature's proof now carries the cosigned checkpoint (a larger
    // tree than at signing, new inclusion proofs): the quorum holds offline.
    let o = verify_sig(&two);
    assert_ok(&o);
    assert!(stdout(&o).contains("witnesses:   A, B (quorum met)"), "{}", stdout(&o));
    let o = verify_sig(&all);
    assert_code(&o, 1);
    assert!(stdout(&o).contains("witnesses:   A, B (quorum NOT met)"), "{}", stdout(&o));

    // The log grows: the witnesses get a consistency proof from the size they
    // cosigned; "all" is not met with C stopped (exit 1).
    sign(&w, b"two");
    export(&w, &log);
    let o = witness_cmd(&w, &log, &key, &two, &state, &[]);
    assert_ok(&o);
    assert!(stdout(&o).contains("witness B: cosigned"), "{}", stdout(&o));
    assert_ok(&verify("2"));
    let o = witness_cmd(&w, &log, &key, &all, &state, &[]);
    assert_code(&o, 1);
    assert!(stdout(&o).contains("quorum NOT met"), "{}", stdout(&o));
}

#[test]
fn a_fork_shown_to_a_witness_is_caught_and_the_evidence_kept() {
    let Some(bin) = peers() else { return };
    let w = World::new();
    let key = w.log_key();
    let v = Verifier::parse(&key).expect("log key");
    let a = AicsWitness::start(&bin, w.dir.path(), "w1.example", &v);
    let pol = policy(&w, "one.policy", &key, &[&a], "quorum A");
    sign(&w, b"one");
    let log = w.path("vault.log");
    export(&w, &log);
    assert_ok(&witness_cmd(&w, &log, &key, &pol, &w.path("state"), &[]));

    // The vault's operator, holding the log key, shows another history of the
    // same size: the last entry's time changed, a checkpoint re-signed.
    let text = std::fs::read_to_string(&log).expect("export");
    let mut entries: Vec<String> = text.lines().filter_map(|l| l.strip_prefix("entry ")).map(str::to_owned).collect();
    let last = entries.last_mut().expect("entries");
    let at = last.find("\"time\":").expect("time") + "\"time\":".len() + 3;
    let digit = last.as_bytes()[at];
    last.replace_range(at..at + 1, if digit == b'9' { "8" } else { "9" });
    let mut tree = MemTree::default();
    entries.iter().for_each(|e| tree.push_leaf(leaf_hash(e.as_bytes())));
    let seed: [u8; 32] = std::fs::read(w.vault_home.join("log/key")).expect("log key").try_into().expect("seed");
    let note = Checkpoint { origin: v.name.clone(), size: tree.size(), root: tree.root() }
        .sign(&ed25519_dalek::SigningKey::from_bytes(&seed));
    let mut forked = String::from("qvault-log v1\n");
    for e in &entries {
        forked.push_str(&format!("entry {e}\n"));
    }
    forked.push_str(&format!(
        "checkpoint {}\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &note)
    ));
    let forked_log = w.path("forked.log");
    std::fs::write(&forked_log, forked).expect("forked export");
    // The forked export verifies on its own: only a witness can tell.
    assert_ok(&w.audit(&["verify-log", forked_log.to_str().unwrap(), "--log-key", &key]));

    let state = w.path("state-forked");
    let o = witness_cmd(&w, &forked_log, &key, &pol, &state, &[]);
    assert_code(&o, 2);
    let out = stdout(&o);
    assert!(out.contains("REFUSED 422") && out.contains("FORKED"), "{out}");
    assert!(stderr(&o).contains("a witness refused this log's checkpoint"), "{}", stderr(&o));
    let evidence: Vec<_> = std::fs::read_dir(state.join("evidence")).expect("evidence dir").collect();
    assert_eq!(evidence.len(), 1);
    let kept = std::fs::read_to_string(evidence[0].as_ref().expect("entry").path()).expect("evidence");
    assert!(kept.contains(&note), "the forked checkpoint is kept: {kept}");
}

#[test]
fn an_https_witness_cosigns_with_its_ca_and_a_bad_certificate_is_refused() {
    let Some(bin) = peers() else { return };
    let w = World::new();
    let key = w.log_key();
    let v = Verifier::parse(&key).expect("log key");
    let a = AicsWitness::start(&bin, w.dir.path(), "w1.example", &v);
    let tls = TestCa::new(w.dir.path());
    let good = HttpsFront::start(&a.url, &tls.good);
    let wrong = HttpsFront::start(&a.url, &tls.wrong);
    assert!(good.url.starts_with("https://127.0.0.1:"), "{}", good.url);
    let pol = |file: &str, url: &str| {
        let p = w.path(file);
        std::fs::write(&p, format!("log {key}\nwitness A {} {url}\nquorum A\n", a.vkey)).expect("policy");
        p
    };
    let (good_pol, wrong_pol) = (pol("good.policy", &good.url), pol("wrong.policy", &wrong.url));
    sign(&w, b"one");
    let log = w.path("vault.log");
    export(&w, &log);
    let ca = ["--ca-file", tls.ca.to_str().unwrap()];

    // The test CA is not in the system's store: the certificate is refused.
    let o = witness_cmd(&w, &log, &key, &good_pol, &w.path("s1"), &[]);
    assert_code(&o, 1);
    assert!(
        stdout(&o).contains("witness A: unreachable: TLS") && stdout(&o).contains("UnknownIssuer"),
        "{}",
        stdout(&o)
    );

    // A certificate from the trusted CA for another name: refused.
    let o = witness_cmd(&w, &log, &key, &wrong_pol, &w.path("s2"), &ca);
    assert_code(&o, 1);
    assert!(
        stdout(&o).contains("witness A: unreachable: TLS")
            && stdout(&o).contains("certificate not valid for name \"127.0.0.1\""),
        "{}",
        stdout(&o)
    );

    // With the witness's CA: cosigned over https://, and aics-tlog agrees.
    let o = witness_cmd(&w, &log, &key, &good_pol, &w.path("s3"), &ca);
    assert_ok(&o);
    assert!(stdout(&o).contains("witness A: cosigned") && stdout(&o).contains("quorum met"), "{}", stdout(&o));
    assert_ok(&run(Command::new(bin.join("aics-tlog"))
        .args(["verify-checkpoint", "--note"])
        .arg(w.path("s3").join("checkpoint"))
        .args(["--log-key", &key, "--witness-key", &a.vkey, "--quorum", "1"])));
}

#[test]
fn plain_http_to_another_host_is_refused_before_any_connection() {
    let w = World::new();
    let key = w.log_key();
    sign(&w, b"one");
    let log = w.path("vault.log");
    export(&w, &log);
    // A loopback witness listed first: it must see no connection either.
    let local = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    local.set_nonblocking(true).expect("nonblocking");
    let port = local.local_addr().expect("addr").port();
    let vkey = |name: &str, seed: u8| {
        let k = qvault_attest::witness::CosignerKey {
            name: name.into(),
            key: ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key(),
        };
        let raw = [&[qvault_attest::witness::ALG_COSIGNATURE][..], k.key.as_bytes()].concat();
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw);
        let id: String = k.id().iter().map(|b| format!("{b:02x}")).collect();
        format!("{name}+{id}+{b64}")
    };
    let (va, vb) = (vkey("a.example", 1), vkey("b.example", 2));
    let p = w.path("plain.policy");
    std::fs::write(
        &p,
        format!(
            "log {key}\nwitness A {va} http://127.0.0.1:{port}\nwitness B {vb} http://witness.example:8080\ngroup q 1 A B\nquorum q\n"
        ),
    )
    .expect("policy");
    let o = witness_cmd(&w, &log, &key, &p, &w.path("state"), &[]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("witness B: http://witness.example:8080: plain http:// is refused"), "{}", stderr(&o));
    assert!(matches!(local.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock), "no connection was made");
}
