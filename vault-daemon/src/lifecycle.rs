//! Changing a key in the vault: a new expiry for the primary key and its signing
//! subkeys, or a revocation. The new self-signatures are made here with the
//! vault's secret keys; the client fetches the updated public certificate.

use std::time::{Duration, SystemTime};

use openpgp::cert::prelude::*;
use openpgp::types::ReasonForRevocation;
use openpgp::Cert;
use sequoia_openpgp as openpgp;

use crate::keystore::{policy, primary_signer};

/// Sets the expiry of the primary key and every signing subkey to `now + validity`
/// (or no expiry).
pub fn set_expiry(cert: &Cert, validity: Option<Duration>) -> anyhow::Result<Cert> {
    let p = policy();
    let now = SystemTime::now();
    let expiration = validity.map(|d| now + d);
    let mut signer = primary_signer(cert)?;
    let vc = cert.with_policy(&p, now)?;
    let mut sigs = vc.primary_key().set_expiration_time(&mut signer, expiration)?;
    for ka in vc.keys().subkeys() {
        if !ka.for_signing() {
            continue;
        }
        // A signing subkey's binding carries a back-signature made by the subkey.
        let mut sub = ka
            .key()
            .clone()
            .parts_into_secret()
            .map_err(|_| anyhow::anyhow!("no secret for subkey {}", ka.key().fingerprint()))?
            .into_keypair()?;
        sigs.extend(ka.set_expiration_time(&mut signer, Some(&mut sub), expiration)?);
    }
    crate::criticality::relax(cert.clone().insert_packets(sigs)?.0)
}

pub use crate::cli::Reason;

/// Revokes the certificate.
pub fn revoke(cert: &Cert, reason: Reason, message: &str) -> anyhow::Result<Cert> {
    let mut signer = primary_signer(cert)?;
    let r = match reason {
        Reason::Retired => ReasonForRevocation::KeyRetired,
        Reason::Superseded => ReasonForRevocation::KeySuperseded,
        Reason::Compromised => ReasonForRevocation::KeyCompromised,
        Reason::Unspecified => ReasonForRevocation::Unspecified,
    };
    let sig = CertRevocationBuilder::new().set_reason_for_revocation(r, message.as_bytes())?.build(
        &mut signer,
        cert,
        None,
    )?;
    let sig = crate::criticality::relax_key_revocation(cert, sig)?;
    Ok(cert.clone().insert_packets(sig)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Algo;
    use openpgp::types::RevocationStatus;

    #[test]
    fn expiry_and_revocation() {
        let (cert, _) =
            crate::keygen::generate("T <t@example.org>", Algo::Ed25519, Some(Duration::from_secs(86400))).unwrap();
        let p = policy();
        let later = SystemTime::now() + Duration::from_secs(10 * 86400);
        assert!(cert.with_policy(&p, later).unwrap().alive().is_err());
        let c2 = set_expiry(&cert, Some(Duration::from_secs(365 * 86400))).unwrap();
        let vc = c2.with_policy(&p, later).unwrap();
        assert!(vc.alive().is_ok());
        assert!(vc.keys().for_signing().alive().next().is_some(), "the signing subkey is extended too");
        let c3 = revoke(&c2, Reason::Retired, "done").unwrap();
        assert!(matches!(c3.with_policy(&p, None).unwrap().revocation_status(), RevocationStatus::Revoked(_)));
        assert!(c3.is_tsk());
        // rpm 4.18 refuses critical subpackets it does not implement (criticality.rs).
        for p in c3.into_packets() {
            if let openpgp::Packet::Signature(s) = p {
                assert!(!crate::criticality::needs_relaxing(&s), "{:?} has a critical subpacket", s.typ());
            }
        }
    }
}
