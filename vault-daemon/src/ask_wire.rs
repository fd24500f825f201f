//! What the daemon and the desktop helper (`qvault desktop`) say to each other
//! over the ask socket: one JSON object per line, each line at most
//! [`MAX_LINE`] bytes. The daemon asks and cancels; the helper answers.
//! Neither side trusts the other's lines: they are parsed into these types
//! (unknown fields refused) from a bounded read, and anything else ends the
//! connection.

use std::io::BufRead as _;

use serde::{Deserialize, Serialize};

/// Version the daemon announces in its hello.
pub const VERSION: u32 = 1;

/// Longest line either side reads (a question's text is far shorter).
pub const MAX_LINE: u64 = 64 * 1024;

/// Daemon to helper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ToHelper {
    /// Sent once, first.
    Hello { version: u32 },
    /// Show this question; answer within `timeout_seconds`.
    Ask { id: u64, title: String, message: String, timeout_seconds: u64 },
    /// The daemon stopped waiting for question `id`: close its dialog.
    Cancel { id: u64 },
}

/// The helper's answer to one question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Yes,
    No,
    /// Nobody answered before the question's time was up.
    Timeout,
    /// The dialog could not be shown.
    Failed,
}

/// Helper to daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ToDaemon {
    Answer { id: u64, reply: Reply },
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("line longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("malformed line: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// One message as a line.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serializing these plain types cannot fail.
    let mut line = serde_json::to_vec(msg).unwrap_or_default();
    line.push(b'\n');
    line
}

/// The next message, `None` at a clean end of stream.
pub fn read<T: for<'de> Deserialize<'de>>(r: &mut impl std::io::BufRead) -> Result<Option<T>, WireError> {
    let mut line = Vec::new();
    let n = std::io::Read::take(&mut *r, MAX_LINE + 1).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(if n as u64 > MAX_LINE {
            WireError::TooLong
        } else {
            WireError::Io(std::io::ErrorKind::UnexpectedEof.into())
        });
    }
    Ok(Some(serde_json::from_slice(&line)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refusals() {
        let ask = ToHelper::Ask { id: 7, title: "t".into(), message: "a\nb".into(), timeout_seconds: 60 };
        let mut bytes = encode(&ask);
        bytes.extend(encode(&ToHelper::Cancel { id: 7 }));
        let mut r = &bytes[..];
        assert_eq!(read::<ToHelper>(&mut r).unwrap(), Some(ask));
        assert_eq!(read::<ToHelper>(&mut r).unwrap(), Some(ToHelper::Cancel { id: 7 }));
        assert!(read::<ToHelper>(&mut r).unwrap().is_none());
        let line = encode(&ToDaemon::Answer { id: 3, reply: Reply::No });
        assert_eq!(line, b"{\"answer\":{\"id\":3,\"reply\":\"no\"}}\n");
        assert!(matches!(
            read::<ToDaemon>(&mut &b"{\"answer\":{\"id\":3,\"reply\":\"yes\",\"x\":1}}\n"[..]),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            read::<ToDaemon>(&mut &b"{\"answer\":{\"id\":3,\"reply\":\"maybe\"}}\n"[..]),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(read::<ToDaemon>(&mut &b"{\"answer\""[..]), Err(WireError::Io(_))));
        let long = vec![b' '; MAX_LINE as usize + 10];
        assert!(matches!(read::<ToDaemon>(&mut &long[..]), Err(WireError::TooLong)));
    }
}
