//! The connection to the vault: `qrexec-client-vm VAULT qvault.Gpg`, framed
//! requests on its stdin, framed answers on its stdout.

use std::io::BufWriter;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout};

use qubes_rpc::frame::FrameError;
use qubes_rpc::transport::{spawn_client, SERVICE_GPG};
use qubes_rpc::{ClientFrame, FrameReader, FrameWriter, Op, Request, ServerFrame};

use crate::error::ShimError;

/// The vault qube's name: `QUBES_GPG_DOMAIN` (as split-gpg users set it), else
/// `vault = "..."` in the user's `$XDG_CONFIG_HOME/qvault/client.toml`, else in
/// the template-wide `/etc/qvault/client.toml` (as gpg reads the user's
/// gpg.conf over the system's defaults).
pub fn vault_name() -> Result<String, ShimError> {
    if let Some(v) = std::env::var("QUBES_GPG_DOMAIN").ok().filter(|v| !v.is_empty()) {
        return Ok(v);
    }
    let user = user_config_path();
    let system = PathBuf::from(SYSTEM_CONFIG);
    let path = match user.as_ref().filter(|p| p.exists()) {
        Some(p) => p.clone(),
        None if system.exists() => system,
        None => {
            let user = user.map(|p| format!("{} or ", p.display())).unwrap_or_default();
            return Err(ShimError::Config(format!(
                "no vault qube configured: set QUBES_GPG_DOMAIN or `vault = \"NAME\"` in {user}{SYSTEM_CONFIG}"
            )));
        }
    };
    let text = std::fs::read_to_string(&path).map_err(|e| ShimError::Config(format!("{}: {e}", path.display())))?;
    parse_config(&text).map_err(|e| ShimError::Config(format!("{}: {e}", path.display())))
}

/// The template-wide client configuration (installed as an example by the
/// qvault-gpg package).
pub const SYSTEM_CONFIG: &str = "/etc/qvault/client.toml";

fn parse_config(text: &str) -> Result<String, toml::de::Error> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ClientConfig {
        vault: String,
    }
    toml::from_str::<ClientConfig>(text).map(|c| c.vault)
}

fn user_config_path() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".config")))
        .map(|base| base.join("qvault/client.toml"))
}

pub struct Conn {
    name: String,
    child: Child,
    pub reader: FrameReader<ChildStdout>,
    pub writer: FrameWriter<BufWriter<ChildStdin>>,
}

impl Conn {
    pub fn open() -> Result<Conn, ShimError> {
        let name = vault_name()?;
        let mut child =
            spawn_client(&name, SERVICE_GPG).map_err(|e| ShimError::Unreachable(name.clone(), e.to_string()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(ShimError::Unreachable(name, "no pipes to qrexec-client-vm".into()));
        };
        Ok(Conn {
            name,
            child,
            reader: FrameReader::new(stdout),
            writer: FrameWriter::new(BufWriter::with_capacity(qubes_rpc::CHUNK_SIZE + 64, stdin)),
        })
    }

    /// The vault qube's name.
    pub fn vault(&self) -> &str {
        &self.name
    }

    pub fn send(&mut self, frame: &ClientFrame<'_>) -> Result<(), ShimError> {
        self.writer.send(frame).map_err(|e| self.transport(e))
    }

    pub fn request(&mut self, op: Op) -> Result<(), ShimError> {
        self.send(&ClientFrame::Request(Request::new(op)))?;
        self.writer.flush().map_err(|e| self.transport(e.into()))
    }

    /// A request and, if given, all of its data at once (one write): the
    /// vault reads the data after it has answered with its plan.
    pub fn request_with_data(&mut self, op: Op, data: Option<&[u8]>) -> Result<(), ShimError> {
        self.send(&ClientFrame::Request(Request::new(op)))?;
        if let Some(data) = data {
            if !data.is_empty() {
                self.send(&ClientFrame::Data(data))?;
            }
            self.send(&ClientFrame::End)?;
        }
        self.writer.flush().map_err(|e| self.transport(e.into()))
    }

    /// The next answer; an `Error` frame becomes [`ShimError::Vault`].
    pub fn recv(&mut self) -> Result<ServerFrame<'_>, ShimError> {
        match self.reader.next_payload() {
            Ok(Some(_)) => {}
            Ok(None) => return Err(self.closed()),
            Err(e) if e.is_disconnect() => return Err(self.closed()),
            Err(e) => return Err(ShimError::Protocol(e.to_string())),
        }
        let frame = qubes_rpc::frame::decode::<ServerFrame<'_>>(self.reader.payload())
            .map_err(|e| ShimError::Protocol(e.to_string()))?;
        match frame {
            ServerFrame::Error(e) => Err(ShimError::Vault(e)),
            f => Ok(f),
        }
    }

    fn closed(&mut self) -> ShimError {
        let why = match self.child.wait() {
            // qrexec-client-vm's own statuses for a call that never reached a
            // service (Qubes' qrexec: the caller sees 0 from any service).
            Ok(s) => match s.code() {
                Some(126) => format!("dom0's qrexec policy refused the call (qrexec-client-vm: {s})"),
                Some(127) => format!("the vault qube has no qvault service (qrexec-client-vm: {s})"),
                Some(125) => format!("the vault's qvault service is not running (qrexec-client-vm: {s})"),
                _ => format!("the connection closed without an answer (qrexec-client-vm: {s})"),
            },
            Err(e) => format!("the connection closed without an answer ({e})"),
        };
        ShimError::Unreachable(self.name.clone(), why)
    }

    /// A write failed: the vault may have refused and closed; prefer its reason.
    fn transport(&mut self, e: FrameError) -> ShimError {
        match self.reader.next::<ServerFrame<'_>>() {
            Ok(Some(ServerFrame::Error(err))) => ShimError::Vault(err),
            _ => ShimError::Unreachable(self.name.clone(), e.to_string()),
        }
    }

    pub fn finish(mut self) {
        drop(self.writer);
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::parse_config;

    #[test]
    fn config_names_the_vault_and_nothing_else() {
        assert_eq!(parse_config("vault = \"work-vault\"\n").unwrap(), "work-vault");
        assert!(parse_config("vault = \"v\"\nsocket = \"x\"\n").is_err());
        assert!(parse_config("").is_err());
    }
}
