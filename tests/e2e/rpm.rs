//! rpm's own OpenPGP parser (rpm 4.18, as in Debian 12 and Qubes 4.2's dom0)
//! against what the vault emits: the exported certificate imports with
//! `rpmkeys --import`, and a package signed by `rpmsign --addsign` through
//! qvault-gpg passes `rpmkeys -K`. (tests/e2e/verifiers.rs runs the same
//! steps as rpm's row of the verifier matrix.)

use qvault_e2e::rpm::{import_cert, rpmkeys, signed_package};
use qvault_e2e::*;

fn import_sign_and_check(algo: &str) {
    let w = World::with_key("Rpm Packager <rpm@example.org>", algo);
    let pkg = signed_package(&w).unwrap_or_else(|o| panic!("rpmsign --addsign failed: {}{}", stdout(&o), stderr(&o)));
    // The vault recognised the rpm header it signed (vault-daemon/src/summary.rs).
    let log = w.export_log("vault.log");
    let show = stdout(&w.audit(&["show", log.to_str().unwrap()]));
    assert!(show.contains("what: rpm package: hello-1.0-1.noarch"), "{show}");

    // Without the key, rpm says the signature cannot be checked: the check can fail.
    let empty = w.path("emptydb");
    std::fs::create_dir_all(&empty).unwrap();
    let before = run(rpmkeys(&empty).arg("-K").arg(&pkg));
    assert!(!before.status.success(), "rpmkeys -K passed with no key imported: {}", stdout(&before));

    let (db, imported) = import_cert(&w, "rpmdb");
    assert!(imported.status.success(), "rpmkeys --import refused the vault's certificate: {}", stderr(&imported));
    let checked = run(rpmkeys(&db).arg("-Kv").arg(&pkg));
    assert_ok(&checked);
    let out = stdout(&checked);
    let keyid = w.fpr[w.fpr.len() - 8..].to_ascii_lowercase();
    assert!(out.contains("Header V4") && out.contains(": OK"), "{out}");
    assert!(!out.contains("NOT OK") && !out.contains("NOKEY"), "{out}");
    assert!(out.to_ascii_lowercase().contains(&keyid) || out.contains("key ID"), "{out}");
}

#[test]
fn rpm_imports_the_ed25519_certificate_and_verifies_rpmsign() {
    import_sign_and_check("ed25519");
}

#[test]
fn rpm_imports_the_rsa_certificate_and_verifies_rpmsign() {
    import_sign_and_check("rsa3072");
}
