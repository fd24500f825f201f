//! The log's check at start: every entry is re-read and re-hashed, the tree
//! files are compared with the hashes of the entries, and the entries with the
//! vault's newest durable checkpoint. Nothing here writes: the caller decides
//! what to repair and what to refuse.

use std::fs::File;
use std::io::BufRead as _;

use qvault_attest::entry::Entry;
use qvault_attest::merkle::{leaf_hash, Frontier, Hash};
use qvault_attest::note::Checkpoint;

use super::levels::{level_name, next_hash, Levels};

/// Log files that disagree with each other or with the vault's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The file under `log/`: `entries`, `tree/NN`, `head`.
    pub file: String,
    /// The entry (or, for a tree file, the hash) where it shows.
    pub index: Option<u64>,
    pub what: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) if self.file == "entries" => write!(f, "log/{}, entry {i}: {}", self.file, self.what),
            Some(i) => write!(f, "log/{}, hash {i}: {}", self.file, self.what),
            None => write!(f, "log/{}: {}", self.file, self.what),
        }
    }
}

impl std::error::Error for Damage {}

/// What the vault has vouched for: a checkpoint and, when the head file gave
/// it, the length of `log/entries` it covers.
pub struct Covered<'a> {
    pub checkpoint: &'a Checkpoint,
    pub bytes: Option<u64>,
}

/// Entries past the covered ones.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// Written after the newest durable checkpoint, so never released: dropped.
    Drop,
    /// A log from before the head file: whole entries were released as soon as
    /// they were synced, so every whole, valid entry is kept.
    KeepWhole,
}

pub struct Checked {
    /// The tree over the kept entries.
    pub frontier: Frontier,
    /// Length of `log/entries` holding the kept entries.
    pub bytes: u64,
    /// Whole entries and bytes past the kept ones (to be cut off).
    pub dropped_entries: u64,
    pub dropped_bytes: u64,
    /// Complete subtrees past the covered part (the tree files must gain them).
    pub new_nodes: Vec<(u32, u64, Hash)>,
    /// The first tree hash that disagrees with the entries, when the entries
    /// themselves agree with the checkpoint.
    pub tree_damage: Option<Damage>,
}

/// Re-hashes `entries` and checks them against `levels` and `covered`.
pub fn check(mut entries: &File, levels: &Levels, covered: Option<Covered<'_>>, tail: Tail) -> Result<Checked, Damage> {
    let size = covered.as_ref().map_or(0, |c| c.checkpoint.size);
    let len = entries.metadata().map_err(|e| io_damage("entries", e))?.len();
    std::io::Seek::seek(&mut entries, std::io::SeekFrom::Start(0)).map_err(|e| io_damage("entries", e))?;
    let mut r = std::io::BufReader::with_capacity(256 * 1024, entries);
    let mut readers: Vec<_> = (0..levels.count()).filter_map(|l| levels.reader(l)).collect();
    let mut frontier = Frontier::new();
    let mut bytes = 0u64;
    let mut line = Vec::new();
    let mut first_leaf_mismatch: Option<u64> = None;
    let mut tree_damage: Option<Damage> = None;
    let mut new_nodes = Vec::new();
    // The root and length at the covered size, taken when the replay reaches it.
    let mut at_size: Option<(Hash, u64)> = None;
    loop {
        let i = frontier.size();
        let past = i >= size;
        if i == size && at_size.is_none() {
            at_size = Some((frontier.root(), bytes));
        }
        if past && tail == Tail::Drop {
            break;
        }
        line.clear();
        let n = r.read_until(b'\n', &mut line).map_err(|e| io_damage("entries", e))?;
        let whole = n > 0 && line.last() == Some(&b'\n');
        let parsed =
            if whole { Entry::parse(&line[..n - 1], i).map_err(|e| e.to_string()) } else { Err(String::new()) };
        if let Err(why) = parsed {
            if past {
                break;
            }
            let what = if n == 0 {
                format!(
                    "missing: the file ends at byte {bytes}, and the vault's newest checkpoint covers {size} entries"
                )
            } else if !whole {
                format!("cut short at byte {len}; the vault's newest checkpoint covers {size} entries")
            } else {
                format!("damaged ({why}); the vault's newest checkpoint covers {size} entries")
            };
            return Err(Damage { file: "entries".into(), index: Some(i), what });
        }
        let leaf = leaf_hash(&line[..n - 1]);
        for (lvl, idx, h) in frontier.push(leaf) {
            let l = lvl as usize;
            if idx >= size >> lvl {
                new_nodes.push((lvl, idx, h));
                continue;
            }
            let stored = match readers.get_mut(l) {
                Some(rd) => next_hash(rd).map_err(|e| io_damage(&level_name(l), e))?,
                None => None,
            };
            if stored != Some(h) {
                if l == 0 && first_leaf_mismatch.is_none() {
                    first_leaf_mismatch = Some(idx);
                }
                if tree_damage.is_none() {
                    let what = match stored {
                        Some(_) => "differs from the hash of the entries".to_owned(),
                        None => format!("missing; the vault's newest checkpoint covers {size} entries"),
                    };
                    tree_damage = Some(Damage { file: level_name(l), index: Some(idx), what });
                }
            }
        }
        bytes += n as u64;
    }
    if let (Some(c), Some((root, covered_bytes))) = (&covered, at_size) {
        if root != c.checkpoint.root {
            let what = format!("the entries do not give the root of the vault's newest checkpoint (size {size})");
            return Err(match first_leaf_mismatch {
                Some(i) => Damage {
                    file: "entries".into(),
                    index: Some(i),
                    what: format!("changed: its hash differs from log/tree/00, and {what}"),
                },
                None => Damage { file: "entries".into(), index: None, what },
            });
        }
        if let Some(b) = c.bytes.filter(|&b| b != covered_bytes) {
            return Err(Damage {
                file: "entries".into(),
                index: size.checked_sub(1),
                what: format!("the covered entries end at byte {covered_bytes}, but log/head says {b}"),
            });
        }
    }
    // What is left past the kept entries: count whole lines for the warning.
    let mut dropped_entries = 0;
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line.last() == Some(&b'\n') => dropped_entries += 1,
            Ok(_) => break,
        }
    }
    Ok(Checked { frontier, bytes, dropped_entries, dropped_bytes: len - bytes, new_nodes, tree_damage })
}

fn io_damage(file: &str, e: std::io::Error) -> Damage {
    Damage { file: file.into(), index: None, what: format!("cannot be read: {e}") }
}
