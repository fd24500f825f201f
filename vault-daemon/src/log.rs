//! The vault's side of the attestation log: durable appends with group commit,
//! tree hashes on disk, signed checkpoints, proofs, torn-tail repair, one writer.
//!
//! Files under `log/`: `entries` (one entry per line, the only file that must be
//! durable: everything else is rebuilt from it), `tree/NN` (complete-subtree
//! hashes of level NN, 32 bytes each), `checkpoint` (the newest signed
//! checkpoint), `checkpoints` (history, base64 notes), `key` (the Ed25519 log
//! key, 0600, never exported), `origin`, `lock`.
//!
//! Invariant: an entry's signature is released only after `append` returns, and
//! `append` returns only after the entry is fsynced.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use nix::fcntl::{Flock, FlockArg};
use qvault_attest::bundle;
use qvault_attest::entry::{Entry, Event};
use qvault_attest::merkle::{leaf_hash, Frontier, Hash, Subtrees};
use qvault_attest::note::{Checkpoint, Verifier};
use qvault_attest::receipt::{hex_hashes, KeyEntry, Receipt, RECEIPT_VERSION};
use zeroize::Zeroize as _;

use crate::fsutil;

/// A new history checkpoint is stored each time this many entries were added.
const HISTORY_EVERY: u64 = 1024;
const MAX_LEVELS: usize = 64;

/// Complete-subtree hashes, one file per level.
struct Levels {
    dir: PathBuf,
    files: Vec<File>,
}

impl Levels {
    fn open(dir: &Path) -> std::io::Result<Levels> {
        fsutil::ensure_private_dir(dir)?;
        let mut files = Vec::new();
        for l in 0..MAX_LEVELS {
            let p = dir.join(format!("{l:02}"));
            if !p.exists() && l > 0 {
                break;
            }
            files.push(OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(p)?);
        }
        Ok(Levels { dir: dir.to_owned(), files })
    }

    fn file(&mut self, level: usize) -> std::io::Result<&File> {
        while self.files.len() <= level {
            let p = self.dir.join(format!("{:02}", self.files.len()));
            self.files
                .push(OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(p)?);
        }
        Ok(&self.files[level])
    }

    fn write(&mut self, level: u32, index: u64, h: &Hash) -> std::io::Result<()> {
        self.file(level as usize)?.write_all_at(h, index * 32)
    }

    fn len(&self, level: usize) -> u64 {
        self.files.get(level).and_then(|f| f.metadata().ok()).map_or(0, |m| m.len() / 32)
    }

    fn truncate_to(&mut self, size: u64) -> std::io::Result<()> {
        for (l, f) in self.files.iter().enumerate() {
            f.set_len((size >> l) * 32)?;
        }
        Ok(())
    }
}

impl Subtrees for Levels {
    type Error = std::io::Error;
    fn complete(&self, level: u32, index: u64) -> std::io::Result<Hash> {
        let f = self.files.get(level as usize).ok_or_else(|| std::io::Error::other("missing tree level"))?;
        let mut h = [0u8; 32];
        f.read_exact_at(&mut h, index * 32)?;
        Ok(h)
    }
}

struct State {
    entries: File,
    /// Length of `entries` covering `frontier.size()` whole entries.
    bytes: u64,
    frontier: Frontier,
    levels: Levels,
}

struct Committed {
    size: u64,
    note: String,
    checkpoint: Checkpoint,
    /// Size of the newest checkpoint in the history file.
    history_size: Option<u64>,
}

pub struct Log {
    dir: PathBuf,
    origin: String,
    key: SigningKey,
    verifier: Verifier,
    state: Mutex<State>,
    committed: Mutex<Committed>,
    _lock: Flock<File>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves files consistent (writes are
    // positional and the size only advances after success), so go on.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn now() -> i64 {
    crate::keystore::now_secs()
}

fn take_lock(dir: &Path, wait: Duration) -> anyhow::Result<Flock<File>> {
    let f =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(dir.join("lock"))?;
    let deadline = Instant::now() + wait;
    let mut f = f;
    loop {
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(l) => return Ok(l),
            Err((back, _)) if Instant::now() < deadline => {
                f = back;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => anyhow::bail!(
                "the log in {} is held by another qvault process (a running `qvault serve`?)",
                dir.display()
            ),
        }
    }
}

fn origin_for(vault: &str) -> String {
    let clean: String = vault
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') { c } else { '-' })
        .collect();
    let mut rnd = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut rnd);
    format!("qvault.invalid/{clean}/{}", hex::encode(rnd))
}

impl Log {
    /// Creates the log at `qvault init`: key, origin, first entry, checkpoint.
    pub fn create(dir: &Path, vault: &str) -> anyhow::Result<Log> {
        fsutil::ensure_private_dir(dir)?;
        anyhow::ensure!(!dir.join("key").exists(), "a log already exists in {}", dir.display());
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let origin = origin_for(vault);
        let mut seed = key.to_bytes();
        fsutil::write_private(&dir.join("key"), &seed)?;
        seed.zeroize();
        fsutil::write_private(&dir.join("origin"), origin.as_bytes())?;
        let log = Log::open(dir, Duration::ZERO)?;
        let log_key = log.verifier.encode();
        log.append(None, |_| Ok((Event::LogCreated { vault: vault.to_owned(), origin: origin.clone(), log_key }, ())))?;
        Ok(log)
    }

    /// Opens the log, waiting up to `wait` for the writer lock, and repairs a
    /// torn tail left by a crash.
    pub fn open(dir: &Path, wait: Duration) -> anyhow::Result<Log> {
        let lock = take_lock(dir, wait)?;
        let mut seed = [0u8; 32];
        File::open(dir.join("key"))
            .and_then(|mut f| f.read_exact(&mut seed))
            .with_context(|| format!("reading the log key in {}", dir.display()))?;
        let key = SigningKey::from_bytes(&seed);
        seed.zeroize();
        let origin = std::fs::read_to_string(dir.join("origin"))?.trim().to_owned();
        let verifier = Verifier { name: origin.clone(), key: key.verifying_key() };
        let mut entries = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join("entries"))?;
        let mut levels = Levels::open(&dir.join("tree"))?;
        let (size, bytes) = recover(&mut entries, &mut levels)?;
        let frontier = Frontier::from_subtrees(&levels, size)?;
        let checkpoint = Checkpoint { origin: origin.clone(), size, root: frontier.root() };
        let note = checkpoint.sign(&key);
        let history_size = last_history_size(&dir.join("checkpoints"), &verifier);
        let log = Log {
            dir: dir.to_owned(),
            origin,
            key,
            verifier,
            state: Mutex::new(State { entries, bytes, frontier, levels }),
            committed: Mutex::new(Committed { size, note, checkpoint, history_size }),
            _lock: lock,
        };
        if size > 0 {
            // Every start refreshes the newest checkpoint; the history gains one
            // only at the first start or after HISTORY_EVERY new entries.
            let history = history_size.is_none_or(|h| size >= h + HISTORY_EVERY);
            let mut c = lock_committed(&log);
            log.write_latest(&c)?;
            log.store_checkpoint(&mut c, history)?;
            drop(c);
        }
        Ok(log)
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Appends one entry built by `make(index)` (which may sign with that index),
    /// waits until it is durable, and returns its index, `make`'s extra value and
    /// the entry's exact bytes.
    pub fn append<T>(
        &self,
        source: Option<String>,
        make: impl FnOnce(u64) -> anyhow::Result<(Event, T)>,
    ) -> anyhow::Result<(u64, T, Vec<u8>)> {
        let index;
        let extra;
        let bytes;
        {
            let mut st = lock(&self.state);
            index = st.frontier.size();
            let (event, x) = make(index)?;
            extra = x;
            let mut line = Entry::new(index, now(), source, event).encode();
            let leaf = leaf_hash(&line);
            line.push(b'\n');
            let at = st.bytes;
            if let Err(e) = st.entries.write_all_at(&line, at) {
                let _ = st.entries.set_len(at);
                return Err(e).context("writing the log");
            }
            line.pop();
            bytes = line;
            let done = st.frontier.push(leaf);
            for (lvl, idx, h) in done {
                st.levels.write(lvl, idx, &h).context("writing the log's tree")?;
            }
            st.bytes += bytes.len() as u64 + 1;
        }
        self.commit_through(index)?;
        Ok((index, extra, bytes))
    }

    /// Group commit: the first waiter syncs everything written so far.
    fn commit_through(&self, index: u64) -> anyhow::Result<()> {
        let mut c = lock(&self.committed);
        if c.size > index {
            return Ok(());
        }
        let (size, root, file) = {
            let st = lock(&self.state);
            (st.frontier.size(), st.frontier.root(), st.entries.try_clone()?)
        };
        file.sync_data().context("syncing the log")?;
        c.checkpoint = Checkpoint { origin: self.origin.clone(), size, root };
        c.note = c.checkpoint.sign(&self.key);
        c.size = size;
        let history = c.history_size.is_none_or(|h| size >= h + HISTORY_EVERY);
        self.store_checkpoint(&mut c, history)?;
        Ok(())
    }

    /// The newest checkpoint in `log/checkpoint`: a convenience copy for people,
    /// written at open and at close (the daemon serves the newest one from
    /// memory, and it is re-signed at every start), so not on the commit path.
    fn write_latest(&self, c: &Committed) -> std::io::Result<()> {
        let tmp = self.dir.join("checkpoint.tmp");
        std::fs::write(&tmp, &c.note)?;
        std::fs::rename(&tmp, self.dir.join("checkpoint"))
    }

    fn store_checkpoint(&self, c: &mut Committed, history: bool) -> anyhow::Result<()> {
        if history {
            let mut f = OpenOptions::new().append(true).create(true).mode(0o600).open(self.dir.join("checkpoints"))?;
            writeln!(f, "{}", base64::engine::general_purpose::STANDARD.encode(&c.note))?;
            c.history_size = Some(c.size);
        }
        Ok(())
    }

    pub fn latest(&self) -> (Checkpoint, String) {
        let c = lock(&self.committed);
        (c.checkpoint.clone(), c.note.clone())
    }

    #[cfg(test)]
    fn entry_bytes(&self, index: u64) -> anyhow::Result<Vec<u8>> {
        // A scan: the signing path knows its entry's bytes already, and key
        // entries are read once per process and cached by the caller.
        let mut r = std::io::BufReader::new(File::open(self.dir.join("entries"))?);
        let mut line = Vec::new();
        let mut i = 0u64;
        loop {
            line.clear();
            if std::io::BufRead::read_until(&mut r, b'\n', &mut line)? == 0 {
                anyhow::bail!("log entry {index} not found");
            }
            if i == index {
                line.pop();
                return Ok(line);
            }
            i += 1;
        }
    }

    /// A receipt for the entry at `index` (whose bytes are `entry`), including the
    /// key entry at `key_index`, and a consistency proof from `known_size`.
    pub fn receipt(
        &self,
        index: u64,
        entry: Vec<u8>,
        key_entry: Option<(u64, Vec<u8>)>,
        known_size: Option<u64>,
    ) -> anyhow::Result<Receipt> {
        let (cp, note) = self.latest();
        anyhow::ensure!(cp.size > index, "entry {index} is not yet committed");
        let st = lock(&self.state);
        let inclusion = hex_hashes(&st.levels.inclusion_proof(index, cp.size)?);
        let key_entry = match key_entry {
            Some((ki, bytes)) if ki < cp.size => Some(KeyEntry {
                entry: String::from_utf8(bytes)?,
                index: ki,
                inclusion: hex_hashes(&st.levels.inclusion_proof(ki, cp.size)?),
            }),
            _ => None,
        };
        let (consistency_from, consistency) = match known_size {
            Some(k) if k > 0 && k < cp.size => (Some(k), hex_hashes(&st.levels.consistency_proof(k, cp.size)?)),
            _ => (None, Vec::new()),
        };
        Ok(Receipt {
            v: RECEIPT_VERSION,
            entry: String::from_utf8(entry)?,
            index,
            inclusion,
            key_entry,
            checkpoint: note,
            consistency_from,
            consistency,
        })
    }

    #[cfg(test)]
    pub fn key_entry(&self, index: u64) -> anyhow::Result<Vec<u8>> {
        self.entry_bytes(index)
    }

    pub fn consistency(&self, old: u64) -> anyhow::Result<(String, Vec<Hash>)> {
        let (cp, note) = self.latest();
        let st = lock(&self.state);
        let proof = if old > 0 && old < cp.size { st.levels.consistency_proof(old, cp.size)? } else { Vec::new() };
        Ok((note, proof))
    }

    /// The whole log in the export format.
    pub fn export(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        let (_, latest) = self.latest();
        let len = lock(&self.state).bytes;
        // A descriptor of its own: appends are positional, so its offset is ours.
        let f = File::open(self.dir.join("entries"))?;
        bundle::write_header(out)?;
        let mut r = std::io::BufReader::new(f.take(len));
        let mut line = Vec::new();
        loop {
            line.clear();
            if std::io::BufRead::read_until(&mut r, b'\n', &mut line)? == 0 {
                break;
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            bundle::write_entry(out, &line)?;
        }
        if let Ok(hist) = std::fs::read_to_string(self.dir.join("checkpoints")) {
            for l in hist.lines() {
                if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(l) {
                    bundle::write_checkpoint(out, &String::from_utf8_lossy(&raw))?;
                }
            }
        }
        bundle::write_checkpoint(out, &latest)?;
        Ok(())
    }
}

/// The size of the last checkpoint in the history file, if it verifies.
fn last_history_size(path: &Path, v: &Verifier) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let last = text.lines().last()?;
    let note = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(last).ok()?).ok()?;
    Checkpoint::open(&note, v).ok().map(|c| c.size)
}

impl Drop for Log {
    fn drop(&mut self) {
        let c = lock(&self.committed);
        if c.size > 0 {
            let _ = self.write_latest(&c);
        }
    }
}

fn lock_committed(log: &Log) -> MutexGuard<'_, Committed> {
    lock(&log.committed)
}

/// Finds how many whole, parseable entries `entries` holds, truncates anything
/// after them (a torn tail: never acknowledged, since acknowledgement waits for
/// fsync), and makes the tree files agree. Returns (entries, bytes).
fn recover(entries: &mut File, levels: &mut Levels) -> anyhow::Result<(u64, u64)> {
    let len = entries.metadata()?.len();
    let hinted = levels.len(0);
    // Fast path: the tree says n entries, and the last line is entry n-1, whole.
    if len > 0 && hinted > 0 {
        let tail_len = len.min(128 * 1024);
        let mut tail = vec![0u8; tail_len as usize];
        entries.read_exact_at(&mut tail, len - tail_len)?;
        if tail.last() == Some(&b'\n') {
            let body = &tail[..tail.len() - 1];
            let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
            let consistent_levels = (1..levels.files.len()).all(|l| levels.len(l) == hinted >> l);
            if (start > 0 || tail_len == len) && consistent_levels && Entry::parse(&body[start..], hinted - 1).is_ok() {
                return Ok((hinted, len));
            }
        }
    }
    // Slow path: replay the whole file and rebuild the tree.
    entries.seek(SeekFrom::Start(0))?;
    let mut r = std::io::BufReader::new(&*entries);
    let mut frontier = Frontier::new();
    let mut good_bytes = 0u64;
    let mut line = Vec::new();
    let mut rebuilt: Vec<(u32, u64, Hash)> = Vec::new();
    loop {
        line.clear();
        let n = std::io::BufRead::read_until(&mut r, b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        line.pop();
        if Entry::parse(&line, frontier.size()).is_err() {
            break;
        }
        rebuilt.extend(frontier.push(leaf_hash(&line)));
        good_bytes += n as u64;
    }
    drop(r);
    if good_bytes < len {
        tracing::warn!(
            kept = frontier.size(),
            dropped_bytes = len - good_bytes,
            "repairing a torn log tail left by a crash"
        );
        entries.set_len(good_bytes)?;
        entries.sync_all()?;
    }
    levels.truncate_to(0)?;
    for (lvl, idx, h) in rebuilt {
        levels.write(lvl, idx, &h)?;
    }
    Ok((frontier.size(), good_bytes))
}

/// The network interfaces this vault sees, for the daemon_started entry.
pub fn interfaces() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use qvault_attest::audit::verify_log;

    fn export(log: &Log) -> Vec<u8> {
        let mut v = Vec::new();
        log.export(&mut v).unwrap();
        v
    }

    #[test]
    fn appends_verify_and_survive_reopen_and_torn_tail() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("log");
        let log = Log::create(&dir, "test vault").unwrap();
        for i in 0..50 {
            log.append(Some("work".into()), |_| Ok((Event::PolicyChanged { policy_digest: format!("{i:064x}") }, ())))
                .unwrap();
        }
        let key = log.verifier().clone();
        let rep = verify_log(&export(&log)[..], &key, &[], false);
        assert!(rep.ok, "{:?}", rep.problems);
        assert_eq!(rep.entries, 51);
        drop(log);
        // A torn write after the last durable entry.
        let mut f = OpenOptions::new().append(true).open(dir.join("entries")).unwrap();
        f.write_all(b"{\"v\":1,\"index\":51,\"ti").unwrap();
        drop(f);
        let log = Log::open(&dir, Duration::ZERO).unwrap();
        let rep = verify_log(&export(&log)[..], &key, &[], false);
        assert!(rep.ok, "{:?}", rep.problems);
        assert_eq!(rep.entries, 51);
        // Appends continue after the repair.
        let (i, (), bytes) =
            log.append(None, |_| Ok((Event::DaemonStarted { version: "t".into(), interfaces: vec![] }, ()))).unwrap();
        assert_eq!(i, 51);
        let (cp, _) = log.latest();
        assert_eq!(bytes, log.key_entry(i).unwrap());
        let r = log.receipt(i, bytes, None, Some(10)).unwrap();
        let v = r.verify(&key).unwrap();
        assert_eq!(v.checkpoint, cp);
        let old = Checkpoint { origin: key.name.clone(), size: 10, root: rep_root(&log, 10) };
        assert!(r.consistent_with(&old, &cp).unwrap());
    }

    fn rep_root(log: &Log, size: u64) -> Hash {
        lock(&log.state).levels.range(0, size).unwrap()
    }

    #[test]
    fn one_writer_at_a_time() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("log");
        let _log = Log::create(&dir, "v").unwrap();
        let err = Log::open(&dir, Duration::from_millis(50)).err().unwrap();
        assert!(err.to_string().contains("held by another qvault process"), "{err}");
    }

    #[test]
    fn lost_tree_files_are_rebuilt() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("log");
        let log = Log::create(&dir, "v").unwrap();
        for _ in 0..9 {
            log.append(None, |_| Ok((Event::DaemonStarted { version: "t".into(), interfaces: vec![] }, ()))).unwrap();
        }
        let key = log.verifier().clone();
        drop(log);
        std::fs::remove_dir_all(dir.join("tree")).unwrap();
        let log = Log::open(&dir, Duration::ZERO).unwrap();
        let rep = verify_log(&export(&log)[..], &key, &[], false);
        assert!(rep.ok && rep.entries == 10, "{:?}", rep.problems);
    }
}
