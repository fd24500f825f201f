//! The vault's question on its desktop: `qvault serve --ask-socket` (as the
//! packaged unit runs it) asks through `qvault desktop`, the helper in the
//! graphical session, which shows a real zenity dialog on an X server (Xvfb).
//! xdotool finds the window and answers it; a screenshot of each question is
//! kept in `target/test-artifacts/desktop/<test>/`. The dialog's text is read
//! from the helper's own log of what it showed (one JSON line per event).
//!
//! Needs Xvfb, xdotool, zenity and ImageMagick's `import` (scripts/deps); without
//! them the tests are skipped, and under CI=true they fail.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use qvault_e2e::*;

/// Longest the test waits for an event that should come at once (a safety
/// net against a hang, not a timing assertion).
const EVENT_WAIT: Duration = Duration::from_secs(60);

fn tools_missing() -> Option<String> {
    let missing: Vec<&str> = ["Xvfb", "xdotool", "zenity", "import"]
        .into_iter()
        .filter(|t| {
            !Command::new("sh").arg("-c").arg(format!("command -v {t}")).output().is_ok_and(|o| o.status.success())
        })
        .collect();
    (!missing.is_empty()).then(|| format!("missing {}: run scripts/deps", missing.join(", ")))
}

/// False (after saying why) when the desktop cannot be had here; under CI=true a failure.
fn usable() -> bool {
    match tools_missing() {
        None => true,
        Some(why) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "desktop tests cannot run in CI: {why}");
            eprintln!("SKIPPED: {why}");
            false
        }
    }
}

fn artifacts(test: &str) -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_dir().join("target"));
    let d = target.join("test-artifacts/desktop").join(test);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An X server, the vault daemon asking through its ask socket, and the
/// desktop helper connected to it.
struct Desk {
    w: World,
    display: String,
    xvfb: Child,
    helper: Option<Child>,
    events: mpsc::Receiver<serde_json::Value>,
    /// Every event the helper wrote so far (also in `helper.log`).
    seen: Vec<serde_json::Value>,
    artifacts: PathBuf,
}

impl Drop for Desk {
    fn drop(&mut self) {
        if let Some(mut h) = self.helper.take() {
            let _ = h.kill();
            let _ = h.wait();
        }
        // SIGTERM: Xvfb then removes its socket and lock file.
        let _ = Command::new("kill").arg("-TERM").arg(self.xvfb.id().to_string()).status();
        let _ = self.xvfb.wait();
    }
}

fn policy(timeout: u64) -> String {
    format!(
        "version = 1\n[[rule]]\ncaller = \"*\"\nkeys = \"*\"\noperations = [\"list\", \"export\"]\nconfirm = \"allow\"\n\
         [[rule]]\ncaller = \"*\"\nkeys = \"*\"\noperations = [\"sign-detached\"]\nconfirm = \"ask\"\nauto_accept_seconds = 300\n\
         [confirm]\ncommand = [\"/nonexistent/not-used-with-the-helper\"]\ntimeout_seconds = {timeout}\n"
    )
}

/// The daemon as the packaged unit runs it: asking through the helper.
fn vault(timeout: u64) -> World {
    let uid = std::fs::metadata("/proc/self").unwrap().uid().to_string();
    vault_for(timeout, &uid)
}

fn vault_for(timeout: u64, ask_user: &str) -> World {
    let mut w = World::new();
    std::fs::write(w.vault_home.join("policy.toml"), policy(timeout)).unwrap();
    let ask = w.path("ask.sock");
    w.serve_with(&["--ask-socket", ask.to_str().unwrap(), "--ask-user", ask_user]);
    w
}

impl Desk {
    fn start(test: &str, timeout: u64) -> Desk {
        let w = vault(timeout);
        let artifacts = artifacts(test);
        // -displayfd: Xvfb picks a free display and writes its number once it accepts clients.
        let mut xvfb = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", "1024x768x24", "-nolisten", "tcp", "-noreset"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(artifacts.join("xvfb.log")).unwrap())
            .spawn()
            .expect("Xvfb");
        let mut line = String::new();
        BufReader::new(xvfb.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let display = format!(":{}", line.trim());
        assert!(display.len() > 1, "Xvfb gave no display number");
        let uid = std::fs::metadata("/proc/self").unwrap().uid().to_string();
        let mut helper = Command::new(bin("qvault"))
            .args(["desktop", "--socket", w.path("ask.sock").to_str().unwrap(), "--daemon-user", &uid])
            .env("DISPLAY", &display)
            .env("NO_AT_BRIDGE", "1")
            .env("QVAULT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(artifacts.join("helper.stderr")).unwrap())
            .spawn()
            .expect("qvault desktop");
        let out = helper.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        let log_path = artifacts.join("helper.log");
        std::thread::spawn(move || {
            let mut log = std::fs::File::create(log_path).unwrap();
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
                let v: serde_json::Value = serde_json::from_str(&line).expect("the helper's log is JSON lines");
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let mut d = Desk { w, display, xvfb, helper: Some(helper), events, seen: Vec::new(), artifacts };
        d.wait_event("connected");
        d
    }

    /// Blocks until the helper reports an event of this kind; returns it.
    fn wait_event(&mut self, kind: &str) -> serde_json::Value {
        loop {
            let v =
                self.events.recv_timeout(EVENT_WAIT).unwrap_or_else(|_| panic!("no {kind:?} event from the helper"));
            self.seen.push(v.clone());
            if v["event"] == kind {
                return v;
            }
        }
    }

    /// Takes in the events written so far without waiting.
    fn drain(&mut self) {
        while let Ok(v) = self.events.try_recv() {
            self.seen.push(v);
        }
    }

    fn count(&mut self, kind: &str) -> usize {
        self.drain();
        self.seen.iter().filter(|v| v["event"] == kind).count()
    }

    fn xdotool(&self, args: &[&str]) -> Output {
        Command::new("xdotool").args(args).env("DISPLAY", &self.display).stdin(Stdio::null()).output().expect("xdotool")
    }

    /// Waits (xdotool's --sync: until it is mapped) for the question's window.
    fn question_window(&self) -> String {
        let o = Command::new("timeout")
            .arg(EVENT_WAIT.as_secs().to_string())
            .args([
                "xdotool",
                "search",
                "--sync",
                "--onlyvisible",
                "--name",
                "^qvault: qube work asks for a signature$",
            ])
            .env("DISPLAY", &self.display)
            .output()
            .expect("xdotool search");
        assert_ok(&o);
        stdout(&o).lines().next().expect("a window id").to_owned()
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let p = self.artifacts.join(name);
        let o =
            Command::new("import").args(["-window", "root"]).arg(&p).env("DISPLAY", &self.display).output().unwrap();
        assert_ok(&o);
        assert!(std::fs::metadata(&p).unwrap().len() > 0, "empty screenshot");
        p
    }

    /// Answers the dialog as a person would: the pointer on the window (it
    /// takes the keyboard), then the button's access key.
    fn press(&self, window: &str, key: &str) {
        assert_ok(&self.xdotool(&["mousemove", "--window", window, "20", "20", "key", key]));
    }

    /// Clicks the dialog's Sign button with the mouse: zenity puts it in the
    /// bottom right corner.
    fn click_sign(&self, window: &str) {
        let o = self.xdotool(&["getwindowgeometry", "--shell", window]);
        assert_ok(&o);
        let dim = |k: &str| -> i64 {
            let line = stdout(&o).lines().find_map(|l| l.strip_prefix(k).map(str::to_owned)).expect(k);
            line.parse().expect("a number")
        };
        let (x, y) = (dim("WIDTH=") - 51, dim("HEIGHT=") - 25);
        assert_ok(&self.xdotool(&["mousemove", "--window", window, &x.to_string(), &y.to_string(), "click", "1"]));
    }

    /// No question window on the screen now.
    fn no_window(&self) -> bool {
        !self.xdotool(&["search", "--name", "^qvault: "]).status.success()
    }
}

fn sign_in_background(w: &World, data: &[u8], sig: &Path) -> std::thread::JoinHandle<Output> {
    let mut c = w.shim(&["--status-fd=2", "-bsau", &w.fpr, "-o", sig.to_str().unwrap()]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("qvault-gpg");
    child.stdin.take().unwrap().write_all(data).unwrap();
    std::thread::spawn(move || child.wait_with_output().unwrap())
}

fn sha256_hex(path: &Path) -> String {
    let o = Command::new("sha256sum").arg(path).output().unwrap();
    stdout(&o).split_whitespace().next().unwrap().to_owned()
}

/// The question on screen says who asks, with which key, for what, over which data.
fn check_question(d: &mut Desk, data: &Path, size: usize) -> String {
    let window = d.question_window();
    d.screenshot("question.png");
    let name = d.xdotool(&["getwindowname", &window]);
    assert_eq!(stdout(&name).trim(), "qvault: qube work asks for a signature");
    let shown = d.wait_event("shown");
    let message = shown["message"].as_str().unwrap().to_owned();
    std::fs::write(d.artifacts.join("question.txt"), &message).unwrap();
    for want in [
        "Qube 'work'".to_owned(),
        "sign-detached".to_owned(),
        d.w.fpr.clone(),
        format!("({ALICE})"),
        format!("over {size} bytes of data"),
        format!("SHA256 {}", sha256_hex(data)),
    ] {
        assert!(message.contains(&want), "the question lacks {want:?}:\n{message}");
    }
    window
}

fn data(d: &Desk, name: &str, bytes: &[u8]) -> PathBuf {
    let p = d.w.path(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn desktop_yes_signs_and_gpgv_verifies() {
    if !usable() {
        return;
    }
    let mut d = Desk::start("yes", 60);
    let bytes = b"release 1.2.3 of the volunteer's package\n";
    let file = data(&d, "data", bytes);
    let sig = d.w.path("data.sig");
    let call = sign_in_background(&d.w, bytes, &sig);
    let window = check_question(&mut d, &file, bytes.len());
    d.click_sign(&window);
    let o = call.join().unwrap();
    assert_ok(&o);
    assert!(stderr(&o).contains("[GNUPG:] SIG_CREATED D "), "{}", stderr(&o));
    let v = gpgv(&d.w, &[&sig, &file]);
    assert_ok(&v);
    assert!(stderr(&v).contains("Good signature"), "{}", stderr(&v));
    assert_eq!(d.wait_event("answered")["reply"], "yes");
    assert_eq!(d.count("shown"), 1);
}

#[test]
fn desktop_no_refuses_and_is_remembered_for_its_window() {
    if !usable() {
        return;
    }
    let mut d = Desk::start("no", 60);
    let bytes = b"a commit the volunteer did not make\n";
    let file = data(&d, "data", bytes);
    let sig = d.w.path("data.sig");
    let call = sign_in_background(&d.w, bytes, &sig);
    let window = check_question(&mut d, &file, bytes.len());
    d.press(&window, "alt+r");
    let o = call.join().unwrap();
    assert_code(&o, 2);
    assert!(stderr(&o).contains("gpg: signing failed"), "{}", stderr(&o));
    assert!(stderr(&o).contains("the request was denied in the vault"), "{}", stderr(&o));
    assert!(!sig.exists() || std::fs::metadata(&sig).unwrap().len() == 0, "no signature after a no");
    assert_eq!(d.wait_event("answered")["reply"], "no");
    // A tool retrying in a loop: refused at once, with no new question.
    for _ in 0..3 {
        let o = run_with_input(&mut d.w.shim(&["--status-fd=2", "-bsau", &d.w.fpr]), bytes);
        assert_code(&o, 2);
        assert!(stderr(&o).contains("a \"no\" to this request is remembered"), "{}", stderr(&o));
    }
    assert!(d.no_window(), "a window is on the screen after a remembered no");
    assert_eq!(d.count("shown"), 1, "the helper showed a question for a remembered no");
}

/// The question's timeout in the timeout test: long enough for the dialog to
/// be found and photographed on a loaded machine before it is taken down.
const TIMEOUT_TEST_SECONDS: u64 = 6;

#[test]
fn desktop_timeout_refuses_and_closes_the_dialog() {
    if !usable() {
        return;
    }
    let mut d = Desk::start("timeout", TIMEOUT_TEST_SECONDS);
    let bytes = b"nobody is at the vault\n";
    let file = data(&d, "data", bytes);
    let sig = d.w.path("data.sig");
    let call = sign_in_background(&d.w, bytes, &sig);
    let _window = check_question(&mut d, &file, bytes.len());
    let o = call.join().unwrap();
    assert_code(&o, 2);
    assert!(stderr(&o).contains("the confirmation timed out in the vault"), "{}", stderr(&o));
    // The daemon cancelled the question; the helper took the dialog down
    // (its own deadline is later) and sent no answer.
    d.wait_event("cancelled");
    assert_eq!(d.count("answered"), 0);
    assert!(d.no_window(), "the timed-out question is still on the screen");
    // A timeout is not a "no": the next call is asked again (and, with
    // nobody there, times out again; answering within the timeout would make the
    // test depend on the machine's speed).
    let call = sign_in_background(&d.w, bytes, &sig);
    check_question(&mut d, &file, bytes.len());
    let o = call.join().unwrap();
    assert_code(&o, 2);
    assert!(stderr(&o).contains("the confirmation timed out in the vault"), "{}", stderr(&o));
    assert_eq!(d.count("shown"), 2);
}

/// No helper in the session, or no such desktop user (the daemon still
/// serves): refused at once with gpg's error, not a hang.
#[test]
fn desktop_without_helper_refuses_at_once() {
    let uid = std::fs::metadata("/proc/self").unwrap().uid().to_string();
    for user in [uid.as_str(), "no-such-user-qvault"] {
        let w = vault_for(60, user);
        let o = run_with_input(&mut w.shim(&["--status-fd=2", "-bsau", &w.fpr]), b"x");
        assert_code(&o, 2);
        assert!(stderr(&o).contains("the vault could not ask for confirmation"), "{user}: {}", stderr(&o));
        // Rules that do not ask still work.
        assert_ok(&run(&mut w.shim(&["--list-secret-keys"])));
    }
}

/// `qvault desktop` on a socket, with its JSON events on a channel.
fn helper(
    w: &World,
    program: &Path,
    daemon_user: &str,
    as_user: Option<&str>,
) -> (Child, mpsc::Receiver<serde_json::Value>) {
    let mut c = match as_user {
        Some(uid) => {
            let mut c = Command::new("setpriv");
            c.args(["--reuid", uid, "--regid", uid, "--clear-groups", "--"]).arg(program);
            c
        }
        None => Command::new(program),
    };
    let mut child = c
        .args(["desktop", "--socket", w.path("ask.sock").to_str().unwrap(), "--daemon-user", daemon_user])
        .env("QVAULT_LOG", "info")
        .env_remove("DISPLAY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qvault desktop");
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(serde_json::from_str::<serde_json::Value>(&line).expect("JSON")).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn first_event(rx: &mpsc::Receiver<serde_json::Value>) -> String {
    rx.recv_timeout(EVENT_WAIT).expect("an event from the helper")["event"].as_str().unwrap().to_owned()
}

/// Only the desktop user's helper is kept: one running as another user is
/// closed before it hears a question, and the call is refused, not answered.
#[test]
fn a_helper_of_another_user_is_turned_away() {
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "needs root (setpriv) in CI");
        eprintln!("SKIPPED: needs root to run a helper as another user");
        return;
    }
    let w = vault(60);
    // nobody must reach the socket and run the binary.
    std::fs::set_permissions(w.dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    let program = w.path("qvault-bin");
    std::fs::copy(bin("qvault"), &program).unwrap();
    let (mut h, rx) = helper(&w, &program, "0", Some("65534"));
    // The daemon closes the connection without its hello.
    assert_eq!(first_event(&rx), "disconnected");
    let o = run_with_input(&mut w.shim(&["--status-fd=2", "-bsau", &w.fpr]), b"x");
    assert_code(&o, 2);
    assert!(stderr(&o).contains("the vault could not ask for confirmation"), "{}", stderr(&o));
    let _ = h.kill();
    let out = h.wait_with_output().unwrap();
    assert!(stderr(&out).contains("did not say hello"), "{}", stderr(&out));
}

/// The helper answers only a socket served by the daemon's user: another
/// process posing as the vault gets no answers.
#[test]
fn the_helper_does_not_serve_a_socket_of_another_user() {
    let w = vault(60);
    let (mut h, rx) = helper(&w, &bin("qvault"), "65534", None);
    assert_eq!(first_event(&rx), "disconnected", "the helper connected to a socket of the wrong user");
    let _ = h.kill();
    let out = h.wait_with_output().unwrap();
    assert!(stderr(&out).contains("not by the vault daemon's user (uid 65534)"), "{}", stderr(&out));
}
