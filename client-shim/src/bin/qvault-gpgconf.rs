//! `qvault-gpgconf`: the `gpgconf` GPGME runs to find its engine. Installed as
//! `gpgconf` in a directory of its own (/usr/lib/qvault/gpgme), so that
//! `PATH=/usr/lib/qvault/gpgme:$PATH` makes every GPGME program (reprepro,
//! ostree, python3-gpg, ...) drive `qvault-gpg` instead of gpg.
//!
//! It answers the three queries GPGME 1.18 makes (`--list-dirs`,
//! `--list-components`, `--version`; see tests/vectors/gpgme-argv.txt) in
//! gpgconf's format and refuses everything else with exit code 2. It must
//! never run, configure or kill anything: GnuPG's own gpgconf does that.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use qvault_gpg::keyring;

/// Where the packages install qvault-gpg.
const INSTALLED_GPG: &str = "/usr/bin/qvault-gpg";

/// The gpg engine to name: `qvault-gpg` beside this program's real file (a
/// build tree), else the installed one.
fn gpg_path() -> PathBuf {
    let beside = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("qvault-gpg")))
        .filter(|p| p.is_file());
    beside.unwrap_or_else(|| PathBuf::from(INSTALLED_GPG))
}

/// gpgconf's escaping of a field: `%` and `:` as `%25` and `%3a`.
fn escape(p: &Path) -> String {
    let s = p.to_string_lossy();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3a"),
            c if c.is_control() => out.push_str(&format!("%{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// The directories, in gpgconf's order. No agent or dirmngr sockets: there is
/// no gpg-agent on this side; keys are in the vault.
fn dirs() -> Vec<(&'static str, String)> {
    let gpg = gpg_path();
    let bindir = gpg.parent().unwrap_or(Path::new("/usr/bin")).to_path_buf();
    let home = keyring::data_dir();
    vec![
        ("sysconfdir", escape(Path::new("/etc/qvault"))),
        ("bindir", escape(&bindir)),
        ("libexecdir", escape(Path::new("/usr/lib/qvault/gpgme"))),
        ("socketdir", escape(&home)),
        ("homedir", escape(&home)),
    ]
}

fn usage() -> ExitCode {
    eprintln!(
        "gpgconf: this is qvault's gpgconf: it only tells GPGME to use qvault-gpg \
         (--list-components, --list-dirs [NAME...], --version); for GnuPG's own configuration run /usr/bin/gpgconf"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = match std::env::args_os().skip(1).map(|a| a.into_string()).collect() {
        Ok(a) => a,
        Err(_) => return usage(),
    };
    let mut out = std::io::stdout().lock();
    // A reader that stops early is not an error, as with gpgconf.
    let _ = match args.first().map(String::as_str) {
        Some("--list-components") if args.len() == 1 => {
            writeln!(out, "gpg:OpenPGP (qvault):{}", escape(&gpg_path()))
        }
        Some("--list-dirs") => {
            let names = &args[1..];
            let mut text = String::new();
            for (name, value) in dirs() {
                if names.is_empty() {
                    text.push_str(&format!("{name}:{value}\n"));
                } else if names.iter().any(|n| n == name) {
                    // As gpgconf: values only, in gpgconf's order; unknown names print nothing.
                    text.push_str(&format!("{value}\n"));
                }
            }
            out.write_all(text.as_bytes())
        }
        Some("--version") if args.len() == 1 => writeln!(
            out,
            "gpgconf (GnuPG) 2.2.40\nqvault-gpgconf {} (names qvault-gpg as GPGME's OpenPGP engine)",
            env!("CARGO_PKG_VERSION")
        ),
        _ => return usage(),
    };
    ExitCode::SUCCESS
}
