//! Real C2SP tlog-witnesses for the tests: PyPI's aics-witness on
//! 127.0.0.1 (installed by scripts/tlog-peers into the target directory),
//! and tlog-policy files naming them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use qvault_attest::note::Verifier;

use crate::*;

/// The directory of aics-witness and aics-tlog, or None (after saying why)
/// where they are missing; under CI=true that is a failure.
pub fn peers() -> Option<PathBuf> {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_dir().join("target"));
    let bin = target.join("pyenv/tlog/bin");
    if bin.join("aics-witness").is_file() && bin.join("aics-tlog").is_file() {
        return Some(bin);
    }
    let why = format!("{} lacks aics-witness: run scripts/tlog-peers (scripts/deps does)", bin.display());
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    eprintln!("SKIPPING: {why}");
    None
}

/// One aics-witness serving on 127.0.0.1, trusting one log.
pub struct AicsWitness {
    child: Option<Child>,
    pub url: String,
    pub vkey: String,
}

impl AicsWitness {
    pub fn start(bin: &Path, dir: &Path, name: &str, log_key: &Verifier) -> AicsWitness {
        let cfg = dir.join(name).join("witness.json");
        let w = bin.join("aics-witness");
        let o = run(Command::new(&w).args(["init", "-c"]).arg(&cfg).args(["--name", name, "--listen", "127.0.0.1:0"]));
        assert_ok(&o);
        let vkey =
            stdout(&o).lines().find(|l| l.starts_with(&format!("{name}+"))).expect("init prints the vkey").to_owned();
        assert_ok(&run(Command::new(&w).args(["add-log", "-c"]).arg(&cfg).args([
            "--origin",
            &log_key.name,
            "--vkey",
            &log_key.encode(),
        ])));
        let mut child = Command::new(&w)
            .args(["serve", "-c"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start aics-witness");
        // Wait for the line that says where it listens (an event, not a sleep).
        let mut err = BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        let url = loop {
            line.clear();
            assert!(err.read_line(&mut line).expect("read stderr") > 0, "aics-witness {name} exited before listening");
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().expect("url").to_owned();
            }
        };
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in err.lines() {});
        AicsWitness { child: Some(child), url, vkey }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for AicsWitness {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A tlog-policy file: the log, witnesses A, B, C (in order) and `quorum`
/// (its group and quorum lines).
pub fn policy(w: &World, file: &str, log_key: &str, ws: &[&AicsWitness], quorum: &str) -> PathBuf {
    let mut text = format!("# qvault test policy\nlog {log_key}\n");
    for (i, x) in ws.iter().enumerate() {
        text.push_str(&format!("witness {} {} {}\n", ["A", "B", "C"][i], x.vkey, x.url));
    }
    text.push_str(&format!("{quorum}\n"));
    let p = w.path(file);
    std::fs::write(&p, text).expect("write policy");
    p
}

/// A throwaway CA and two server certificates it issues, made with the
/// openssl CLI: `good` names 127.0.0.1, `wrong` names another host.
pub struct TestCa {
    pub ca: PathBuf,
    pub good: (PathBuf, PathBuf),
    pub wrong: (PathBuf, PathBuf),
}

impl TestCa {
    pub fn new(dir: &Path) -> TestCa {
        let d = dir.join("tls");
        std::fs::create_dir_all(&d).expect("tls dir");
        let p = |n: &str| d.join(n).to_str().expect("utf-8 path").to_owned();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        assert_ok(&run(Command::new("openssl")
            .args(["req", "-x509"])
            .args(ec)
            .args(["-keyout", &p("ca.key"), "-out", &p("ca.pem"), "-days", "2", "-subj", "/CN=qvault test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"])));
        let issue =
            |name: &str, san: &str| {
                let (key, csr, crt, ext) = (
                    p(&format!("{name}.key")),
                    p(&format!("{name}.csr")),
                    p(&format!("{name}.pem")),
                    p(&format!("{name}.ext")),
                );
                std::fs::write(
                    &ext,
                    format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
                )
                .expect("ext");
                assert_ok(&run(Command::new("openssl").args(["req", "-new"]).args(ec).args([
                    "-keyout",
                    &key,
                    "-out",
                    &csr,
                    "-subj",
                    &format!("/CN={name}"),
                ])));
                assert_ok(&run(Command::new("openssl")
                    .args(["x509", "-req", "-in", &csr, "-CA", &p("ca.pem")])
                    .args(["-CAkey", &p("ca.key"), "-CAcreateserial", "-days", "2", "-out", &crt, "-extfile", &ext])));
                (PathBuf::from(crt), PathBuf::from(key))
            };
        let good = issue("good", "IP:127.0.0.1");
        let wrong = issue("wrong", "DNS:witness.example,IP:127.0.0.2");
        TestCa { ca: d.join("ca.pem"), good, wrong }
    }
}

/// tests/interop/https-front/https-front.py on 127.0.0.1: https:// with
/// the given certificate in front of a plain-HTTP witness.
pub struct HttpsFront {
    child: Child,
    pub url: String,
}

impl HttpsFront {
    pub fn start(backend: &str, (cert, key): &(PathBuf, PathBuf)) -> HttpsFront {
        let script = workspace_dir().join("tests/interop/https-front/https-front.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .args(["--backend", backend])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start https-front.py");
        let mut err = BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        let url = loop {
            line.clear();
            assert!(err.read_line(&mut line).expect("read stderr") > 0, "https-front.py exited before listening");
            if let Some(rest) = line.strip_prefix("listening on ") {
                break rest.trim().to_owned();
            }
        };
        std::thread::spawn(move || for _ in err.lines() {});
        HttpsFront { child, url }
    }
}

impl Drop for HttpsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `qvault-audit witness LOG --log-key KEY --policy POLICY --state STATE` and `more`.
pub fn witness_cmd(w: &World, log: &Path, key: &str, policy: &Path, state: &Path, more: &[&str]) -> Output {
    let mut args = vec![
        "witness",
        log.to_str().unwrap(),
        "--log-key",
        key,
        "--policy",
        policy.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ];
    args.extend_from_slice(more);
    w.audit(&args)
}

/// Three aics-witnesses (w1, w2, w3.example) trusting the log of `log_key`.
pub fn three_witnesses(bin: &Path, w: &World, log_key: &Verifier) -> [AicsWitness; 3] {
    ["w1.example", "w2.example", "w3.example"].map(|n| AicsWitness::start(bin, w.dir.path(), n, log_key))
}
