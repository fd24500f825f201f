//! The log export format (`qvault log export`, read by `qvault-audit`): a text
//! stream, specified in `docs/log-format.md`:
//!
//! ```text
//! qvault-log v1
//! entry <entry JSON, exactly as hashed>
//! checkpoint <base64 of a signed checkpoint note>
//! ```
//!
//! Entries appear in log order; checkpoints anywhere.

use std::io::{BufRead, Read as _, Write};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::entry::MAX_ENTRY;
use crate::note::MAX_NOTE;

pub const HEADER: &str = "qvault-log v1";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a qvault log export (first line must be {HEADER:?})")]
    Header,
    #[error("line {0}: longer than the limit")]
    TooLong(u64),
    #[error("line {0}: unknown record (expected `entry` or `checkpoint`)")]
    Record(u64),
    #[error("line {0}: checkpoint is not base64 UTF-8")]
    Checkpoint(u64),
    #[error("line {0}: no newline at the end (truncated export)")]
    Truncated(u64),
}

/// One record; an entry borrows the reader's line buffer (no copy per entry).
pub enum Record<'a> {
    Entry(&'a [u8]),
    Checkpoint(String),
}

/// Reads records one at a time with bounded memory per line.
pub struct Reader<R> {
    inner: R,
    line: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> Reader<R> {
    pub fn new(mut inner: R) -> Result<Self, BundleError> {
        let mut first = Vec::new();
        inner.by_ref().take(64).read_until(b'\n', &mut first)?;
        if first != format!("{HEADER}\n").as_bytes() {
            return Err(BundleError::Header);
        }
        Ok(Reader { inner, line: 1, buf: Vec::new() })
    }

    pub fn line(&self) -> u64 {
        self.line
    }

    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, BundleError> {
        self.buf.clear();
        self.line += 1;
        let limit = (MAX_ENTRY.max(MAX_NOTE * 2) + 64) as u64;
        let n = self.inner.by_ref().take(limit).read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        if self.buf.last() != Some(&b'\n') {
            return Err(if n as u64 >= limit {
                BundleError::TooLong(self.line)
            } else {
                BundleError::Truncated(self.line)
            });
        }
        self.buf.pop();
        if self.buf.starts_with(b"entry ") {
            return Ok(Some(Record::Entry(&self.buf[b"entry ".len()..])));
        }
        if let Some(c) = self.buf.strip_prefix(b"checkpoint ") {
            let raw = B64.decode(c).map_err(|_| BundleError::Checkpoint(self.line))?;
            let note = String::from_utf8(raw).map_err(|_| BundleError::Checkpoint(self.line))?;
            return Ok(Some(Record::Checkpoint(note)));
        }
        Err(BundleError::Record(self.line))
    }
}

pub fn write_header<W: Write + ?Sized>(w: &mut W) -> std::io::Result<()> {
    writeln!(w, "{HEADER}")
}

pub fn write_entry<W: Write + ?Sized>(w: &mut W, entry: &[u8]) -> std::io::Result<()> {
    w.write_all(b"entry ")?;
    w.write_all(entry)?;
    w.write_all(b"\n")
}

pub fn write_checkpoint<W: Write + ?Sized>(w: &mut W, note: &str) -> std::io::Result<()> {
    writeln!(w, "checkpoint {}", B64.encode(note))
}
