//! Programs that use GPGME (python3-gpg, reprepro, ostree) signing through the
//! vault, found by GPGME through qvault's `gpgconf` first on PATH, the one
//! setup line the README documents. Each output is checked by gpgv, and by
//! sqv where it is a detached signature (sqv reads no other kind).

use std::path::{Path, PathBuf};
use std::process::Command;

use qvault_e2e::*;

/// The recorded argv GPGME 1.18 gives real gpg (tests/vectors/gpgme-argv.txt).
fn recorded_argvs() -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(workspace_dir().join("tests/vectors/gpgme-argv.txt")).expect("fixture");
    text.lines().filter_map(|l| l.strip_prefix("ARGV ")).map(|l| l.split(' ').map(str::to_owned).collect()).collect()
}

/// Is `program` (and what it needs) installed? Missing is a failure in CI.
fn have(what: &str, ok: bool) -> bool {
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{what} is not installed (scripts/deps installs it)");
        eprintln!("SKIPPED: {what} is not installed (scripts/deps installs it)");
    }
    ok
}

fn installed(program: &str) -> bool {
    have(program, Command::new(program).arg("--version").output().is_ok_and(|o| o.status.success()))
}

/// The directory whose `gpgconf` names qvault-gpg: the installed one when the
/// tests run against installed packages, else a link to the build's.
fn gpgme_dir(w: &World) -> PathBuf {
    let installed = Path::new("/usr/lib/qvault/gpgme");
    if std::env::var_os("QVAULT_BIN_DIR").is_some() && installed.join("gpgconf").exists() {
        return installed.to_owned();
    }
    let d = w.path("gpgme");
    if !d.exists() {
        std::fs::create_dir_all(&d).expect("mkdir");
        std::os::unix::fs::symlink(bin("qvault-gpgconf"), d.join("gpgconf")).expect("symlink");
    }
    d
}

/// A client-qube program with qvault's gpgconf first on PATH.
fn gpgme_cmd(w: &World, program: &str) -> Command {
    let mut c = w.client_cmd(program);
    let mut paths = vec![gpgme_dir(w)];
    paths.extend(std::env::split_paths(&w.path_env()));
    c.env("PATH", std::env::join_paths(paths).expect("PATH"));
    c
}

#[track_caller]
fn gpgv_ok(w: &World, files: &[&Path]) {
    let o = gpgv(w, files);
    assert_ok(&o);
    assert!(stderr(&o).contains("Good signature from \"Alice Volunteer"), "{}", stderr(&o));
}

#[track_caller]
fn sqv_ok(w: &World, sig: &Path, data: &Path) {
    let o = sqv(w, sig, data);
    assert_ok(&o);
    assert!(stdout(&o).contains(&w.fpr), "{}", stdout(&o));
}

#[test]
fn every_recorded_gpgme_argv_is_accepted() {
    let argvs = recorded_argvs();
    assert!(argvs.len() >= 20, "{}", argvs.len());
    for argv in argvs {
        let parsed = qvault_gpg::args::parse(argv.iter().map(Into::into));
        assert!(parsed.is_ok(), "{argv:?}: {}", parsed.err().map(|e| e.to_string()).unwrap_or_default());
    }
}

#[test]
fn gpgconf_answers_gpgme_and_refuses_the_rest() {
    let w = World::new();
    let gpgconf = gpgme_dir(&w).join("gpgconf");
    let mut c = w.client_cmd(gpgconf.to_str().expect("utf8"));
    let o = run(c.arg("--list-components"));
    assert_ok(&o);
    let line = stdout(&o);
    let path = line.trim_end().rsplit(':').next().unwrap_or_default().to_owned();
    assert!(line.starts_with("gpg:OpenPGP") && path.ends_with("/qvault-gpg"), "{line}");
    let o = run(w.client_cmd(gpgconf.to_str().expect("utf8")).args(["--list-dirs", "homedir"]));
    assert_ok(&o);
    assert_eq!(stdout(&o).trim_end(), w.client_home.display().to_string());
    let o = run(w.client_cmd(gpgconf.to_str().expect("utf8")).arg("--version"));
    assert!(stdout(&o).starts_with("gpgconf (GnuPG) 2.2.40\n"), "{}", stdout(&o));
    for refused in [&["--kill", "all"][..], &["--list-options", "gpg"], &["--launch", "gpg-agent"], &[]] {
        let o = run(w.client_cmd(gpgconf.to_str().expect("utf8")).args(refused));
        assert_code(&o, 2);
        assert!(stdout(&o).is_empty(), "{refused:?}: {}", stdout(&o));
        assert!(stderr(&o).contains("this is qvault's gpgconf"), "{refused:?}: {}", stderr(&o));
    }
}

/// `-&N` names descriptor N only with --enable-special-filenames, as in gpg;
/// without it, `-&3` is a file name and descriptor 3 is never read.
#[test]
fn special_filenames_read_descriptors_only_when_enabled() {
    let w = World::new();
    let data = w.path("data");
    std::fs::write(&data, b"data on descriptor 3\n").expect("write");
    let sig = w.path("data.sig");
    let script = "exec qvault-gpg \"$@\" 3<\"$DATA\" 5>\"$LOG\"";
    let mut c = w.client_cmd("sh");
    c.env("DATA", &data).env("LOG", w.path("logger")).args(["-c", script, "sh"]);
    c.args(["--enable-special-filenames", "--logger-fd", "5", "--status-fd", "1", "-bu", &w.fpr, "-o"]);
    c.arg(&sig).args(["--", "-&3"]);
    let o = run(&mut c);
    assert_ok(&o);
    assert!(stdout(&o).contains("[GNUPG:] SIG_CREATED D "), "{}", stdout(&o));
    gpgv_ok(&w, &[&sig, &data]);
    sqv_ok(&w, &sig, &data);

    let mut c = w.client_cmd("sh");
    c.env("DATA", &data).env("LOG", w.path("logger")).args(["-c", script, "sh"]);
    c.args(["--logger-fd", "5", "-bu", &w.fpr, "--", "-&3"]);
    let o = run(&mut c);
    assert_code(&o, 2);
    // Messages went to the logger descriptor, not to stderr.
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    let log = std::fs::read_to_string(w.path("logger")).expect("logger");
    assert!(log.contains("can't open '-&3'"), "{log}");
}

#[test]
fn python3_gpg_lists_signs_and_verifies_through_the_vault() {
    if !have(
        "python3-gpg",
        Command::new("/usr/bin/python3").args(["-c", "import gpg"]).output().is_ok_and(|o| o.status.success()),
    ) {
        return;
    }
    let w = World::new();
    let out = w.path("py");
    std::fs::create_dir_all(&out).expect("mkdir");
    let script = workspace_dir().join("tests/e2e/gpgme/python_gpg.py");
    let before = w.signature_entries();
    let o = run(gpgme_cmd(&w, "/usr/bin/python3").arg(&script).arg(&out).arg(&w.fpr));
    assert_ok(&o);
    let data = out.join("data");
    for sig in ["detached.asc", "detached.sig", "text.asc"] {
        gpgv_ok(&w, &[&out.join(sig), &data]);
        sqv_ok(&w, &out.join(sig), &data);
    }
    for signed in ["normal.asc", "normal.gpg", "clear.asc"] {
        gpgv_ok(&w, &[&out.join(signed)]);
    }
    // Six signatures, each in the vault's log.
    assert_eq!(w.signature_entries(), before + 6);
    // GPGME's export is the vault's certificate.
    let exported = std::fs::read(out.join("key.asc")).expect("key.asc");
    let mut c = Command::new("gpg");
    c.env("GNUPGHOME", w.gnupg_home()).args(["--batch", "--with-colons", "--show-keys"]);
    let o = run_with_input(&mut c, &exported);
    assert_ok(&o);
    assert!(stdout(&o).contains(&format!("fpr:::::::::{}:", w.fpr)), "{}", stdout(&o));
}

#[test]
fn reprepro_export_signs_inrelease_and_release_gpg() {
    if !installed("reprepro") {
        return;
    }
    reprepro_export(&World::new());
}

/// The same over Qubes' real qrexec (tests/qrexec-real): GPGME's descriptors
/// and qvault-gpg's qrexec client side by side.
#[test]
fn reprepro_export_signs_over_real_qrexec() {
    if !installed("reprepro") {
        return;
    }
    let mut w = World::new();
    if !w.serve_real_qrexec("qvault.Gpg  *  work  vault  allow\n") {
        return;
    }
    reprepro_export(&w);
    // It went through dom0's policy daemon, which allowed work -> vault.
    let logs = w.real().map(|r| r.logs()).unwrap_or_default();
    assert!(logs.contains("qvault.Gpg+: work -> vault: allowed to vault"), "{logs}");
}

fn reprepro_export(w: &World) {
    let repo = w.path("repo");
    std::fs::create_dir_all(repo.join("conf")).expect("mkdir");
    std::fs::write(
        repo.join("conf/distributions"),
        format!("Codename: test\nArchitectures: amd64\nComponents: main\nSignWith: {}\n", w.fpr),
    )
    .expect("write");
    let o = run(gpgme_cmd(w, "reprepro").arg("-b").arg(&repo).arg("export"));
    assert_ok(&o);
    let dists = repo.join("dists/test");
    let inrelease = std::fs::read_to_string(dists.join("InRelease")).expect("InRelease");
    assert!(inrelease.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\n"), "{inrelease}");
    gpgv_ok(w, &[&dists.join("InRelease")]);
    gpgv_ok(w, &[&dists.join("Release.gpg"), &dists.join("Release")]);
    sqv_ok(w, &dists.join("Release.gpg"), &dists.join("Release"));
}

/// The detached signatures ostree stored for a commit, from `ostree show
/// --print-detached-metadata-key=ostree.gpgsigs` (a GVariant `aay`).
fn ostree_signatures(text: &str) -> Vec<Vec<u8>> {
    text.split("[byte ")
        .skip(1)
        .map(|sig| {
            let body = sig.split(']').next().unwrap_or_default();
            body.split(", ").filter_map(|b| u8::from_str_radix(b.trim().trim_start_matches("0x"), 16).ok()).collect()
        })
        .collect()
}

#[test]
fn ostree_commit_gpg_sign_verified_by_ostree() {
    if !installed("ostree") {
        return;
    }
    let w = World::new();
    let repo = w.path("os");
    let tree = w.path("tree");
    std::fs::create_dir_all(tree.join("usr")).expect("mkdir");
    std::fs::write(tree.join("usr/hello"), b"hello from an ostree commit\n").expect("write");
    let o = run(Command::new("ostree").arg(format!("--repo={}", repo.display())).args(["init", "--mode=archive"]));
    assert_ok(&o);
    let mut c = gpgme_cmd(&w, "ostree");
    c.arg("commit").arg(format!("--repo={}", repo.display())).args(["--branch=main", "-s", "signed"]);
    c.arg(format!("--gpg-sign={}", w.fpr)).arg(&tree);
    let o = run(&mut c);
    assert_ok(&o);
    let commit = stdout(&o).trim().to_owned();

    // ostree's own verification, with GnuPG as anyone verifying has it.
    let key = w.path("key.asc");
    std::fs::write(&key, run(&mut w.shim(&["--export", "--armor"])).stdout).expect("write");
    let ostree = |args: &[&str]| {
        let mut c = Command::new("ostree");
        c.args(args).arg(format!("--repo={}", repo.display())).env_remove("GNUPGHOME").env("HOME", &w.home);
        run(&mut c)
    };
    let o = ostree(&[
        "remote",
        "add",
        "--set=gpg-verify=true",
        &format!("--gpg-import={}", key.display()),
        "origin",
        "file:///nonexistent",
    ]);
    assert_ok(&o);
    let o = ostree(&["show", "--gpg-verify-remote=origin", "main"]);
    assert_ok(&o);
    assert!(stdout(&o).contains("Good signature from \"Alice Volunteer <alice@example.org>\""), "{}", stdout(&o));

    // The same signature, checked by gpgv and sqv over the commit object.
    let o = ostree(&["show", "--print-detached-metadata-key=ostree.gpgsigs", "main"]);
    assert_ok(&o);
    let sigs = ostree_signatures(&stdout(&o));
    assert_eq!(sigs.len(), 1, "{}", stdout(&o));
    let sig = w.path("commit.sig");
    std::fs::write(&sig, &sigs[0]).expect("write");
    let object = repo.join("objects").join(&commit[..2]).join(format!("{}.commit", &commit[2..]));
    gpgv_ok(&w, &[&sig, &object]);
    sqv_ok(&w, &sig, &object);
}

/// `--homedir` (GPGME passes it when a program sets one, as `ostree
/// --gpg-homedir` does) is qvault-gpg's own directory, as QVAULT_GPG_HOME.
#[test]
fn homedir_is_qvault_gpgs_own_directory() {
    let w = World::new();
    let home = w.path("other-home");
    let o = run(&mut w.shim(&["--homedir", home.to_str().expect("utf8"), "--version"]));
    assert_ok(&o);
    assert!(stdout(&o).contains(&format!("\nHome: {}\n", home.display())), "{}", stdout(&o));
    let o = run_with_input(&mut w.shim(&["--homedir", home.to_str().expect("utf8"), "-bsau", &w.fpr]), b"data\n");
    assert_ok(&o);
    // The vault's certificate cache and log state live there now, not in QVAULT_GPG_HOME.
    assert!(home.join("logs").is_dir(), "{:?}", std::fs::read_dir(&home).map(|d| d.count()));
    assert!(!w.client_home.join("logs").exists());
}

struct Answer {
    code: Option<i32>,
    status: Vec<String>,
    stdout: Vec<u8>,
}

/// Runs one recorded GPGME argv as GPGME would: the status and logger
/// descriptors open for writing, each `-&N` open for reading on one of
/// `inputs`, in order; `$GNUPGHOME` replaced by `home`.
fn run_gpgme_argv(mut c: Command, argv: &[String], home: &Path, inputs: &[&Path], dir: &Path) -> Answer {
    std::fs::create_dir_all(dir).expect("mkdir");
    let (status, logger) = (dir.join("status"), dir.join("logger"));
    let mut redirections = String::new();
    let mut inputs = inputs.iter();
    let mut args = Vec::new();
    let mut prev = "";
    for a in argv {
        match prev {
            "--status-fd" => redirections.push_str(&format!(" {a}>'{}'", status.display())),
            "--logger-fd" => redirections.push_str(&format!(" {a}>'{}'", logger.display())),
            _ => {}
        }
        if let Some(fd) = a.strip_prefix("-&") {
            let input = inputs.next().expect("an input for each -&N");
            redirections.push_str(&format!(" {fd}<'{}'", input.display()));
        }
        args.push(if a == "$GNUPGHOME" { home.display().to_string() } else { a.clone() });
        prev = a;
    }
    let program = c.get_program().to_owned();
    c.env("PROGRAM", program);
    let mut sh = Command::new("sh");
    sh.envs(c.get_envs().filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))));
    for (k, v) in c.get_envs() {
        if v.is_none() {
            sh.env_remove(k);
        }
    }
    sh.args(["-c", &format!("exec \"$PROGRAM\" \"$@\"{redirections}"), "sh"]).args(&args);
    let o = run(&mut sh);
    // Notation data may be binary.
    let status = String::from_utf8_lossy(&std::fs::read(&status).unwrap_or_default()).into_owned();
    Answer { code: o.status.code(), status: normalize(&status), stdout: o.stdout }
}

/// Status lines as GPGME reads them, without what differs by time or is
/// advisory: PROGRESS (qvault-gpg writes none), KEY_CONSIDERED (GPGME reads
/// it only with an INV_SGNR), SIG_ID (a replay-detection hash; GPGME does
/// not read it), and times.
fn normalize(status: &str) -> Vec<String> {
    status
        .lines()
        .filter_map(|l| {
            let mut f: Vec<&str> = l.split(' ').collect();
            match f.get(1).copied()? {
                "PROGRESS" | "KEY_CONSIDERED" | "SIG_ID" => return None,
                "SIG_CREATED" if f.len() > 6 => f[6] = "<time>",
                "VALIDSIG" if f.len() > 4 => {
                    f[3] = "<date>";
                    f[4] = "<time>";
                }
                _ => {}
            }
            Some(f.join(" "))
        })
        .collect()
}

/// Colon records without keygrips (not offered) and the trust database's times.
fn colon_records(listing: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(listing)
        .lines()
        .filter(|l| !l.starts_with("grp:"))
        .map(|l| if l.starts_with("tru:") { "tru:<local trust database>".to_owned() } else { l.to_owned() })
        .collect()
}

/// Real gpg is the oracle: every argv GPGME was recorded giving gpg, given to
/// gpg and to qvault-gpg with the same key and inputs, gets the same exit code,
/// the same status lines (as GPGME reads them), the same colon listing and the
/// same verified data.
#[test]
fn recorded_gpgme_argv_get_gpgs_answers() {
    let w = World::new();
    let g = w.gpg_with_secret();
    let data = w.path("data");
    std::fs::write(&data, b"GPGME oracle data\n- a dashed line\n").expect("write");
    // Signatures to verify, made by the vault.
    let signed = |args: &[&str], name: &str| {
        let p = w.path(name);
        let mut c = w.shim(args);
        c.args(["-u", &w.fpr, "-o"]).arg(&p).arg(&data);
        assert_ok(&run(&mut c));
        p
    };
    let detached = signed(&["-ba"], "oracle.asc");
    let inline = signed(&["-s"], "oracle.gpg");
    let clear = signed(&["--clearsign"], "oracle.clear");

    let fixture = std::fs::read_to_string(workspace_dir().join("tests/vectors/gpgme-argv.txt")).expect("fixture");
    let keyid = &w.fpr[24..];
    let mut section = String::new();
    let mut compared = 0;
    for line in fixture.lines() {
        if let Some(s) = line.strip_prefix("### ") {
            section = s.to_owned();
            continue;
        }
        let Some(argv) = line.strip_prefix("ARGV ") else { continue };
        let argv: Vec<String> = argv
            .split(' ')
            .map(|a| a.replace("80CCAB5C6C561553CDEB6451B0919A21A0D91034", &w.fpr).replace("B0919A21A0D91034", keyid))
            .collect();
        let has = |o: &str| argv.iter().any(|a| a == o);
        let inputs: Vec<&Path> = if has("--version") {
            continue;
        } else if has("--sign") || has("--clearsign") {
            vec![&data]
        } else if has("--verify") {
            vec![&detached, &data]
        } else if has("--output") {
            vec![if section.contains("clear") { &clear } else { &inline }]
        } else {
            vec![]
        };
        let n = compared;
        let theirs = run_gpgme_argv(
            {
                let mut c = Command::new("gpg");
                c.env("GNUPGHOME", &g).env("LC_ALL", "C");
                c
            },
            &argv,
            &g,
            &inputs,
            &w.path(&format!("oracle/{n}/gpg")),
        );
        let ours = run_gpgme_argv(w.shim(&[]), &argv, &w.client_home, &inputs, &w.path(&format!("oracle/{n}/qvault")));
        let what = format!("{section}: {}", argv.join(" "));
        assert_eq!(ours.code, theirs.code, "{what}");
        assert_eq!(
            ours.status,
            theirs.status,
            "{what}\n{}",
            std::fs::read_to_string(w.path(&format!("oracle/{n}/gpg/logger"))).unwrap_or_default()
        );
        if has("--with-colons") {
            assert_eq!(colon_records(&ours.stdout), colon_records(&theirs.stdout), "{what}");
        }
        if has("--output") {
            assert_eq!(ours.stdout, theirs.stdout, "{what}");
        }
        compared += 1;
    }
    assert!(compared >= 18, "{compared}");
}

/// `--exit-on-status-write-error` (GPGME always sends it): when the status
/// descriptor cannot be written, the run ends at once, exit 2, and no
/// signature is written; without the option, a status write error does not
/// stop signing. (Small data goes to the vault with the request, so the vault
/// may have signed, and logged, what this run then drops, as gpg has made the
/// signature it then does not write.)
#[test]
fn a_status_write_error_ends_the_run_when_asked() {
    let w = World::new();
    let data = w.path("data");
    std::fs::write(&data, b"data\n").expect("write");
    let sign = |extra: &[&str], sig: &str| {
        let mut c = w.client_cmd("sh");
        c.args(["-c", "exec qvault-gpg \"$@\" 4>/dev/full", "sh", "--status-fd", "4"]).args(extra);
        c.args(["-bu", &w.fpr, "-o"]).arg(w.path(sig)).arg(&data);
        run(&mut c)
    };
    let o = sign(&["--exit-on-status-write-error"], "a.sig");
    assert_code(&o, 2);
    assert!(!w.path("a.sig").exists());
    let o = sign(&[], "b.sig");
    assert_ok(&o);
    gpgv_ok(&w, &[&w.path("b.sig"), &data]);
}
