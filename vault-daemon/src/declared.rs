//! The vault's declared state (`vault_state` log entries): its version, the
//! digest of its own binary, the policy in force, the network interfaces
//! present, and the qube's name and template from qubesdb. Self-reported, and
//! marked so: a vault that lies about itself lies on the record.
//!
//! Declared when `serve` starts, and before a signature whenever it differs
//! from the state last declared (an interface appeared, the policy changed, a
//! new binary runs a `qvault rpc` call). The last declared state is kept in
//! the state directory so that one-process-per-call exec mode declares only
//! changes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use qvault_attest::entry::Event;
use sha2::{Digest, Sha256};

use crate::fsutil;
use crate::log::Log;

pub struct Declared {
    /// `declared-state`: the digest of the state last declared.
    seen: PathBuf,
    /// `exe-digest`: the binary's digest, under the stat it was computed for
    /// (hashing a large binary at every exec-mode call would be slow).
    exe_cache: PathBuf,
    fixed: Mutex<Option<Fixed>>,
}

/// What does not change while the process runs.
#[derive(Clone)]
struct Fixed {
    binary_sha256: String,
    qube_name: Option<String>,
    qube_template: Option<String>,
}

impl Declared {
    pub fn new(state_dir: &Path) -> Declared {
        Declared {
            seen: state_dir.join("declared-state"),
            exe_cache: state_dir.join("exe-digest"),
            fixed: Mutex::new(None),
        }
    }

    fn fixed(&self) -> anyhow::Result<Fixed> {
        let mut f = self.fixed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = &*f {
            return Ok(f.clone());
        }
        let fixed = Fixed {
            binary_sha256: exe_digest(&self.exe_cache)?,
            qube_name: qubesdb_read("/name"),
            qube_template: qubesdb_read("/template"),
        };
        *f = Some(fixed.clone());
        Ok(fixed)
    }

    /// The state now, as a log event.
    pub fn current(&self, policy_digest: &str) -> anyhow::Result<Event> {
        let f = self.fixed()?;
        Ok(Event::VaultState {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            binary_sha256: f.binary_sha256,
            policy_digest: policy_digest.to_owned(),
            interfaces: crate::log::interfaces(),
            qube_name: f.qube_name,
            qube_template: f.qube_template,
            self_reported: true,
        })
    }

    /// Logs the current state if `always`, or if it differs from the last
    /// state declared. An error means the state could not be declared: the
    /// caller does not sign under an undeclared state.
    pub fn declare(&self, log: &Log, policy_digest: &str, always: bool) -> anyhow::Result<()> {
        let event = self.current(policy_digest)?;
        let digest = hex::encode(Sha256::digest(serde_json::to_vec(&event)?));
        if !always && std::fs::read_to_string(&self.seen).ok().as_deref() == Some(digest.as_str()) {
            return Ok(());
        }
        log.append(None, |_| Ok((event, ())))?;
        // The state is on the record now; the file only spares the next call
        // a duplicate entry, so failing to write it fails nothing.
        if let Err(e) = write_state_file(&self.seen, digest.as_bytes()) {
            tracing::warn!("cannot remember the declared state in {}: {e}", self.seen.display());
        }
        Ok(())
    }
}

/// SHA-256 of `/proc/self/exe`, cached under the binary's device, inode,
/// size and change time.
fn exe_digest(cache: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::MetadataExt as _;
    let exe = Path::new("/proc/self/exe");
    let m = std::fs::metadata(exe)?;
    let stamp = format!("{} {} {} {}.{}", m.dev(), m.ino(), m.len(), m.ctime(), m.ctime_nsec());
    if let Ok(text) = std::fs::read_to_string(cache) {
        if let Some((s, d)) = text.rsplit_once(' ') {
            if s == stamp && d.len() == 64 {
                return Ok(d.to_owned());
            }
        }
    }
    let mut h = Sha256::new();
    std::io::copy(&mut std::fs::File::open(exe)?, &mut h)?;
    let d = hex::encode(h.finalize());
    // A cache: when it cannot be written (a full disk), the next call hashes again.
    if let Err(e) = write_state_file(cache, format!("{stamp} {d}").as_bytes()) {
        tracing::warn!("cannot cache the binary's digest in {}: {e}", cache.display());
    }
    Ok(d)
}

fn write_state_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fsutil::ensure_private_dir(dir)?;
    }
    fsutil::write_private(path, contents)
}

/// One qubesdb key, when `qubesdb-read` exists and answers; bounded.
fn qubesdb_read(key: &str) -> Option<String> {
    let out = Command::new("qubesdb-read")
        .arg(key)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let v = std::str::from_utf8(&out.stdout).ok()?.trim().to_owned();
    (!v.is_empty() && v.len() <= 64 && !v.chars().any(char::is_control)).then_some(v)
}
