//! The vault's keys: transferable secret keys on disk (`keys/<FPR>.tsk`, mode 0600)
//! with a provenance record (`keys/<FPR>.toml`: generated in the vault or
//! imported, and when). Loaded once per process; no function here writes secret
//! material anywhere but the vault's own key files.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context as _;
use openpgp::cert::prelude::*;
use openpgp::crypto::mpi::PublicKey as Mpis;
use openpgp::packet::key::{PublicParts, SecretParts, UnspecifiedRole};
use openpgp::packet::Key;
use openpgp::parse::Parse as _;
use openpgp::policy::{Policy, StandardPolicy};
use openpgp::serialize::Serialize as _;
use openpgp::types::{Curve, RevocationStatus};
use openpgp::{Cert, Fingerprint};
use qubes_rpc::{Caps, ErrorCode, KeyInfo, SubkeyInfo, UidInfo};
use sequoia_openpgp as openpgp;
use serde::{Deserialize, Serialize};

use crate::clock::{now_secs, secs};
use crate::fsutil;
use crate::record::Recorder;
use crate::select::Spec;
use qvault_attest::entry::Event;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Generated,
    Imported,
    /// Held by a gpg-agent in the vault (software key or smartcard); the
    /// vault keeps only the public certificate (`keys/<FPR>.pub`).
    Attached,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Provenance {
    pub origin: Origin,
    /// When the key entered the vault (seconds since the epoch).
    pub added: i64,
    /// The key's entry in the attestation log: position and exact bytes (kept
    /// here so a receipt can include it without reading the log).
    pub log_index: u64,
    pub log_entry: String,
    /// For attached keys: the GNUPGHOME whose gpg-agent holds the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gnupghome: Option<PathBuf>,
    /// For attached keys: the agent reports them on a smartcard.
    #[serde(default)]
    pub card: bool,
}

pub struct StoredKey {
    pub cert: Cert,
    pub provenance: Provenance,
}

/// A failure to find a usable key, reported to the client as a protocol error.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("no secret key in the vault matches {0:?}")]
    NoMatch(String),
    #[error("the vault holds no secret key")]
    Empty,
    #[error("key {0} is expired")]
    Expired(String, Vec<i64>),
    #[error("key {0} is revoked")]
    Revoked(String),
    #[error("key {0} has no valid signing-capable (sub)key")]
    NoSigningKey(String),
}

impl SelectError {
    pub fn code(&self) -> ErrorCode {
        match self {
            SelectError::Expired(..) => ErrorCode::KeyExpired,
            SelectError::Revoked(_) => ErrorCode::KeyRevoked,
            _ => ErrorCode::UnknownKey,
        }
    }
}

/// The key chosen for one signature.
pub struct SigningKey<'a> {
    pub stored: &'a StoredKey,
    pub key: Key<PublicParts, UnspecifiedRole>,
    secret: Secret,
}

enum Secret {
    Local(Key<SecretParts, UnspecifiedRole>),
    Agent(PathBuf),
}

impl SigningKey<'_> {
    /// Something that signs with this key: the key itself, or the gpg-agent
    /// holding it. Local secrets stay in Sequoia's protected memory.
    pub fn signer(&self) -> anyhow::Result<Box<dyn openpgp::crypto::Signer + Send + Sync>> {
        match &self.secret {
            Secret::Local(k) => {
                Ok(Box::new(k.clone().into_keypair().map_err(|_| {
                    anyhow::anyhow!("the secret key is protected by a passphrase; import it unprotected")
                })?))
            }
            Secret::Agent(home) => {
                let ctx = sequoia_gpg_agent::gnupg::Context::with_homedir(home)?;
                Ok(Box::new(sequoia_gpg_agent::KeyPair::new_for_gnupg_context(&ctx, &self.key)?))
            }
        }
    }
}

pub struct Keystore {
    dir: PathBuf,
    keys: Vec<StoredKey>,
}

/// A signer for the certificate's primary key (certifications, bindings,
/// revocations).
pub fn primary_signer(cert: &Cert) -> anyhow::Result<openpgp::crypto::KeyPair> {
    cert.primary_key()
        .key()
        .clone()
        .parts_into_secret()
        .map_err(|_| anyhow::anyhow!("the vault holds no secret for the primary key (certification key)"))?
        .into_keypair()
        .map_err(|_| anyhow::anyhow!("the primary key's secret is protected by a passphrase"))
}

pub fn policy() -> StandardPolicy<'static> {
    StandardPolicy::new()
}

impl Keystore {
    pub fn load(dir: &Path) -> anyhow::Result<Keystore> {
        let mut keys = Vec::new();
        let entries = std::fs::read_dir(dir).with_context(|| format!("reading key directory {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if !matches!(path.extension().and_then(|e| e.to_str()), Some("tsk" | "pub")) {
                continue;
            }
            let cert = Cert::from_file(&path).with_context(|| format!("reading key file {}", path.display()))?;
            let meta_path = path.with_extension("toml");
            let text = std::fs::read_to_string(&meta_path)
                .with_context(|| format!("reading provenance {}", meta_path.display()))?;
            let provenance: Provenance =
                toml::from_str(&text).with_context(|| format!("parsing provenance {}", meta_path.display()))?;
            keys.push(StoredKey { cert, provenance });
        }
        // gpg uses the first key of its keyring as the default; ours is the order
        // in which keys entered the vault.
        // Log positions are strictly increasing: a total order even for keys
        // added within the same second.
        keys.sort_by_key(|k| k.provenance.log_index);
        Ok(Keystore { dir: dir.to_owned(), keys })
    }

    pub fn keys(&self) -> &[StoredKey] {
        &self.keys
    }

    /// Stores a certificate with secret key material, after logging its arrival.
    pub fn add(&mut self, cert: Cert, origin: Origin, log: &dyn Recorder) -> anyhow::Result<Fingerprint> {
        anyhow::ensure!(cert.is_tsk(), "the certificate holds no secret key material");
        let fpr = cert.fingerprint();
        anyhow::ensure!(
            !self.keys.iter().any(|k| k.cert.fingerprint() == fpr),
            "key {} is already in the vault",
            fpr.to_hex()
        );
        let mut tsk = Vec::new();
        cert.as_tsk().serialize(&mut tsk)?;
        let mut public = Vec::new();
        export_public(&cert, &mut public)?;
        let algorithm = key_info(&cert).map_or_else(String::new, |i| algo_name(&i.primary));
        let created = secs(cert.primary_key().key().creation_time());
        let event = {
            let (fingerprint, cert) = (fpr.to_hex(), qvault_attest::receipt::encode_cert(&public));
            match origin {
                Origin::Generated => Event::KeyGenerated { fingerprint, algorithm, created, cert },
                Origin::Imported | Origin::Attached => Event::KeyImported { fingerprint, algorithm, created, cert },
            }
        };
        let (log_index, bytes) = log.record(event)?;
        let log_entry = String::from_utf8(bytes)?;
        let provenance = Provenance { origin, added: now_secs(), log_index, log_entry, gnupghome: None, card: false };
        let base = self.dir.join(fpr.to_hex());
        fsutil::write_private(&base.with_extension("toml"), toml::to_string(&provenance)?.as_bytes())?;
        fsutil::write_private(&base.with_extension("tsk"), &tsk)?;
        zeroize::Zeroize::zeroize(&mut tsk);
        self.keys.push(StoredKey { cert, provenance });
        Ok(fpr)
    }

    /// Replaces a key's certificate (same primary key, new self-signatures),
    /// after logging the change.
    pub fn update(&mut self, cert: Cert, change: String, log: &dyn Recorder) -> anyhow::Result<()> {
        let fpr = cert.fingerprint();
        let pos = self
            .keys
            .iter()
            .position(|k| k.cert.fingerprint() == fpr)
            .ok_or_else(|| anyhow::anyhow!("key {} is not in the vault", fpr.to_hex()))?;
        anyhow::ensure!(cert.is_tsk(), "the updated certificate lost its secret key material");
        let mut public = Vec::new();
        export_public(&cert, &mut public)?;
        let event =
            Event::KeyUpdated { fingerprint: fpr.to_hex(), change, cert: qvault_attest::receipt::encode_cert(&public) };
        log.record(event)?;
        let mut tsk = Vec::new();
        cert.as_tsk().serialize(&mut tsk)?;
        fsutil::write_private(&self.dir.join(fpr.to_hex()).with_extension("tsk"), &tsk)?;
        zeroize::Zeroize::zeroize(&mut tsk);
        self.keys[pos].cert = cert;
        Ok(())
    }

    /// Certificates matching any of `selectors` (all when empty), in vault order.
    pub fn find<'a>(&'a self, selectors: &[String]) -> Vec<&'a StoredKey> {
        if selectors.is_empty() {
            return self.keys.iter().collect();
        }
        let specs: Vec<Spec> = selectors.iter().map(|s| Spec::parse(s)).collect();
        self.keys.iter().filter(|k| specs.iter().any(|s| cert_matches(&k.cert, s))).collect()
    }

    /// Picks the signing key for a selector as gpg does: the first matching
    /// certificate, then its newest valid signing-capable key with secret material,
    /// unless the selector names a (sub)key exactly with `!`. Only keys the
    /// caller may see are candidates: a hidden key gets the answer of a key the
    /// vault does not hold, and its expiry or revocation is never told.
    pub fn signing_key(
        &self,
        selector: Option<&str>,
        visible: impl Fn(&StoredKey) -> bool,
    ) -> Result<SigningKey<'_>, SelectError> {
        let mut candidates = self.keys.iter().filter(|k| visible(k));
        let stored = match selector {
            None => candidates.next().ok_or(SelectError::Empty)?,
            Some(s) => {
                let spec = Spec::parse(s);
                candidates.find(|k| cert_matches(&k.cert, &spec)).ok_or_else(|| SelectError::NoMatch(s.to_owned()))?
            }
        };
        let p = policy();
        let name = stored.cert.fingerprint().to_hex();
        let vc = stored.cert.with_policy(&p, None).map_err(|_| SelectError::NoSigningKey(name.clone()))?;
        if let RevocationStatus::Revoked(_) = vc.revocation_status() {
            return Err(SelectError::Revoked(name));
        }
        if vc.alive().is_err() {
            return Err(SelectError::Expired(name, expired_times(&vc)));
        }
        let exact = match selector.map(Spec::parse) {
            Some(spec @ Spec::KeyId { exact: true, .. }) => Some(spec),
            _ => None,
        };
        let agent = stored.provenance.gnupghome.clone();
        let mut best: Option<ValidErasedKeyAmalgamation<'_, PublicParts>> = None;
        let mut exact_problem = None;
        // Keys the vault can sign with: its own secrets, or all of an attached
        // certificate's keys (the agent decides when asked).
        for ka in vc.keys().filter(|ka| agent.is_some() || ka.key().has_secret()) {
            let fpr = ka.key().fingerprint().to_hex();
            if let Some(spec) = &exact {
                if !spec.matches_key(&fpr) {
                    continue;
                }
                if let RevocationStatus::Revoked(_) = ka.revocation_status() {
                    exact_problem = Some(SelectError::Revoked(name.clone()));
                    continue;
                }
                if ka.alive().is_err() {
                    exact_problem = Some(SelectError::Expired(name.clone(), expired_times(&vc)));
                    continue;
                }
            }
            let usable = ka.for_signing()
                && ka.alive().is_ok()
                && !matches!(ka.revocation_status(), RevocationStatus::Revoked(_));
            if usable && best.as_ref().is_none_or(|b| ka.key().creation_time() > b.key().creation_time()) {
                best = Some(ka.clone());
            }
        }
        let Some(ka) = best else {
            if let Some(p) = exact_problem {
                return Err(p);
            }
            // No usable signing key: say why, as gpg does, when one exists but
            // is expired or revoked.
            let signing: Vec<_> =
                vc.keys().filter(|k| (agent.is_some() || k.key().has_secret()) && k.for_signing()).collect();
            if signing.iter().any(|k| k.alive().is_err()) {
                return Err(SelectError::Expired(name, expired_times(&vc)));
            }
            if signing.iter().any(|k| matches!(k.revocation_status(), RevocationStatus::Revoked(_))) {
                return Err(SelectError::Revoked(name));
            }
            return Err(SelectError::NoSigningKey(name));
        };
        let key = ka.key().clone().role_into_unspecified();
        let secret = match agent {
            Some(home) => Secret::Agent(home),
            None => Secret::Local(
                key.clone()
                    .parts_into_secret()
                    .map_err(|_| SelectError::NoSigningKey(ka.key().fingerprint().to_hex()))?,
            ),
        };
        Ok(SigningKey { stored, key, secret })
    }

    /// Attaches a key held by the gpg-agent of `gnupghome`: stores its public
    /// certificate, after logging it as attached (not generated, not imported).
    pub fn attach(
        &mut self,
        cert: Cert,
        gnupghome: &Path,
        card: bool,
        log: &dyn Recorder,
    ) -> anyhow::Result<Fingerprint> {
        let cert = cert.strip_secret_key_material();
        let fpr = cert.fingerprint();
        anyhow::ensure!(
            !self.keys.iter().any(|k| k.cert.fingerprint() == fpr),
            "key {} is already in the vault",
            fpr.to_hex()
        );
        let mut public = Vec::new();
        export_public(&cert, &mut public)?;
        let event = Event::KeyAttached {
            fingerprint: fpr.to_hex(),
            algorithm: key_info(&cert).map_or_else(String::new, |i| algo_name(&i.primary)),
            created: secs(cert.primary_key().key().creation_time()),
            cert: qvault_attest::receipt::encode_cert(&public),
            card,
        };
        let (log_index, bytes) = log.record(event)?;
        let provenance = Provenance {
            origin: Origin::Attached,
            added: now_secs(),
            log_index,
            log_entry: String::from_utf8(bytes)?,
            gnupghome: Some(gnupghome.to_owned()),
            card,
        };
        let base = self.dir.join(fpr.to_hex());
        fsutil::write_private(&base.with_extension("toml"), toml::to_string(&provenance)?.as_bytes())?;
        fsutil::write_private(&base.with_extension("pub"), &public)?;
        self.keys.push(StoredKey { cert, provenance });
        Ok(fpr)
    }
}

/// Expiry times of the certificate's expired keys, primary first, as gpg lists
/// them in `KEYEXPIRED` lines.
fn expired_times(vc: &ValidCert<'_>) -> Vec<i64> {
    let now = SystemTime::now();
    vc.keys().filter_map(|ka| ka.key_expiration_time()).filter(|t| *t <= now).map(secs).collect()
}

fn cert_matches(cert: &Cert, spec: &Spec) -> bool {
    match spec {
        Spec::KeyId { .. } => cert.keys().any(|ka| spec.matches_key(&ka.key().fingerprint().to_hex())),
        _ => cert.userids().any(|ua| spec.matches_uid(&String::from_utf8_lossy(ua.userid().value()))),
    }
}

/// gpg's name for an ECC curve, as in `--with-colons` field 17.
pub fn gpg_curve_name(curve: &Curve) -> String {
    match curve {
        Curve::Ed25519 => "ed25519".into(),
        Curve::Cv25519 => "cv25519".into(),
        Curve::NistP256 => "nistp256".into(),
        Curve::NistP384 => "nistp384".into(),
        Curve::NistP521 => "nistp521".into(),
        Curve::BrainpoolP256 => "brainpoolP256r1".into(),
        Curve::BrainpoolP384 => "brainpoolP384r1".into(),
        Curve::BrainpoolP512 => "brainpoolP512r1".into(),
        other => other.to_string(),
    }
}

fn subkey_info<P: Policy + ?Sized>(
    ka: &ValidErasedKeyAmalgamation<'_, PublicParts>,
    _policy: &P,
    now: i64,
) -> SubkeyInfo {
    let key = ka.key();
    let curve = match key.mpis() {
        Mpis::EdDSA { curve, .. } | Mpis::ECDSA { curve, .. } | Mpis::ECDH { curve, .. } => Some(gpg_curve_name(curve)),
        Mpis::Ed25519 { .. } => Some("ed25519".into()),
        Mpis::X25519 { .. } => Some("cv25519".into()),
        _ => None,
    };
    let expires = ka.key_expiration_time().map(secs);
    let flags = ka.key_flags().unwrap_or_else(openpgp::types::KeyFlags::empty);
    SubkeyInfo {
        fingerprint: key.fingerprint().to_hex(),
        algo: u8::from(key.pk_algo()),
        // gpg reports the curve's size in bits; 25519 curves are 255.
        bits: match curve.as_deref() {
            Some("ed25519" | "cv25519") => 255,
            _ => key.mpis().bits().unwrap_or(0) as u32,
        },
        curve,
        created: secs(key.creation_time()),
        expires,
        caps: Caps {
            certify: flags.for_certification(),
            sign: flags.for_signing(),
            encrypt: flags.for_transport_encryption() || flags.for_storage_encryption(),
            authenticate: flags.for_authentication(),
        },
        revoked: matches!(ka.revocation_status(), RevocationStatus::Revoked(_)),
        expired: expires.is_some_and(|e| e <= now),
        secret: key.has_secret(),
    }
}

/// The listing the protocol carries: public facts only.
pub fn key_info(cert: &Cert) -> Option<KeyInfo> {
    let p = policy();
    let now = now_secs();
    let vc = cert.with_policy(&p, None).ok()?;
    let mut keys = vc.keys().map(|ka| subkey_info(&ka, &p, now));
    let mut primary = keys.next()?;
    let subkeys: Vec<SubkeyInfo> = keys.collect();
    if let RevocationStatus::Revoked(_) = vc.revocation_status() {
        primary.revoked = true;
    }
    let uids = vc
        .userids()
        .map(|ua| UidInfo {
            uid: String::from_utf8_lossy(ua.userid().value()).into_owned(),
            created: ua.binding_signature().signature_creation_time().map_or(0, secs),
            revoked: matches!(ua.revocation_status(), RevocationStatus::Revoked(_)),
        })
        .collect();
    Some(KeyInfo { primary, uids, subkeys })
}

impl StoredKey {
    /// Whether the vault can sign with this key (own secret or a gpg-agent).
    pub fn can_sign(&self) -> bool {
        self.cert.is_tsk() || self.provenance.gnupghome.is_some()
    }

    /// The listing; an attached key's signing keys count as secret (the agent
    /// holds them).
    pub fn info(&self) -> Option<KeyInfo> {
        let mut info = key_info(&self.cert)?;
        if self.provenance.gnupghome.is_some() {
            for k in std::iter::once(&mut info.primary).chain(info.subkeys.iter_mut()) {
                k.secret |= k.caps.sign;
            }
        }
        Some(info)
    }
}

/// gpg's algorithm name for a key (`ed25519`, `rsa3072`, ...).
pub fn algo_name(k: &SubkeyInfo) -> String {
    match (&k.curve, k.algo) {
        (Some(c), _) => c.clone(),
        (None, 1..=3) => format!("rsa{}", k.bits),
        (None, a) => format!("algo{a}"),
    }
}

/// The public certificate, binary. Secret material is stripped by construction:
/// `Cert::serialize` writes only public parts.
pub fn export_public(cert: &Cert, out: &mut Vec<u8>) -> anyhow::Result<()> {
    cert.serialize(out)?;
    Ok(())
}
