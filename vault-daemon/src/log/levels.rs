//! The tree files `log/tree/NN`: the complete-subtree hashes of level NN, 32
//! bytes each, in index order. They let the vault answer proofs without reading
//! the entries; they are derived data, checked against the entries at start.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use qvault_attest::merkle::{Hash, Subtrees};

use crate::fsutil;

pub const MAX_LEVELS: usize = 64;

pub fn level_name(level: usize) -> String {
    format!("tree/{level:02}")
}

pub struct Levels {
    dir: PathBuf,
    files: Vec<Arc<File>>,
    writable: bool,
    /// Levels written since the last sync.
    dirty: BTreeSet<usize>,
    /// A level file was created since the last sync: the directory needs one too.
    created: bool,
}

impl Levels {
    /// Opens the tree files for writing, creating the directory and level 00.
    pub fn open(dir: &Path) -> std::io::Result<Levels> {
        fsutil::ensure_private_dir(dir)?;
        let mut levels =
            Levels { dir: dir.to_owned(), files: Vec::new(), writable: true, dirty: BTreeSet::new(), created: false };
        for l in 0..MAX_LEVELS {
            let p = dir.join(format!("{l:02}"));
            if !p.exists() && l > 0 {
                break;
            }
            levels.created |= !p.exists();
            levels.files.push(Arc::new(open_rw(&p)?));
        }
        Ok(levels)
    }

    /// Opens the existing tree files for reading only (proofs while another
    /// process writes: the part a durable checkpoint covers never changes).
    pub fn open_read(dir: &Path) -> std::io::Result<Levels> {
        let mut files = Vec::new();
        for l in 0..MAX_LEVELS {
            match File::open(dir.join(format!("{l:02}"))) {
                Ok(f) => files.push(Arc::new(f)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(e),
            }
        }
        Ok(Levels { dir: dir.to_owned(), files, writable: false, dirty: BTreeSet::new(), created: false })
    }

    pub fn count(&self) -> usize {
        self.files.len()
    }

    fn file(&mut self, level: usize) -> std::io::Result<&File> {
        if !self.writable {
            return Err(std::io::Error::other("the tree files are open read-only"));
        }
        while self.files.len() <= level {
            let p = self.dir.join(format!("{:02}", self.files.len()));
            self.files.push(Arc::new(open_rw(&p)?));
            self.created = true;
        }
        Ok(&self.files[level])
    }

    pub fn write(&mut self, level: u32, index: u64, h: &Hash) -> std::io::Result<()> {
        self.file(level as usize)?.write_all_at(h, index * 32)?;
        self.dirty.insert(level as usize);
        Ok(())
    }

    /// Cuts every level to what a tree of `size` leaves holds.
    pub fn truncate_to(&mut self, size: u64) -> std::io::Result<()> {
        for (l, f) in self.files.iter().enumerate() {
            let want = (size >> l) * 32;
            if f.metadata()?.len() != want {
                f.set_len(want)?;
                self.dirty.insert(l);
            }
        }
        Ok(())
    }

    /// Makes every level written since the last call durable.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.take_dirty().sync()
    }

    /// What must be synced for the writes so far, to sync without holding the
    /// log's state (writers go on meanwhile, and mark their levels anew).
    pub fn take_dirty(&mut self) -> Pending {
        let files = std::mem::take(&mut self.dirty).into_iter().map(|l| self.files[l].clone()).collect();
        let dir = std::mem::take(&mut self.created).then(|| self.dir.clone());
        Pending { files, dir }
    }

    /// A sequential reader of one level, for the check at start.
    pub fn reader(&self, level: usize) -> Option<std::io::BufReader<&File>> {
        self.files.get(level).map(|f| std::io::BufReader::with_capacity(64 * 1024, &**f))
    }
}

/// Tree files (and maybe their directory) waiting for a sync.
pub struct Pending {
    files: Vec<Arc<File>>,
    dir: Option<PathBuf>,
}

impl Pending {
    pub fn sync(self) -> std::io::Result<()> {
        for f in &self.files {
            f.sync_data()?;
        }
        if let Some(d) = &self.dir {
            fsutil::sync_dir(d)?;
        }
        Ok(())
    }
}

/// Reads the next hash of a level sequentially; `None` past its end.
pub fn next_hash(r: &mut std::io::BufReader<&File>) -> std::io::Result<Option<Hash>> {
    let mut h = [0u8; 32];
    match r.read_exact(&mut h) {
        Ok(()) => Ok(Some(h)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

fn open_rw(p: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(p)
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
