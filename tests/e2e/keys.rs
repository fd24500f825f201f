//! Real key structures: keys made by GnuPG (certify-only primary, signing
//! subkeys, expired, revoked) imported into the vault, and qvault-gpg compared
//! with real gpg holding the same key: status lines, exit codes, the subkey used.

use std::path::{Path, PathBuf};
use std::process::Command;

use qvault_e2e::*;

/// A throwaway GNUPGHOME.
fn gnupg(w: &World, name: &str) -> PathBuf {
    let g = w.path(name);
    std::fs::create_dir_all(&g).unwrap();
    std::fs::set_permissions(&g, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    g
}

fn gpg(g: &Path, args: &[&str]) -> std::process::Output {
    let mut c = Command::new("gpg");
    c.env("GNUPGHOME", g).args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""]).args(args);
    run(&mut c)
}

fn gpg_sign(g: &Path, who: &str) -> std::process::Output {
    let mut c = Command::new("gpg");
    c.env("GNUPGHOME", g).args(["--batch", "--status-fd=1", "-bsau", who]);
    run_with_input(&mut c, b"data")
}

fn primary_fpr(g: &Path) -> String {
    let o = gpg(g, &["--with-colons", "-k"]);
    stdout(&o).lines().find(|l| l.starts_with("fpr:")).unwrap().split(':').nth(9).unwrap().to_owned()
}

fn subkey_fprs(g: &Path) -> Vec<String> {
    let o = gpg(g, &["--with-colons", "-k"]);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    lines.windows(2).filter(|w| w[0].starts_with("sub:")).map(|w| w[1].split(':').nth(9).unwrap().to_owned()).collect()
}

/// Exports gpg's secret key and imports it into the vault.
fn import_into_vault(w: &World, g: &Path) {
    let o = gpg(g, &["--export-secret-keys"]);
    assert_ok(&o);
    let f = w.path("secret.pgp");
    std::fs::write(&f, &o.stdout).unwrap();
    assert_ok(&run(&mut w.qvault(&["import", f.to_str().unwrap()])));
}

fn status_lines(o: &std::process::Output) -> Vec<String> {
    stdout(o).lines().filter(|l| l.starts_with("[GNUPG:] ")).map(str::to_owned).collect()
}

#[test]
fn expired_key_is_refused_like_gpg() {
    let w = World::empty();
    let g = gnupg(&w, "g");
    assert_ok(&gpg(
        &g,
        &[
            "--faked-system-time",
            "20200101T000000",
            "--quick-gen-key",
            "Old Key <old@example.org>",
            "ed25519",
            "cert",
            "1y",
        ],
    ));
    let fpr = primary_fpr(&g);
    assert_ok(&gpg(&g, &["--faked-system-time", "20200101T000000", "--quick-add-key", &fpr, "ed25519", "sign", "1y"]));
    import_into_vault(&w, &g);
    for who in [fpr.as_str(), "old@example.org"] {
        let theirs = gpg_sign(&g, who);
        let mut c = w.shim(&["--status-fd=1", "-bsau", who]);
        let ours = run_with_input(&mut c, b"data");
        assert_eq!(ours.status.code(), theirs.status.code(), "{who}");
        assert_eq!(status_lines(&ours), status_lines(&theirs), "{who}: status lines differ\nours: {}", stderr(&ours));
        assert!(
            stderr(&ours).starts_with(&format!(
                "gpg: skipped \"{who}\": Unusable secret key\ngpg: signing failed: Unusable secret key"
            )),
            "{}",
            stderr(&ours)
        );
    }
    // The vault extends it; signing works again and the change is logged.
    assert_ok(&run(&mut w.qvault(&["extend-expiry", &fpr, "--expire", "1y"])));
    let o = run_with_input(&mut w.shim(&["-bsa", "-u", &fpr]), b"data");
    assert_ok(&o);
    std::fs::write(w.path("d"), b"data").unwrap();
    std::fs::write(w.path("d.asc"), &o.stdout).unwrap();
    assert_ok(&gpgv(&w, &[&w.path("d.asc"), &w.path("d")]));
    assert_ok(&run(&mut w.shim(&["--verify", w.path("d.asc").to_str().unwrap(), w.path("d").to_str().unwrap()])));
    let export = w.export_log("keys.export");
    let show = stdout(&w.audit(&["show", export.to_str().unwrap()]));
    assert!(show.contains(&format!("key {fpr} (ed25519) imported")), "{show}");
    assert!(show.contains(&format!("key {fpr}: expiry set to")), "{show}");
}

#[test]
fn revoked_key_is_refused_like_gpg() {
    let w = World::empty();
    let g = gnupg(&w, "g");
    assert_ok(&gpg(&g, &["--quick-gen-key", "Rev Key <rev@example.org>", "ed25519", "cert", "1y"]));
    let fpr = primary_fpr(&g);
    assert_ok(&gpg(&g, &["--quick-add-key", &fpr, "ed25519", "sign", "1y"]));
    import_into_vault(&w, &g);
    assert_ok(&run_with_input(&mut w.shim(&["-bsa", "-u", &fpr]), b"before"));
    // Revoke in the vault; give gpg the same revoked certificate.
    assert_ok(&run(&mut w.qvault(&["revoke", &fpr, "--reason", "retired", "--message", "rotated"])));
    let revoked = run(&mut w.shim(&["--export", &fpr]));
    assert_ok(&revoked);
    let f = w.path("revoked.pgp");
    std::fs::write(&f, &revoked.stdout).unwrap();
    assert_ok(&gpg(&g, &["--import", f.to_str().unwrap()]));
    let theirs = gpg_sign(&g, &fpr);
    let ours = run_with_input(&mut w.shim(&["--status-fd=1", "-bsau", &fpr]), b"data");
    assert_eq!(ours.status.code(), theirs.status.code());
    assert_eq!(status_lines(&ours), status_lines(&theirs), "ours: {}", stderr(&ours));
    let export = w.export_log("rev.export");
    let show = stdout(&w.audit(&["show", export.to_str().unwrap()]));
    assert!(show.contains(&format!("key {fpr}: revoked: Retired (rotated)")), "{show}");
}

#[test]
fn signing_subkey_is_chosen_as_gpg_chooses_it() {
    let w = World::empty();
    let g = gnupg(&w, "g");
    assert_ok(&gpg(
        &g,
        &[
            "--faked-system-time",
            "20250101T000000",
            "--quick-gen-key",
            "Two Subkeys <two@example.org>",
            "ed25519",
            "cert",
            "never",
        ],
    ));
    let fpr = primary_fpr(&g);
    assert_ok(&gpg(
        &g,
        &["--faked-system-time", "20250101T000000", "--quick-add-key", &fpr, "ed25519", "sign", "never"],
    ));
    assert_ok(&gpg(
        &g,
        &["--faked-system-time", "20250601T000000", "--quick-add-key", &fpr, "rsa3072", "sign", "never"],
    ));
    let subs = subkey_fprs(&g);
    assert_eq!(subs.len(), 2);
    import_into_vault(&w, &g);
    let created = |o: &std::process::Output| {
        stdout(o)
            .lines()
            .find_map(|l| l.strip_prefix("[GNUPG:] SIG_CREATED "))
            .map(|r| r.split(' ').nth(5).unwrap().to_owned())
    };
    let cases = [
        fpr.clone(),
        "two@example.org".into(),
        subs[0].clone(),
        format!("{}!", subs[0]),
        format!("{}!", subs[1]),
        format!("{}!", &subs[0][24..]),
    ];
    for who in &cases {
        let theirs = gpg_sign(&g, who);
        assert_ok(&theirs);
        let ours = run_with_input(&mut w.shim(&["--status-fd=1", "-bsau", who]), b"data");
        assert_ok(&ours);
        assert_eq!(created(&ours), created(&theirs), "-u {who}");
    }
    // Without `!` the newest signing subkey signs; with it, the one named.
    let ours = run_with_input(&mut w.shim(&["--status-fd=1", "-bsau", &fpr]), b"data");
    assert_eq!(created(&ours).as_deref(), Some(subs[1].as_str()));
    let ours = run_with_input(&mut w.shim(&["--status-fd=1", "-bsau", &format!("{}!", subs[0])]), b"data");
    assert_eq!(created(&ours).as_deref(), Some(subs[0].as_str()));
    std::fs::write(w.path("d"), b"data").unwrap();
    std::fs::write(w.path("d.asc"), &ours.stdout[ours.stdout.iter().position(|&b| b == b'-').unwrap()..]).unwrap();
    assert_ok(&gpgv(&w, &[&w.path("d.asc"), &w.path("d")]));
}

#[test]
fn default_key_and_multiple_keys() {
    let w = World::empty();
    let first = w.keygen("First <first@example.org>", "ed25519");
    let second = w.keygen("Second <second@example.org>", "ed25519");
    let signer = |args: &[&str]| {
        let o = run_with_input(&mut w.shim(&[&["--status-fd=1"], args].concat()), b"x");
        assert_ok(&o);
        stdout(&o)
            .lines()
            .find_map(|l| l.strip_prefix("[GNUPG:] KEY_CONSIDERED "))
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(signer(&["-bsa"]), first, "the first key is the default, as in gpg's keyring order");
    assert_eq!(signer(&["-bsa", "--default-key", &second]), second);
    assert_eq!(signer(&["-bsa", "-u", "second@example.org"]), second);
    assert_eq!(signer(&["-bsa", "-u", &format!("0x{}", &second[24..])]), second);
    assert_eq!(signer(&["-bsa", "-u", "<first@example.org>"]), first);
    let o = run(&mut w.shim(&["-K", "--with-colons"]));
    assert_eq!(stdout(&o).matches("\nsec:").count() + usize::from(stdout(&o).starts_with("sec:")), 2);
}

#[test]
fn imported_public_keys_verify_locally_and_never_reach_the_vault() {
    let w = World::new();
    let g = gnupg(&w, "g");
    assert_ok(&gpg(&g, &["--quick-gen-key", "Other Signer <other@example.org>", "ed25519", "sign", "1y"]));
    let pubkey = gpg(&g, &["--export", "--armor"]);
    std::fs::write(w.path("other.asc"), &pubkey.stdout).unwrap();
    let mut c = w.shim(&["--status-fd=1", "--import", w.path("other.asc").to_str().unwrap()]);
    c.env("QVAULT_SIM_CALL_LOG", w.path("calls.log"));
    let o = run(&mut c);
    assert_ok(&o);
    assert!(stdout(&o).contains("[GNUPG:] IMPORT_OK 1 "), "{}", stdout(&o));
    assert_eq!(std::fs::read_to_string(w.path("calls.log")).unwrap_or_default(), "", "import is local");
    std::fs::write(w.path("d"), b"signed by someone else").unwrap();
    let sig = gpg(&g, &["-b", "-o", w.path("d.sig").to_str().unwrap(), w.path("d").to_str().unwrap()]);
    assert_ok(&sig);
    let v = run(&mut w.shim(&[
        "--status-fd=1",
        "--verify",
        w.path("d.sig").to_str().unwrap(),
        w.path("d").to_str().unwrap(),
    ]));
    assert_ok(&v);
    assert!(
        stdout(&v).contains("[GNUPG:] GOODSIG ") && stdout(&v).contains("[GNUPG:] TRUST_UNDEFINED"),
        "{}",
        stdout(&v)
    );
    assert!(stderr(&v).contains("WARNING: This key is not certified with a trusted signature!"));
    // A secret key given to --import is stored public-only.
    let sec = gpg(&g, &["--export-secret-keys"]);
    std::fs::write(w.path("sec.pgp"), &sec.stdout).unwrap();
    let o = run(&mut w.shim(&["--import", w.path("sec.pgp").to_str().unwrap()]));
    assert_ok(&o);
    assert!(stderr(&o).contains("secret key material ignored"), "{}", stderr(&o));
    let ring = std::fs::read(w.client_home.join("pubring.pgp")).unwrap();
    let dump = run_with_input(Command::new("gpg").env("GNUPGHOME", &g).args(["--list-packets"]), &ring);
    assert!(!stdout(&dump).contains("secret"), "{}", stdout(&dump));
}

#[test]
fn key_held_by_a_gpg_agent_signs_through_the_agent_and_is_logged_as_attached() {
    let mut w = World::empty();
    // The vault's own GNUPGHOME with a real gpg-agent (started on demand).
    let g = gnupg(&w, "vault-gnupg");
    assert_ok(&gpg(&g, &["--quick-gen-key", "Agent Volunteer <agent@example.org>", "ed25519", "cert", "2y"]));
    let fpr = primary_fpr(&g);
    assert_ok(&gpg(&g, &["--quick-add-key", &fpr, "ed25519", "sign", "2y"]));
    let o = run(&mut w.qvault(&["attach", "--gnupghome", g.to_str().unwrap(), &fpr]));
    assert_ok(&o);
    assert!(stdout(&o).contains("attached from gpg-agent"), "{}", stdout(&o));
    // The vault keeps no secret: only the public certificate.
    let keys: Vec<String> = std::fs::read_dir(w.vault_home.join("keys"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(keys.iter().any(|k| k.ends_with(".pub")) && !keys.iter().any(|k| k.ends_with(".tsk")), "{keys:?}");
    // The vault and the gpg-agent (started here, as root) are one user, as in
    // a vault qube: so the vault is the daemon (root), not the real stack's
    // exec service (nobody, who cannot reach root's agent).
    w.serve();
    let l = run(&mut w.shim(&["-K", "--with-colons"]));
    assert!(stdout(&l).contains(&format!("fpr:::::::::{fpr}:")), "{}", stdout(&l));
    let sig = run_with_input(
        &mut w.shim(&["--status-fd=2", "-bsa", "-u", &fpr, "--receipt-out", w.path("r.json").to_str().unwrap()]),
        b"agent data",
    );
    assert_ok(&sig);
    std::fs::write(w.path("d"), b"agent data").unwrap();
    std::fs::write(w.path("d.asc"), &sig.stdout).unwrap();
    assert_ok(&gpgv(&w, &[&w.path("d.asc"), &w.path("d")]));
    assert_ok(&sqv(&w, &w.path("d.asc"), &w.path("d")));
    let key = w.log_key();
    let o = w.audit(&[
        "verify-signature",
        w.path("d").to_str().unwrap(),
        w.path("d.asc").to_str().unwrap(),
        "--receipt",
        w.path("r.json").to_str().unwrap(),
        "--log-key",
        &key,
    ]);
    assert_ok(&o);
    assert!(stdout(&o).contains("key origin:  attached from gpg-agent,"), "{}", stdout(&o));
    let _ = Command::new("gpgconf").env("GNUPGHOME", &g).args(["--kill", "gpg-agent"]).status();
    // With the agent gone and its key unavailable, signing fails cleanly.
    std::fs::remove_dir_all(g.join("private-keys-v1.d")).unwrap();
    let o = run_with_input(&mut w.shim(&["-bsa", "-u", &fpr]), b"x");
    assert_code(&o, 2);
    let _ = Command::new("gpgconf").env("GNUPGHOME", &g).args(["--kill", "gpg-agent"]).status();
}
