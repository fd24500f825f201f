//! The shared end-to-end harness: "a vault, a client qube, qrexec", built in
//! a temporary directory, so each test is a few lines of scenario.
//!
//! qrexec is Qubes' real one (tests/qrexec-real/bed: Qubes' qrexec-client-vm,
//! agents, daemons and policy daemon) whenever it can run here: built, and the
//! tests running as root. Otherwise the simulator (tests/qrexec-sim) stands
//! in, after a note on stderr; under CI=true that is a failure instead.
//! `QVAULT_E2E_QREXEC=sim` chooses the simulator (e.g. to compare the two).
//!
//! Binaries come from `$QVAULT_BIN_DIR` (to test installed packages) or the
//! workspace's `target/debug` (build them first: `cargo build --workspace --bins`).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod debian;
pub mod go;
pub mod rpm;
pub mod witness;

pub const ALICE: &str = "Alice Volunteer <alice@example.org>";

pub fn workspace_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_owned()
}

pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("QVAULT_BIN_DIR") {
        return PathBuf::from(d);
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_dir().join("target"));
    target.join("debug")
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(p.exists(), "{} is missing: run `cargo build --workspace --bins` first", p.display());
    p
}

pub fn sim_dir() -> PathBuf {
    workspace_dir().join("tests/qrexec-sim")
}

/// A throwaway vault with one key, a client qube's home, and simulated qrexec.
pub struct World {
    pub dir: tempfile::TempDir,
    pub vault_home: PathBuf,
    pub client_home: PathBuf,
    pub home: PathBuf,
    pub fpr: String,
    pub socket: Option<PathBuf>,
    daemon: Option<Child>,
    pub source: String,
    /// Extra environment for `qvault serve` only, e.g. libfaketime's
    /// `LD_PRELOAD` and `FAKETIME` for a vault whose clock runs ahead.
    pub daemon_env: Vec<(String, String)>,
    /// Qubes' real qrexec underneath: started by `serve_real_qrexec`, or by
    /// the first client command when the real stack is the transport.
    real: std::sync::OnceLock<RealQrexec>,
    /// dom0 rules of this world's bed, read before the shipped policy.
    dom0_policy: String,
}

/// dom0's rules in the harness's bed (before the shipped 30-qvault.policy,
/// whose "ask" would otherwise decide): every qube may call the vault, so the
/// vault's own policy is what the suites test; disp1 is refused by dom0.
pub const HARNESS_DOM0_POLICY: &str = "\
qvault.Gpg      *  disp1   @anyvm  deny notify=no
qvault.LogRead  *  disp1   @anyvm  deny notify=no
qvault.Gpg      *  @anyvm  vault   allow
qvault.LogRead  *  @anyvm  vault   allow
";

/// Which qrexec the client commands go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Qubes' real qrexec (tests/qrexec-real/bed).
    Real,
    /// tests/qrexec-sim.
    Sim,
}

/// The transport of this test process: the real stack when it can run here.
pub fn transport() -> Transport {
    static T: std::sync::OnceLock<Transport> = std::sync::OnceLock::new();
    *T.get_or_init(|| {
        if std::env::var("QVAULT_E2E_QREXEC").as_deref() == Ok("sim") {
            return Transport::Sim;
        }
        match real_qrexec_usable() {
            Ok(()) => Transport::Real,
            Err(why) => {
                assert!(std::env::var("CI").as_deref() != Ok("true"), "real qrexec test bed cannot run in CI: {why}");
                eprintln!("NOTE: simulated qrexec: the real qrexec test bed cannot run here: {why}");
                Transport::Sim
            }
        }
    })
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

impl World {
    pub fn new() -> World {
        World::with_key(ALICE, "ed25519")
    }

    pub fn with_key(userid: &str, algo: &str) -> World {
        let mut w = World::empty();
        w.fpr = w.keygen(userid, algo);
        w
    }

    /// A vault with no key.
    pub fn empty() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let vault_home = dir.path().join("vault");
        let client_home = dir.path().join("client");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).expect("home");
        let w = World {
            dir,
            vault_home,
            client_home,
            home,
            fpr: String::new(),
            socket: None,
            daemon: None,
            source: "work".into(),
            daemon_env: Vec::new(),
            real: std::sync::OnceLock::new(),
            dom0_policy: HARNESS_DOM0_POLICY.to_owned(),
        };
        let out = w.qvault(&["init", "--name", "testvault", "--no-confirm"]).output().expect("qvault init");
        assert!(out.status.success(), "init: {}", String::from_utf8_lossy(&out.stderr));
        w
    }

    pub fn keygen(&self, userid: &str, algo: &str) -> String {
        let out = self.qvault(&["keygen", "--userid", userid, "--algo", algo]).output().expect("keygen");
        assert!(out.status.success(), "keygen: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf8").trim().to_owned()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `qvault <args> --home <vault>` (the home flag goes after the subcommand).
    pub fn qvault(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("qvault"));
        // `--home` belongs to the (sub)subcommand: `qvault log key --home D`.
        let at = if matches!(args.first(), Some(&"log" | &"policy")) { 2 } else { 1 }.min(args.len());
        c.args(&args[..at]).arg("--home").arg(&self.vault_home).args(&args[at..]);
        c.env("QVAULT_LOG", "warn");
        c
    }

    /// Qubes' real qrexec under this world, if it is running.
    pub fn real(&self) -> Option<&RealQrexec> {
        self.real.get()
    }

    /// Whether client commands go through Qubes' real qrexec.
    pub fn is_real(&self) -> bool {
        self.real.get().is_some() || transport() == Transport::Real
    }

    /// The bed, started on first use with the vault served as it is now
    /// (socket or exec service); later switches replace the vault's entries.
    fn bed(&self) -> &RealQrexec {
        self.real.get_or_init(|| {
            use std::os::unix::fs::PermissionsExt;
            // The bed's processes run as nobody and must reach into the world.
            std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod world");
            let rules = self.path("20-qvault-test.policy");
            std::fs::write(&rules, &self.dom0_policy).expect("write policy");
            let qvault = self.exec_qvault();
            let vault = match &self.socket {
                Some(s) => BedVault::Socket(s),
                None => BedVault::Exec { qvault: &qvault, home: &self.vault_home },
            };
            RealQrexec::start(&self.path("bed"), vault, &[&rules])
        })
    }

    /// The `qvault` the bed's vault agent (nobody) runs in exec mode: a link
    /// (or copy) in the world, in case nobody cannot enter the build tree.
    fn exec_qvault(&self) -> PathBuf {
        let p = self.path("qvault-bin");
        if !p.exists() && std::fs::hard_link(bin("qvault"), &p).is_err() {
            std::fs::copy(bin("qvault"), &p).expect("copy qvault");
        }
        p
    }

    /// Before a call through the real stack in exec mode: the vault's agent
    /// runs `qvault rpc` as nobody, who must own the vault's home (the tests'
    /// own `qvault` commands run as root and may have added files).
    fn hand_vault_home_to_nobody(&self) {
        let st = Command::new("chown").arg("-R").arg("65534:65534").arg(&self.vault_home).status();
        assert!(st.is_ok_and(|s| s.success()), "chown the vault's home");
    }

    /// Points the running bed's vault entries at the current serving mode.
    fn retarget_bed(&self) {
        if let Some(r) = self.real.get() {
            match &self.socket {
                Some(s) => r.set_vault(BedVault::Socket(s)),
                None => r.set_vault(BedVault::Exec { qvault: &self.exec_qvault(), home: &self.vault_home }),
            }
        }
    }

    /// Runs `c` in the qube `qube` instead of `self.source` (a command made by
    /// `shim` or `client_cmd`).
    pub fn in_qube(&self, c: &mut Command, qube: &str) {
        c.env("QVAULT_SIM_SOURCE", qube).env("PATH", self.path_env_for(qube));
    }

    pub fn path_env(&self) -> OsString {
        self.path_env_for(&self.source)
    }

    fn path_env_for(&self, qube: &str) -> OsString {
        // Over the real stack, the calling qube's real qrexec-client-vm
        // replaces the simulator.
        let qrexec = if self.is_real() { self.bed().dir.join("qubes").join(qube).join("bin") } else { sim_dir() };
        let mut paths = vec![bin_dir(), qrexec];
        paths.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
        std::env::join_paths(paths).expect("PATH")
    }

    /// The environment of a process in the client qube.
    pub fn client_env(&self, c: &mut Command) {
        c.env("PATH", self.path_env())
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("QUBES_GPG_DOMAIN", "vault")
            .env("QVAULT_GPG_HOME", &self.client_home)
            .env("QVAULT_SIM_SOURCE", &self.source)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("LC_ALL", "C")
            .env_remove("GNUPGHOME");
        if self.is_real() {
            // Nothing from the simulator's settings reaches the real stack.
            c.env_remove("QVAULT_SIM_SOCKET").env_remove("QVAULT_SIM_VAULT_HOME");
            if self.socket.is_none() {
                self.hand_vault_home_to_nobody();
            }
            return;
        }
        match &self.socket {
            Some(s) => {
                c.env("QVAULT_SIM_SOCKET", s).env_remove("QVAULT_SIM_VAULT_HOME");
            }
            None => {
                c.env("QVAULT_SIM_VAULT_HOME", &self.vault_home).env_remove("QVAULT_SIM_SOCKET");
            }
        }
    }

    pub fn shim(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("qvault-gpg"));
        c.args(args);
        self.client_env(&mut c);
        c
    }

    /// Any program, run in the client qube's environment.
    pub fn client_cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        self.client_env(&mut c);
        c
    }

    /// Starts `qvault serve` on a socket; later calls go through it.
    pub fn serve(&mut self) {
        self.serve_with(&[]);
    }

    pub fn serve_with(&mut self, extra: &[&str]) {
        let sock = self.path("qvault.sock");
        let mut args = vec!["serve", "--socket"];
        let s = sock.to_str().expect("utf8 path").to_owned();
        args.push(&s);
        args.extend_from_slice(extra);
        // The vault refuses to serve with a network up: give it a namespace of
        // its own (only loopback) where permitted, as a vault qube has no netvm.
        let mut cmd = if can_unshare_net() {
            let mut c = Command::new("unshare");
            c.arg("-n").arg("--").arg(bin("qvault"));
            c.args(&args[..1]).arg("--home").arg(&self.vault_home).args(&args[1..]).env("QVAULT_LOG", "warn");
            c
        } else {
            args.push("--allow-network");
            self.qvault(&args)
        };
        cmd.envs(self.daemon_env.iter().map(|(k, v)| (k, v)));
        let child = cmd.stderr(Stdio::null()).spawn().expect("serve");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            assert!(Instant::now() < deadline, "qvault serve did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.daemon = Some(child);
        self.socket = Some(sock);
        if self.is_real() {
            self.open_socket_to_bed();
        }
        self.retarget_bed();
    }

    /// The bed's agents run as nobody, and reach the daemon's socket as
    /// another user than the daemon's, like qrexec-agent in a vault qube.
    fn open_socket_to_bed(&self) {
        use std::os::unix::fs::PermissionsExt;
        let sock = self.socket.as_ref().expect("a running daemon");
        std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod world");
        std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o666)).expect("chmod socket");
    }

    /// Starts `qvault serve` and Qubes' real qrexec under it (tests/qrexec-real/bed):
    /// the vault qube's packaged qvault.Gpg and qvault.LogRead entries point at
    /// the daemon's socket, dom0 evaluates `policy` (a file sorting before the
    /// shipped 30-qvault.policy) and the shipped policy with Qubes' engine, and
    /// later client calls go through the real qrexec-client-vm of the qube
    /// `self.source`. Returns false (after saying why) when the bed cannot run
    /// here and the test may be skipped; under CI=true it panics instead.
    pub fn serve_real_qrexec(&mut self, policy: &str) -> bool {
        if let Err(why) = real_qrexec_usable() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "real qrexec test bed cannot run in CI: {why}");
            eprintln!("SKIPPED: real qrexec test bed cannot run here: {why}");
            return false;
        }
        assert!(self.real.get().is_none(), "the bed is already running");
        self.dom0_policy = policy.to_owned();
        self.serve();
        // (Also when the simulator is this process's default transport.)
        self.open_socket_to_bed();
        let _ = self.bed();
        true
    }

    /// As `serve_real_qrexec`, in exec-service mode: the vault qube's agent
    /// runs `qvault rpc` per call (as nobody, who then owns the vault's home).
    pub fn exec_real_qrexec(&mut self, policy: &str) -> bool {
        if let Err(why) = real_qrexec_usable() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "real qrexec test bed cannot run in CI: {why}");
            eprintln!("SKIPPED: real qrexec test bed cannot run here: {why}");
            return false;
        }
        assert!(self.real.get().is_none() && self.socket.is_none(), "the bed is already running");
        self.dom0_policy = policy.to_owned();
        let _ = self.bed();
        true
    }

    /// SIGKILL: the daemon dies without any chance to clean up.
    pub fn kill_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: a clean shutdown.
    pub fn stop_daemon(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.daemon.take()?;
        let _ = nix_kill(&c);
        c.wait().ok()
    }

    /// Later calls run `qvault rpc` per call again (exec-service mode).
    pub fn use_exec_mode(&mut self) {
        self.socket = None;
        self.retarget_bed();
    }

    /// `qvault rpc` as qrexec starts it for one exec-service call: `service`
    /// in `QREXEC_SERVICE_FULL_NAME` (`None`: not set), the caller in
    /// `QREXEC_REMOTE_DOMAIN`, no network (as `serve_with` runs the daemon).
    pub fn rpc(&self, service: Option<&str>, extra: &[&str]) -> Command {
        let mut c = if can_unshare_net() {
            let mut c = Command::new("unshare");
            c.arg("-n").arg("--").arg(bin("qvault"));
            c
        } else {
            Command::new(bin("qvault"))
        };
        c.arg("rpc").arg("--home").arg(&self.vault_home).args(extra);
        if !can_unshare_net() {
            c.arg("--allow-network");
        }
        c.env("QVAULT_LOG", "warn").env("QREXEC_REMOTE_DOMAIN", &self.source).env_remove("QREXEC_SERVICE_FULL_NAME");
        if let Some(s) = service {
            c.env("QREXEC_SERVICE_FULL_NAME", s);
        }
        c
    }

    /// Entries in the vault's log, read from its files (no lock taken).
    pub fn log_entries(&self) -> u64 {
        std::fs::metadata(self.vault_home.join("log/tree/00")).map_or(0, |m| m.len() / 32)
    }

    /// A GNUPGHOME with the vault's secret key (test side only), trusted
    /// ultimately: real gpg, with the same key, as an oracle.
    pub fn gpg_with_secret(&self) -> PathBuf {
        let g = self.path("gnupg-secret");
        std::fs::create_dir_all(&g).expect("mkdir");
        std::fs::set_permissions(&g, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod");
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", &g).args(["--batch", "--import"]).arg(self.key_file());
        assert_ok(&run(&mut c));
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", &g).args(["--batch", "--import-ownertrust"]);
        assert_ok(&run_with_input(&mut c, format!("{}:6:\n", self.fpr).as_bytes()));
        g
    }

    /// How many entries of the vault's log record signatures (the log also
    /// holds key events, the vault's declared state, policy changes...).
    pub fn signature_entries(&self) -> usize {
        let entries = std::fs::read_to_string(self.vault_home.join("log/entries")).unwrap_or_default();
        entries.lines().filter(|l| l.contains("\"kind\":\"signature\"")).count()
    }

    /// The log's verifier key string.
    pub fn log_key(&self) -> String {
        let o = run(&mut self.qvault(&["log", "key"]));
        assert_ok(&o);
        stdout(&o).trim().to_owned()
    }

    /// `qvault log export` into a file (beside a running daemon too: it reads
    /// what the newest durable checkpoint covers).
    pub fn export_log(&self, name: &str) -> PathBuf {
        let o = run(&mut self.qvault(&["log", "export"]));
        assert_ok(&o);
        let p = self.path(name);
        std::fs::write(&p, &o.stdout).expect("write export");
        p
    }

    /// `qvault-audit` with arguments.
    pub fn audit(&self, args: &[&str]) -> Output {
        let mut c = Command::new(bin("qvault-audit"));
        c.args(args);
        run(&mut c)
    }

    /// The daemon's pid (`unshare` execs into qvault, so it is the child's).
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    pub fn daemon_alive(&mut self) -> bool {
        matches!(self.daemon.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The vault's public certificate, via `qvault-gpg --export`, written to a
    /// file (binary keyring, as gpgv and dscverify read it).
    pub fn export_keyring(&self) -> PathBuf {
        let p = self.path("keyring.pgp");
        let out = self.shim(&["--export"]).output().expect("export");
        assert!(out.status.success() && !out.stdout.is_empty(), "export: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(&p, &out.stdout).expect("write keyring");
        p
    }

    /// A GNUPGHOME holding the vault's public certificate, trusted ultimately.
    pub fn gnupg_home(&self) -> PathBuf {
        let g = self.path("gnupg");
        if g.exists() {
            return g;
        }
        std::fs::create_dir_all(&g).expect("gnupg home");
        std::fs::set_permissions(&g, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod");
        let ring = self.export_keyring();
        let st = Command::new("gpg")
            .env("GNUPGHOME", &g)
            .args(["--batch", "--import"])
            .arg(&ring)
            .output()
            .expect("gpg import");
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
        let mut c = Command::new("gpg")
            .env("GNUPGHOME", &g)
            .args(["--batch", "--import-ownertrust"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ownertrust");
        c.stdin.take().expect("stdin").write_all(format!("{}:6:\n", self.fpr).as_bytes()).expect("write");
        assert!(c.wait().expect("wait").success());
        g
    }

    pub fn key_file(&self) -> PathBuf {
        self.vault_home.join("keys").join(format!("{}.tsk", self.fpr))
    }
}

/// tests/qrexec-real's prefix, where tests/qrexec-real/build put Qubes' qrexec.
pub fn qrexec_real_prefix() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target"))
        .join("qrexec-real")
}

/// Why the real-qrexec bed cannot run here, if it cannot.
pub fn real_qrexec_usable() -> Result<(), String> {
    let agent = qrexec_real_prefix().join("bin/qrexec-agent");
    if !agent.exists() {
        return Err(format!("{} is missing: run tests/qrexec-real/build (scripts/deps does)", agent.display()));
    }
    let uid = Command::new("id").arg("-u").output().map_err(|e| format!("id -u: {e}"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("the bed needs root for its pid and mount namespaces".into());
    }
    let ns = Command::new("unshare").args(["--mount", "--pid", "--fork", "true"]).status();
    if !ns.is_ok_and(|s| s.success()) {
        return Err("unshare --mount --pid is not permitted".into());
    }
    Ok(())
}

/// A running tests/qrexec-real/bed: dom0 (qrexec-daemons and Qubes' policy
/// daemon) and the qubes vault, work, audit and disp1, in their own pid
/// namespace. Dropping it stops every process of the bed.
pub struct RealQrexec {
    pub dir: PathBuf,
    child: Child,
}

/// How the bed's vault qube provides qvault.Gpg and qvault.LogRead.
pub enum BedVault<'a> {
    /// The packaged links to a running `qvault serve`'s socket.
    Socket(&'a Path),
    /// Executable services running `qvault rpc --home HOME` per call.
    Exec { qvault: &'a Path, home: &'a Path },
}

impl RealQrexec {
    pub fn start(dir: &Path, vault: BedVault<'_>, policies: &[&Path]) -> RealQrexec {
        let mut c = Command::new(workspace_dir().join("tests/qrexec-real/bed"));
        c.arg(dir);
        match vault {
            BedVault::Socket(s) => c.arg(s),
            BedVault::Exec { qvault, home } => c.arg("--exec").arg(qvault).arg(home),
        };
        for p in policies {
            c.arg("--policy").arg(p);
        }
        c.env("QREXEC_REAL", qrexec_real_prefix()).stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = c.spawn().expect("start tests/qrexec-real/bed");
        let mut line = String::new();
        let out = child.stdout.take().expect("bed stdout");
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
        let bed = RealQrexec { dir: dir.to_owned(), child };
        assert_eq!(line.trim(), "ready", "the real qrexec bed did not start; its logs:\n{}", bed.logs());
        bed
    }

    /// Makes the vault qube's qvault.Gpg and qvault.LogRead entries the
    /// packaged links to a socket, or executable services (exec mode); the
    /// agent reads them on every call.
    pub fn set_vault(&self, vault: BedVault<'_>) {
        let rpc = self.dir.join("qubes/vault/rpc");
        for svc in ["qvault.Gpg", "qvault.LogRead"] {
            let p = rpc.join(svc);
            let tmp = rpc.join(format!(".{svc}.new"));
            let _ = std::fs::remove_file(&tmp);
            match &vault {
                BedVault::Socket(s) => std::os::unix::fs::symlink(s, &tmp).expect("link the service"),
                BedVault::Exec { qvault, home } => {
                    use std::os::unix::fs::PermissionsExt;
                    // As the bed writes it: without network where user
                    // namespaces allow, the service's log to the bed's logs.
                    let (netns, allow) =
                        if bed_user_can_unshare_net() { ("unshare -rn -- ", "") } else { ("", "--allow-network ") };
                    let script = format!(
                        "#!/bin/sh\nexec {netns}\"{}\" rpc {allow}--home \"{}\" 2>>\"{}\"\n",
                        qvault.display(),
                        home.display(),
                        self.dir.join("logs/vault-rpc.log").display()
                    );
                    std::fs::write(&tmp, script).expect("write the service");
                    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
                }
            }
            std::fs::rename(&tmp, &p).expect("replace the service");
        }
    }

    /// What the GuiVM's dialog stand-in answers to dom0's next "ask": `Some(q)`
    /// allows the call to the qube `q`, `None` refuses it.
    pub fn answer_ask(&self, allow: Option<&str>) {
        let text = allow.map(|q| format!("allow {q}\n")).unwrap_or_else(|| "deny\n".into());
        std::fs::write(self.dir.join("ask-answer"), text).expect("write the answer");
    }

    /// The questions dom0's policy daemon asked the GuiVM (policy.Ask lines).
    pub fn asked(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("logs/policy-ask.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("policy.Ask "))
            .filter_map(|j| serde_json::from_str(j).ok())
            .collect()
    }

    /// Every log of the bed (qrexec-daemons, policy daemon, agents), for messages.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        let mut names: Vec<_> = std::fs::read_dir(self.dir.join("logs"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        names.sort();
        for p in names {
            all.push_str(&format!("== {}\n{}", p.display(), std::fs::read_to_string(&p).unwrap_or_default()));
        }
        all
    }
}

impl Drop for RealQrexec {
    fn drop(&mut self) {
        // A failing test's bed logs go with its output (the bed's directory
        // goes with the test's).
        if std::thread::panicking() {
            eprintln!("the real qrexec bed's logs:\n{}", self.logs());
        }
        // End of input: the bed's pid 1 exits, the kernel ends the rest of its
        // pid namespace, and wait() returns once they are gone.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for World {
    fn drop(&mut self) {
        drop(self.real.take());
        if let Some(mut c) = self.daemon.take() {
            let _ = nix_kill(&c);
            let _ = c.wait();
        }
    }
}

/// The environment that runs a process under libfaketime (Debian's `faketime`
/// package) with its clock moved by `offset` (`+2d`), without the `faketime`
/// wrapper, which would stand between the harness and the daemon's pid.
pub fn faketime_env(offset: &str) -> Vec<(String, String)> {
    let lib = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.exists())
        .expect("libfaketime.so.1 is missing: install Debian's faketime (scripts/deps)");
    vec![("LD_PRELOAD".into(), lib.display().to_string()), ("FAKETIME".into(), offset.into())]
}

/// Whether this process may create network namespaces (root, or user namespaces).
/// Whether the bed's user (nobody) may make a network namespace (through a
/// user namespace), as tests/qrexec-real/bed checks for its exec services.
pub fn bed_user_can_unshare_net() -> bool {
    static CAN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CAN.get_or_init(|| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", "unshare", "-rn", "true"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

pub fn can_unshare_net() -> bool {
    static CAN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CAN.get_or_init(|| {
        Command::new("unshare").args(["-n", "true"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    })
}

fn nix_kill(c: &Child) -> std::io::Result<()> {
    Command::new("kill").arg("-TERM").arg(c.id().to_string()).status().map(|_| ())
}

/// Runs a command with `stdin` as input.
pub fn run_with_input(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let t = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    let _ = t.join();
    out
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("spawn")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[track_caller]
pub fn assert_ok(o: &Output) {
    assert!(o.status.success(), "exit {:?}\nstdout: {}\nstderr: {}", o.status.code(), stdout(o), stderr(o));
}

#[track_caller]
pub fn assert_code(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "stdout: {}\nstderr: {}", stdout(o), stderr(o));
}

/// gpgv with the vault's exported keyring.
pub fn gpgv(w: &World, args: &[&Path]) -> Output {
    let ring = w.export_keyring();
    let mut c = Command::new("gpgv");
    c.arg("--keyring").arg(ring).args(args);
    run(&mut c)
}

/// sqv with the vault's exported certificate.
pub fn sqv(w: &World, sig: &Path, data: &Path) -> Output {
    let ring = w.export_keyring();
    let mut c = Command::new("sqv");
    c.arg("--keyring").arg(ring).arg(sig).arg(data);
    run(&mut c)
}

/// One signature through the raw protocol against a running daemon's socket,
/// as a load generator does: returns the result, or the failure as text.
pub fn sign_raw(socket: &Path, source: &str, data: &[u8]) -> Result<qubes_rpc::SignResult, String> {
    use qubes_rpc::{frame, ClientFrame, FrameReader, ServerFrame};
    let s = std::os::unix::net::UnixStream::connect(socket).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    let mut out = format!("qvault.Gpg {source}\0").into_bytes();
    let req = detached_sign_request();
    frame::encode_into(&ClientFrame::Request(req), &mut out).map_err(|e| e.to_string())?;
    (&s).write_all(&out).map_err(|e| e.to_string())?;
    let mut r = FrameReader::new(&s);
    match r.next::<ServerFrame<'_>>().map_err(|e| e.to_string())? {
        Some(ServerFrame::Ready(_)) => {}
        other => return Err(format!("{other:?}")),
    }
    let mut out = Vec::new();
    frame::encode_into(&ClientFrame::Data(data), &mut out).map_err(|e| e.to_string())?;
    frame::encode_into(&ClientFrame::End, &mut out).map_err(|e| e.to_string())?;
    (&s).write_all(&out).map_err(|e| e.to_string())?;
    match r.next::<ServerFrame<'_>>().map_err(|e| e.to_string())? {
        Some(ServerFrame::Signed(res)) => Ok(res),
        other => Err(format!("{other:?}")),
    }
}

/// One frame's bytes (header and payload).
pub fn frame(f: &qubes_rpc::ClientFrame<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    qubes_rpc::frame::encode_into(f, &mut v).expect("encodable frame");
    v
}

/// A request for a detached binary signature with the vault's default key.
pub fn detached_sign_request() -> qubes_rpc::Request {
    use qubes_rpc::{Op, Request, SignMode, SignRequest};
    Request::new(Op::Sign(SignRequest {
        key: None,
        mode: SignMode::Detached,
        armor: false,
        digest: None,
        text: false,
        known_log_size: None,
        client_hash: false,
    }))
}

/// One raw call to a daemon socket as the `work` qube: descriptor, then
/// `bytes`, then end of input; returns every byte of the answer. Over the
/// real stack, through it (the agent writes the descriptor).
pub fn raw_call(w: &World, bytes: &[u8]) -> Vec<u8> {
    use std::io::Read as _;
    if w.is_real() {
        return real_call(w, "qvault.Gpg", bytes).stdout;
    }
    let mut s = std::os::unix::net::UnixStream::connect(w.socket.as_ref().expect("a running daemon")).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    s.write_all(b"qvault.Gpg work\0").expect("descriptor");
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// One call of `service` with `bytes` as the caller's whole input, through
/// Qubes' real qrexec-client-vm of the qube `w.source` (the vault served as
/// it is now: socket or exec service); stdout holds every byte of the answer.
pub fn real_call(w: &World, service: &str, bytes: &[u8]) -> Output {
    let mut c = w.client_cmd("qrexec-client-vm");
    c.arg("vault").arg(service);
    run_with_input(&mut c, bytes)
}

/// One exec-service call of `qvault.Gpg` (`qvault rpc`) as the `work` qube:
/// `bytes` are the caller's whole input; stdout holds every byte of the answer.
pub fn exec_call(w: &World, bytes: &[u8]) -> Output {
    run_with_input(&mut w.rpc(Some("qvault.Gpg"), &[]), bytes)
}

/// Every answer frame in `bytes`; panics on a malformed answer or a partial frame.
pub fn answers(bytes: &[u8]) -> Vec<qubes_rpc::ServerFrame<'_>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 4 {
        let n = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        out.push(qubes_rpc::frame::decode(&rest[4..4 + n]).expect("the daemon sends well-formed frames"));
        rest = &rest[4 + n..];
    }
    assert!(rest.is_empty(), "no partial frame");
    out
}
