//! The connection to the vault: `qrexec-client-vm VAULT qvault.Gpg`, framed
//! requests on its stdin, framed answers on its stdout.

use std::io::BufWriter;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout};

use qubes_rpc::frame::FrameError;
use qubes_rpc::transport::{spawn_client, SERVICE_GPG};
use qubes_rpc::{ClientFrame, FrameReader, FrameWriter, KeyArgument, Op, Request, ServerFrame};

use crate::error::ShimError;

/// The vault qube's name: `QUBES_GPG_DOMAIN` (as split-gpg users set it), else
/// `vault = "..."` in the user's `$XDG_CONFIG_HOME/qvault/client.toml`, else in
/// the template-wide `/etc/qvault/client.toml` (as gpg reads the user's
/// gpg.conf over the system's defaults).
pub fn vault_name() -> Result<String, ShimError> {
    if let Some(v) = std::env::var("QUBES_GPG_DOMAIN").ok().filter(|v| !v.is_empty()) {
        return Ok(v);
    }
    match load_config()? {
        Some((_, ClientConfig { vault: Some(v), .. })) => Ok(v),
        Some((path, _)) => Err(ShimError::Config(format!(
            "{}: no vault qube configured: set QUBES_GPG_DOMAIN or `vault = \"NAME\"`",
            path.display()
        ))),
        None => {
            let user = user_config_path().map(|p| format!("{} or ", p.display())).unwrap_or_default();
            Err(ShimError::Config(format!(
                "no vault qube configured: set QUBES_GPG_DOMAIN or `vault = \"NAME\"` in {user}{SYSTEM_CONFIG}"
            )))
        }
    }
}

/// The key configured in client.toml (`key = "FINGERPRINT"`), used when the
/// command line names none: a full fingerprint, so that calls go to
/// `qvault.Gpg+FINGERPRINT` and dom0's policy can allow this qube that key.
pub fn configured_key() -> Result<Option<KeyArgument>, ShimError> {
    let Some((path, ClientConfig { key: Some(k), .. })) = load_config()? else { return Ok(None) };
    KeyArgument::from_selector(&k).map(Some).ok_or_else(|| {
        ShimError::Config(format!(
            "{}: key = {k:?} is not a full key fingerprint (40 or 64 hex digits)",
            path.display()
        ))
    })
}

/// The template-wide client configuration (installed as an example by the
/// qvault-gpg package).
pub const SYSTEM_CONFIG: &str = "/etc/qvault/client.toml";

#[derive(serde::Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct ClientConfig {
    vault: Option<String>,
    key: Option<String>,
}

/// The user's client.toml, else the system's, if either exists.
fn load_config() -> Result<Option<(PathBuf, ClientConfig)>, ShimError> {
    let system = PathBuf::from(SYSTEM_CONFIG);
    let path = match user_config_path().filter(|p| p.exists()) {
        Some(p) => p,
        None if system.exists() => system,
        None => return Ok(None),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| ShimError::Config(format!("{}: {e}", path.display())))?;
    let config = parse_config(&text).map_err(|e| ShimError::Config(format!("{}: {e}", path.display())))?;
    Ok(Some((path, config)))
}

fn parse_config(text: &str) -> Result<ClientConfig, toml::de::Error> {
    toml::from_str::<ClientConfig>(text)
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
        Conn::open_for(None)
    }

    /// A call for one key: `qvault.Gpg+FINGERPRINT`, which dom0's policy can
    /// allow or refuse per key, and the vault serves for that key only.
    pub fn open_for(key: Option<&KeyArgument>) -> Result<Conn, ShimError> {
        let name = vault_name()?;
        let service = match key {
            Some(k) => format!("{SERVICE_GPG}+{k}"),
            None => SERVICE_GPG.to_owned(),
        };
        let mut child =
            spawn_client(&name, &service).map_err(|e| ShimError::Unreachable(name.clone(), e.to_string()))?;
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
    fn config_names_the_vault_and_a_key_and_nothing_else() {
        assert_eq!(parse_config("vault = \"work-vault\"\n").unwrap().vault.as_deref(), Some("work-vault"));
        let c = parse_config("vault = \"v\"\nkey = \"ABCD\"\n").unwrap();
        assert_eq!(c.key.as_deref(), Some("ABCD"));
        assert!(parse_config("vault = \"v\"\nsocket = \"x\"\n").is_err());
        assert_eq!(parse_config("").unwrap().vault, None);
    }
}
