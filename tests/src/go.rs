//! Building the Go programs under tests/interop offline: GOPATH mode over the
//! Go source Debian's golang-*-dev packages install, no module proxy. A
//! missing toolchain or package fails the test; it never skips it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{run, stderr, stdout, workspace_dir};

/// Where Debian's golang-*-dev packages install Go source.
pub const DEBIAN_GOPATH: &str = "/usr/share/gocode";

pub fn go_tool() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("go")).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path.into_iter().chain([PathBuf::from("/usr/lib/go/bin/go")]).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("the Go toolchain is missing (no `go` on PATH nor /usr/lib/go/bin/go): install golang-go (scripts/deps does)")
    })
}

/// Builds tests/interop/`name` into `dir`; `needs` is a Go source file under
/// DEBIAN_GOPATH/src that must exist, and `package` the Debian package that
/// installs it.
pub fn build_go_interop(name: &str, needs: &str, package: &str, dir: &Path) -> PathBuf {
    let go = go_tool();
    let src_file = Path::new(DEBIAN_GOPATH).join("src").join(needs);
    assert!(src_file.is_file(), "{} is missing: install Debian's {package} (scripts/deps does)", src_file.display());
    let src = workspace_dir().join("tests/interop").join(name);
    let out = dir.join(name);
    let o = run(Command::new(&go)
        .current_dir(&src)
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .env("GO111MODULE", "off")
        .env("GOPATH", DEBIAN_GOPATH)
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOENV", "off")
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", dir.join("go-cache")));
    assert!(
        o.status.success() && out.is_file(),
        "building {} with {} failed (exit {:?}):\n{}{}",
        src.display(),
        go.display(),
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    out
}
