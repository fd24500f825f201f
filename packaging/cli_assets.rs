//! Man pages and shell completions generated from a clap command line.
//!
//! Shared by `vault-daemon/build.rs` and `attest/build.rs`, which include it with
//! `#[path]`: each writes `$OUT_DIR/man/*.{1,8}` and
//! `$OUT_DIR/completions/{bash,zsh}/*`, and `packaging/stage` collects them from
//! the `out_dir` that cargo reports for the build script. Keep it free of
//! dependencies other than clap, clap_mangen, clap_complete and std.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// `$OUT_DIR`, set by cargo for build scripts.
pub fn out_dir() -> io::Result<PathBuf> {
    std::env::var_os("OUT_DIR").map(PathBuf::from).ok_or_else(|| io::Error::other("OUT_DIR is not set"))
}

/// Raw roff for the top page: `description` replaces the DESCRIPTION section
/// clap would write (from `about`) when it is not empty; `extra` (`.SH`
/// sections) goes after OPTIONS and SUBCOMMANDS, before VERSION.
pub struct Sections<'a> {
    pub description: &'a str,
    pub extra: &'a str,
}

/// Writes one page for `cmd` and one for each (nested) subcommand, all in
/// `section`, then bash and zsh completions.
pub fn generate(cmd: clap::Command, section: &str, top: Sections<'_>, out: &Path) -> io::Result<()> {
    // Both build scripts define their CLI in src/cli.rs and include this file.
    println!("cargo:rerun-if-changed=src/cli.rs");
    println!("cargo:rerun-if-changed=../packaging/cli_assets.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let man = out.join("man");
    fs::create_dir_all(&man)?;
    write_page(&cmd, section, &top, &man)?;
    for sub in all_subcommands(&cmd) {
        write_page(&sub, section, &Sections { description: "", extra: "" }, &man)?;
    }
    let name = cmd.get_name().to_owned();
    for (shell, dir) in [(Shell::Bash, "bash"), (Shell::Zsh, "zsh")] {
        let dir = out.join("completions").join(dir);
        fs::create_dir_all(&dir)?;
        clap_complete::generate_to(shell, &mut cmd, &name, &dir)?;
    }
    Ok(())
}

fn all_subcommands(cmd: &clap::Command) -> Vec<clap::Command> {
    let mut v = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        v.push(sub.clone());
        v.extend(all_subcommands(sub));
    }
    v
}

/// The pages' date: `$SOURCE_DATE_EPOCH` (set by dpkg-buildpackage and rpmbuild,
/// so that rebuilds are identical), else now. An empty date would shift the
/// `.TH` fields that follow it.
fn date() -> String {
    let secs =
        std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.trim().parse::<i64>().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
        });
    // Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn write_page(cmd: &clap::Command, section: &str, top: &Sections<'_>, dir: &Path) -> io::Result<()> {
    // After `build()` a subcommand's display name is `parent-sub`: the page name.
    let title = cmd.get_display_name().unwrap_or_else(|| cmd.get_name()).to_owned();
    let man = clap_mangen::Man::new(cmd.clone())
        .title(title.to_uppercase())
        .section(section)
        .date(date())
        .manual("qvault manual")
        .source(format!("qvault {}", env!("CARGO_PKG_VERSION")));
    let mut buf = Vec::new();
    man.render_title(&mut buf)?;
    man.render_name_section(&mut buf)?;
    man.render_synopsis_section(&mut buf)?;
    if top.description.is_empty() {
        man.render_description_section(&mut buf)?;
    } else {
        push_roff(&mut buf, top.description);
    }
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut buf)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut buf)?;
    }
    push_roff(&mut buf, top.extra);
    if cmd.get_version().is_some() {
        man.render_version_section(&mut buf)?;
    }
    let path = dir.join(format!("{title}.{section}"));
    File::create(path)?.write_all(&buf)
}

fn push_roff(buf: &mut Vec<u8>, roff: &str) {
    buf.extend_from_slice(roff.as_bytes());
    if !roff.is_empty() && !roff.ends_with('\n') {
        buf.push(b'\n');
    }
}
