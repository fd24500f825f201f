//! debsign and dscverify from devscripts on a real source package.

use qvault_e2e::*;

fn make_source_package(w: &World) -> std::path::PathBuf {
    let top = w.path("pkg");
    let src = top.join("hello-1.0");
    std::fs::create_dir_all(src.join("debian/source")).unwrap();
    std::fs::write(
        src.join("debian/control"),
        "Source: hello\nSection: misc\nPriority: optional\nMaintainer: Alice Volunteer <alice@example.org>\n\
Standards-Version: 4.6.2\nBuild-Depends: debhelper-compat (= 13)\n\nPackage: hello\nArchitecture: all\n\
Description: test package\n Test.\n",
    )
    .unwrap();
    std::fs::write(
        src.join("debian/changelog"),
        "hello (1.0) unstable; urgency=medium\n\n  * Initial release.\n\n -- Alice Volunteer <alice@example.org>  Thu, 26 Nov 2026 12:00:00 +0000\n",
    )
    .unwrap();
    std::fs::write(src.join("debian/rules"), "#!/usr/bin/make -f\n%:\n\tdh $@\n").unwrap();
    std::fs::write(src.join("debian/source/format"), "3.0 (native)\n").unwrap();
    let mut c = w.client_cmd("dpkg-source");
    c.current_dir(&top).args(["-b", "hello-1.0"]);
    assert_ok(&run(&mut c));
    let mut c = w.client_cmd("dpkg-genchanges");
    c.current_dir(&src).args(["-S", "-O../hello_1.0_source.changes"]);
    assert_ok(&run(&mut c));
    top
}

#[test]
fn debsign_signs_dsc_and_changes_accepted_by_dscverify() {
    let w = World::new();
    let top = make_source_package(&w);
    let mut c = w.client_cmd("debsign");
    c.current_dir(&top).args(["--no-conf", "-pqvault-gpg", &format!("-k{}", w.fpr), "hello_1.0_source.changes"]);
    let o = run(&mut c);
    assert_ok(&o);
    for f in ["hello_1.0.dsc", "hello_1.0_source.changes"] {
        let body = std::fs::read_to_string(top.join(f)).unwrap();
        assert!(body.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\n"), "{f} is clearsigned");
        assert_ok(&gpgv(&w, &[&top.join(f)]));
    }
    let ring = w.export_keyring();
    let mut c = w.client_cmd("dscverify");
    c.current_dir(&top).args(["--no-conf", "--keyring"]).arg(&ring).arg("hello_1.0_source.changes");
    let v = run(&mut c);
    assert_ok(&v);
    assert!(stdout(&v).contains("All files validated successfully"), "{}", stdout(&v));
}

#[test]
fn dscverify_rejects_a_dsc_changed_after_signing() {
    let w = World::new();
    let top = make_source_package(&w);
    let mut c = w.client_cmd("debsign");
    c.current_dir(&top).args(["--no-conf", "-pqvault-gpg", &format!("-k{}", w.fpr), "hello_1.0_source.changes"]);
    assert_ok(&run(&mut c));
    let dsc = top.join("hello_1.0.dsc");
    let body = std::fs::read_to_string(&dsc).unwrap().replace("Source: hello", "Source: hellx");
    std::fs::write(&dsc, body).unwrap();
    let ring = w.export_keyring();
    let mut c = w.client_cmd("dscverify");
    c.current_dir(&top).args(["--no-conf", "--keyring"]).arg(&ring).arg("hello_1.0.dsc");
    assert!(!run(&mut c).status.success());
}
