//! The descriptors GPGME hands gpg besides its data (`-&N`, see `output::Name`):
//! `--logger-fd` and `--command-fd`. `--status-fd` is `status::StatusOut`.
//! A number that is not an open descriptor of this process is an error; the
//! command fd is checked but never read (qvault-gpg asks no questions).

use std::path::Path;

use crate::args::Invocation;
use crate::error::ShimError;
use crate::{keyring, output};

/// Applies `--homedir`, `--logger-fd` and `--command-fd`, before anything is
/// read or printed.
pub fn setup(inv: &Invocation) -> Result<(), ShimError> {
    if let Some(fd) = inv.logger_fd {
        redirect_stderr(fd)?;
    }
    if let Some(fd) = inv.command_fd {
        if !Path::new(&format!("/proc/self/fd/{fd}")).exists() {
            return Err(ShimError::Io(format!("can't use --command-fd {fd}"), std::io::Error::from_raw_os_error(9)));
        }
    }
    if let Some(dir) = &inv.homedir {
        keyring::set_homedir(dir.into());
    }
    Ok(())
}

/// `--logger-fd N`: gpg writes its messages to N instead of stderr (GPGME reads
/// them there). N becomes this process's stderr, so every message follows.
fn redirect_stderr(fd: i32) -> Result<(), ShimError> {
    if fd == 2 {
        return Ok(());
    }
    let file = output::open_fd(fd, true)?;
    nix::unistd::dup2_stderr(&file)
        .map_err(|e| ShimError::Io(format!("can't use --logger-fd {fd}"), std::io::Error::from(e)))
}
