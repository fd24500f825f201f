//! A Debian source package for the tests that sign one (debsign, verify-upload).

use std::path::PathBuf;

use crate::*;

/// `hello` 1.0, native, built with dpkg-source and its source .changes made
/// with dpkg-genchanges, in `w.path("pkg")` (returned): nothing signed yet.
pub fn make_source_package(w: &World) -> PathBuf {
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
