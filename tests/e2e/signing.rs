//! Signatures made through simulated qrexec, checked by real verifiers.

use std::path::Path;

use qvault_e2e::*;

const TEXT: &[u8] = b"Release notes\n- first item\n-----BEGIN fake armor\ntrailing spaces   \ttabs\t\nFrom the start\n\nlast line without newline";

fn sign_file(w: &World, args: &[&str], input: &Path, out: &Path) {
    let mut a: Vec<&str> = args.to_vec();
    let o = out.to_str().unwrap();
    let i = input.to_str().unwrap();
    a.extend(["--yes", "-o", o, i]);
    let r = run(&mut w.shim(&a));
    assert_ok(&r);
}

fn gpg_verify(w: &World, args: &[&Path]) -> std::process::Output {
    let g = w.gnupg_home();
    let mut c = std::process::Command::new("gpg");
    c.env("GNUPGHOME", g).args(["--batch", "--status-fd=1", "--verify"]).args(args);
    run(&mut c)
}

#[test]
fn detached_signatures_verify_with_gpgv_sqv_gpg_and_shim() {
    let w = World::new();
    let data = w.path("data.bin");
    std::fs::write(&data, (0..=255u8).cycle().take(100_000).collect::<Vec<u8>>()).unwrap();
    let text = w.path("data.txt");
    std::fs::write(&text, "line one\nline two\r\nline three\n".repeat(1000)).unwrap();
    for (args, name, data) in [
        (&["-b"][..], "d.sig", &data),
        (&["-ba"][..], "d.asc", &data),
        (&["--detach-sign", "--armor", "--textmode"][..], "t.asc", &text),
    ] {
        let sig = w.path(name);
        sign_file(&w, args, data, &sig);
        assert_ok(&gpgv(&w, &[&sig, data]));
        let s = sqv(&w, &sig, data);
        assert_ok(&s);
        assert!(stdout(&s).contains(&w.fpr), "sqv names the signer: {}", stdout(&s));
        let g = gpg_verify(&w, &[&sig, data]);
        assert_ok(&g);
        assert!(stdout(&g).contains("[GNUPG:] GOODSIG"));
        let v = run(&mut w.shim(&["--status-fd=1", "--verify", sig.to_str().unwrap(), data.to_str().unwrap()]));
        assert_ok(&v);
        assert!(stdout(&v).contains(&"VALIDSIG ".to_string()) && stdout(&v).contains(&w.fpr), "{}", stdout(&v));
    }
    let armored = std::fs::read_to_string(w.path("d.asc")).unwrap();
    assert!(armored.starts_with("-----BEGIN PGP SIGNATURE-----\n"), "{armored}");
}

#[test]
fn cleartext_signatures_of_tricky_text_verify_everywhere() {
    let w = World::new();
    for (i, text) in [TEXT, b"crlf line\r\nnext\r\n", b"", b"-\n--\n"].iter().enumerate() {
        let data = w.path(&format!("t{i}.txt"));
        std::fs::write(&data, text).unwrap();
        let out = w.path(&format!("t{i}.asc"));
        sign_file(&w, &["--clearsign"], &data, &out);
        let body = std::fs::read_to_string(&out).unwrap();
        assert!(body.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n"), "{body}");
        assert_ok(&gpgv(&w, &[&out]));
        assert_ok(&gpg_verify(&w, &[&out]));
        assert_ok(&run(&mut w.shim(&["--verify", out.to_str().unwrap()])));
    }
    let body = std::fs::read_to_string(w.path("t0.asc")).unwrap();
    assert!(body.contains("\n- - first item\n- -----BEGIN fake armor\n"), "dash-escaped: {body}");
    // As gpg (--escape-from-lines, its default): mail systems rewrite "From ".
    assert!(body.contains("\n- From the start\n"), "From-escaped: {body}");
}

#[test]
fn inline_signatures_armored_and_binary_verify() {
    let w = World::new();
    let data = w.path("m.txt");
    std::fs::write(&data, TEXT).unwrap();
    for (args, name) in [(&["-s"][..], "m.gpg"), (&["-sa"][..], "m.asc"), (&["-s", "-t", "-a"][..], "mt.asc")] {
        let out = w.path(name);
        sign_file(&w, args, &data, &out);
        assert_ok(&gpgv(&w, &[&out]));
        assert_ok(&gpg_verify(&w, &[&out]));
        assert_ok(&run(&mut w.shim(&["--verify", out.to_str().unwrap()])));
        // The signed content comes back out unchanged.
        let mut c = std::process::Command::new("gpg");
        c.env("GNUPGHOME", w.gnupg_home()).args(["--batch", "-q", "--decrypt"]).arg(&out);
        let d = run(&mut c);
        assert_ok(&d);
        assert_eq!(d.stdout, TEXT);
    }
}

#[test]
fn sqv_accepts_detached_text_and_binary_signatures_of_large_data() {
    let w = World::new();
    let data = w.path("big.bin");
    // Larger than several protocol chunks, streamed with bounded memory.
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    std::fs::write(&data, &big).unwrap();
    let sig = w.path("big.sig");
    sign_file(&w, &["-b"], &data, &sig);
    assert_ok(&sqv(&w, &sig, &data));
    assert_ok(&gpgv(&w, &[&sig, &data]));
}

#[test]
fn stdin_to_stdout_as_git_calls_it_reports_sig_created() {
    let w = World::new();
    let o = run_with_input(&mut w.shim(&["--status-fd=2", "-bsau", &w.fpr]), b"tree 123\n\nmsg\n");
    assert_ok(&o);
    let err = stderr(&o);
    assert!(err.contains(&format!("[GNUPG:] KEY_CONSIDERED {} 0\n", w.fpr)), "{err}");
    assert!(err.contains("[GNUPG:] BEGIN_SIGNING H8\n"), "{err}");
    assert!(err.contains("[GNUPG:] SIG_CREATED D 22 8 00 "), "{err}");
    assert!(stdout(&o).starts_with("-----BEGIN PGP SIGNATURE-----"));
}

#[test]
fn digest_algo_is_honoured_and_weak_digests_refused() {
    let w = World::new();
    let o = run_with_input(&mut w.shim(&["--status-fd=2", "--digest-algo", "SHA512", "-bsa"]), b"x");
    assert_ok(&o);
    assert!(stderr(&o).contains("SIG_CREATED D 22 10 00 "), "{}", stderr(&o));
    let o = run_with_input(&mut w.shim(&["--digest-algo", "SHA1", "-bsa"]), b"x");
    assert_code(&o, 2);
    assert!(stderr(&o).contains("invalid value \"SHA1\" for --digest-algo"), "{}", stderr(&o));
}

#[test]
fn default_output_names_follow_gpg() {
    let w = World::new();
    let data = w.path("f.txt");
    std::fs::write(&data, b"x\n").unwrap();
    for (args, ext) in
        [(&["-b"][..], "sig"), (&["-ba"][..], "asc"), (&["--clearsign"][..], "asc"), (&["-s"][..], "gpg")]
    {
        let mut a = args.to_vec();
        a.extend(["--yes", data.to_str().unwrap()]);
        assert_ok(&run(&mut w.shim(&a)));
        assert!(w.path(&format!("f.txt.{ext}")).exists(), "{args:?}");
    }
    // Without --yes an existing output is not overwritten.
    let o = run(&mut w.shim(&["-b", data.to_str().unwrap()]));
    assert_code(&o, 2);
    assert!(stderr(&o).contains("exists"), "{}", stderr(&o));
}

#[test]
fn rsa_keys_sign_too() {
    let w = World::with_key("Bob RSA <bob@example.org>", "rsa3072");
    let data = w.path("d");
    std::fs::write(&data, b"rsa data").unwrap();
    let sig = w.path("d.sig");
    sign_file(&w, &["-b"], &data, &sig);
    assert_ok(&gpgv(&w, &[&sig, &data]));
    assert_ok(&sqv(&w, &sig, &data));
}

#[test]
fn socket_daemon_serves_concurrent_clients() {
    let mut w = World::new();
    w.serve();
    let w = std::sync::Arc::new(w);
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let w = w.clone();
            std::thread::spawn(move || {
                let data = format!("message {i}\n").repeat(1000);
                let o = run_with_input(&mut w.shim(&["-bsa"]), data.as_bytes());
                assert_ok(&o);
                (data, o.stdout)
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let (data, sig) = h.join().unwrap();
        let d = w.path(&format!("c{i}"));
        let s = w.path(&format!("c{i}.asc"));
        std::fs::write(&d, data).unwrap();
        std::fs::write(&s, sig).unwrap();
        assert_ok(&gpgv(&w, &[&s, &d]));
    }
}

#[test]
fn tampered_data_is_reported_bad_by_shim_and_gpgv() {
    let w = World::new();
    let data = w.path("d");
    std::fs::write(&data, b"original").unwrap();
    let sig = w.path("d.sig");
    sign_file(&w, &["-b"], &data, &sig);
    std::fs::write(&data, b"0riginal").unwrap();
    let v = run(&mut w.shim(&["--status-fd=1", "--verify", sig.to_str().unwrap(), data.to_str().unwrap()]));
    assert_code(&v, 1);
    assert!(stdout(&v).contains("[GNUPG:] BADSIG "), "{}", stdout(&v));
    assert!(stderr(&v).contains("BAD signature from \"Alice Volunteer <alice@example.org>\""), "{}", stderr(&v));
    assert_code(&gpgv(&w, &[&sig, &data]), 1);
}

#[test]
fn parallel_signers_sharing_one_client_home_all_succeed() {
    // Parallel `git commit -S` or debsign runs share the client's data dir.
    let mut w = World::new();
    w.serve();
    let w = std::sync::Arc::new(w);
    let hs: Vec<_> = (0..8)
        .map(|i| {
            let w = w.clone();
            std::thread::spawn(move || {
                (0..5)
                    .map(|j| run_with_input(&mut w.shim(&["-bsa"]), format!("{i} {j}").as_bytes()))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for h in hs {
        for o in h.join().unwrap() {
            assert_ok(&o);
        }
    }
    // The kept checkpoint is the newest: it covers every signature.
    let cp = std::fs::read_to_string(w.client_home.join("logs/vault/checkpoint")).unwrap();
    let size: u64 = cp.lines().nth(1).unwrap().parse().unwrap();
    assert!(size >= 40, "{cp}");
}

#[test]
fn file_names_and_key_selectors_that_are_not_utf8_work_as_in_gpg() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt as _;
    let w = World::new();
    let dir = w.path("");
    let name = |b: &[u8]| dir.join(OsStr::from_bytes(b));
    let data = name(b"data\xff.txt");
    std::fs::write(&data, TEXT).unwrap();

    // A file name and -o with a 0xff byte: signed, gpgv verifies.
    let sig = name(b"sig\xfe.asc");
    let o = run(w.shim(&["-bsa", "-o"]).arg(&sig).arg(&data));
    assert_ok(&o);
    assert_ok(&gpgv(&w, &[&sig, &data]));
    // The default output name keeps the bytes too, and so does --receipt-out.
    let receipt = name(b"r\xff.json");
    assert_ok(&run(w.shim(&["-bs", "--receipt-out"]).arg(&receipt).arg(&data)));
    let default_sig = name(b"data\xff.txt.sig");
    assert_ok(&gpgv(&w, &[&default_sig, &data]));
    assert!(receipt.exists());
    // An inline message carries the file name's bytes, as gpg's does.
    let inline = name(b"inline\xff.gpg");
    assert_ok(&run(w.shim(&["-s", "-o"]).arg(&inline).arg(&data)));
    assert_ok(&gpgv(&w, &[&inline]));
    // qvault-gpg --verify reads such names as well.
    assert_ok(&run(w.shim(&["--verify"]).arg(&sig).arg(&data)));

    // A -u that is not UTF-8 names no key: refused as gpg refuses it (exit 2,
    // INV_SGNR and FAILURE), no panic, nothing written.
    let out = name(b"never.asc");
    let o =
        run(w.shim(&["--status-fd=1", "-bsa", "-o"]).arg(&out).arg("-u").arg(OsStr::from_bytes(b"\xff")).arg(&data));
    assert_code(&o, 2);
    assert!(
        stdout(&o).contains("[GNUPG:] INV_SGNR 9 ") && stdout(&o).contains("[GNUPG:] FAILURE sign 17"),
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("No secret key") && !stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert!(!out.exists());
}

/// GnuPG 2.2 never compares a signature's creation time with its clock
/// (sig-check.c checks only the key's times): a signature dated in the future
/// is a good signature to gpg and gpgv, exit 0, no warning. A vault whose clock
/// runs two days ahead: qvault-gpg releases its signature as gpg would (exit
/// 0, SIG_CREATED with the vault's time, a note on stderr) and its own
/// --verify agrees with gpg's, line for line; sqv refuses it until then.
#[test]
fn a_vault_clock_ahead_is_reported_as_gpg_reports_a_future_signature() {
    let mut w = World::new();
    w.daemon_env = faketime_env("+2d");
    w.serve();
    let data = w.path("data");
    std::fs::write(&data, TEXT).unwrap();
    let sig = w.path("data.asc");
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let o = run(&mut w.shim(&["--status-fd=1", "-bsa", "-o", sig.to_str().unwrap(), data.to_str().unwrap()]));
    assert_ok(&o);
    let created: i64 = stdout(&o)
        .lines()
        .find_map(|l| l.strip_prefix("[GNUPG:] SIG_CREATED "))
        .and_then(|l| l.split(' ').nth(4))
        .and_then(|t| t.parse().ok())
        .expect("SIG_CREATED");
    assert!(created > before + 86_400, "the vault's clock is ahead: {created} vs {before}");
    assert!(stderr(&o).contains("in the future by the vault (time warp or clock problem)"), "{}", stderr(&o));
    // gpgv takes it, as gpg does; sqv does not.
    assert_ok(&gpgv(&w, &[&sig, &data]));
    assert_code(&sqv(&w, &sig, &data), 1);
    // qvault-gpg --verify says what gpg --verify says.
    let theirs = gpg_verify(&w, &[&sig, &data]);
    let ours = run(&mut w.shim(&["--status-fd=1", "--verify", sig.to_str().unwrap(), data.to_str().unwrap()]));
    assert_eq!(ours.status.code(), theirs.status.code(), "ours: {}\ngpg: {}", stderr(&ours), stderr(&theirs));
    assert_ok(&ours);
    let pick = |o: &std::process::Output| -> Vec<String> {
        stdout(o)
            .lines()
            .filter(|l| l.starts_with("[GNUPG:] GOODSIG") || l.starts_with("[GNUPG:] VALIDSIG"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(pick(&ours), pick(&theirs));
    assert_eq!(pick(&ours).len(), 2, "{}", stdout(&ours));
}
