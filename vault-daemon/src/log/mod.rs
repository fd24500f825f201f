//! The vault's side of the attestation log: ordered, durable appends with group
//! commit, tree hashes on disk, signed checkpoints, proofs, and the check at
//! start that decides whether the vault may serve at all.
//!
//! Files under `log/`: `entries` (one entry per line), `tree/NN` (complete-
//! subtree hashes of level NN, 32 bytes each), `head` (the newest durable
//! checkpoint and the length of `entries` it covers), `checkpoint` (a copy of
//! the newest checkpoint for people, written at open and close), `checkpoints`
//! (history, base64 notes), `key` (the Ed25519 log key, 0600, never exported),
//! `origin`, `lock`.
//!
//! Invariant (docs/log-format.md, "Durability"): an entry is released (its
//! signature or receipt leaves this module's caller) only after `entries`, the
//! tree files and a `head` covering it are durable and agree. After any write
//! or sync error the log stops: every later append fails until the process is
//! restarted, and the start re-checks everything against `head`. Entries past
//! `head` were never released, so the start drops them; entries `head` covers
//! are never dropped: if they are missing or changed, the vault refuses to start.
//!
//! Signing happens outside the log's locks: a caller reserves the next index
//! (which goes into the signature), signs, and commits; commits are written in
//! index order. A reservation that is not committed is given back, or, when
//! later ones exist, filled with a `void` entry.

mod check;
mod head;
mod levels;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use nix::fcntl::{Flock, FlockArg};
use qvault_attest::bundle;
use qvault_attest::entry::{Entry, Event};
use qvault_attest::merkle::{leaf_hash, Frontier, Hash, Subtrees as _};
use qvault_attest::note::{Checkpoint, Verifier};
use qvault_attest::receipt::{hex_hashes, KeyEntry, Receipt, RECEIPT_VERSION};
use zeroize::Zeroize as _;

use crate::clock::now_secs;
use crate::fsutil;
pub use check::Damage;
use check::{Covered, Tail};
use head::Head;
use levels::Levels;

/// A new history checkpoint is stored each time this many entries were added.
const HISTORY_EVERY: u64 = 1024;

/// How a process uses the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The only writer for the life of the process (`serve`, admin commands):
    /// the whole log is re-hashed and checked at open.
    Exclusive,
    /// The exec service: one call per process, the writer lock taken only from
    /// `reserve` to `commit`, the log's head checked each time it is taken.
    PerAppend,
    /// Export and checkpoints while another process writes: only what the
    /// newest durable checkpoint covers, which never changes.
    ReadOnly,
}

/// The log refuses appends after a write or sync error.
#[derive(Debug)]
pub struct Stopped(pub String);

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the vault's log stopped after a write error ({}); nothing more is signed until qvault is restarted \
             (see \"Recovery\" in docs/log-format.md)",
            self.0
        )
    }
}

impl std::error::Error for Stopped {}

struct State {
    entries: Arc<File>,
    /// Length of `entries` holding `frontier.size()` entries.
    bytes: u64,
    frontier: Frontier,
    levels: Levels,
}

/// The newest durable checkpoint.
struct Committed {
    size: u64,
    bytes: u64,
    note: String,
    checkpoint: Checkpoint,
    /// The head slot it is in (None before the first head is written).
    slot: Option<u64>,
    /// Size of the newest checkpoint in the history file.
    history_size: Option<u64>,
}

/// Which index is handed out next, and which is written next.
struct Order {
    reserved: u64,
    written: u64,
}

pub struct Log {
    dir: PathBuf,
    origin: String,
    key: SigningKey,
    verifier: Verifier,
    access: Access,
    wait: Duration,
    head_file: Option<File>,
    state: Mutex<Option<State>>,
    committed: Mutex<Committed>,
    order: Mutex<Order>,
    turn: Condvar,
    stopped: Mutex<Option<String>>,
    /// What `recover` did.
    recovered: Mutex<Option<String>>,
    /// Held for the process's life under `Access::Exclusive`.
    _lock: Option<Flock<File>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these leaves nothing half-done that the
    // stop flag and the check at start do not cover, so go on.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn take_lock(dir: &Path, wait: Duration) -> anyhow::Result<Flock<File>> {
    let mut f =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(dir.join("lock"))?;
    let deadline = Instant::now() + wait;
    loop {
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(l) => return Ok(l),
            Err((back, _)) if Instant::now() < deadline => {
                f = back;
                std::thread::sleep(Duration::from_millis(5));
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

fn open_rw(p: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(p)
}

/// The largest checkpoint the vault wrote before `head` existed (the copy in
/// `checkpoint` and the history), if any verifies.
fn legacy_checkpoint(dir: &Path, v: &Verifier) -> Option<(Checkpoint, String)> {
    let mut best: Option<(Checkpoint, String)> = None;
    let mut consider = |note: String| {
        if let Ok(cp) = Checkpoint::open(&note, v) {
            if best.as_ref().is_none_or(|(b, _)| cp.size > b.size) {
                best = Some((cp, note));
            }
        }
    };
    if let Ok(note) = std::fs::read_to_string(dir.join("checkpoint")) {
        consider(note);
    }
    if let Ok(hist) = std::fs::read_to_string(dir.join("checkpoints")) {
        for l in hist.lines() {
            if let Some(note) =
                base64::engine::general_purpose::STANDARD.decode(l).ok().and_then(|b| String::from_utf8(b).ok())
            {
                consider(note);
            }
        }
    }
    best
}

/// The size of the last checkpoint in the history file, if it verifies.
fn last_history_size(path: &Path, v: &Verifier) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let last = text.lines().last()?;
    let note = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(last).ok()?).ok()?;
    Checkpoint::open(&note, v).ok().map(|c| c.size)
}

/// Length of the first `size` lines of `entries`.
fn bytes_of_first(entries: &File, size: u64) -> anyhow::Result<u64> {
    let mut r = std::io::BufReader::new(entries);
    let mut line = Vec::new();
    let mut bytes = 0u64;
    for i in 0..size {
        line.clear();
        let n = std::io::BufRead::read_until(&mut r, b'\n', &mut line)?;
        anyhow::ensure!(n > 0 && line.last() == Some(&b'\n'), "log/entries ends before entry {i}");
        bytes += n as u64;
    }
    Ok(bytes)
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
        fsutil::sync_dir(dir)?;
        Ok(log)
    }

    /// Opens the log as its only writer, waiting up to `wait` for the lock.
    pub fn open(dir: &Path, wait: Duration) -> anyhow::Result<Log> {
        Log::open_with(dir, Access::Exclusive, wait)
    }

    pub fn open_with(dir: &Path, access: Access, wait: Duration) -> anyhow::Result<Log> {
        Log::open_inner(dir, access, wait, false)
    }

    fn open_inner(dir: &Path, access: Access, wait: Duration, rebuild: bool) -> anyhow::Result<Log> {
        let flock = match access {
            Access::Exclusive => Some(take_lock(dir, wait)?),
            Access::PerAppend | Access::ReadOnly => None,
        };
        let mut seed = [0u8; 32];
        File::open(dir.join("key"))
            .and_then(|mut f| f.read_exact(&mut seed))
            .with_context(|| format!("reading the log key in {}", dir.display()))?;
        let key = SigningKey::from_bytes(&seed);
        seed.zeroize();
        let origin = std::fs::read_to_string(dir.join("origin"))?.trim().to_owned();
        let verifier = Verifier { name: origin.clone(), key: key.verifying_key() };
        let head_file = match access {
            Access::ReadOnly => None,
            _ => Some(open_rw(&dir.join(head::FILE))?),
        };
        let empty = Checkpoint { origin: origin.clone(), size: 0, root: Frontier::new().root() };
        let log = Log {
            dir: dir.to_owned(),
            origin,
            key,
            verifier,
            access,
            wait,
            head_file,
            state: Mutex::new(None),
            committed: Mutex::new(Committed {
                size: 0,
                bytes: 0,
                note: String::new(),
                checkpoint: empty,
                slot: None,
                history_size: None,
            }),
            order: Mutex::new(Order { reserved: 0, written: 0 }),
            turn: Condvar::new(),
            stopped: Mutex::new(None),
            recovered: Mutex::new(None),
            _lock: flock,
        };
        lock(&log.committed).history_size = last_history_size(&dir.join("checkpoints"), &log.verifier);
        match access {
            Access::Exclusive => {
                log.load_checked(rebuild)?;
                let c = lock(&log.committed);
                if c.size > 0 {
                    // A copy for people; the history gains one only at the first
                    // start or after HISTORY_EVERY new entries.
                    log.write_latest(&c)?;
                }
            }
            Access::PerAppend | Access::ReadOnly => log.load_covered()?,
        }
        Ok(log)
    }

    /// The check at start for the only writer: re-hashes every entry, compares
    /// the entries with the tree files and with `head`, drops entries past
    /// `head` (never released), and refuses on anything else.
    fn load_checked(&self, rebuild: bool) -> anyhow::Result<()> {
        let head_file = self.head_file.as_ref().context("the log is open read-only")?;
        let entries = open_rw(&self.dir.join("entries"))?;
        let mut levels = Levels::open(&self.dir.join("tree"))?;
        let head = head::read(head_file, &self.verifier)?;
        let legacy = legacy_checkpoint(&self.dir, &self.verifier);
        let (covered, tail) = match (&head, &legacy) {
            (Some(h), Some((l, _))) if l.size > h.checkpoint.size => {
                return Err(Damage {
                    file: head::FILE.into(),
                    index: None,
                    what: format!(
                        "covers {} entries, but the vault's own checkpoint in log/checkpoint(s) covers {}",
                        h.checkpoint.size, l.size
                    ),
                }
                .into())
            }
            (Some(h), _) => (Some(Covered { checkpoint: &h.checkpoint, bytes: Some(h.bytes) }), Tail::Drop),
            (None, Some((l, _))) => (Some(Covered { checkpoint: l, bytes: None }), Tail::KeepWhole),
            (None, None) => (None, Tail::KeepWhole),
        };
        let checked = check::check(&entries, &levels, covered, tail)?;
        let size = checked.frontier.size();
        if let Some(d) = &checked.tree_damage {
            anyhow::ensure!(
                rebuild,
                "{d}; the entries agree with the vault's newest checkpoint, so `qvault log recover` can rebuild \
                 the tree files from them"
            );
            let tree = self.dir.join("tree");
            let aside = self.dir.join(format!("tree.damaged.{}", now_secs()));
            drop(levels);
            std::fs::rename(&tree, &aside)?;
            levels = Levels::open(&tree)?;
            rebuild_tree(&entries, &mut levels, size)?;
            *lock(&self.recovered) = Some(format!(
                "rebuilt the tree files of {size} entries ({d}); the old ones are in {}",
                aside.display()
            ));
        }
        if checked.dropped_bytes > 0 {
            tracing::warn!(
                kept = size,
                dropped_entries = checked.dropped_entries,
                dropped_bytes = checked.dropped_bytes,
                "dropping log entries past the vault's newest durable checkpoint (never released)"
            );
            entries.set_len(checked.bytes)?;
        }
        entries.sync_data()?;
        levels.truncate_to(size)?;
        for (lvl, idx, h) in &checked.new_nodes {
            levels.write(*lvl, *idx, h)?;
        }
        levels.sync()?;
        let mut c = lock(&self.committed);
        match head.filter(|h| h.checkpoint.size == size) {
            Some(h) => set_committed(&mut c, h),
            None => {
                // A log from before the head file, or a new one: vouch for what
                // was checked.
                let cp = Checkpoint { origin: self.origin.clone(), size, root: checked.frontier.root() };
                let note = cp.sign(&self.key);
                let h = head::write(head_file, None, cp, note, checked.bytes)?;
                set_committed(&mut c, h);
            }
        }
        let history = size > 0 && c.history_size.is_none_or(|h| size >= h + HISTORY_EVERY);
        self.store_history(&mut c, history)?;
        drop(c);
        *lock(&self.order) = Order { reserved: size, written: size };
        *lock(&self.state) =
            Some(State { entries: Arc::new(entries), bytes: checked.bytes, frontier: checked.frontier, levels });
        Ok(())
    }

    /// What the newest durable checkpoint covers, read without the writer lock
    /// (for proofs, export and, in the exec service, before `reserve`).
    fn load_covered(&self) -> anyhow::Result<()> {
        let entries = File::open(self.dir.join("entries")).context("opening log/entries")?;
        let levels = Levels::open_read(&self.dir.join("tree"))?;
        let head = match File::open(self.dir.join(head::FILE)) {
            Ok(f) => head::read(&f, &self.verifier)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).context("reading log/head"),
        };
        let head = match head {
            Some(h) => h,
            None => {
                // A log from before the head file: its newest checkpoint.
                let (cp, note) = legacy_checkpoint(&self.dir, &self.verifier)
                    .context("the log has no checkpoint yet: start `qvault serve` once, or run `qvault log recover`")?;
                let bytes = bytes_of_first(&entries, cp.size)?;
                Head { checkpoint: cp, note, bytes, slot: 0 }
            }
        };
        let size = head.checkpoint.size;
        let frontier = Frontier::from_subtrees(&levels, size).map_err(|e| Damage {
            file: "tree".into(),
            index: None,
            what: format!("cannot be read: {e}"),
        })?;
        if frontier.root() != head.checkpoint.root {
            return Err(Damage {
                file: "tree".into(),
                index: None,
                what: format!("the tree files do not give the root of the vault's newest checkpoint (size {size})"),
            }
            .into());
        }
        self.install(head.clone(), State { entries: Arc::new(entries), bytes: head.bytes, frontier, levels });
        Ok(())
    }

    /// The exec service's check when it takes the writer lock: `head` is
    /// re-read, its last entry re-hashed and compared with the tree, the tree's
    /// root with the checkpoint's; entries past `head` (left by a process that
    /// failed before committing) are dropped.
    fn refresh(&self) -> anyhow::Result<()> {
        let head_file = self.head_file.as_ref().context("the log is open read-only")?;
        let Some(head) = head::read(head_file, &self.verifier)? else {
            // First write by this version: the whole check, once.
            return self.load_checked(false);
        };
        let size = head.checkpoint.size;
        let entries = open_rw(&self.dir.join("entries"))?;
        let mut levels = Levels::open(&self.dir.join("tree"))?;
        let len = entries.metadata()?.len();
        if len < head.bytes {
            return Err(Damage {
                file: "entries".into(),
                index: Some(size.saturating_sub(1)),
                what: format!(
                    "the file is {len} bytes, but the vault's newest checkpoint covers {size} entries in {} bytes",
                    head.bytes
                ),
            }
            .into());
        }
        if size > 0 {
            let want = levels.complete(0, size - 1).map_err(|e| Damage {
                file: levels::level_name(0),
                index: Some(size - 1),
                what: format!("cannot be read: {e}"),
            })?;
            let last = last_line(&entries, head.bytes)?;
            let ok = Entry::parse(&last, size - 1).is_ok() && leaf_hash(&last) == want;
            if !ok {
                return Err(Damage {
                    file: "entries".into(),
                    index: Some(size - 1),
                    what: "is not the entry the vault's newest checkpoint covers".into(),
                }
                .into());
            }
        }
        let frontier = Frontier::from_subtrees(&levels, size)
            .ok()
            .filter(|f| f.root() == head.checkpoint.root)
            .ok_or_else(|| Damage {
                file: "tree".into(),
                index: None,
                what: format!("the tree files do not give the root of the vault's newest checkpoint (size {size})"),
            })?;
        if len > head.bytes {
            tracing::warn!(dropped_bytes = len - head.bytes, "dropping log bytes past the newest durable checkpoint");
            entries.set_len(head.bytes)?;
            entries.sync_data()?;
        }
        levels.truncate_to(size)?;
        levels.sync()?;
        self.install(head.clone(), State { entries: Arc::new(entries), bytes: head.bytes, frontier, levels });
        Ok(())
    }

    /// Makes `head` the newest durable checkpoint and `state` (which holds
    /// exactly what it covers) the state appends continue from.
    fn install(&self, head: Head, state: State) {
        let size = head.checkpoint.size;
        set_committed(&mut lock(&self.committed), head);
        *lock(&self.order) = Order { reserved: size, written: size };
        *lock(&self.state) = Some(state);
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    fn check_stopped(&self) -> Result<(), Stopped> {
        match lock(&self.stopped).as_ref() {
            Some(why) => Err(Stopped(why.clone())),
            None => Ok(()),
        }
    }

    /// Stops the log after an error: no append succeeds from now on. Called
    /// without the order lock held.
    fn stop(&self, why: &anyhow::Error) {
        tracing::error!("log write failed, the log stops: {why:#}");
        lock(&self.stopped).get_or_insert_with(|| format!("{why:#}"));
        // Wake committers waiting for their turn: they must fail, not wait.
        drop(lock(&self.order));
        self.turn.notify_all();
    }

    /// Takes the next index. The caller puts it into its signature, then
    /// commits the entry; nothing is released before `commit` returns.
    pub fn reserve(&self, source: Option<&str>) -> anyhow::Result<Reservation<'_>> {
        self.check_stopped()?;
        let flock = match self.access {
            Access::ReadOnly => anyhow::bail!("the log is open read-only"),
            Access::Exclusive => None,
            Access::PerAppend => {
                let l = take_lock(&self.dir, self.wait)?;
                self.refresh()?;
                Some(l)
            }
        };
        let mut o = lock(&self.order);
        let index = o.reserved;
        o.reserved += 1;
        Ok(Reservation { log: self, index, source: source.map(str::to_owned), flock, open: true })
    }

    /// Writes `event` at the reservation's index (after every earlier index is
    /// written) and returns once a checkpoint covering it is durable.
    pub fn commit(&self, mut res: Reservation<'_>, event: Event) -> anyhow::Result<(u64, Vec<u8>)> {
        res.open = false;
        let bytes = self.write_in_turn(res.index, res.source.take(), event)?;
        self.commit_through(res.index)?;
        Ok((res.index, bytes))
    }

    fn write_in_turn(&self, index: u64, source: Option<String>, event: Event) -> anyhow::Result<Vec<u8>> {
        let mut o = lock(&self.order);
        loop {
            self.check_stopped()?;
            if o.written == index {
                break;
            }
            o = self.turn.wait(o).unwrap_or_else(|p| p.into_inner());
        }
        match self.write_entry(index, source, event) {
            Ok(bytes) => {
                o.written += 1;
                drop(o);
                self.turn.notify_all();
                Ok(bytes)
            }
            Err(e) => {
                drop(o);
                self.stop(&e);
                Err(e)
            }
        }
    }

    /// Writes one entry and the tree hashes it completes (not yet durable).
    fn write_entry(&self, index: u64, source: Option<String>, event: Event) -> anyhow::Result<Vec<u8>> {
        let mut guard = lock(&self.state);
        let st = guard.as_mut().context("the log is not open for writing")?;
        anyhow::ensure!(st.frontier.size() == index, "log position {index} is out of order");
        let mut line = Entry::new(index, now_secs(), source, event).encode();
        let leaf = leaf_hash(&line);
        line.push(b'\n');
        st.entries.write_all_at(&line, st.bytes).context("writing log/entries")?;
        for (lvl, idx, h) in st.frontier.push(leaf) {
            st.levels
                .write(lvl, idx, &h)
                .with_context(|| format!("writing log/{}", levels::level_name(lvl as usize)))?;
        }
        st.bytes += line.len() as u64;
        line.pop();
        Ok(line)
    }

    /// Gives an index back, or fills it with a `void` entry when later indexes
    /// are out already (their commits wait for this one).
    fn release(&self, res: &mut Reservation<'_>, reason: &str) {
        res.open = false;
        {
            let mut o = lock(&self.order);
            if o.reserved == res.index + 1 && o.written == res.index {
                o.reserved = res.index;
                return;
            }
        }
        let event = Event::Void { reason: reason.to_owned() };
        if self.write_in_turn(res.index, res.source.take(), event).is_ok() {
            // Durable with the next commit; nothing waits for a void entry.
            let _ = self.commit_through(res.index);
        }
    }

    /// Appends one entry built by `make(index)` (which may sign with that
    /// index), waits until it is durable, and returns its index, `make`'s extra
    /// value and the entry's exact bytes.
    pub fn append<T>(
        &self,
        source: Option<String>,
        make: impl FnOnce(u64) -> anyhow::Result<(Event, T)>,
    ) -> anyhow::Result<(u64, T, Vec<u8>)> {
        let res = self.reserve(source.as_deref())?;
        let (event, extra) = make(res.index)?;
        let (index, bytes) = self.commit(res, event)?;
        Ok((index, extra, bytes))
    }

    /// Group commit: the first waiter makes everything written so far durable
    /// (entries, then tree files, then a new head), for all of them.
    fn commit_through(&self, index: u64) -> anyhow::Result<()> {
        let mut c = lock(&self.committed);
        if c.size > index {
            return Ok(());
        }
        self.check_stopped()?;
        let r = self.make_durable(&mut c);
        if let Err(e) = &r {
            drop(c);
            self.stop(e);
        }
        r
    }

    fn make_durable(&self, c: &mut Committed) -> anyhow::Result<()> {
        let head_file = self.head_file.as_ref().context("the log is open read-only")?;
        // What was written up to now; writers go on while it is synced.
        let (size, root, bytes, entries, tree) = {
            let mut guard = lock(&self.state);
            let st = guard.as_mut().context("the log is not open for writing")?;
            (st.frontier.size(), st.frontier.root(), st.bytes, st.entries.clone(), st.levels.take_dirty())
        };
        entries.sync_data().context("syncing log/entries")?;
        tree.sync().context("syncing log/tree")?;
        let cp = Checkpoint { origin: self.origin.clone(), size, root };
        let note = cp.sign(&self.key);
        let h = head::write(head_file, c.slot, cp, note, bytes).context("writing log/head")?;
        set_committed(c, h);
        let history = c.history_size.is_none_or(|h| size >= h + HISTORY_EVERY);
        self.store_history(c, history)
    }

    /// The newest checkpoint in `log/checkpoint`: a copy for people, written at
    /// open and at close, so not on the commit path.
    fn write_latest(&self, c: &Committed) -> std::io::Result<()> {
        let tmp = self.dir.join("checkpoint.tmp");
        std::fs::write(&tmp, &c.note)?;
        std::fs::rename(&tmp, self.dir.join("checkpoint"))
    }

    fn store_history(&self, c: &mut Committed, history: bool) -> anyhow::Result<()> {
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

    /// Runs `f` on the tree files; the part the newest checkpoint covers is
    /// complete and never changes.
    fn with_levels<T>(&self, f: impl FnOnce(&Levels) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let guard = lock(&self.state);
        let st = guard.as_ref().context("the log is not open")?;
        f(&st.levels)
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
        self.with_levels(|levels| {
            let inclusion = hex_hashes(&levels.inclusion_proof(index, cp.size)?);
            let key_entry = match key_entry {
                Some((ki, bytes)) if ki < cp.size => Some(KeyEntry {
                    entry: String::from_utf8(bytes)?,
                    index: ki,
                    inclusion: hex_hashes(&levels.inclusion_proof(ki, cp.size)?),
                }),
                _ => None,
            };
            let (consistency_from, consistency) = match known_size {
                Some(k) if k > 0 && k < cp.size => (Some(k), hex_hashes(&levels.consistency_proof(k, cp.size)?)),
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
        })
    }

    pub fn consistency(&self, old: u64) -> anyhow::Result<(String, Vec<Hash>)> {
        let (cp, note) = self.latest();
        let proof = self.with_levels(|levels| {
            Ok(if old > 0 && old < cp.size { levels.consistency_proof(old, cp.size)? } else { Vec::new() })
        })?;
        Ok((note, proof))
    }

    /// The whole log in the export format: the entries the newest durable
    /// checkpoint covers, the history, and that checkpoint.
    pub fn export(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        let (latest, len) = {
            let c = lock(&self.committed);
            (c.note.clone(), c.bytes)
        };
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

    /// `qvault log recover`: checks the log as a start does and, when only the
    /// tree files disagree (the entries agree with the vault's newest
    /// checkpoint), moves them aside as evidence and rebuilds them from the
    /// entries. Entries the checkpoint covers are never dropped or changed
    /// here: when they disagree with it, this fails like the start, naming the
    /// file and the entry.
    pub fn recover(dir: &Path, wait: Duration) -> anyhow::Result<String> {
        let log = Log::open_inner(dir, Access::Exclusive, wait, true)?;
        let size = log.latest().0.size;
        let report = lock(&log.recovered).take();
        Ok(report
            .unwrap_or_else(|| format!("the log's {size} entries and its tree files agree with its newest checkpoint")))
    }
}

/// Writes every tree hash for the first `size` entries (already checked).
fn rebuild_tree(mut entries: &File, levels: &mut Levels, size: u64) -> anyhow::Result<()> {
    std::io::Seek::seek(&mut entries, std::io::SeekFrom::Start(0))?;
    let mut r = std::io::BufReader::with_capacity(256 * 1024, entries);
    let mut frontier = Frontier::new();
    let mut line = Vec::new();
    while frontier.size() < size {
        line.clear();
        std::io::BufRead::read_until(&mut r, b'\n', &mut line)?;
        anyhow::ensure!(line.pop() == Some(b'\n'), "log/entries ends before entry {}", frontier.size());
        for (lvl, idx, h) in frontier.push(leaf_hash(&line)) {
            levels.write(lvl, idx, &h)?;
        }
    }
    Ok(())
}

/// The last line ending at `end` (without its newline).
fn last_line(entries: &File, end: u64) -> anyhow::Result<Vec<u8>> {
    let span = end.min(qvault_attest::entry::MAX_ENTRY as u64 + 1);
    let mut buf = vec![0u8; span as usize];
    entries.read_exact_at(&mut buf, end - span)?;
    anyhow::ensure!(buf.last() == Some(&b'\n'), "log/entries: the covered part does not end with a whole entry");
    buf.pop();
    let start = buf.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    anyhow::ensure!(start > 0 || span == end, "log/entries: an entry is longer than allowed");
    Ok(buf.split_off(start))
}

fn set_committed(c: &mut Committed, h: Head) {
    c.size = h.checkpoint.size;
    c.bytes = h.bytes;
    c.checkpoint = h.checkpoint;
    c.note = h.note;
    c.slot = Some(h.slot);
}

/// A reserved log index: commit it with [`Log::commit`]; dropped uncommitted,
/// it is given back or voided.
pub struct Reservation<'a> {
    log: &'a Log,
    index: u64,
    source: Option<String>,
    /// The exec service's writer lock, held until commit.
    flock: Option<Flock<File>>,
    open: bool,
}

impl Reservation<'_> {
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Gives the index up, saying why (recorded when a `void` entry is needed).
    pub fn abandon(mut self, reason: &str) {
        self.log.release(&mut self, reason);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.open {
            let log = self.log;
            log.release(self, "the signature was not completed");
        }
        let _ = self.flock.take();
    }
}

impl crate::record::Recorder for Log {
    fn record(&self, event: Event) -> anyhow::Result<(u64, Vec<u8>)> {
        let res = self.reserve(None)?;
        self.commit(res, event)
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if self.access == Access::Exclusive {
            let c = lock(&self.committed);
            if c.size > 0 {
                let _ = self.write_latest(&c);
            }
        }
    }
}

/// The network interfaces this vault sees, for the daemon_started and
/// vault_state entries: those of its own network namespace, from
/// `/proc/self/net/dev` (`/sys/class/net` shows the namespace sysfs was
/// mounted in, which under `unshare -n` is not the vault's).
pub fn interfaces() -> Vec<String> {
    use std::io::Read as _;
    let mut text = String::new();
    let read = std::fs::File::open("/proc/self/net/dev").and_then(|f| f.take(1 << 20).read_to_string(&mut text));
    let mut v: Vec<String> = if read.is_ok() {
        text.lines().skip(2).filter_map(|l| l.split_once(':')).map(|(name, _)| name.trim().to_owned()).collect()
    } else {
        std::fs::read_dir("/sys/class/net")
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    };
    v.sort();
    v.dedup();
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

    fn started() -> Event {
        Event::DaemonStarted { version: "t".into(), interfaces: vec![] }
    }

    /// A log of `n` entries, closed.
    fn log_of(n: usize) -> (tempfile::TempDir, PathBuf, Verifier) {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("log");
        let log = Log::create(&dir, "test vault").unwrap();
        for _ in 1..n {
            log.append(None, |_| Ok((started(), ()))).unwrap();
        }
        let key = log.verifier().clone();
        (d, dir, key)
    }

    fn open_err(dir: &Path) -> String {
        match Log::open(dir, Duration::ZERO) {
            Ok(_) => panic!("the log opened"),
            Err(e) => format!("{e:#}"),
        }
    }

    fn damage(dir: &Path) -> Damage {
        match Log::open(dir, Duration::ZERO) {
            Ok(_) => panic!("the log opened"),
            Err(e) => e.downcast::<Damage>().unwrap_or_else(|e| panic!("not a Damage: {e:#}")),
        }
    }

    fn entry_offsets(dir: &Path) -> Vec<usize> {
        let bytes = std::fs::read(dir.join("entries")).unwrap();
        let mut v = vec![0];
        v.extend(bytes.iter().enumerate().filter(|(_, &b)| b == b'\n').map(|(i, _)| i + 1));
        v
    }

    #[test]
    fn appends_verify_and_survive_reopen_and_unreleased_tail() {
        let (_d, dir, key) = log_of(51);
        // A torn write after the last durable entry, and a whole entry the
        // head never covered: neither was released.
        let mut f = OpenOptions::new().append(true).open(dir.join("entries")).unwrap();
        let extra = Entry::new(51, 1, None, started()).encode();
        f.write_all(&extra).unwrap();
        f.write_all(b"\n{\"v\":1,\"index\":52,\"ti").unwrap();
        drop(f);
        let log = Log::open(&dir, Duration::ZERO).unwrap();
        let rep = verify_log(&export(&log)[..], &key, &[], false);
        assert!(rep.ok, "{:?}", rep.problems);
        assert_eq!(rep.entries, 51);
        // Appends continue after the repair.
        let (i, (), bytes) = log.append(None, |_| Ok((started(), ()))).unwrap();
        assert_eq!(i, 51);
        let (cp, _) = log.latest();
        let r = log.receipt(i, bytes, None, Some(10)).unwrap();
        let v = r.verify(&key).unwrap();
        assert_eq!(v.checkpoint, cp);
        let old = Checkpoint { origin: key.name.clone(), size: 10, root: root_at(&log, 10) };
        assert!(r.consistent_with(&old, &cp).unwrap());
    }

    fn root_at(log: &Log, size: u64) -> Hash {
        log.with_levels(|l| Ok(l.range(0, size)?)).unwrap()
    }

    #[test]
    fn one_writer_at_a_time() {
        let (_d, dir, _) = log_of(1);
        let _log = Log::open(&dir, Duration::ZERO).unwrap();
        let err = open_err(&dir);
        assert!(err.contains("held by another qvault process"), "{err}");
        // Readers and the exec service's opening need no lock.
        Log::open_with(&dir, Access::ReadOnly, Duration::ZERO).unwrap();
        Log::open_with(&dir, Access::PerAppend, Duration::ZERO).unwrap();
    }

    #[test]
    fn entries_cut_short_are_refused_naming_the_first_missing() {
        let (_d, dir, _) = log_of(10);
        let offs = entry_offsets(&dir);
        let f = OpenOptions::new().write(true).open(dir.join("entries")).unwrap();
        f.set_len(offs[7] as u64).unwrap();
        let d = damage(&dir);
        assert_eq!((d.file.as_str(), d.index), ("entries", Some(7)), "{d}");
        assert!(d.to_string().contains("covers 10 entries"), "{d}");
        f.set_len(0).unwrap();
        let d = damage(&dir);
        assert_eq!((d.file.as_str(), d.index), ("entries", Some(0)), "{d}");
    }

    #[test]
    fn a_changed_entry_is_refused_naming_it() {
        let (_d, dir, _) = log_of(10);
        let offs = entry_offsets(&dir);
        let mut bytes = std::fs::read(dir.join("entries")).unwrap();
        // The "time" digit of entry 4: still valid JSON, another leaf hash.
        let at = offs[4] + bytes[offs[4]..].windows(8).position(|w| w == b"\"time\":1").unwrap() + 8;
        bytes[at] = if bytes[at] == b'9' { b'8' } else { bytes[at] + 1 };
        std::fs::write(dir.join("entries"), &bytes).unwrap();
        let d = damage(&dir);
        assert_eq!((d.file.as_str(), d.index), ("entries", Some(4)), "{d}");
    }

    #[test]
    fn a_changed_tree_hash_is_refused_and_recover_rebuilds_it() {
        let (_d, dir, key) = log_of(10);
        let f = OpenOptions::new().write(true).open(dir.join("tree/00")).unwrap();
        f.write_all_at(&[0xAA; 32], 3 * 32).unwrap();
        let err = open_err(&dir);
        assert!(err.contains("log/tree/00, hash 3") && err.contains("qvault log recover"), "{err}");
        let report = Log::recover(&dir, Duration::ZERO).unwrap();
        assert!(report.contains("rebuilt the tree files of 10 entries"), "{report}");
        let log = Log::open(&dir, Duration::ZERO).unwrap();
        let rep = verify_log(&export(&log)[..], &key, &[], false);
        assert!(rep.ok && rep.entries == 10, "{:?}", rep.problems);
        assert!(std::fs::read_dir(dir.as_path())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("tree.damaged.")));
    }

    #[test]
    fn lost_tree_files_are_refused_then_rebuilt_by_recover() {
        let (_d, dir, key) = log_of(10);
        std::fs::remove_dir_all(dir.join("tree")).unwrap();
        let err = open_err(&dir);
        assert!(err.contains("log/tree/00, hash 0: missing"), "{err}");
        Log::recover(&dir, Duration::ZERO).unwrap();
        let log = Log::open(&dir, Duration::ZERO).unwrap();
        let rep = verify_log(&export(&log)[..], &key, &[], false);
        assert!(rep.ok && rep.entries == 10, "{:?}", rep.problems);
    }

    #[test]
    fn recover_never_drops_covered_entries() {
        let (_d, dir, _) = log_of(10);
        let offs = entry_offsets(&dir);
        OpenOptions::new().write(true).open(dir.join("entries")).unwrap().set_len(offs[9] as u64).unwrap();
        let err = format!("{:#}", Log::recover(&dir, Duration::ZERO).unwrap_err());
        assert!(err.contains("log/entries, entry 9"), "{err}");
        assert_eq!(std::fs::metadata(dir.join("entries")).unwrap().len(), offs[9] as u64);
    }

    #[test]
    fn a_head_older_than_the_vaults_own_checkpoint_is_refused() {
        let (_d, dir, _) = log_of(3);
        let old = std::fs::read(dir.join("head")).unwrap();
        let log = Log::open(&dir, Duration::ZERO).unwrap();
        log.append(None, |_| Ok((started(), ()))).unwrap();
        drop(log); // writes log/checkpoint at size 4
        std::fs::write(dir.join("head"), old).unwrap();
        let d = damage(&dir);
        assert_eq!(d.file, "head", "{d}");
    }

    #[test]
    fn a_log_from_before_the_head_file_keeps_its_whole_entries() {
        let (_d, dir, key) = log_of(5);
        drop(Log::open(&dir, Duration::ZERO).unwrap());
        std::fs::remove_file(dir.join("head")).unwrap();
        // Entries past its last checkpoint were released by older versions.
        let mut f = OpenOptions::new().append(true).open(dir.join("entries")).unwrap();
        for i in 5..7 {
            f.write_all(&Entry::new(i, 1, None, started()).encode()).unwrap();
            f.write_all(b"\n").unwrap();
        }
        drop(f);
        let log = Log::open(&dir, Duration::ZERO).unwrap();
        let rep = verify_log(&export(&log)[..], &key, &[], false);
        assert!(rep.ok && rep.entries == 7, "{:?}", rep.problems);
    }

    #[test]
    fn commits_are_written_in_index_order_and_gaps_are_voided() {
        let (_d, dir, key) = log_of(1);
        let log = Log::open(&dir, Duration::ZERO).unwrap();
        let (a, b, c) =
            (log.reserve(Some("a")).unwrap(), log.reserve(Some("b")).unwrap(), log.reserve(Some("c")).unwrap());
        assert_eq!((a.index(), b.index(), c.index()), (1, 2, 3));
        let (tx, rx) = std::sync::mpsc::channel();
        let log = &log;
        std::thread::scope(|s| {
            // c commits first: it waits for a and b.
            s.spawn(move || tx.send(log.commit(c, started()).map(|r| r.0).map_err(|e| e.to_string())));
            log.commit(a, started()).unwrap();
            // b gives up after a later index is out: its index is voided, not reused.
            b.abandon("test: the signer failed");
            // A bound only so that a broken order fails instead of hanging.
            let got = rx.recv_timeout(Duration::from_secs(30)).expect("c's commit never finished");
            assert_eq!(got, Ok(3));
        });
        // The last reservation, abandoned, is given back: no void entry.
        let d = log.reserve(None).unwrap();
        assert_eq!(d.index(), 4);
        drop(d);
        assert_eq!(log.reserve(None).unwrap().index(), 4);
        let text = String::from_utf8(export(log)).unwrap();
        let kinds: Vec<&str> =
            text.lines().filter(|l| l.starts_with("entry ")).map(|l| l.split("\"kind\":\"").nth(1).unwrap()).collect();
        assert_eq!(kinds.len(), 4, "{text}");
        assert!(kinds[2].starts_with("void\",\"reason\":\"test: the signer failed"), "{kinds:?}");
        let rep = verify_log(text.as_bytes(), &key, &[], false);
        assert!(rep.ok, "{:?}", rep.problems);
    }

    #[test]
    fn exec_service_processes_share_the_log() {
        let (_d, dir, key) = log_of(1);
        let one = Log::open_with(&dir, Access::PerAppend, Duration::from_secs(5)).unwrap();
        let two = Log::open_with(&dir, Access::PerAppend, Duration::from_secs(5)).unwrap();
        for i in 0..6u64 {
            let log = if i % 2 == 0 { &one } else { &two };
            let (index, (), bytes) = log.append(Some("work".into()), |_| Ok((started(), ()))).unwrap();
            assert_eq!(index, i + 1);
            log.receipt(index, bytes, None, None).unwrap().verify(&key).unwrap();
        }
        // A process that wrote past the head and died: the next one drops it.
        let mut f = OpenOptions::new().append(true).open(dir.join("entries")).unwrap();
        f.write_all(b"{\"v\":1,\"index\":7,\"time\":1,\"kind\":\"dae").unwrap();
        drop(f);
        let (index, (), _) = one.append(None, |_| Ok((started(), ()))).unwrap();
        assert_eq!(index, 7);
        let reader = Log::open_with(&dir, Access::ReadOnly, Duration::ZERO).unwrap();
        let rep = verify_log(&export(&reader)[..], &key, &[], false);
        assert!(rep.ok && rep.entries == 8, "{:?}", rep.problems);
        // A covered entry cut off is refused by the next writer, naming it.
        let offs = entry_offsets(&dir);
        OpenOptions::new().write(true).open(dir.join("entries")).unwrap().set_len(offs[6] as u64).unwrap();
        let err = format!("{:#}", two.append(None, |_| Ok((started(), ()))).unwrap_err());
        assert!(err.contains("log/entries, entry 7"), "{err}");
    }
}
