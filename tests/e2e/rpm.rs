//! rpm's own OpenPGP parser (rpm 4.18, as in Debian 12 and Qubes 4.2's dom0)
//! against what the vault emits: the exported certificate imports with
//! `rpmkeys --import`, and a package signed by `rpmsign --addsign` through
//! qvault-gpg passes `rpmkeys -K`.

use std::path::{Path, PathBuf};
use std::process::Command;

use qvault_e2e::*;

/// A minimal noarch package built with rpmbuild.
fn build_package(w: &World) -> PathBuf {
    let top = w.path("rpmbuild");
    std::fs::create_dir_all(top.join("SPECS")).unwrap();
    let spec = top.join("SPECS/hello.spec");
    std::fs::write(
        &spec,
        "Name: hello\nVersion: 1.0\nRelease: 1\nSummary: test package\nLicense: MIT\nBuildArch: noarch\n\n\
%description\nTest.\n\n%files\n",
    )
    .unwrap();
    let mut c = w.client_cmd("rpmbuild");
    c.arg("--define").arg(format!("_topdir {}", top.display())).args(["--quiet", "-bb"]).arg(&spec);
    assert_ok(&run(&mut c));
    top.join("RPMS/noarch/hello-1.0-1.noarch.rpm")
}

fn rpmkeys(db: &Path) -> Command {
    let mut c = Command::new("rpmkeys");
    c.arg("--dbpath").arg(db);
    c
}

fn import_sign_and_check(algo: &str) {
    let w = World::with_key("Rpm Packager <rpm@example.org>", algo);
    let cert = w.path("key.asc");
    let o = run(&mut w.shim(&["--export", "--armor", &w.fpr]));
    assert_ok(&o);
    std::fs::write(&cert, &o.stdout).unwrap();
    let db = w.path("rpmdb");
    std::fs::create_dir_all(&db).unwrap();

    let pkg = build_package(&w);
    let mut c = w.client_cmd("rpmsign");
    c.arg("--define").arg(format!("_gpg_name {}", w.fpr));
    c.arg("--define").arg(format!("__gpg {}", bin("qvault-gpg").display()));
    c.arg("--addsign").arg(&pkg);
    assert_ok(&run(&mut c));
    // The vault recognised the rpm header it signed (vault-daemon/src/summary.rs).
    let log = w.export_log("vault.log");
    let show = stdout(&w.audit(&["show", log.to_str().unwrap()]));
    assert!(show.contains("what: rpm package: hello-1.0-1.noarch"), "{show}");

    // Without the key, rpm says the signature cannot be checked: the check can fail.
    let before = run(rpmkeys(&db).arg("-K").arg(&pkg));
    assert!(!before.status.success(), "rpmkeys -K passed with no key imported: {}", stdout(&before));

    let imported = run(rpmkeys(&db).arg("--import").arg(&cert));
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
