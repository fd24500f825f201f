//! Self-signatures that every deployed verifier accepts. Sequoia marks some
//! hashed subpackets critical (key expiration time, primary user ID, key flags,
//! the embedded back-signature, the reason for revocation); GnuPG marks none.
//! A verifier must reject a signature with a critical subpacket it does not
//! implement, and rpm 4.18's OpenPGP parser (Debian 12, Qubes 4.2's dom0)
//! implements only signature creation time, issuer, key flags, embedded
//! signature and primary user ID: it refuses our certificates ("key 1 import
//! failed") because of the critical key expiration time.
//!
//! So every self-signature the vault makes has no critical subpacket but the
//! signature creation time, which every verifier implements. What the
//! signatures state (expiry, flags, back-signature, revocation reason) is
//! unchanged; only the hint "reject me if you do not understand this" goes,
//! as in GnuPG's signatures.

use openpgp::packet::signature::subpacket::{Subpacket, SubpacketTag};
use openpgp::packet::signature::SignatureBuilder;
use openpgp::packet::{Packet, Signature};
use openpgp::types::SignatureType;
use openpgp::Cert;
use sequoia_openpgp as openpgp;

use crate::keystore::primary_signer;

/// True when a subpacket of `sig`'s hashed area other than the creation time
/// is critical.
pub fn needs_relaxing(sig: &Signature) -> bool {
    sig.hashed_area().iter().any(|sp| sp.critical() && sp.tag() != SubpacketTag::SignatureCreationTime)
}

/// A builder for `sig` with the same subpackets, none critical but the
/// creation time, and the same creation time.
fn relaxed_builder(sig: &Signature) -> openpgp::Result<SignatureBuilder> {
    let old: Vec<Subpacket> = sig.hashed_area().iter().cloned().collect();
    let mut b = SignatureBuilder::from(sig.clone());
    let area = b.hashed_area_mut();
    for sp in &old {
        area.remove_all(sp.tag());
    }
    for sp in old {
        let critical = sp.critical() && sp.tag() == SubpacketTag::SignatureCreationTime;
        area.add(Subpacket::new(sp.value().clone(), critical)?)?;
    }
    match sig.signature_creation_time() {
        Some(t) => b.set_signature_creation_time(t),
        None => Ok(b),
    }
}

/// Makes `sig` (a revocation of `cert`'s primary key, as `qvault keygen`
/// writes beside the key) with no critical subpacket but the creation time.
pub fn relax_key_revocation(cert: &Cert, sig: Signature) -> anyhow::Result<Signature> {
    if !needs_relaxing(&sig) {
        return Ok(sig);
    }
    anyhow::ensure!(sig.typ() == SignatureType::KeyRevocation, "not a key revocation");
    let mut signer = primary_signer(cert)?;
    relaxed_builder(&sig)?.sign_direct_key(&mut signer, None)
}

/// Re-makes every self-signature of `cert` that has another critical
/// subpacket than the creation time. Needs the primary key's secret.
pub fn relax(cert: Cert) -> anyhow::Result<Cert> {
    let mut signer = None;
    let mut replaced: Vec<(Signature, Signature)> = Vec::new();
    for sig in cert.primary_key().self_signatures().chain(cert.primary_key().self_revocations()) {
        if needs_relaxing(sig) {
            let s = signer.get_or_insert(primary_signer(&cert)?);
            replaced.push((sig.clone(), relaxed_builder(sig)?.sign_direct_key(s, None)?));
        }
    }
    for ua in cert.userids() {
        for sig in ua.self_signatures().chain(ua.self_revocations()) {
            if needs_relaxing(sig) {
                let s = signer.get_or_insert(primary_signer(&cert)?);
                let new = relaxed_builder(sig)?.sign_userid_binding(s, None, ua.userid())?;
                replaced.push((sig.clone(), new));
            }
        }
    }
    for ka in cert.keys().subkeys() {
        for sig in ka.self_signatures().chain(ka.self_revocations()) {
            if needs_relaxing(sig) {
                let s = signer.get_or_insert(primary_signer(&cert)?);
                let new = relaxed_builder(sig)?.sign_subkey_binding(s, None, ka.key())?;
                replaced.push((sig.clone(), new));
            }
        }
    }
    if replaced.is_empty() {
        return Ok(cert);
    }
    let packets = cert.into_tsk().into_packets().map(|p| match p {
        Packet::Signature(s) => match replaced.iter().position(|(old, _)| *old == s) {
            Some(i) => Packet::Signature(replaced[i].1.clone()),
            None => Packet::Signature(s),
        },
        other => other,
    });
    Cert::from_packets(packets.collect::<Vec<_>>().into_iter())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keygen::{generate, Algo};
    use std::time::Duration;

    fn all_sigs(cert: &Cert) -> Vec<Signature> {
        cert.clone().into_packets().filter_map(|p| if let Packet::Signature(s) = p { Some(s) } else { None }).collect()
    }

    #[test]
    fn generated_certificates_have_only_the_creation_time_critical() {
        for algo in [Algo::Ed25519, Algo::Rsa3072] {
            let (cert, rev) = generate("T <t@example.org>", algo, Some(Duration::from_secs(86400))).unwrap();
            assert!(cert.is_tsk(), "the secret keys stay");
            let sigs = all_sigs(&cert);
            assert!(sigs.len() >= 2);
            for s in sigs.iter().chain([&rev]) {
                assert!(!needs_relaxing(s), "{:?} has a critical subpacket", s.typ());
                assert!(
                    s.hashed_area().iter().any(|sp| sp.tag() == SubpacketTag::KeyExpirationTime)
                        || s.typ() == SignatureType::KeyRevocation
                );
            }
            // What the signatures state still holds: the expiry, the flags, the
            // back-signature (Sequoia checks all of them here).
            let p = crate::keystore::policy();
            let vc = cert.with_policy(&p, None).unwrap();
            assert!(vc.primary_key().key_expiration_time().is_some());
            assert_eq!(vc.keys().subkeys().for_signing().count(), 1);
            rev.clone().verify_primary_key_revocation(cert.primary_key().key(), cert.primary_key().key()).unwrap();
        }
    }
}
