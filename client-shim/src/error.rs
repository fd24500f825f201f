//! qvault-gpg's errors; `main` turns each into a `gpg: ...` message and gpg's exit code.

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
