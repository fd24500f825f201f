//! debsign and dscverify from devscripts on a real source package.

use qvault_e2e::debian::make_source_package;
use qvault_e2e::*;

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
