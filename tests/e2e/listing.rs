//! Key listings against real gpg's listing of the same key.

use std::process::Command;

use qvault_e2e::*;

fn gpg_list(g: &std::path::Path, args: &[&str]) -> String {
    let mut c = Command::new("gpg");
    c.env("GNUPGHOME", g).args(["--batch", "--with-colons", "--fixed-list-mode"]).args(args);
    let o = run(&mut c);
    assert_ok(&o);
    stdout(&o)
}

/// Records that tools read, in order; `grp` (keygrips) is not offered by
/// qvault-gpg, and `tru` carries the local trust database's timestamps.
fn records(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter(|l| !l.starts_with("grp:"))
        .map(|l| {
            if l.starts_with("tru:") {
                let f: Vec<&str> = l.split(':').collect();
                format!("tru:{}:{}:*:*:{}", f[1], f[2], f[5..].join(":"))
            } else {
                l.to_owned()
            }
        })
        .collect()
}

#[test]
fn list_secret_keys_colons_match_gpg() {
    for (uid, algo) in [(ALICE, "ed25519"), ("Bob RSA <bob@example.org>", "rsa3072")] {
        let w = World::with_key(uid, algo);
        let g = w.gpg_with_secret();
        let ours = run(&mut w.shim(&["--list-secret-keys", "--with-colons"]));
        assert_ok(&ours);
        assert_eq!(records(&stdout(&ours)), records(&gpg_list(&g, &["-K"])), "{algo}");
        let ours = run(&mut w.shim(&["--list-keys", "--with-colons", "--fixed-list-mode"]));
        assert_ok(&ours);
        assert_eq!(records(&stdout(&ours)), records(&gpg_list(&g, &["-k"])), "{algo}");
    }
}

#[test]
fn listing_by_selector_and_missing_key() {
    let w = World::new();
    let o = run(&mut w.shim(&["-K", "--with-colons", "alice@example.org"]));
    assert_ok(&o);
    assert!(stdout(&o).contains(&format!("fpr:::::::::{}:", w.fpr)));
    let o = run(&mut w.shim(&["-K", "--with-colons", "nobody@example.org"]));
    assert_code(&o, 2);
    assert!(stdout(&o).is_empty());
    assert!(stderr(&o).contains("No secret key"), "{}", stderr(&o));
}

#[test]
fn human_listing_has_gpg_layout() {
    let w = World::new();
    let o = run(&mut w.shim(&["-K", "--keyid-format", "long"]));
    assert_ok(&o);
    let out = stdout(&o);
    let keyid = &w.fpr[24..];
    assert!(out.contains(&format!("sec   ed25519/{keyid} ")), "{out}");
    assert!(out.contains(&format!("\n      {}\n", w.fpr)), "{out}");
    assert!(out.contains("[ultimate] Alice Volunteer <alice@example.org>"), "{out}");
    assert!(out.contains("ssb   ed25519/"), "{out}");
}

#[test]
fn export_gives_public_certificate_only() {
    let w = World::new();
    let ring = w.export_keyring();
    let mut c = Command::new("gpg");
    c.args(["--batch", "--list-packets"]).arg(&ring).env("GNUPGHOME", w.path("empty-gnupg"));
    std::fs::create_dir_all(w.path("empty-gnupg")).unwrap();
    let o = run(&mut c);
    assert_ok(&o);
    let dump = stdout(&o);
    assert!(dump.contains(":public key packet:") && dump.contains(":public sub key packet:"), "{dump}");
    assert!(!dump.contains("secret"), "{dump}");
    let a = run(&mut w.shim(&["--export", "--armor", &w.fpr]));
    assert_ok(&a);
    assert!(stdout(&a).starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    let none = run(&mut w.shim(&["--export", "nobody@example.org"]));
    assert_ok(&none);
    assert!(none.stdout.is_empty() && stderr(&none).contains("nothing exported"));
}
