//! The log as C2SP tlog-tiles (https://c2sp.org/tlog-tiles): static files that
//! existing monitors and mirrors read. Specified in `docs/log-format.md`.
//!
//! ```text
//! checkpoint                      the newest signed checkpoint note
//! tile/<L>/<N>[.p/<W>]            hash tiles: 256 (or W) hashes of 32 bytes
//! tile/entries/<N>[.p/<W>]        entry bundles: big-endian u16 length || entry
//! ```
//!
//! `<N>` is written in 3-digit path elements, all but the last prefixed with
//! `x` (1234067 is `x001/x234/067`). The writer makes every full tile and the
//! partial tiles of the checkpoint's size; the reader checks a whole log from
//! these files alone. Neither does network I/O: HTTP serving is a web server's.

use std::io::{BufRead, Read as _, Write as _};
use std::path::Path;

use crate::bundle::{self, BundleError, Record};
use crate::merkle::{leaf_hash, Hash, MemTree};
use crate::note::{Checkpoint, NoteError, Verifier, MAX_NOTE};

/// Hashes (or entries) in a full tile: tiles have height 8.
pub const WIDTH: u64 = 256;
/// An entry bundle's length prefix is a u16.
pub const MAX_BUNDLED_ENTRY: usize = u16::MAX as usize;

#[derive(Debug, thiserror::Error)]
pub enum TilesError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("log export: {0}")]
    Bundle(#[from] BundleError),
    #[error("the log export holds no checkpoint")]
    NoCheckpoint,
    #[error("checkpoint: {0}")]
    Note(#[from] NoteError),
    #[error("the checkpoint covers {0} entries, not the {1} given")]
    Short(u64, u64),
    #[error("the newest checkpoint's root is not the root of the exported entries")]
    Root,
    #[error("entry {0} is {1} bytes; an entry bundle holds entries of at most 65,535 bytes")]
    EntryTooLong(u64, usize),
    #[error("{0}: exists and differs: the directory holds another log, or this log forked")]
    Conflict(String),
    #[error("checkpoint: the directory holds a newer checkpoint ({0} entries) than this export ({1})")]
    Older(u64, u64),
    #[error("checkpoint: the directory holds a checkpoint of {0} at {1} entries that this log does not extend: another log, or this log forked")]
    NotExtended(String, u64),
    #[error("{0}: missing")]
    Missing(String),
    #[error("{0}: malformed: {1}")]
    Malformed(String, &'static str),
    #[error("{0}: hash {1} differs from the hash of the entries")]
    Mismatch(String, u64),
    #[error("the tiles' root is not the checkpoint's root")]
    TilesRoot,
}

/// The path of tile `n` of `level` (None: the entry bundles), `width` entries
/// wide (`WIDTH`: a full tile).
pub fn tile_path(level: Option<u8>, n: u64, width: u64) -> String {
    let mut parts = vec![format!("{:03}", n % 1000)];
    let mut rest = n / 1000;
    while rest > 0 {
        parts.push(format!("x{:03}", rest % 1000));
        rest /= 1000;
    }
    parts.reverse();
    let lvl = level.map_or_else(|| "entries".to_owned(), |l| l.to_string());
    let partial = if width == WIDTH { String::new() } else { format!(".p/{width}") };
    format!("tile/{lvl}/{}{partial}", parts.join("/"))
}

/// The tiles of a tree of `size` leaves: for each level, `(n, width)` of every
/// full tile and of the partial tile, if any.
fn layout(size: u64) -> Vec<(u8, Vec<(u64, u64)>)> {
    let mut out = Vec::new();
    let mut level = 0u8;
    let mut count = size;
    while count > 0 {
        let mut tiles: Vec<(u64, u64)> = (0..count / WIDTH).map(|n| (n, WIDTH)).collect();
        if !count.is_multiple_of(WIDTH) {
            tiles.push((count / WIDTH, count % WIDTH));
        }
        out.push((level, tiles));
        level += 1;
        count /= WIDTH;
    }
    out
}

/// One static file of a tiled log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

/// Every hash tile and entry bundle of the tree of `entries`: the full ones and
/// the partial ones at this size.
pub fn build(entries: &[Vec<u8>]) -> Result<Vec<TileFile>, TilesError> {
    let mut tree = MemTree::default();
    for (i, e) in entries.iter().enumerate() {
        if e.len() > MAX_BUNDLED_ENTRY {
            return Err(TilesError::EntryTooLong(i as u64, e.len()));
        }
        tree.push_leaf(leaf_hash(e));
    }
    let mut out = Vec::new();
    for (level, tiles) in layout(tree.size()) {
        let hashes = tree.level(8 * u32::from(level));
        for &(n, w) in &tiles {
            let lo = (n * WIDTH) as usize;
            let bytes = hashes[lo..lo + w as usize].concat();
            out.push(TileFile { path: tile_path(Some(level), n, w), bytes });
            if level == 0 {
                let mut b = Vec::new();
                for e in &entries[lo..lo + w as usize] {
                    b.extend_from_slice(&(e.len() as u16).to_be_bytes());
                    b.extend_from_slice(e);
                }
                out.push(TileFile { path: tile_path(None, n, w), bytes: b });
            }
        }
    }
    Ok(out)
}

/// The text of a signed note (what its signatures cover), unverified.
fn note_body(note: &str) -> Result<&str, NoteError> {
    let split = note.rfind("\n\n").ok_or(NoteError::Malformed("no blank line before signatures"))?;
    Ok(&note[..split + 1])
}

/// Reads a log export: the entries the newest checkpoint covers, and that
/// checkpoint, whose root must be theirs. The checkpoint's signature is not
/// checked here (the writer may not have the log key); `read_dir` checks it.
pub fn from_export<R: BufRead>(input: R) -> Result<(Vec<Vec<u8>>, String), TilesError> {
    let mut r = bundle::Reader::new(input)?;
    let mut entries = Vec::new();
    let mut newest: Option<(u64, String)> = None;
    while let Some(rec) = r.next_record()? {
        match rec {
            Record::Entry(e) => entries.push(e.to_vec()),
            Record::Checkpoint(note) => {
                let cp = Checkpoint::parse_text(note_body(&note)?)?;
                if newest.as_ref().is_none_or(|(s, _)| cp.size > *s) {
                    newest = Some((cp.size, note));
                }
            }
        }
    }
    let (size, note) = newest.ok_or(TilesError::NoCheckpoint)?;
    if size > entries.len() as u64 {
        return Err(TilesError::Short(size, entries.len() as u64));
    }
    entries.truncate(size as usize);
    let mut tree = MemTree::default();
    for e in &entries {
        tree.push_leaf(leaf_hash(e));
    }
    if tree.root() != Checkpoint::parse_text(note_body(&note)?)?.root {
        return Err(TilesError::Root);
    }
    Ok((entries, note))
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> TilesError + '_ {
    move |e| TilesError::Io(p.display().to_string(), e)
}

/// Writes `path` through a temporary file and a rename, so a reader never
/// sees half a tile.
fn put(dir: &Path, path: &str, bytes: &[u8]) -> Result<(), TilesError> {
    let p = dir.join(path);
    let parent = p.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let tmp = parent.join(format!(".{}.tmp", p.file_name().and_then(|n| n.to_str()).unwrap_or("tile")));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &p).map_err(io(&p))
}

/// Reads at most `limit` bytes of `path`; `None` when it does not exist.
fn get(dir: &Path, path: &str, limit: u64) -> Result<Option<Vec<u8>>, TilesError> {
    let p = dir.join(path);
    let f = match std::fs::File::open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&p)(e)),
    };
    let mut v = Vec::new();
    f.take(limit + 1).read_to_end(&mut v).map_err(io(&p))?;
    if v.len() as u64 > limit {
        return Err(TilesError::Malformed(path.to_owned(), "larger than a tile can be"));
    }
    Ok(Some(v))
}

/// Writes the tiles of `entries` and then `note` into `dir`. Tiles already
/// there must be equal (tiles are immutable): a differing one means another
/// log or a fork, and nothing more is written. Returns how many files were new.
pub fn write_dir(dir: &Path, entries: &[Vec<u8>], note: &str) -> Result<usize, TilesError> {
    let new = Checkpoint::parse_text(note_body(note)?)?;
    let size = new.size;
    if size != entries.len() as u64 {
        return Err(TilesError::Short(size, entries.len() as u64));
    }
    if let Some(old) = get(dir, "checkpoint", MAX_NOTE as u64)? {
        let old = String::from_utf8(old).map_err(|_| TilesError::Malformed("checkpoint".into(), "not UTF-8"))?;
        let old = Checkpoint::parse_text(note_body(&old)?)?;
        if old.size > size {
            return Err(TilesError::Older(old.size, size));
        }
        // Partial tiles of another width have other names, so only the old
        // checkpoint tells another log or a fork from a grown log.
        let mut tree = MemTree::default();
        entries.iter().take(old.size as usize).for_each(|e| tree.push_leaf(leaf_hash(e)));
        if old.origin != new.origin || tree.root() != old.root {
            return Err(TilesError::NotExtended(old.origin, old.size));
        }
    }
    let files = build(entries)?;
    // Check every existing file before writing any.
    let mut new = Vec::new();
    for f in &files {
        match get(dir, &f.path, f.bytes.len() as u64)? {
            Some(old) if old == f.bytes => {}
            Some(_) => return Err(TilesError::Conflict(f.path.clone())),
            None => new.push(f),
        }
    }
    for f in &new {
        put(dir, &f.path, &f.bytes)?;
    }
    // The checkpoint last: a reader that sees it finds every tile it needs.
    put(dir, "checkpoint", note.as_bytes())?;
    Ok(new.len())
}

/// What `read_dir` found.
#[derive(Debug)]
pub struct TiledLog {
    /// The verified checkpoint note.
    pub note: String,
    pub checkpoint: Checkpoint,
    /// The entries, from the entry bundles, each proven by the tiles.
    pub entries: Vec<Vec<u8>>,
    /// How many tile and bundle files were read.
    pub files: usize,
}

/// Reads and checks a tiled log in `dir`: the checkpoint is signed by `key`;
/// every entry bundle the checkpoint's size needs is whole and its entries
/// hash to the level-0 tile; every tile of every level holds exactly the
/// hashes of the tree of those entries; the tree's root is the checkpoint's.
/// The entries' meaning is not checked here (`audit::verify_log` does).
pub fn read_dir(dir: &Path, key: &Verifier) -> Result<TiledLog, TilesError> {
    let raw = get(dir, "checkpoint", MAX_NOTE as u64)?.ok_or_else(|| TilesError::Missing("checkpoint".into()))?;
    let note = String::from_utf8(raw).map_err(|_| TilesError::Malformed("checkpoint".into(), "not UTF-8"))?;
    let checkpoint = Checkpoint::open(&note, key)?;
    let mut tree = MemTree::default();
    let mut entries = Vec::new();
    let mut files = 0;
    for (level, tiles) in layout(checkpoint.size) {
        for &(n, w) in &tiles {
            let path = tile_path(Some(level), n, w);
            let tile = get(dir, &path, w * 32)?.ok_or_else(|| TilesError::Missing(path.clone()))?;
            files += 1;
            if tile.len() as u64 != w * 32 {
                return Err(TilesError::Malformed(path, "not 32 bytes per hash of its width"));
            }
            if level == 0 {
                let bpath = tile_path(None, n, w);
                let limit = w * (2 + MAX_BUNDLED_ENTRY as u64);
                let bundle = get(dir, &bpath, limit)?.ok_or_else(|| TilesError::Missing(bpath.clone()))?;
                files += 1;
                let mut rest = bundle.as_slice();
                for i in 0..w {
                    let (len, tail) = rest
                        .split_first_chunk::<2>()
                        .ok_or_else(|| TilesError::Malformed(bpath.clone(), "fewer entries than its width"))?;
                    let len = u16::from_be_bytes(*len) as usize;
                    if tail.len() < len {
                        return Err(TilesError::Malformed(bpath, "an entry runs past the end"));
                    }
                    let (e, tail) = tail.split_at(len);
                    let leaf = leaf_hash(e);
                    if tile[(i * 32) as usize..(i * 32 + 32) as usize] != leaf {
                        return Err(TilesError::Mismatch(path, i));
                    }
                    tree.push_leaf(leaf);
                    entries.push(e.to_vec());
                    rest = tail;
                }
                if !rest.is_empty() {
                    return Err(TilesError::Malformed(bpath, "bytes after its last entry"));
                }
            } else {
                // Level 0 came first, so the tree holds every hash this tile should.
                let want = tree.level(8 * u32::from(level));
                for (i, h) in tile.chunks_exact(32).enumerate() {
                    let j = (n * WIDTH) as usize + i;
                    if want.get(j).map(Hash::as_slice) != Some(h) {
                        return Err(TilesError::Mismatch(path, i as u64));
                    }
                }
            }
        }
    }
    if tree.root() != checkpoint.root {
        return Err(TilesError::TilesRoot);
    }
    Ok(TiledLog { note, checkpoint, entries, files })
}

/// The export format of a tiled log's entries and checkpoint, for
/// `audit::verify_log`.
pub fn to_export(log: &TiledLog) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = bundle::write_header(&mut out);
    for e in &log.entries {
        let _ = bundle::write_entry(&mut out, e);
    }
    let _ = bundle::write_checkpoint(&mut out, &log.note);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_spec() {
        assert_eq!(tile_path(Some(0), 0, WIDTH), "tile/0/000");
        assert_eq!(tile_path(Some(1), 1234067, WIDTH), "tile/1/x001/x234/067");
        assert_eq!(tile_path(Some(2), 1000, 7), "tile/2/x001/000.p/7");
        assert_eq!(tile_path(None, 5, 112), "tile/entries/005.p/112");
    }

    /// The spec's example: 70,000 leaves are 273 full level-0 tiles, a partial
    /// one of width 112, one full level-1 tile, a partial one of width 17 and a
    /// partial level-2 tile of width 1; 256 leaves are one full level-0 tile
    /// and a level-1 tile of width 1.
    #[test]
    fn layout_matches_the_spec_examples() {
        let l = layout(70_000);
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].1.len(), 274);
        assert_eq!(l[0].1[273], (273, 112));
        assert_eq!(l[1].1, vec![(0, 256), (1, 17)]);
        assert_eq!(l[2].1, vec![(0, 1)]);
        assert_eq!(layout(256), vec![(0, vec![(0, 256)]), (1, vec![(0, 1)])]);
        assert!(layout(0).is_empty());
    }
}
