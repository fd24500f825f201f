//! Packaging: the dom0 policy file is valid Qubes 4.2 policy, the man pages
//! render with `man -l`, the shell completions load, and the systemd unit
//! passes `systemd-analyze verify`.
//!
//! By default the pages and completions are the ones the build scripts generated
//! under `target/*/build/*/out/` (run `cargo build --workspace --bins` first) and
//! qvault-gpg.1 is made from its scdoc source. To test installed packages, set
//! `QVAULT_MAN_DIR=/usr/share/man` and
//! `QVAULT_COMPLETIONS_DIR=/usr/share/bash-completion/completions` and
//! `QVAULT_ZSH_COMPLETIONS_DIR=/usr/share/zsh/vendor-completions`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use qvault_e2e::*;

// ---------------------------------------------------------------------------
// (a) dom0 policy: the Qubes 4.2 grammar (qrexec/policy/parser.py)
//
//   SERVICE ARGUMENT SOURCE TARGET ACTION [PARAM=VALUE ...]
//
// or a directive (!include FILE, !include-dir DIR, !include-service SERVICE ARG
// FILE, !compat-4.0); '#' starts a comment line, inline comments do not exist.

const POLICY: &str = "qubes-rpc/qubes-rpc-files/30-qvault.policy";

/// qrexec's RPCNAME_ALLOWED_CHARSET: letters, digits and `+-._`.
fn rpcname_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_')
}

/// A qube name as Qubes accepts it: a letter, then letters, digits, `_.-`; at most 31.
fn qube_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && s.len() <= 31
}

#[derive(Clone, Copy, PartialEq)]
enum Column {
    Source,
    Target,
    /// `target=` and `default_target=`.
    Redirect,
}

/// Which `@tokens` each column takes (the table in the multifile policy spec).
fn check_token(tok: &str, col: Column) -> Result<(), String> {
    let bad = || Err(format!("{tok:?} is not valid as a {}", col_name(col)));
    if !tok.starts_with('@') {
        // "dom0" is an alias of @adminvm.
        if tok == "dom0" {
            return check_token("@adminvm", col);
        }
        return if qube_name(tok) { Ok(()) } else { Err(format!("{tok:?} is not a qube name")) };
    }
    let suffix_ok = |v: &str| !v.is_empty() && !v.starts_with('@') && v.chars().all(rpcname_char);
    let ok = match tok {
        "@adminvm" => col != Column::Source,
        "@anyvm" => col != Column::Redirect,
        "@default" => col == Column::Target,
        "@dispvm" => col != Column::Source,
        _ => {
            if let Some(v) = tok.strip_prefix("@dispvm:@tag:") {
                col != Column::Redirect && suffix_ok(v)
            } else if let Some(v) = tok.strip_prefix("@dispvm:") {
                qube_name(v)
            } else if let Some(v) = tok.strip_prefix("@tag:") {
                col != Column::Redirect && suffix_ok(v)
            } else if let Some(v) = tok.strip_prefix("@type:") {
                col != Column::Redirect && matches!(v, "AppVM" | "TemplateVM" | "StandaloneVM" | "DispVM" | "AdminVM")
            } else {
                false
            }
        }
    };
    if ok {
        Ok(())
    } else {
        bad()
    }
}

fn col_name(c: Column) -> &'static str {
    match c {
        Column::Source => "source",
        Column::Target => "target",
        Column::Redirect => "target=/default_target= value",
    }
}

/// One non-comment line.
fn check_line(line: &str) -> Result<(), String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if let Some(directive) = fields[0].strip_prefix('!') {
        let want = match directive {
            "include" | "include-dir" => 2,
            "include-service" => 4,
            "compat-4.0" => 1,
            _ => return Err(format!("unknown directive !{directive}")),
        };
        return if fields.len() == want { Ok(()) } else { Err("wrong number of directive parameters".into()) };
    }
    let [service, argument, source, target, action, params @ ..] = fields.as_slice() else {
        return Err("wrong number of fields (need SERVICE ARGUMENT SOURCE TARGET ACTION)".into());
    };
    let service_ok = !service.is_empty() && service.chars().all(|c| rpcname_char(c) && c != '+');
    if *service != "*" && !service_ok {
        return Err(format!("service {service:?} has characters qrexec does not allow"));
    }
    if *argument != "*" {
        if !argument.starts_with('+') || !argument.chars().all(rpcname_char) {
            return Err(format!("argument {argument:?} must be * or +ARG"));
        }
        if *service == "*" {
            return Err("only * argument allowed for * service".into());
        }
    }
    check_token(source, Column::Source)?;
    check_token(target, Column::Target)?;
    let allowed: &[&str] = match *action {
        "allow" => &["target", "user", "notify", "autostart"],
        "ask" => &["target", "default_target", "user", "notify", "autostart"],
        "deny" => &["notify"],
        other => return Err(format!("invalid action {other:?}")),
    };
    let mut seen = BTreeMap::new();
    for p in params {
        let (k, v) = p.split_once('=').ok_or_else(|| format!("invalid action parameter syntax: {p:?}"))?;
        if !allowed.contains(&k) {
            return Err(format!("invalid parameter {k:?} for action {action}"));
        }
        if seen.insert(k, v).is_some() {
            return Err(format!("parameter given twice: {k:?}"));
        }
        match k {
            "notify" | "autostart" if !matches!(v, "yes" | "no") => {
                return Err(format!("{k:?} is {v:?}, but can be only 'yes' or 'no'"))
            }
            "target" | "default_target" => check_token(v, Column::Redirect)?,
            "user" if v.is_empty() => return Err("empty user=".into()),
            _ => {}
        }
    }
    if *target == "@default" && *action == "allow" && !seen.contains_key("target") {
        return Err("allow action for @default rule must specify target= option".into());
    }
    Ok(())
}

/// Checks every line; returns the rules (non-comment, non-directive lines).
fn check_policy(text: &str) -> Result<Vec<String>, String> {
    let mut rules = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        check_line(line).map_err(|e| format!("line {}: {e}: {raw:?}", n + 1))?;
        if !line.starts_with('!') {
            rules.push(line.to_owned());
        }
    }
    Ok(rules)
}

#[test]
fn dom0_policy_is_valid_qubes_42_policy() {
    let path = workspace_dir().join(POLICY);
    let name = path.file_name().unwrap().to_str().unwrap();
    // Policy file names: digits, lowercase letters, `_.-`, ending in .policy.
    assert!(name.ends_with(".policy") && !name.starts_with('.'), "{name}");
    assert!(name.chars().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase() || "_.-".contains(c)), "{name}");
    let text = std::fs::read_to_string(&path).unwrap();
    let rules = check_policy(&text).unwrap_or_else(|e| panic!("{POLICY}: {e}"));
    // The shipped default: both services, ask.
    for svc in ["qvault.Gpg", "qvault.LogRead"] {
        let r: Vec<&String> = rules.iter().filter(|r| r.split_whitespace().next() == Some(svc)).collect();
        assert!(!r.is_empty(), "no active rule for {svc}");
        assert!(r.iter().all(|r| r.split_whitespace().nth(4) == Some("ask")), "{svc} rules must ask: {r:?}");
    }
    // The commented examples are valid rules too, once uncommented, and one
    // of them shows default_target=.
    let examples: Vec<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# ")).filter(|l| l.starts_with("qvault.")).collect();
    assert!(examples.len() >= 3, "expected commented example rules");
    for e in &examples {
        check_line(e).unwrap_or_else(|err| panic!("example {e:?}: {err}"));
    }
    assert!(examples.iter().any(|e| e.contains("default_target=")), "no default_target= example");
}

#[test]
fn policy_checker_rejects_what_qrexec_rejects() {
    for bad in [
        "qvault.Gpg * @anyvm",
        "qvault.Gpg foo @anyvm vault ask",
        "* +arg @anyvm vault ask",
        "qvault.Gpg * @default vault ask",
        "qvault.Gpg * @adminvm vault ask",
        "qvault.Gpg * @anyvm @default allow",
        "qvault.Gpg * @anyvm vault maybe",
        "qvault.Gpg * @anyvm vault ask default_target=@tag:x",
        "qvault.Gpg * @anyvm vault ask default_target=@anyvm",
        "qvault.Gpg * @anyvm vault deny target=vault",
        "qvault.Gpg * @anyvm vault allow notify=maybe",
        "qvault.Gpg * @anyvm vault allow target=vault target=work",
        "qvault.Gpg * @anyvm vault ask,user=root",
        "qvault.Gpg * $anyvm vault ask",
        "qvault.Gpg * @anyvm @tag: ask",
        "qvault.Gpg * @anyvm @type:Bogus ask",
        "qvault/Gpg * @anyvm vault ask",
        "!include-everything /etc/passwd",
    ] {
        assert!(check_line(bad).is_err(), "accepted {bad:?}");
    }
    for good in [
        "qvault.Gpg * @anyvm @default ask default_target=vault",
        "qvault.Gpg * @anyvm @default allow target=vault",
        "qvault.Gpg +x work vault allow user=user notify=yes autostart=no",
        "qvault.Gpg * @tag:work @dispvm:@tag:v deny notify=no",
        "qvault.LogRead * @type:AppVM @adminvm ask target=dom0",
        "* * @anyvm @anyvm deny",
        "!include-dir /etc/qubes/policy.d/include",
    ] {
        check_line(good).unwrap_or_else(|e| panic!("rejected {good:?}: {e}"));
    }
}

// ---------------------------------------------------------------------------
// Finding the generated files.

/// The files under `target/*/build/*/out/<sub>/`, newest per file name (older
/// build-script outputs may linger).
fn generated(sub: &str) -> BTreeMap<String, PathBuf> {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_dir().join("target"));
    let mut newest: BTreeMap<String, (SystemTime, PathBuf)> = BTreeMap::new();
    for profile in std::fs::read_dir(&target).into_iter().flatten().flatten() {
        for build in std::fs::read_dir(profile.path().join("build")).into_iter().flatten().flatten() {
            for f in std::fs::read_dir(build.path().join("out").join(sub)).into_iter().flatten().flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                let mtime = f.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
                if newest.get(&name).is_none_or(|(t, _)| mtime > *t) {
                    newest.insert(name, (mtime, f.path()));
                }
            }
        }
    }
    newest.into_iter().map(|(k, (_, p))| (k, p)).collect()
}

fn scdoc_page(dir: &Path) -> PathBuf {
    let src = std::fs::read(workspace_dir().join("packaging/man/qvault-gpg.1.scd")).unwrap();
    let out = run_with_input(&mut Command::new("scdoc"), &src);
    assert_ok(&out);
    let p = dir.join("qvault-gpg.1");
    std::fs::write(&p, &out.stdout).unwrap();
    p
}

/// (page name, file): qvault.8 and its subcommand pages, qvault-audit.1 and
/// its subcommand pages, qvault-gpg.1.
fn man_pages(tmp: &Path) -> Vec<(String, PathBuf)> {
    let mut pages = Vec::new();
    if let Some(dir) = std::env::var_os("QVAULT_MAN_DIR") {
        for sect in ["man1", "man8"] {
            for f in std::fs::read_dir(Path::new(&dir).join(sect)).into_iter().flatten().flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if name.starts_with("qvault") {
                    pages.push((name.trim_end_matches(".gz").to_owned(), f.path()));
                }
            }
        }
    } else {
        pages.extend(generated("man"));
        pages.push(("qvault-gpg.1".into(), scdoc_page(tmp)));
    }
    pages.sort();
    let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
    for want in ["qvault.8", "qvault-serve.8", "qvault-audit.1", "qvault-audit-verify-signature.1", "qvault-gpg.1"] {
        assert!(
            names.contains(&want),
            "no {want} among {names:?}: run `cargo build --workspace --bins` first (the build scripts generate the pages)"
        );
    }
    pages
}

// ---------------------------------------------------------------------------
// (b) man pages

#[test]
fn man_pages_render_without_warnings() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, path) in man_pages(tmp.path()) {
        let out = run(Command::new("man")
            .args(["--warnings", "-l"])
            .arg(&path)
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .env("MANWIDTH", "80")
            .env("LANG", "C.UTF-8"));
        assert_ok(&out);
        let err = stderr(&out);
        assert!(err.trim().is_empty(), "{name}: man -l warned:\n{err}");
        let text = stdout(&out);
        let stem = name.rsplit_once('.').unwrap().0;
        assert!(text.contains("NAME") && text.contains("SYNOPSIS"), "{name}: no NAME or SYNOPSIS:\n{text}");
        assert!(text.contains(stem), "{name}: does not name {stem}:\n{text}");
        // mandb and apropos read the NAME line.
        let whatis = run(Command::new("lexgrog").arg(&path));
        assert_ok(&whatis);
        assert!(stdout(&whatis).contains(&format!("\"{stem} - ")), "{name}: whatis entry: {}", stdout(&whatis));
    }
}

// ---------------------------------------------------------------------------
// (c) shell completions

fn bash_completion(cmd: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("QVAULT_COMPLETIONS_DIR") {
        return Path::new(&dir).join(cmd);
    }
    if cmd == "qvault-gpg" {
        return workspace_dir().join("packaging/completions/qvault-gpg.bash");
    }
    let all = generated("completions/bash");
    all.get(&format!("{cmd}.bash")).cloned().unwrap_or_else(|| {
        panic!("no bash completion for {cmd} in {all:?}: run `cargo build --workspace --bins` first")
    })
}

#[test]
fn bash_completions_load_and_complete() {
    for (cmd, words, expect) in [
        ("qvault", "qvault ", &["init", "keygen", "serve", "log"][..]),
        ("qvault", "qvault serve --", &["--socket", "--home"][..]),
        ("qvault-audit", "qvault-audit ", &["verify-log", "verify-signature", "consistency"][..]),
        ("qvault-gpg", "qvault-gpg --det", &["--detach-sign"][..]),
        ("qvault-gpg", "qvault-gpg --keyid-format ", &["long", "0xlong"][..]),
    ] {
        let file = bash_completion(cmd);
        assert!(file.is_file(), "{} is missing", file.display());
        // Loads and registers the command.
        let out = run(Command::new("bash")
            .arg("-c")
            .arg("source \"$1\" && complete -p \"$2\"")
            .arg("bash")
            .arg(&file)
            .arg(cmd));
        assert_ok(&out);
        let spec = stdout(&out);
        assert!(spec.trim_end().ends_with(&format!(" {cmd}")), "{cmd}: {spec}");
        assert!(stderr(&out).trim().is_empty(), "{cmd}: {}", stderr(&out));
        let words_of_spec: Vec<&str> = spec.split_whitespace().collect();
        let func = words_of_spec
            .iter()
            .position(|w| *w == "-F")
            .and_then(|i| words_of_spec.get(i + 1))
            .unwrap_or_else(|| panic!("{cmd}: no completion function in {spec:?}"));
        // And completes: call the function as bash's completion would.
        let script = r#"source "$1"
read -ra COMP_WORDS <<<"$3"
[[ $3 == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_LINE=$3; COMP_POINT=${#3}
"$2" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}""#;
        let out = run(Command::new("bash").arg("-c").arg(script).arg("bash").arg(&file).arg(func).arg(words));
        assert_ok(&out);
        let got: Vec<String> = stdout(&out).split_whitespace().map(str::to_owned).collect();
        for e in expect {
            assert!(got.iter().any(|g| g == e), "completing {words:?}: no {e} in {got:?}");
        }
    }
}

#[test]
fn zsh_completions_parse() {
    let mut files = Vec::new();
    if let Some(dir) = std::env::var_os("QVAULT_ZSH_COMPLETIONS_DIR") {
        for name in ["_qvault", "_qvault-audit", "_qvault-gpg"] {
            files.push(Path::new(&dir).join(name));
        }
    } else {
        files.push(workspace_dir().join("packaging/completions/_qvault-gpg"));
        let gen = generated("completions/zsh");
        for name in ["_qvault", "_qvault-audit"] {
            files.push(
                gen.get(name)
                    .cloned()
                    .unwrap_or_else(|| panic!("no {name}: run `cargo build --workspace --bins` first")),
            );
        }
    }
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.starts_with("#compdef "), "{}: not a zsh completion function", f.display());
        let out = run(Command::new("zsh").arg("-n").arg(&f));
        assert_ok(&out);
    }
}

// ---------------------------------------------------------------------------
// The systemd unit.

#[test]
fn systemd_unit_verifies() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("systemd-analyze is not installed: skipped");
        return;
    }
    let unit = std::fs::read_to_string(workspace_dir().join("packaging/systemd/qvault.service")).unwrap();
    for want in [
        "ExecStart=/usr/bin/qvault serve --home /var/lib/qvault --socket /run/qvault/qvault.sock --ask-socket /run/qvault/ask.sock --ask-user ${QVAULT_ASK_USER}",
        "Environment=QVAULT_ASK_USER=user",
        "StateDirectory=qvault",
        "RuntimeDirectory=qvault",
        "Restart=on-failure",
        "PrivateNetwork=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "MemoryDenyWriteExecute=yes",
    ] {
        assert!(unit.lines().any(|l| l == want), "the unit lacks {want:?}");
    }
    // The /etc/qubes-rpc endpoints are links to the unit's socket.
    for svc in ["qvault.Gpg", "qvault.LogRead"] {
        let link = std::fs::read_link(workspace_dir().join("qubes-rpc/qubes-rpc-files").join(svc)).unwrap();
        assert_eq!(link, Path::new("/run/qvault/qvault.sock"), "{svc}");
    }
    // Verify a copy that runs the binary under test.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("qvault.service");
    std::fs::write(&copy, unit.replace("/usr/bin/qvault", bin("qvault").to_str().unwrap())).unwrap();
    let out = run(Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&copy));
    let err = stderr(&out);
    let ours: Vec<&str> = err.lines().filter(|l| l.contains("qvault")).collect();
    assert!(out.status.success() && ours.is_empty(), "systemd-analyze verify:\n{err}");
}

/// The session starts the desktop helper (the vault's questions) from this
/// XDG autostart entry: a valid entry, whose command the binary accepts, and
/// which does nothing outside the vault qube.
#[test]
fn autostart_entry_starts_the_desktop_helper() {
    let path = workspace_dir().join("packaging/desktop/qvault-desktop.desktop");
    let entry = std::fs::read_to_string(&path).unwrap();
    let exec = entry.lines().find_map(|l| l.strip_prefix("Exec=")).expect("an Exec line");
    assert_eq!(exec, "qvault desktop --if-exists /run/qubes-service/qvault");
    match Command::new("desktop-file-validate").arg(&path).output() {
        Ok(o) => {
            assert!(o.status.success() && o.stdout.is_empty(), "desktop-file-validate: {}{}", stdout(&o), stderr(&o))
        }
        Err(_) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "desktop-file-validate is missing (scripts/deps)");
            eprintln!("desktop-file-validate is not installed: not validated");
        }
    }
    let args: Vec<&str> = exec.split(' ').skip(1).collect();
    // A helper that did not exit would retry forever: `timeout` makes that a failure.
    let mut c = Command::new("timeout");
    c.arg("60").arg(bin("qvault")).args(&args[..args.len() - 1]).arg("/nonexistent/qubes-service/qvault");
    let o = run(&mut c);
    assert_ok(&o);
    assert!(o.stdout.is_empty() && o.stderr.is_empty(), "not quiet outside the vault: {}{}", stdout(&o), stderr(&o));
}
