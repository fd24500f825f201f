//! `qvault rpc`: one qrexec call in exec-service mode, on stdin and stdout.
//!
//! qrexec starts one process per call and names the service in
//! `QREXEC_SERVICE_FULL_NAME`. A call without that name, or for a service that
//! is not ours, is refused before the vault is opened. Every read from stdin
//! and every write to stdout waits at most the I/O timeout (poll(2)), so a
//! caller that stalls ends its own call and the process exits, as a stalled
//! connection does under `serve` (socket timeouts).

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use qubes_rpc::{FrameError, FrameWriter, QubeName, RpcError, ServerFrame, ServiceName};

use crate::session::{serve_call, Service, Vault};

/// How an exec-service call failed; `qvault`'s `main` maps each to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Refused before the vault was opened (the caller got an `Error` frame).
    #[error("refused the call: {0}")]
    Refused(String),
    /// The caller (or whoever reads our stdout) made no progress in time.
    #[error("the caller stalled for more than {0:?}: call ended")]
    TimedOut(Duration),
    /// The call's frames could not be read or written.
    #[error("the call failed: {0}")]
    Call(FrameError),
}

/// The service named by `QREXEC_SERVICE_FULL_NAME` (`qvault.Gpg`,
/// `qvault.Gpg+FPR`, `qvault.LogRead`, ...), or the refusal to send. qrexec
/// also sets `QREXEC_SERVICE_ARGUMENT` (`argument`) to the part after `+`: if
/// set, it must agree.
pub fn service_from_env(full_name: Option<&str>, argument: Option<&str>) -> Result<Service, RpcError> {
    let full = full_name.ok_or_else(|| {
        RpcError::new(
            qubes_rpc::ErrorCode::Denied,
            "no qrexec service name (QREXEC_SERVICE_FULL_NAME is not set): qvault rpc serves only calls qrexec names",
        )
    })?;
    let name = ServiceName::parse(full).map_err(|e| RpcError::new(qubes_rpc::ErrorCode::Denied, e.to_string()))?;
    if let Some(arg) = argument.filter(|a| Some(*a).filter(|a| !a.is_empty()) != name.argument.as_deref()) {
        return Err(RpcError::new(
            qubes_rpc::ErrorCode::Denied,
            format!(
                "QREXEC_SERVICE_ARGUMENT {:?} does not match the service's argument",
                arg.chars().take(80).collect::<String>()
            ),
        ));
    }
    Service::from_name(&name)
}

/// Sends `err` as the call's only answer (best effort: the caller may be gone).
pub fn refuse(out: &mut Stdout, err: RpcError) {
    let mut w = FrameWriter::new(out);
    let _ = w.send(&ServerFrame::Error(err));
    let _ = w.flush();
}

/// Serves the call on stdin and stdout.
pub fn serve(vault: &Vault, service: Service, source: &QubeName, out: Stdout) -> Result<(), ExecError> {
    let timeout = out.timeout;
    let stdin = Stdin { timeout };
    serve_call(vault, service, source, stdin, out).map_err(|e| match e {
        FrameError::Io(io) if io.kind() == io::ErrorKind::TimedOut => ExecError::TimedOut(timeout),
        other => ExecError::Call(other),
    })
}

/// Waits until `fd` is ready for `events`, at most `timeout`.
fn wait(fd: BorrowedFd<'_>, events: PollFlags, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds = [PollFd::new(fd, events)];
        match poll(&mut fds, PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)) {
            // Ready, or hung up / in error: the read or write says which.
            Ok(n) if n > 0 => return Ok(()),
            Ok(_) if left.is_zero() => return Err(io::Error::new(io::ErrorKind::TimedOut, "I/O timeout")),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// stdin, unbuffered, each read bounded by the timeout. The fd stays blocking:
/// a read after poll(2) reported data returns at once.
pub struct Stdin {
    timeout: Duration,
}

impl Read for Stdin {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let stdin = io::stdin();
        loop {
            wait(stdin.as_fd(), PollFlags::POLLIN, self.timeout)?;
            match nix::unistd::read(stdin.as_fd(), buf) {
                Ok(n) => return Ok(n),
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// stdout, unbuffered, each write bounded by the timeout. The fd is made
/// non-blocking (a blocking write could wait in the kernel past any timeout
/// for a reader that stopped reading); its flags are restored on drop, as
/// stdout may be a terminal that outlives us.
pub struct Stdout {
    timeout: Duration,
    saved: Option<OFlag>,
}

impl Stdout {
    pub fn new(timeout: Duration) -> io::Result<Stdout> {
        let out = io::stdout();
        let flags = OFlag::from_bits_retain(fcntl(out.as_fd(), FcntlArg::F_GETFL)?);
        if !flags.contains(OFlag::O_NONBLOCK) {
            fcntl(out.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        }
        Ok(Stdout { timeout, saved: Some(flags) })
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let out = io::stdout();
        loop {
            match nix::unistd::write(out.as_fd(), buf) {
                Ok(n) => return Ok(n),
                Err(Errno::EAGAIN) => wait(out.as_fd(), PollFlags::POLLOUT, self.timeout)?,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Stdout {
    fn drop(&mut self) {
        if let Some(flags) = self.saved.take() {
            let _ = fcntl(io::stdout().as_fd(), FcntlArg::F_SETFL(flags));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_ours_or_refused() {
        assert_eq!(service_from_env(Some("qvault.Gpg"), None).ok(), Some(Service::Gpg));
        assert_eq!(service_from_env(Some("qvault.Gpg+"), Some("")).ok(), Some(Service::Gpg));
        assert_eq!(service_from_env(Some("qvault.LogRead"), None).ok(), Some(Service::LogRead));
        assert_eq!(service_from_env(Some("qvault.LogRead+"), None).ok(), Some(Service::LogRead));
        let fpr = "0123456789ABCDEF0123456789ABCDEF01234567";
        let bound = Some(Service::GpgKey(qubes_rpc::KeyArgument::parse(fpr).unwrap()));
        assert_eq!(service_from_env(Some(&format!("qvault.Gpg+{fpr}")), Some(fpr)).ok(), bound);
        assert_eq!(service_from_env(Some(&format!("qvault.Gpg+{fpr}")), None).ok(), bound);
        for bad in [None, Some(""), Some("qvault.Other"), Some("qvault.gpg"), Some("+qvault.Gpg"), Some("qvault.Gpg\n")]
        {
            let e = service_from_env(bad, None).expect_err("refused");
            assert_eq!(e.code, qubes_rpc::ErrorCode::Denied, "{bad:?}");
        }
        // An argument that is not a full fingerprint, one on LogRead, or an
        // argument variable that disagrees with the name.
        for (full, arg) in [
            ("qvault.Gpg+ABCDEF".to_owned(), None),
            (format!("qvault.Gpg+{}", fpr.to_lowercase()), None),
            (format!("qvault.LogRead+{fpr}"), None),
            (format!("qvault.Gpg+{fpr}"), Some("0123456789ABCDEF0123456789ABCDEF01234568")),
            ("qvault.Gpg".to_owned(), Some(fpr)),
        ] {
            let e = service_from_env(Some(&full), arg).expect_err("refused");
            assert_eq!(e.code, qubes_rpc::ErrorCode::Denied, "{full:?}");
        }
    }
}
