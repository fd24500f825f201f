//! The vault's home directory: `vault.toml` (settings), `keys/`, `log/`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::fsutil;

pub struct Home {
    root: PathBuf,
}

/// Settings written at `init`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// The vault's name (the log's origin is derived from it).
    pub name: String,
}

impl Home {
    /// `--home`, else `$QVAULT_HOME`, else `$XDG_DATA_HOME/qvault`, else
    /// `~/.local/share/qvault`.
    pub fn resolve(arg: Option<PathBuf>) -> anyhow::Result<Home> {
        let root = match arg.or_else(|| std::env::var_os("QVAULT_HOME").map(PathBuf::from)) {
            Some(p) => p,
            None => match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
                Some(x) => PathBuf::from(x).join("qvault"),
                None => {
                    let home = std::env::var_os("HOME").context("neither --home, XDG_DATA_HOME nor HOME is set")?;
                    PathBuf::from(home).join(".local/share/qvault")
                }
            },
        };
        Ok(Home { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.root.join("log")
    }

    pub fn policy_path(&self) -> PathBuf {
        self.root.join("policy.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    fn config_path(&self) -> PathBuf {
        self.root.join("vault.toml")
    }

    pub fn is_initialized(&self) -> bool {
        self.config_path().exists()
    }

    pub fn init(&self, name: &str, confirm: bool) -> anyhow::Result<VaultConfig> {
        anyhow::ensure!(!self.is_initialized(), "{} is already a vault (vault.toml exists)", self.root.display());
        fsutil::ensure_private_dir(&self.root)?;
        fsutil::ensure_private_dir(&self.keys_dir())?;
        fsutil::ensure_private_dir(&self.log_dir())?;
        fsutil::ensure_private_dir(&self.state_dir())?;
        fsutil::write_private(&self.policy_path(), crate::policy::default_policy_text(confirm).as_bytes())?;
        let cfg = VaultConfig { name: name.to_owned() };
        fsutil::write_private(&self.config_path(), toml::to_string(&cfg)?.as_bytes())?;
        Ok(cfg)
    }

    pub fn config(&self) -> anyhow::Result<VaultConfig> {
        let path = self.config_path();
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("{} is not a vault (run `qvault init --home {}` first)", self.root.display(), self.root.display())
        })?;
        toml::from_str(&text).with_context(|| format!("{}", path.display()))
    }
}
