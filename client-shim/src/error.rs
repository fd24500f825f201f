//! qvault-gpg's errors and verdicts; `main` (its `exit_code`, the one place)
//! turns each into a `gpg: ...` message and gpg's exit code.

use qubes_rpc::RpcError;

use crate::args::ArgError;

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("{0}")]
    Args(#[from] ArgError),
    #[error("{0}")]
    Config(String),
    #[error("vault qube {0:?} unreachable: {1}")]
    Unreachable(String, String),
    #[error("protocol error talking to the vault: {0}")]
    Protocol(String),
    #[error("the vault refused: {}", .0.message)]
    Vault(RpcError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}")]
    OpenPgp(String),
    #[error("qvault log check failed: {0}")]
    Log(String),
}

impl ShimError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ShimError {
        let what = what.into();
        move |e| ShimError::Io(what, e)
    }
}

/// How a command that ran to its end came out, in gpg's terms. Ordered: a run
/// over several signatures ends with the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Everything succeeded (gpg's exit 0).
    Good,
    /// A signature is bad, or its key expired or was revoked (gpg's exit 1).
    Bad,
    /// A failure already reported in gpg's words, e.g. a missing key (exit 2).
    Failed,
}
