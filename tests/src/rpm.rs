//! rpm's side of the tests (tests/e2e/rpm.rs, tests/e2e/verifiers.rs): a
//! package built by rpmbuild, signed by `rpmsign --addsign` through
//! qvault-gpg, and `rpmkeys` with a throwaway database.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::{assert_ok, bin, run, World};

/// A minimal noarch package built with rpmbuild.
pub fn build_package(w: &World) -> PathBuf {
    let top = w.path("rpmbuild");
    std::fs::create_dir_all(top.join("SPECS")).expect("rpmbuild dir");
    let spec = top.join("SPECS/hello.spec");
    std::fs::write(
        &spec,
        "Name: hello\nVersion: 1.0\nRelease: 1\nSummary: test package\nLicense: MIT\nBuildArch: noarch\n\n\
%description\nTest.\n\n%files\n",
    )
    .expect("spec");
    let mut c = w.client_cmd("rpmbuild");
    c.arg("--define").arg(format!("_topdir {}", top.display())).args(["--quiet", "-bb"]).arg(&spec);
    assert_ok(&run(&mut c));
    top.join("RPMS/noarch/hello-1.0-1.noarch.rpm")
}

/// The package of `build_package`, signed by `rpmsign --addsign` with the
/// vault's key through qvault-gpg; or rpmsign's output when it fails (rpmsign
/// parses the signature it is given, and refuses some).
pub fn signed_package(w: &World) -> Result<PathBuf, Output> {
    let pkg = build_package(w);
    let mut c = w.client_cmd("rpmsign");
    c.arg("--define").arg(format!("_gpg_name {}", w.fpr));
    c.arg("--define").arg(format!("__gpg {}", bin("qvault-gpg").display()));
    c.arg("--addsign").arg(&pkg);
    let o = run(&mut c);
    if o.status.success() {
        Ok(pkg)
    } else {
        Err(o)
    }
}

/// `rpmkeys --dbpath DB`.
pub fn rpmkeys(db: &Path) -> Command {
    let mut c = Command::new("rpmkeys");
    c.arg("--dbpath").arg(db);
    c
}

/// A new empty rpm database under the world's directory, named `name`, with
/// the vault's certificate (armored, as `qvault-gpg --export --armor` writes
/// it) imported: the import's output.
pub fn import_cert(w: &World, name: &str) -> (PathBuf, Output) {
    let cert = w.path(&format!("{name}.asc"));
    let o = run(&mut w.shim(&["--export", "--armor", &w.fpr]));
    assert_ok(&o);
    std::fs::write(&cert, &o.stdout).expect("write certificate");
    let db = w.path(name);
    std::fs::create_dir_all(&db).expect("rpm db");
    let imported = run(rpmkeys(&db).arg("--import").arg(&cert));
    (db, imported)
}
