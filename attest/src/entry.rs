//! Log entries: one JSON object per entry, specified in `docs/log-format.md`.
//! The leaf hash covers the entry's exact bytes, so verifiers never re-encode:
//! they hash the bytes they were given and parse them to read the facts.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// Version of the entry encoding.
pub const ENTRY_VERSION: u32 = 1;
/// Longest `summary` of a signature entry, in bytes.
pub const MAX_SUMMARY: usize = 1024;
/// Longest qube name or template in a `vault_state` entry, in bytes.
const MAX_QUBE_NAME: usize = 64;
/// Longest entry accepted from outside, in bytes.
pub const MAX_ENTRY: usize = 64 * 1024;
/// The notation that binds a signature to its log entry: value `<origin> <index>`.
pub const NOTATION: &str = "log@qvault.invalid";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Encoding version, [`ENTRY_VERSION`].
    pub v: u32,
    /// Position in the log, from 0.
    pub index: u64,
    /// Seconds since the epoch, vault clock.
    pub time: i64,
    /// The calling qube, for events caused by a qrexec call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// First entry of every log.
    LogCreated { vault: String, origin: String, log_key: String },
    /// A key generated inside the vault. `cert` is the public certificate, base64.
    KeyGenerated { fingerprint: String, algorithm: String, created: i64, cert: String },
    /// A secret key brought in from elsewhere.
    KeyImported { fingerprint: String, algorithm: String, created: i64, cert: String },
    /// A key held by the vault's gpg-agent (software or smartcard).
    KeyAttached { fingerprint: String, algorithm: String, created: i64, cert: String, card: bool },
    /// A key's certificate changed in the vault (`change` says how: expiry
    /// extended, revoked); `cert` is the new public certificate.
    KeyUpdated { fingerprint: String, change: String, cert: String },
    /// A signature made by the vault.
    Signature {
        /// The (sub)key that signed.
        key: String,
        /// Its certificate's primary key.
        primary: String,
        /// `binary` or `text`.
        sig_type: String,
        /// `detached`, `cleartext` or `inline`.
        mode: String,
        hash_algo: String,
        /// Hash (with `hash_algo`) of the canonical signed data, hex.
        data_digest: String,
        data_len: u64,
        /// SHA-256 of the signature packet as sent to the client, hex.
        sig_digest: String,
        /// The policy decision that allowed it.
        decision: String,
        /// `client` when the client hashed the data and sent only the hash state
        /// (the vault never saw the data, and `data_digest` and `data_len` are
        /// the client's); absent when the vault hashed the data itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hashed_by: Option<String>,
        /// What the vault recognised in the data it hashed (a Debian upload,
        /// a git commit, ...): short, bounded text. Absent when the vault did
        /// not recognise the data, did not see it, or policy turned it off.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        summary: Option<String>,
    },
    /// The daemon started; `interfaces` are the network interfaces it saw.
    DaemonStarted { version: String, interfaces: Vec<String> },
    /// What the vault says about itself, at start and when it changes. Its
    /// own word (`self_reported` is always true): a compromised vault could
    /// lie, but then the lie is on the record.
    VaultState {
        version: String,
        /// SHA-256 of the running binary (`/proc/self/exe`), hex.
        binary_sha256: String,
        /// SHA-256 of the policy file in force, hex.
        policy_digest: String,
        /// Network interfaces present (`/sys/class/net`), sorted.
        interfaces: Vec<String>,
        /// The qube's name and template as qubesdb tells them; absent when
        /// there is no qubesdb (not a Qubes qube) or no such key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        qube_name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        qube_template: Option<String>,
        self_reported: bool,
    },
    /// The policy file changed; SHA-256 of its new content.
    PolicyChanged { policy_digest: String },
    /// A position reserved for a signature that was not made (the signer
    /// failed after the position was put into the signature); no signature
    /// that left the vault names it. `reason` says why, without secrets.
    Void { reason: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("entry is longer than {MAX_ENTRY} bytes")]
    TooLong,
    #[error("entry is not valid JSON of a known kind: {0}")]
    Json(String),
    #[error("entry encoding version {0} is not supported")]
    Version(u32),
    #[error("entry claims index {claimed} at position {actual}")]
    Index { claimed: u64, actual: u64 },
    #[error("entry field {0} is malformed")]
    Field(&'static str),
}

fn is_hex(s: &str, len: Option<usize>) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()) && len.is_none_or(|l| s.len() == l)
}

fn is_fpr(s: &str) -> bool {
    is_hex(s, Some(40)) || is_hex(s, Some(64))
}

impl Entry {
    pub fn new(index: u64, time: i64, source: Option<String>, event: Event) -> Entry {
        Entry { v: ENTRY_VERSION, index, time, source, event }
    }

    /// The entry's bytes as stored (compact JSON, no newline).
    pub fn encode(&self) -> Vec<u8> {
        // Serializing these plain types cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and checks an entry found at `position`.
    pub fn parse(bytes: &[u8], position: u64) -> Result<Entry, EntryError> {
        if bytes.len() > MAX_ENTRY {
            return Err(EntryError::TooLong);
        }
        let raw: RawEntry<'_> = serde_json::from_slice(bytes).map_err(|e| EntryError::Json(e.to_string()))?;
        let e = raw.into_entry()?;
        if e.v != ENTRY_VERSION {
            return Err(EntryError::Version(e.v));
        }
        if e.index != position {
            return Err(EntryError::Index { claimed: e.index, actual: position });
        }
        e.check_fields()?;
        Ok(e)
    }

    fn check_fields(&self) -> Result<(), EntryError> {
        match &self.event {
            Event::KeyGenerated { fingerprint, cert, .. }
            | Event::KeyImported { fingerprint, cert, .. }
            | Event::KeyAttached { fingerprint, cert, .. }
            | Event::KeyUpdated { fingerprint, cert, .. } => {
                if !is_fpr(fingerprint) {
                    return Err(EntryError::Field("fingerprint"));
                }
                if cert.is_empty() {
                    return Err(EntryError::Field("cert"));
                }
            }
            Event::Signature { key, primary, sig_type, mode, data_digest, sig_digest, hashed_by, summary, .. } => {
                if hashed_by.as_deref().is_some_and(|h| h != "client") {
                    return Err(EntryError::Field("hashed_by"));
                }
                // The vault summarises only data it saw; text for people, one line.
                if let Some(s) = summary {
                    if hashed_by.is_some() || s.is_empty() || s.len() > MAX_SUMMARY || s.chars().any(char::is_control) {
                        return Err(EntryError::Field("summary"));
                    }
                }
                if !is_fpr(key) || !is_fpr(primary) {
                    return Err(EntryError::Field("key"));
                }
                if !matches!(sig_type.as_str(), "binary" | "text") {
                    return Err(EntryError::Field("sig_type"));
                }
                if !matches!(mode.as_str(), "detached" | "cleartext" | "inline") {
                    return Err(EntryError::Field("mode"));
                }
                if !is_hex(data_digest, None) || data_digest.len() % 2 != 0 {
                    return Err(EntryError::Field("data_digest"));
                }
                if !is_hex(sig_digest, Some(64)) {
                    return Err(EntryError::Field("sig_digest"));
                }
            }
            Event::PolicyChanged { policy_digest } => {
                if !is_hex(policy_digest, Some(64)) {
                    return Err(EntryError::Field("policy_digest"));
                }
            }
            Event::VaultState { binary_sha256, policy_digest, qube_name, qube_template, self_reported, .. } => {
                if !is_hex(binary_sha256, Some(64)) {
                    return Err(EntryError::Field("binary_sha256"));
                }
                if !is_hex(policy_digest, Some(64)) {
                    return Err(EntryError::Field("policy_digest"));
                }
                let bad_name = |n: &Option<String>| {
                    n.as_ref()
                        .is_some_and(|n| n.is_empty() || n.len() > MAX_QUBE_NAME || n.chars().any(char::is_control))
                };
                if bad_name(qube_name) || bad_name(qube_template) {
                    return Err(EntryError::Field("qube_name"));
                }
                if !self_reported {
                    return Err(EntryError::Field("self_reported"));
                }
            }
            Event::LogCreated { .. } | Event::DaemonStarted { .. } | Event::Void { .. } => {}
        }
        Ok(())
    }

    /// For key events: (fingerprint, how the key came to be, certificate base64).
    pub fn key_fact(&self) -> Option<(&str, &'static str, &str)> {
        match &self.event {
            Event::KeyGenerated { fingerprint, cert, .. } => Some((fingerprint, "generated in the vault", cert)),
            Event::KeyImported { fingerprint, cert, .. } => Some((fingerprint, "imported", cert)),
            Event::KeyAttached { fingerprint, cert, card: true, .. } => {
                Some((fingerprint, "attached from gpg-agent (smartcard)", cert))
            }
            Event::KeyAttached { fingerprint, cert, .. } => Some((fingerprint, "attached from gpg-agent", cert)),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match &self.event {
            Event::LogCreated { .. } => "log_created",
            Event::KeyGenerated { .. } => "key_generated",
            Event::KeyImported { .. } => "key_imported",
            Event::KeyAttached { .. } => "key_attached",
            Event::KeyUpdated { .. } => "key_updated",
            Event::Signature { .. } => "signature",
            Event::DaemonStarted { .. } => "daemon_started",
            Event::VaultState { .. } => "vault_state",
            Event::PolicyChanged { .. } => "policy_changed",
            Event::Void { .. } => "void",
        }
    }
}

/// The flat shape of every entry, for fast and strict decoding: one pass, no
/// intermediate buffering (serde's `flatten` would buffer every entry), and a
/// field that does not belong to the entry's kind is an error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry<'a> {
    v: u32,
    index: u64,
    time: i64,
    #[serde(borrow)]
    source: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    vault: Option<Cow<'a, str>>,
    #[serde(borrow)]
    origin: Option<Cow<'a, str>>,
    #[serde(borrow)]
    log_key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    fingerprint: Option<Cow<'a, str>>,
    #[serde(borrow)]
    algorithm: Option<Cow<'a, str>>,
    created: Option<i64>,
    #[serde(borrow)]
    cert: Option<Cow<'a, str>>,
    card: Option<bool>,
    #[serde(borrow)]
    change: Option<Cow<'a, str>>,
    #[serde(borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    primary: Option<Cow<'a, str>>,
    #[serde(borrow)]
    sig_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    mode: Option<Cow<'a, str>>,
    #[serde(borrow)]
    hash_algo: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data_digest: Option<Cow<'a, str>>,
    data_len: Option<u64>,
    #[serde(borrow)]
    sig_digest: Option<Cow<'a, str>>,
    #[serde(borrow)]
    decision: Option<Cow<'a, str>>,
    #[serde(borrow)]
    hashed_by: Option<Cow<'a, str>>,
    #[serde(borrow)]
    version: Option<Cow<'a, str>>,
    interfaces: Option<Vec<String>>,
    #[serde(borrow)]
    policy_digest: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reason: Option<Cow<'a, str>>,
    #[serde(borrow)]
    summary: Option<Cow<'a, str>>,
    #[serde(borrow)]
    binary_sha256: Option<Cow<'a, str>>,
    #[serde(borrow)]
    qube_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    qube_template: Option<Cow<'a, str>>,
    self_reported: Option<bool>,
}

impl RawEntry<'_> {
    fn present(&self) -> usize {
        [
            self.vault.is_some(),
            self.origin.is_some(),
            self.log_key.is_some(),
            self.fingerprint.is_some(),
            self.algorithm.is_some(),
            self.created.is_some(),
            self.cert.is_some(),
            self.card.is_some(),
            self.change.is_some(),
            self.key.is_some(),
            self.primary.is_some(),
            self.sig_type.is_some(),
            self.mode.is_some(),
            self.hash_algo.is_some(),
            self.data_digest.is_some(),
            self.data_len.is_some(),
            self.sig_digest.is_some(),
            self.decision.is_some(),
            self.hashed_by.is_some(),
            self.version.is_some(),
            self.interfaces.is_some(),
            self.policy_digest.is_some(),
            self.reason.is_some(),
            self.summary.is_some(),
            self.binary_sha256.is_some(),
            self.qube_name.is_some(),
            self.qube_template.is_some(),
            self.self_reported.is_some(),
        ]
        .iter()
        .filter(|&&p| p)
        .count()
    }

    fn into_entry(self) -> Result<Entry, EntryError> {
        fn req<T>(v: Option<T>, name: &'static str) -> Result<T, EntryError> {
            v.ok_or_else(|| EntryError::Json(format!("missing field `{name}`")))
        }
        let s = |v: Option<Cow<'_, str>>, name: &'static str| req(v, name).map(Cow::into_owned);
        let n = self.present();
        let (event, expected) = match &*self.kind {
            "log_created" => (
                Event::LogCreated {
                    vault: s(self.vault, "vault")?,
                    origin: s(self.origin, "origin")?,
                    log_key: s(self.log_key, "log_key")?,
                },
                3,
            ),
            "key_generated" | "key_imported" | "key_attached" => {
                let (fingerprint, algorithm, created, cert) = (
                    s(self.fingerprint, "fingerprint")?,
                    s(self.algorithm, "algorithm")?,
                    req(self.created, "created")?,
                    s(self.cert, "cert")?,
                );
                match &*self.kind {
                    "key_generated" => (Event::KeyGenerated { fingerprint, algorithm, created, cert }, 4),
                    "key_imported" => (Event::KeyImported { fingerprint, algorithm, created, cert }, 4),
                    _ => {
                        (Event::KeyAttached { fingerprint, algorithm, created, cert, card: req(self.card, "card")? }, 5)
                    }
                }
            }
            "key_updated" => (
                Event::KeyUpdated {
                    fingerprint: s(self.fingerprint, "fingerprint")?,
                    change: s(self.change, "change")?,
                    cert: s(self.cert, "cert")?,
                },
                3,
            ),
            "signature" => {
                let optional = usize::from(self.hashed_by.is_some()) + usize::from(self.summary.is_some());
                (
                    Event::Signature {
                        key: s(self.key, "key")?,
                        primary: s(self.primary, "primary")?,
                        sig_type: s(self.sig_type, "sig_type")?,
                        mode: s(self.mode, "mode")?,
                        hash_algo: s(self.hash_algo, "hash_algo")?,
                        data_digest: s(self.data_digest, "data_digest")?,
                        data_len: req(self.data_len, "data_len")?,
                        sig_digest: s(self.sig_digest, "sig_digest")?,
                        decision: s(self.decision, "decision")?,
                        hashed_by: self.hashed_by.map(Cow::into_owned),
                        summary: self.summary.map(Cow::into_owned),
                    },
                    9 + optional,
                )
            }
            "daemon_started" => (
                Event::DaemonStarted {
                    version: s(self.version, "version")?,
                    interfaces: req(self.interfaces, "interfaces")?,
                },
                2,
            ),
            "vault_state" => {
                let optional = usize::from(self.qube_name.is_some()) + usize::from(self.qube_template.is_some());
                (
                    Event::VaultState {
                        version: s(self.version, "version")?,
                        binary_sha256: s(self.binary_sha256, "binary_sha256")?,
                        policy_digest: s(self.policy_digest, "policy_digest")?,
                        interfaces: req(self.interfaces, "interfaces")?,
                        qube_name: self.qube_name.map(Cow::into_owned),
                        qube_template: self.qube_template.map(Cow::into_owned),
                        self_reported: req(self.self_reported, "self_reported")?,
                    },
                    5 + optional,
                )
            }
            "policy_changed" => (Event::PolicyChanged { policy_digest: s(self.policy_digest, "policy_digest")? }, 1),
            "void" => (Event::Void { reason: s(self.reason, "reason")? }, 1),
            other => return Err(EntryError::Json(format!("unknown kind {other:?}"))),
        };
        if n != expected {
            return Err(EntryError::Json(format!("fields that do not belong to a {} entry", self.kind)));
        }
        Ok(Entry { v: self.v, index: self.index, time: self.time, source: self.source.map(Cow::into_owned), event })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig_event() -> Event {
        Event::Signature {
            key: "A".repeat(40),
            primary: "B".repeat(40),
            sig_type: "binary".into(),
            mode: "detached".into(),
            hash_algo: "SHA256".into(),
            data_digest: "00".repeat(32),
            data_len: 6,
            sig_digest: "11".repeat(32),
            decision: "allow".into(),
            hashed_by: None,
            summary: None,
        }
    }

    #[test]
    fn encoding_is_pinned() {
        let e = Entry::new(3, 1700000000, Some("work".into()), Event::PolicyChanged { policy_digest: "ab".repeat(32) });
        let s = String::from_utf8(e.encode()).unwrap();
        assert_eq!(
            s,
            format!(
                r#"{{"v":1,"index":3,"time":1700000000,"source":"work","kind":"policy_changed","policy_digest":"{}"}}"#,
                "ab".repeat(32)
            )
        );
        assert_eq!(Entry::parse(s.as_bytes(), 3).unwrap(), e);
    }

    #[test]
    fn parse_rejects_defects() {
        let e = Entry::new(5, 1, None, sig_event());
        let b = e.encode();
        assert_eq!(Entry::parse(&b, 4), Err(EntryError::Index { claimed: 5, actual: 4 }));
        let mut bad = e.clone();
        if let Event::Signature { sig_digest, .. } = &mut bad.event {
            *sig_digest = "zz".into();
        }
        assert_eq!(Entry::parse(&bad.encode(), 5), Err(EntryError::Field("sig_digest")));
        assert!(matches!(Entry::parse(b"{\"v\":1}", 0), Err(EntryError::Json(_))));
        assert!(matches!(Entry::parse(&b[..b.len() - 1], 5), Err(EntryError::Json(_))));
        let text = String::from_utf8(b).unwrap();
        let extra = text.replacen("\"kind\"", "\"vault\":\"x\",\"kind\"", 1);
        assert!(matches!(Entry::parse(extra.as_bytes(), 5), Err(EntryError::Json(_))), "a field of another kind");
        let unknown = text.replacen("\"kind\"", "\"zzz\":1,\"kind\"", 1);
        assert!(matches!(Entry::parse(unknown.as_bytes(), 5), Err(EntryError::Json(_))), "an unknown field");
        let dup = text.replacen("\"kind\"", "\"index\":5,\"kind\"", 1);
        assert!(matches!(Entry::parse(dup.as_bytes(), 5), Err(EntryError::Json(_))), "a duplicate field");
        let v2 = text.replace("\"v\":1", "\"v\":2");
        assert_eq!(Entry::parse(v2.as_bytes(), 5), Err(EntryError::Version(2)));
        assert_eq!(Entry::parse(&vec![b' '; MAX_ENTRY + 1], 0), Err(EntryError::TooLong));
        let hashed = text.replacen("\"kind\"", "\"hashed_by\":\"vault\",\"kind\"", 1);
        assert_eq!(Entry::parse(hashed.as_bytes(), 5), Err(EntryError::Field("hashed_by")));
    }

    #[test]
    fn void_entries_are_pinned() {
        let e = Entry::new(7, 1700000000, Some("work".into()), Event::Void { reason: "signer failed".into() });
        let s = String::from_utf8(e.encode()).unwrap();
        assert_eq!(s, r#"{"v":1,"index":7,"time":1700000000,"source":"work","kind":"void","reason":"signer failed"}"#);
        assert_eq!(Entry::parse(s.as_bytes(), 7).unwrap(), e);
        let extra = s.replacen("\"kind\"", "\"policy_digest\":\"00\",\"kind\"", 1);
        assert!(matches!(Entry::parse(extra.as_bytes(), 7), Err(EntryError::Json(_))));
    }

    #[test]
    fn client_hashing_is_recorded_and_optional() {
        let mut e = Entry::new(5, 1, None, sig_event());
        assert!(!String::from_utf8(e.encode()).unwrap().contains("hashed_by"), "absent when the vault hashed");
        if let Event::Signature { hashed_by, .. } = &mut e.event {
            *hashed_by = Some("client".into());
        }
        let b = e.encode();
        assert!(String::from_utf8(b.clone()).unwrap().contains(r#""hashed_by":"client""#));
        assert_eq!(Entry::parse(&b, 5).unwrap(), e);
    }

    #[test]
    fn summaries_are_pinned_and_optional() {
        let mut e = Entry::new(5, 1, None, sig_event());
        if let Event::Signature { summary, .. } = &mut e.event {
            *summary = Some("git commit: tree 00, no parent".into());
        }
        let s = String::from_utf8(e.encode()).unwrap();
        assert!(s.ends_with(r#""decision":"allow","summary":"git commit: tree 00, no parent"}"#), "{s}");
        assert_eq!(Entry::parse(s.as_bytes(), 5).unwrap(), e);
        let ctl = s.replace("tree 00", r"tree\u001b00");
        assert_eq!(Entry::parse(ctl.as_bytes(), 5), Err(EntryError::Field("summary")));
        let both = s.replacen("\"kind\"", "\"hashed_by\":\"client\",\"kind\"", 1);
        assert_eq!(Entry::parse(both.as_bytes(), 5), Err(EntryError::Field("summary")), "no summary of unseen data");
        let long = s.replace("tree 00", &"x".repeat(MAX_SUMMARY));
        assert_eq!(Entry::parse(long.as_bytes(), 5), Err(EntryError::Field("summary")));
    }

    #[test]
    fn vault_state_is_pinned() {
        let e = Entry::new(
            2,
            1700000000,
            None,
            Event::VaultState {
                version: "0.1.0".into(),
                binary_sha256: "ab".repeat(32),
                policy_digest: "cd".repeat(32),
                interfaces: vec!["lo".into()],
                qube_name: Some("vault".into()),
                qube_template: Some("debian-12".into()),
                self_reported: true,
            },
        );
        let s = String::from_utf8(e.encode()).unwrap();
        assert_eq!(
            s,
            format!(
                r#"{{"v":1,"index":2,"time":1700000000,"kind":"vault_state","version":"0.1.0","binary_sha256":"{}","policy_digest":"{}","interfaces":["lo"],"qube_name":"vault","qube_template":"debian-12","self_reported":true}}"#,
                "ab".repeat(32),
                "cd".repeat(32)
            )
        );
        assert_eq!(Entry::parse(s.as_bytes(), 2).unwrap(), e);
        let bare = s.replace(r#""qube_name":"vault","qube_template":"debian-12","#, "");
        assert!(Entry::parse(bare.as_bytes(), 2).is_ok(), "no qubesdb: no name");
        let denied = s.replace("\"self_reported\":true", "\"self_reported\":false");
        assert_eq!(Entry::parse(denied.as_bytes(), 2), Err(EntryError::Field("self_reported")));
        let missing = s.replace(",\"self_reported\":true", "");
        assert!(matches!(Entry::parse(missing.as_bytes(), 2), Err(EntryError::Json(_))));
    }
}
