//! A whole call, as the vault serves it: `qvault::session::serve_call` with
//! the input as every byte the caller sends, over `qvault.Gpg`, over
//! `qvault.Gpg+FPR` bound to the vault's key and to a key it does not hold,
//! and over `qvault.LogRead`, against a real vault built once, as `qvault init` and
//! `qvault keygen` build one (a temporary home under /dev/shm or $TMPDIR: a
//! generated Ed25519 key, its log, a permissive policy with client-side
//! hashing on and a data limit, no confirmation question).
//!
//! Besides "does not panic", the answer must be well-formed: whole frames, an
//! `Error` only as the last frame, a signature only over `qvault.Gpg`, after
//! `Ready`, and each signature adds exactly one log entry (nothing is signed
//! off the record); `qvault.LogRead` never answers with keys, plans or
//! signatures, and a call bound to a key the vault does not hold never signs
//! and lists no key.
//!
//! Signatures append to the log, so a long run grows it; the vault is built
//! again (in a fresh directory) once its log passes `REBUILD_AT` entries.
#![no_main]

use std::path::PathBuf;
use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use qubes_rpc::{frame, KeyArgument, QubeName, ServerFrame};
use qvault::cli::Algo;
use qvault::gate::Gate;
use qvault::home::Home;
use qvault::keystore::{Keystore, Origin};
use qvault::log::Log;
use qvault::policy::Policy;
use qvault::policy_file::PolicyFile;
use qvault::session::{serve_call, Service, Vault};

const POLICY: &str = r#"version = 1

[[rule]]
caller = "work"
keys = ["*"]
operations = ["list", "export", "sign-detached", "sign-cleartext", "sign-inline"]
confirm = "allow"
client_hash = true
max_data_bytes = 1048576
"#;

const REBUILD_AT: u64 = 5000;

struct Fixture {
    dir: PathBuf,
    vault: Vault,
}

fn base_dir() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

fn build(generation: u32) -> Fixture {
    let dir = base_dir().join(format!("qvault-fuzz-serve_call-{}-{generation}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let home = Home::resolve(Some(dir.clone())).expect("home");
    home.init("fuzz", false).expect("qvault init");
    std::fs::write(home.policy_path(), POLICY).expect("policy");
    let log = Log::create(&home.log_dir(), "fuzz").expect("log");
    let mut keystore = Keystore::load(&home.keys_dir()).expect("keystore");
    let (cert, _rev) = qvault::keygen::generate("Fuzz Seed <seed@example.org>", Algo::Ed25519, None).expect("keygen");
    keystore.add(cert, Origin::Generated, &log).expect("add key");
    // Fixed: the target drives calls, not policy-file reloads (policy_file.rs tests those).
    let policy = PolicyFile::fixed(Policy::parse(POLICY).expect("the fuzz policy parses"));
    Fixture { dir, vault: Vault { keystore, log, policy, gate: Gate::in_memory(), declared: None, desktop: None } }
}

static FIXTURE: Mutex<Option<(u32, Fixture)>> = Mutex::new(None);

fn log_size(v: &Vault) -> u64 {
    v.log.latest().0.size
}

/// A fingerprint no key of the fixture has.
const ABSENT: &str = "0000000000000000000000000000000000000000";

fn check(service: Service, before: u64, after: u64, out: &[u8]) {
    let mut frames = Vec::new();
    let mut rest = out;
    while !rest.is_empty() {
        assert!(rest.len() >= 4, "a partial frame header in the answer");
        let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        assert!(rest.len() >= 4 + n, "a partial frame in the answer");
        let f: ServerFrame<'_> = frame::decode(&rest[4..4 + n]).expect("the vault sends well-formed frames");
        frames.push(f);
        rest = &rest[4 + n..];
    }
    if let Some(i) = frames.iter().position(|f| matches!(f, ServerFrame::Error(_))) {
        assert_eq!(i, frames.len() - 1, "an Error frame is the last frame");
    }
    let signed = frames.iter().filter(|f| matches!(f, ServerFrame::Signed(_))).count();
    assert!(signed <= 1, "one call, at most one signature");
    let absent = Service::GpgKey(KeyArgument::parse(ABSENT).expect("a fingerprint"));
    if service == absent {
        assert_eq!(signed, 0, "a signature over a call bound to a key the vault does not hold");
        for f in &frames {
            if let ServerFrame::Keys(k) = f {
                assert!(k.is_empty(), "a key listed over a call bound to another key");
            }
        }
    }
    if signed == 1 {
        assert!(matches!(service, Service::Gpg | Service::GpgKey(_)), "a signature over qvault.LogRead");
        assert!(matches!(frames.first(), Some(ServerFrame::Ready(_))), "a signature without a plan first");
        assert_eq!(after, before + 1, "a signature adds exactly one log entry");
    } else {
        assert_eq!(after, before, "the log grew without a signature");
    }
    if service == Service::LogRead {
        assert!(
            !frames.iter().any(|f| matches!(f, ServerFrame::Keys(_) | ServerFrame::Ready(_))),
            "qvault.LogRead answered a key listing or a signing plan"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut guard = FIXTURE.lock().unwrap_or_else(|p| p.into_inner());
    let rebuild = match guard.as_ref() {
        None => Some(0),
        Some((g, f)) if log_size(&f.vault) > REBUILD_AT => Some(g + 1),
        Some(_) => None,
    };
    if let Some(generation) = rebuild {
        if let Some((_, old)) = guard.take() {
            let dir = old.dir.clone();
            drop(old);
            let _ = std::fs::remove_dir_all(dir);
        }
        *guard = Some((generation, build(generation)));
    }
    let Some((_, fixture)) = guard.as_ref() else { return };
    let vault = &fixture.vault;
    let source = QubeName::parse("work").expect("qube name");
    let own = vault.keystore.keys()[0].cert.fingerprint().to_hex().to_ascii_uppercase();
    let bound = |fpr: &str| Service::GpgKey(KeyArgument::parse(fpr).expect("a fingerprint"));
    for service in [Service::Gpg, bound(&own), bound(ABSENT), Service::LogRead] {
        let before = log_size(vault);
        let mut out = Vec::new();
        // A transport error is a legitimate outcome for hostile bytes.
        let _ = serve_call(vault, service, &source, data, &mut out);
        check(service, before, log_size(vault), &out);
    }
});
