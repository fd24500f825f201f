//! qrexec transport for both ends.
//!
//! Client: `qrexec-client-vm VAULT SERVICE` connects our stdin/stdout pipes to the
//! service in the vault. Vault, socket service: qrexec connects to our Unix socket
//! and first writes `<service> <source>\0`. Vault, exec service: the source is in
//! `QREXEC_REMOTE_DOMAIN`.

use std::io::{self, BufRead, Read};
use std::process::{Child, Command, Stdio};

use crate::names::{NameError, QubeName, ServiceName};

/// The signing service.
pub const SERVICE_GPG: &str = "qvault.Gpg";
/// The read-only log service for audit qubes.
pub const SERVICE_LOG_READ: &str = "qvault.LogRead";
/// Longest accepted socket-service descriptor, NUL included.
pub const MAX_DESCRIPTOR: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot run qrexec-client-vm: {0}")]
    Spawn(io::Error),
    #[error("I/O error reading the qrexec descriptor: {0}")]
    Io(#[from] io::Error),
    #[error("qrexec descriptor is longer than {MAX_DESCRIPTOR} bytes or has no NUL")]
    DescriptorTooLong,
    #[error("qrexec descriptor ended early")]
    DescriptorTruncated,
    #[error("qrexec descriptor is not `<service> <source>`")]
    DescriptorMalformed,
    #[error("invalid name in qrexec descriptor: {0}")]
    Name(#[from] NameError),
    #[error("QREXEC_REMOTE_DOMAIN is not set: not running as a qrexec service")]
    NoRemoteDomain,
}

/// Spawns `qrexec-client-vm TARGET SERVICE` with piped stdin and stdout; stderr is
/// inherited so qrexec's own messages reach the user.
pub fn spawn_client(target: &str, service: &str) -> Result<Child, TransportError> {
    Command::new("qrexec-client-vm")
        .arg(target)
        .arg(service)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(TransportError::Spawn)
}

/// Reads the socket-service descriptor (at most [`MAX_DESCRIPTOR`] bytes, NUL
/// included) and validates both names. `r` is buffered: whatever it read past
/// the NUL stays in its buffer for the frames that follow, so a caller keeps
/// reading from the same `r` (two or three syscalls, not one per byte).
pub fn read_descriptor<R: BufRead>(r: &mut R) -> Result<(ServiceName, QubeName), TransportError> {
    let mut buf = Vec::with_capacity(64);
    let n = r.by_ref().take(MAX_DESCRIPTOR as u64).read_until(0, &mut buf)?;
    if buf.last() != Some(&0) {
        return Err(if n >= MAX_DESCRIPTOR {
            TransportError::DescriptorTooLong
        } else {
            TransportError::DescriptorTruncated
        });
    }
    buf.pop();
    parse_descriptor(&buf)
}

/// Parses `<service> <source>` (without the NUL).
pub fn parse_descriptor(bytes: &[u8]) -> Result<(ServiceName, QubeName), TransportError> {
    let s = std::str::from_utf8(bytes).map_err(|_| TransportError::DescriptorMalformed)?;
    let (service, source) = s.split_once(' ').ok_or(TransportError::DescriptorMalformed)?;
    Ok((ServiceName::parse(service)?, QubeName::parse(source)?))
}

/// The caller in exec-service mode, from `QREXEC_REMOTE_DOMAIN`.
pub fn remote_domain_from_env() -> Result<QubeName, TransportError> {
    let v = std::env::var("QREXEC_REMOTE_DOMAIN").map_err(|_| TransportError::NoRemoteDomain)?;
    Ok(QubeName::parse(&v)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_parses_and_leaves_the_rest() {
        let mut input: &[u8] = b"qvault.Gpg work\0PAYLOAD";
        let (svc, src) = read_descriptor(&mut input).unwrap();
        assert_eq!(svc.name, "qvault.Gpg");
        assert_eq!(src.as_str(), "work");
        assert_eq!(input, b"PAYLOAD");
    }

    #[test]
    fn descriptor_errors() {
        assert!(matches!(read_descriptor(&mut &b"qvault.Gpg work"[..]), Err(TransportError::DescriptorTruncated)));
        assert!(matches!(read_descriptor(&mut &b"qvault.Gpg\0"[..]), Err(TransportError::DescriptorMalformed)));
        assert!(matches!(read_descriptor(&mut &b"qvault.Gpg ../x\0"[..]), Err(TransportError::Name(_))));
        let long = vec![b'a'; 300];
        assert!(matches!(read_descriptor(&mut &long[..]), Err(TransportError::DescriptorTooLong)));
        // The limit counts the NUL: 255 bytes and a NUL are read (and parsed), 256 are too many.
        let mut at_limit = vec![b'a'; MAX_DESCRIPTOR - 1];
        at_limit.push(0);
        assert!(matches!(read_descriptor(&mut &at_limit[..]), Err(TransportError::DescriptorMalformed)));
        let mut over = vec![b'a'; MAX_DESCRIPTOR];
        over.push(0);
        assert!(matches!(read_descriptor(&mut &over[..]), Err(TransportError::DescriptorTooLong)));
        assert!(matches!(read_descriptor(&mut &b"qvault.Gpg \xff\0"[..]), Err(TransportError::DescriptorMalformed)));
    }
}
