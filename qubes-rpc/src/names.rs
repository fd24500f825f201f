//! Validated identities that cross the qrexec boundary.

use std::fmt;

/// Why a qube or service name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("qube name is empty")]
    Empty,
    #[error("qube name is longer than 31 characters")]
    TooLong,
    #[error("qube name has a character Qubes does not allow: {0:?}")]
    BadChar(char),
    #[error("qube name must start with a letter")]
    BadStart,
    #[error("service name {0:?} is not a qrexec service name")]
    BadService(String),
}

/// The name of a calling qube, as dom0 reports it (`QREXEC_REMOTE_DOMAIN` or the
/// socket-service descriptor). Validated with Qubes' own rules for VM names, so it
/// is safe to put in logs, policy matches and file names.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QubeName(String);

impl QubeName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let mut chars = s.chars();
        let first = chars.next().ok_or(NameError::Empty)?;
        if s.len() > 31 {
            return Err(NameError::TooLong);
        }
        if !first.is_ascii_alphabetic() {
            return Err(NameError::BadStart);
        }
        if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
            return Err(NameError::BadChar(c));
        }
        Ok(QubeName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QubeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for QubeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QubeName({})", self.0)
    }
}

/// A qrexec service name such as `qvault.Gpg`, optionally with `+argument`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceName {
    pub name: String,
    pub argument: Option<String>,
}

impl ServiceName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 64
                && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        };
        let (name, argument) = match s.split_once('+') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        if !ok(name) || argument.is_some_and(|a| !a.is_empty() && !ok(a)) {
            return Err(NameError::BadService(s.chars().take(80).collect()));
        }
        Ok(ServiceName { name: name.to_owned(), argument: argument.filter(|a| !a.is_empty()).map(str::to_owned) })
    }
}

/// The key a `qvault.Gpg+FINGERPRINT` call is for: the service argument, so
/// that dom0's policy can allow one qube one key (`qvault.Gpg +FPR work vault
/// allow`). Only a full fingerprint in upper-case hex (40 digits, OpenPGP v4;
/// 64, v6): a short key ID or a user ID could name other keys, and dom0
/// compares arguments as strings, so there is one spelling.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyArgument {
    hex: [u8; 64],
    len: u8,
}

impl KeyArgument {
    /// A service argument as qrexec passed it (the vault's side: exact form only).
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let ok = matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
        if !ok {
            return Err(NameError::BadService(format!(
                "argument {:?} is not a full key fingerprint",
                s.chars().take(80).collect::<String>()
            )));
        }
        let mut hex = [0u8; 64];
        hex[..s.len()].copy_from_slice(s.as_bytes());
        Ok(KeyArgument { hex, len: s.len() as u8 })
    }

    /// The argument for a key selector as gpg takes it (the client's side),
    /// if the selector is a full fingerprint: `0x` prefix, a trailing `!`
    /// (gpg's "exactly this (sub)key") and lower case are accepted.
    pub fn from_selector(sel: &str) -> Option<Self> {
        let s = sel.trim();
        let s = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
        let s = s.strip_suffix('!').unwrap_or(s);
        Self::parse(&s.to_ascii_uppercase()).ok()
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.hex[..self.len as usize]).unwrap_or_default()
    }
}

impl fmt::Display for KeyArgument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for KeyArgument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyArgument({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_arguments_are_full_upper_case_fingerprints() {
        let v4 = "0123456789ABCDEF0123456789ABCDEF01234567";
        assert_eq!(KeyArgument::parse(v4).unwrap().as_str(), v4);
        assert!(KeyArgument::parse(&"A".repeat(64)).is_ok());
        assert!(KeyArgument::parse(&v4.to_lowercase()).is_err());
        assert!(KeyArgument::parse("0123456789ABCDEF").is_err());
        assert!(KeyArgument::parse(&"A".repeat(41)).is_err());
        assert!(KeyArgument::parse("alice@example.org").is_err());
        assert!(KeyArgument::parse("").is_err());
        assert_eq!(KeyArgument::from_selector(&format!("0x{}!", v4.to_lowercase())).unwrap().as_str(), v4);
        assert!(KeyArgument::from_selector("89ABCDEF01234567").is_none());
        assert!(KeyArgument::from_selector("Alice <a@example.org>").is_none());
    }

    #[test]
    fn qube_names_follow_qubes_rules() {
        assert!(QubeName::parse("work").is_ok());
        assert!(QubeName::parse("debian-12_dev.x").is_ok());
        assert_eq!(QubeName::parse(""), Err(NameError::Empty));
        assert_eq!(QubeName::parse("1work"), Err(NameError::BadStart));
        assert_eq!(QubeName::parse("wo rk"), Err(NameError::BadChar(' ')));
        assert_eq!(QubeName::parse("a/../b"), Err(NameError::BadChar('/')));
        assert_eq!(QubeName::parse(&"a".repeat(32)), Err(NameError::TooLong));
        assert!(QubeName::parse(&"a".repeat(31)).is_ok());
    }

    #[test]
    fn service_names_split_argument() {
        let s = ServiceName::parse("qvault.Gpg+abc").unwrap();
        assert_eq!(s.name, "qvault.Gpg");
        assert_eq!(s.argument.as_deref(), Some("abc"));
        assert!(ServiceName::parse("qvault.Gpg\n").is_err());
        assert!(ServiceName::parse("").is_err());
    }
}
