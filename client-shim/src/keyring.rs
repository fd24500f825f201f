//! The client's public keyring: certificates fetched from the vault (its own
//! keys, trusted ultimately, cached in `vault-certs.pgp`) and certificates the
//! user imported with `--import` (`pubring.pgp`, trust unknown). Used only for
//! local verification; nothing here is ever sent to the vault.

use std::path::PathBuf;

use openpgp::cert::CertParser;
use openpgp::parse::Parse as _;
use openpgp::serialize::Marshal as _;
use openpgp::{Cert, KeyHandle};
use qubes_rpc::{Op, ServerFrame};
use sequoia_openpgp as openpgp;

use crate::colons::Trust;
use crate::error::ShimError;
use crate::vault::Conn;

/// `--homedir`, set once before anything reads [`data_dir`].
static HOMEDIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// `--homedir DIR`: DIR becomes the data directory for this run, as
/// `QVAULT_GPG_HOME` would (gpg's `--homedir` and `GNUPGHOME` likewise).
pub fn set_homedir(dir: PathBuf) {
    let _ = HOMEDIR.set(dir);
}

/// The client's data directory: `--homedir`, else `$QVAULT_GPG_HOME`, else
/// `$XDG_DATA_HOME/qvault-gpg`.
pub fn data_dir() -> PathBuf {
    if let Some(d) = HOMEDIR.get() {
        return d.clone();
    }
    if let Some(d) = std::env::var_os("QVAULT_GPG_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("qvault-gpg")
}

fn ensure_dir() -> Result<PathBuf, ShimError> {
    let d = data_dir();
    std::fs::create_dir_all(&d).map_err(ShimError::io(format!("creating {}", d.display())))?;
    Ok(d)
}

fn read_certs(path: &std::path::Path) -> Vec<Cert> {
    match CertParser::from_file(path) {
        Ok(p) => p.filter_map(Result::ok).collect(),
        Err(_) => Vec::new(),
    }
}

fn write_certs(name: &str, certs: &[Cert]) -> Result<(), ShimError> {
    let dir = ensure_dir()?;
    let mut bytes = Vec::new();
    for c in certs {
        c.serialize(&mut bytes).map_err(|e| ShimError::OpenPgp(e.to_string()))?;
    }
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(ShimError::io("writing keyring"))?;
    std::io::Write::write_all(&mut tmp, &bytes).map_err(ShimError::io("writing keyring"))?;
    tmp.persist(dir.join(name)).map_err(|e| ShimError::Io("writing keyring".into(), e.error))?;
    Ok(())
}

pub struct Keyring {
    pub certs: Vec<(Cert, Trust)>,
}

impl Keyring {
    pub fn load() -> Keyring {
        let dir = data_dir();
        let mut certs: Vec<(Cert, Trust)> =
            read_certs(&dir.join("vault-certs.pgp")).into_iter().map(|c| (c, Trust::Ultimate)).collect();
        for c in read_certs(&dir.join("pubring.pgp")) {
            if !certs.iter().any(|(v, _)| v.fingerprint() == c.fingerprint()) {
                certs.push((c, Trust::Unknown));
            }
        }
        Keyring { certs }
    }

    pub fn find(&self, h: &KeyHandle) -> Option<&(Cert, Trust)> {
        self.certs.iter().find(|(c, _)| c.keys().any(|k| k.key().key_handle().aliases(h)))
    }

    /// The cache of the vault's certificates is older than an hour, or holds a
    /// certificate that is expired or revoked now.
    pub fn vault_cache_stale(&self) -> bool {
        let path = data_dir().join("vault-certs.pgp");
        let old = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age > std::time::Duration::from_secs(3600));
        let p = openpgp::policy::StandardPolicy::new();
        let unusable =
            self.certs.iter().filter(|(_, t)| *t == Trust::Ultimate).any(|(c, _)| match c.with_policy(&p, None) {
                Ok(vc) => {
                    vc.alive().is_err()
                        || matches!(vc.revocation_status(), openpgp::types::RevocationStatus::Revoked(_))
                }
                Err(_) => true,
            });
        old || unusable
    }

    /// Fetches the vault's public certificates and caches them.
    pub fn refresh_from_vault(&mut self) -> Result<(), ShimError> {
        let bytes = export_from_vault(&[])?;
        let vault: Vec<Cert> = CertParser::from_bytes(&bytes)
            .map_err(|e| ShimError::Protocol(e.to_string()))?
            .filter_map(Result::ok)
            .map(|c| c.strip_secret_key_material())
            .collect();
        write_certs("vault-certs.pgp", &vault)?;
        *self = Keyring::load();
        Ok(())
    }
}

/// `ExportPublic` from the vault: concatenated binary certificates.
pub fn export_from_vault(selectors: &[String]) -> Result<Vec<u8>, ShimError> {
    let mut conn = Conn::open()?;
    conn.request(Op::ExportPublic { selectors: selectors.to_vec() })?;
    let mut out = Vec::new();
    loop {
        match conn.recv()? {
            ServerFrame::Output(b) => {
                if out.len() + b.len() > 64 << 20 {
                    return Err(ShimError::Protocol("the vault's export exceeds 64 MiB".into()));
                }
                out.extend_from_slice(b)
            }
            ServerFrame::Exported => break,
            _ => return Err(ShimError::Protocol("unexpected answer to an export".into())),
        }
    }
    conn.finish();
    Ok(out)
}

/// `--import`: public certificates into the client's own keyring. Secret key
/// material is dropped, never stored.
pub fn import(bytes: &[u8]) -> Result<Vec<(Cert, bool)>, ShimError> {
    let dir = ensure_dir()?;
    let mut existing = read_certs(&dir.join("pubring.pgp"));
    let mut report = Vec::new();
    for c in CertParser::from_bytes(bytes).map_err(|e| ShimError::OpenPgp(e.to_string()))? {
        let c = c.map_err(|e| ShimError::OpenPgp(e.to_string()))?;
        let had_secret = c.is_tsk();
        let c = c.strip_secret_key_material();
        match existing.iter_mut().find(|e| e.fingerprint() == c.fingerprint()) {
            Some(e) => *e = e.clone().merge_public(c.clone()).map_err(|e| ShimError::OpenPgp(e.to_string()))?,
            None => existing.push(c.clone()),
        }
        report.push((c, had_secret));
    }
    write_certs("pubring.pgp", &existing)?;
    Ok(report)
}
