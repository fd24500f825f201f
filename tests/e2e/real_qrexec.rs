//! Over Qubes' REAL qrexec (tests/qrexec-real: qrexec-client-vm, qrexec-agent,
//! qrexec-daemon and the policy daemon built from Qubes' sources), with the
//! vault's packaged service entries and dom0 policy: signing from `work`, the
//! log fetched from `audit`, a refusal for `disp1`, and the caller's name as
//! the agent writes it. Without root (for the bed's namespaces) these skip
//! with a printed reason, except under CI=true, where they fail.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use qvault_e2e::*;

/// dom0 rules read before the shipped 30-qvault.policy (whose default, "ask",
/// has no GUI here and so refuses).
const POLICY: &str = "\
qvault.Gpg      *  work   vault   allow
qvault.LogRead  *  audit  vault   allow
qvault.Gpg      *  disp1  @anyvm  deny notify=no
";

fn real_world() -> Option<World> {
    let mut w = World::new();
    w.serve_real_qrexec(POLICY).then_some(w)
}

/// Runs a command, failing the test if it has not finished in 60 s: a refused
/// call must end, not hang.
fn run_bounded(cmd: &mut Command) -> Output {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn sign(w: &World, data: &Path, sig: &Path) -> Output {
    run_bounded(&mut w.shim(&["-b", "--yes", "-o", sig.to_str().unwrap(), data.to_str().unwrap()]))
}

fn real(w: &World) -> &RealQrexec {
    w.real.as_ref().expect("real qrexec")
}

#[test]
fn shipped_dom0_policy_passes_qubes_policy_lint() {
    // Needs only the build (no root).
    let lint = qrexec_real_prefix().join("bin/qubes-policy-lint");
    if !lint.exists() {
        let why = format!("{} is missing: run tests/qrexec-real/build", lint.display());
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("SKIPPED: {why}");
        return;
    }
    let shipped = workspace_dir().join("qubes-rpc/qubes-rpc-files/30-qvault.policy");
    let o = run(Command::new(&lint).arg("--show-line").arg(&shipped));
    assert_ok(&o);
    // The linter can fail: a rule with an action Qubes does not know.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("30-qvault.policy");
    let text = std::fs::read_to_string(&shipped).unwrap();
    std::fs::write(&broken, text.replace("@tag:qvault-vault  ask", "@tag:qvault-vault  permit")).unwrap();
    let o = run(Command::new(&lint).arg(&broken));
    assert!(!o.status.success(), "qubes-policy-lint accepted a broken policy");
}

#[test]
fn detached_signature_from_work_verifies_with_gpgv_and_sqv() {
    let Some(w) = real_world() else { return };
    let data = w.path("data.txt");
    std::fs::write(&data, "signed over Qubes' own qrexec\n").unwrap();
    let sig = w.path("data.sig");
    let o = sign(&w, &data, &sig);
    assert!(o.status.success(), "qvault-gpg: {}\n{}", stderr(&o), real(&w).logs());
    assert_ok(&gpgv(&w, &[&sig, &data]));
    assert_ok(&sqv(&w, &sig, &data));
    // It went through dom0's policy daemon, which allowed work -> vault.
    let logs = real(&w).logs();
    assert!(logs.contains("qvault.Gpg+: work -> vault: allowed to vault"), "{logs}");
}

#[test]
fn audit_fetches_the_log_over_logread_and_verifies_it_and_the_caller_is_the_agents() {
    let Some(mut w) = real_world() else { return };
    let data = w.path("c");
    std::fs::write(&data, "commit\n").unwrap();
    // The caller in `work` claims to be someone else in every way a process
    // there could: only the name the agent writes in the header counts.
    let mut c = w.shim(&["-b", "--yes", "-o", w.path("c.sig").to_str().unwrap(), data.to_str().unwrap()]);
    c.env("QVAULT_SIM_SOURCE", "audit").env("QREXEC_REMOTE_DOMAIN", "audit").env("QREXEC_SERVICE_FULL_NAME", "x");
    let o = run_bounded(&mut c);
    assert!(o.status.success(), "qvault-gpg: {}\n{}", stderr(&o), real(&w).logs());

    // A caller writing a header of its own: it is only data after the
    // agent's, and the vault signs nothing for it.
    let forged =
        [&b"qvault.Gpg+ audit\0"[..], &frame(&qubes_rpc::ClientFrame::Request(detached_sign_request()))].concat();
    let mut c = w.client_cmd("qrexec-client-vm");
    c.args(["vault", "qvault.Gpg"]);
    let o = run_with_input(&mut c, &forged);
    assert!(
        answers(&o.stdout)
            .iter()
            .all(|f| !matches!(f, qubes_rpc::ServerFrame::Ready(_) | qubes_rpc::ServerFrame::Signed(_))),
        "{:?}",
        o
    );

    w.source = "audit".into();
    let log = w.path("fetched.log");
    let cp = w.path("fetched.cp");
    let mut c = w.client_cmd(bin("qvault-audit").to_str().unwrap());
    c.args(["fetch", "vault", "-o", log.to_str().unwrap(), "--checkpoint", cp.to_str().unwrap()]);
    let o = run_bounded(&mut c);
    assert!(o.status.success(), "fetch: {}\n{}", stderr(&o), real(&w).logs());
    let key = w.log_key();
    let o = w.audit(&["verify-log", log.to_str().unwrap(), "--log-key", &key, "--checkpoint", cp.to_str().unwrap()]);
    assert_ok(&o);
    assert!(stdout(&o).contains("signatures:  1"), "{}", stdout(&o));

    assert_eq!(callers(&log), ["work"], "the log's callers");
}

#[test]
fn dom0_deny_for_disp1_gives_gpgs_error_and_status_2() {
    let Some(mut w) = real_world() else { return };
    w.source = "disp1".into();
    let data = w.path("d");
    std::fs::write(&data, "from a disposable\n").unwrap();
    let sig = w.path("d.sig");
    let o = sign(&w, &data, &sig);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("gpg: "), "{}", stderr(&o));
    assert!(stderr(&o).contains("dom0's qrexec policy refused the call"), "{}", stderr(&o));
    assert!(!sig.exists() || std::fs::metadata(&sig).unwrap().len() == 0);
    let logs = real(&w).logs();
    assert!(
        logs.contains("disp1 -> vault: denied: denied by policy") && logs.contains("20-qvault-test.policy:3"),
        "{logs}"
    );
}

#[test]
fn exec_service_mode_signs_from_work_and_logs_work() {
    let mut w = World::new();
    if !w.exec_real_qrexec(POLICY) {
        return;
    }
    let data = w.path("e.txt");
    std::fs::write(&data, "signed by qvault rpc, run by the vault's real agent\n").unwrap();
    let sig = w.path("e.sig");
    let o = sign(&w, &data, &sig);
    assert!(o.status.success(), "qvault-gpg: {}\n{}", stderr(&o), real(&w).logs());
    assert_ok(&gpgv(&w, &[&sig, &data]));
    assert_ok(&sqv(&w, &sig, &data));
    let export = w.export_log("exec.export");
    assert_eq!(callers(&export), ["work"], "the log's callers");
}

/// The calling qubes the entries of an exported log name, in log order.
fn callers(export: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(export)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("entry "))
        .map(|j| serde_json::from_str::<serde_json::Value>(j).unwrap())
        .filter_map(|e| e.get("source").and_then(|s| s.as_str()).map(str::to_owned))
        .collect()
}
