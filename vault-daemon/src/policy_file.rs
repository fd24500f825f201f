//! The policy as the file says now. At the start of every call the vault stats
//! `policy.toml` (mtime and ctime with nanoseconds, size, inode, device) and
//! re-reads it when any of them changed; a valid new policy is used from that
//! call on and recorded in the log (`PolicyChanged`, once per distinct text, also
//! across `qvault rpc` processes: the last recorded digest is kept in the state
//! directory). A policy that cannot be read or does not validate refuses every
//! call with the file and the reason, until the file is fixed: the vault never
//! falls back to an older policy or to allowing.
//!
//! Timestamps have a coarse tick, so a file written twice within one tick can
//! keep its stat: like git's "racy" index entries, a stat taken less than
//! [`RACY`] after the file's mtime is not trusted, and the next call reads the
//! file again (and compares digests) instead.

use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::fsutil;
use crate::log::Log;
use crate::policy::{self, Policy};

/// A file modified this recently may change again without its stat changing.
const RACY: Duration = Duration::from_secs(2);

/// Larger files are refused before reading (the parser refuses them anyway).
const MAX_READ: u64 = 1 << 20;

/// What identifies one version of the file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: (i64, i64),
    ctime: (i64, i64),
    size: u64,
    ino: u64,
    dev: u64,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            size: m.size(),
            ino: m.ino(),
            dev: m.dev(),
        }
    }

    /// Could the file change again within the same timestamp tick? Judged by
    /// the later of mtime and ctime (a restored mtime does not make it old).
    fn racy(&self, now: SystemTime) -> bool {
        let (secs, nanos) = self.mtime.max(self.ctime);
        let changed =
            SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs.max(0) as u64, nanos.clamp(0, 999_999_999) as u32));
        match changed.map(|m| now.duration_since(m)) {
            Some(Ok(age)) => age < RACY,
            // In the future, or unrepresentable: never trust it.
            _ => true,
        }
    }
}

/// Why no call can be served under the current file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the vault's policy {path} {why}; every call is refused until it is fixed")]
pub struct PolicyUnavailable {
    pub path: String,
    pub why: String,
}

struct Loaded {
    /// The stat the current state was read under; `None` forces a re-read.
    stamp: Option<Stamp>,
    /// Digest of the text the current state came from.
    digest: Option<String>,
    current: Result<Arc<Policy>, PolicyUnavailable>,
}

/// Where the policy comes from.
enum Source {
    /// Admin commands that serve no calls: no rules, no file.
    Fixed(Arc<Policy>),
    File {
        path: PathBuf,
        seen: PathBuf,
        loaded: Mutex<Loaded>,
    },
}

pub struct PolicyFile(Source);

impl PolicyFile {
    /// A policy that is not read from any file (admin commands; tests).
    pub fn fixed(policy: Policy) -> PolicyFile {
        PolicyFile(Source::Fixed(Arc::new(policy)))
    }

    /// A file not read yet: the first [`PolicyFile::current`] reads it.
    /// `state_dir` keeps the digest last recorded in the log.
    pub fn new(path: PathBuf, state_dir: &Path) -> PolicyFile {
        let loaded = Loaded {
            stamp: None,
            digest: None,
            current: Err(PolicyUnavailable { path: path.display().to_string(), why: "was not read yet".into() }),
        };
        PolicyFile(Source::File { path, seen: state_dir.join("policy-digest"), loaded: Mutex::new(loaded) })
    }

    /// SHA-256 of the policy text in force (hex), once a file was read; `None`
    /// for a fixed policy.
    pub fn digest(&self) -> Option<String> {
        match &self.0 {
            Source::Fixed(_) => None,
            Source::File { loaded, .. } => loaded.lock().unwrap_or_else(|p| p.into_inner()).digest.clone(),
        }
    }

    /// The policy for a call starting now: re-read if the file changed, and
    /// recorded in `log` when its text is new.
    pub fn current(&self, log: &Log) -> Result<Arc<Policy>, PolicyUnavailable> {
        self.current_at(log, SystemTime::now)
    }

    /// [`PolicyFile::current`] with the clock the racy check reads.
    fn current_at(&self, log: &Log, now: impl Fn() -> SystemTime) -> Result<Arc<Policy>, PolicyUnavailable> {
        let (path, seen, loaded) = match &self.0 {
            Source::Fixed(p) => return Ok(p.clone()),
            Source::File { path, seen, loaded } => (path, seen, loaded),
        };
        // One call re-reads at a time; the others wait and use its result.
        let mut l = loaded.lock().unwrap_or_else(|p| p.into_inner());
        let stat = std::fs::metadata(path).map(|m| Stamp::of(&m));
        if let (Ok(now), Some(before)) = (&stat, l.stamp) {
            if *now == before {
                return l.current.clone();
            }
        }
        let unavailable = |why: String| PolicyUnavailable { path: path.display().to_string(), why };
        let read = read_stamped(path);
        let (stamp, text) = match read {
            Ok(r) => r,
            Err(e) => {
                let u = unavailable(format!("cannot be read ({e})"));
                if l.current.as_ref().err() != Some(&u) {
                    tracing::warn!("{u}");
                }
                *l = Loaded { stamp: None, digest: None, current: Err(u) };
                return l.current.clone();
            }
        };
        // A stat inside the racy window is not kept: the next call reads again.
        let keep = (!stamp.racy(now())).then_some(stamp);
        let digest = hex::encode(Sha256::digest(&text));
        if l.digest.as_deref() == Some(digest.as_str()) {
            l.stamp = keep;
            return l.current.clone();
        }
        let parsed = std::str::from_utf8(&text)
            .map_err(|_| unavailable("is not UTF-8 text".into()))
            .and_then(|t| Policy::parse(t).map_err(|e| unavailable(format!("is invalid: {e}"))));
        match parsed {
            Ok(p) => {
                // Recorded before it decides anything; if the log cannot take
                // the entry, nothing is decided under it (the next call retries).
                if let Err(e) = record(log, seen, &digest) {
                    tracing::warn!("cannot record the new policy in the log: {e:#}");
                    return Err(unavailable(format!("changed and could not be recorded in the log ({e})")));
                }
                tracing::info!(digest = %digest, rules = p.rules.len(), "policy loaded");
                *l = Loaded { stamp: keep, digest: Some(digest), current: Ok(Arc::new(p)) };
            }
            Err(u) => {
                tracing::warn!("{u}");
                *l = Loaded { stamp: keep, digest: Some(digest), current: Err(u) };
            }
        }
        l.current.clone()
    }
}

/// The file's text, with the stat of the very file that was read (taken before
/// reading, so a later write always changes it).
fn read_stamped(path: &Path) -> std::io::Result<(Stamp, Vec<u8>)> {
    let f = std::fs::File::open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > MAX_READ {
        return Err(std::io::Error::other(format!("larger than {MAX_READ} bytes")));
    }
    let mut text = Vec::with_capacity(meta.len() as usize);
    f.take(MAX_READ + 1).read_to_end(&mut text)?;
    Ok((Stamp::of(&meta), text))
}

/// Logs the policy's digest when it differs from the last one logged.
fn record(log: &Log, seen: &Path, digest: &str) -> anyhow::Result<()> {
    if std::fs::read_to_string(seen).ok().as_deref() == Some(digest) {
        return Ok(());
    }
    let policy_digest = digest.to_owned();
    log.append(None, |_| Ok((qvault_attest::Event::PolicyChanged { policy_digest }, ())))?;
    if let Some(dir) = seen.parent() {
        fsutil::ensure_private_dir(dir)?;
    }
    fsutil::write_private(seen, digest.as_bytes())?;
    Ok(())
}

/// Records `text` as the current policy (at `init`, before any call).
pub fn record_text(log: &Log, state_dir: &Path, text: &str) -> anyhow::Result<()> {
    record(log, &state_dir.join("policy-digest"), &hex::encode(Sha256::digest(text.as_bytes())))
}

/// An empty policy: no rule, the default question (admin commands).
pub fn empty() -> Policy {
    Policy { rules: Vec::new(), confirm: policy::default_confirm() }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOW: &str =
        "version = 1\n[[rule]]\ncaller = \"*\"\nkeys = \"*\"\noperations = [\"sign-detached\"]\nconfirm = \"allow\"\n";
    const DENY: &str =
        "version = 1\n[[rule]]\ncaller = \"*\"\nkeys = \"*\"\noperations = [\"sign-detached\"]\nconfirm = \"deny\"\n";

    fn changes(log: &Log) -> usize {
        let mut out = Vec::new();
        log.export(&mut out).unwrap();
        String::from_utf8_lossy(&out).matches("policy_changed").count()
    }

    fn setup() -> (tempfile::TempDir, Log, PathBuf, PolicyFile) {
        let d = tempfile::tempdir().unwrap();
        let log = Log::create(&d.path().join("log"), "test").unwrap();
        let path = d.path().join("policy.toml");
        std::fs::write(&path, ALLOW).unwrap();
        let pf = PolicyFile::new(path.clone(), &d.path().join("state"));
        (d, log, path, pf)
    }

    fn confirm_of(pf: &PolicyFile, log: &Log) -> crate::policy::Confirm {
        pf.current(log).unwrap().rules[0].confirm
    }

    #[test]
    fn an_edit_applies_to_the_next_call_and_is_logged_once() {
        let (_d, log, path, pf) = setup();
        let base = changes(&log);
        assert_eq!(confirm_of(&pf, &log), crate::policy::Confirm::Allow);
        assert_eq!(changes(&log), base + 1);
        // Same length, same tick: the racy rule still sees the edit.
        std::fs::write(&path, DENY.replace("deny", "alow")).unwrap();
        assert!(pf.current(&log).unwrap_err().to_string().contains("is invalid: line 6"));
        std::fs::write(&path, DENY).unwrap();
        assert_eq!(confirm_of(&pf, &log), crate::policy::Confirm::Deny);
        assert_eq!(changes(&log), base + 2);
        // Unchanged: not logged again, by this reader or by a new process's.
        assert_eq!(confirm_of(&pf, &log), crate::policy::Confirm::Deny);
        let again = PolicyFile::new(path.clone(), &_d.path().join("state"));
        assert_eq!(confirm_of(&again, &log), crate::policy::Confirm::Deny);
        assert_eq!(changes(&log), base + 2);
        // Replaced by rename (a new inode), as editors do.
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, ALLOW).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(confirm_of(&pf, &log), crate::policy::Confirm::Allow);
        assert_eq!(changes(&log), base + 3);
    }

    #[test]
    fn unreadable_or_invalid_fails_closed_until_fixed() {
        let (_d, log, path, pf) = setup();
        pf.current(&log).unwrap();
        std::fs::remove_file(&path).unwrap();
        let e = pf.current(&log).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()) && e.contains("cannot be read"), "{e}");
        assert!(e.contains("every call is refused until it is fixed"), "{e}");
        std::fs::write(&path, b"version = 1\n\xff\n").unwrap();
        assert!(pf.current(&log).unwrap_err().to_string().contains("is not UTF-8"));
        std::fs::write(&path, "version = 2\n").unwrap();
        let e = pf.current(&log).unwrap_err().to_string();
        assert!(e.contains("is invalid: line 1: unsupported policy version 2"), "{e}");
        // Still refused on the next call, without a re-read in between.
        assert!(pf.current(&log).is_err());
        std::fs::write(&path, ALLOW).unwrap();
        assert!(pf.current(&log).is_ok());
    }

    #[test]
    fn a_settled_file_is_not_read_again() {
        let (_d, log, path, pf) = setup();
        // Just written: racy, so its stat is not kept and the next call reads.
        pf.current(&log).unwrap();
        assert!(pf_stamp(&pf).is_none());
        // Seen a minute later: settled, the stat is kept.
        let later = || SystemTime::now() + Duration::from_secs(60);
        pf.current_at(&log, later).unwrap();
        let kept = pf_stamp(&pf).expect("a settled file's stat is kept");
        // The same stat: kept. A write changes it, and the file is read again.
        pf.current_at(&log, later).unwrap();
        assert_eq!(pf_stamp(&pf), Some(kept));
        std::fs::write(&path, DENY).unwrap();
        assert_eq!(pf.current_at(&log, later).unwrap().rules[0].confirm, crate::policy::Confirm::Deny);
        assert_ne!(pf_stamp(&pf), Some(kept));
        let now = SystemTime::now();
        let s = Stamp { mtime: (0, 0), ctime: (0, 0), size: 0, ino: 0, dev: 0 };
        assert!(!s.racy(now));
        let secs = now.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
        assert!(Stamp { ctime: (secs, 0), ..s }.racy(now), "a recent ctime is racy whatever the mtime");
        assert!(Stamp { mtime: (secs + 1000, 0), ..s }.racy(now), "a future time is never trusted");
    }

    fn pf_stamp(pf: &PolicyFile) -> Option<Stamp> {
        match &pf.0 {
            Source::File { loaded, .. } => loaded.lock().unwrap().stamp,
            Source::Fixed(_) => None,
        }
    }
}
