//! Signature creation: the data is canonicalized and hashed as it streams in (one
//! pass, bounded memory), or hashed by the client, which then sends the hash
//! state. The signature packet is built only at the end, so the log entry can be
//! written, and its position put in the signature, before any signature exists.
//! The vault builds the whole hashed area and trailer itself on both paths.

use openpgp::crypto::hash::Context;
use openpgp::packet::signature::subpacket::{NotationDataFlags, SubpacketArea};
use openpgp::packet::signature::{Signature4, SignatureBuilder};
use openpgp::packet::Signature;
use openpgp::serialize::MarshalInto;
use openpgp::types::{HashAlgorithm, PublicKeyAlgorithm, SignatureType};
use qubes_rpc::prehash::{Sha256Midstate, StateError};
use qubes_rpc::{HashAlgo, HashState, SignPlan, SignRequest};
use rand::RngCore;
use sequoia_openpgp as openpgp;
use zeroize::Zeroizing;

use crate::keystore::SigningKey;
use qubes_rpc::canon::{Canon, Canonicalizer, WhitespaceRunTooLong};

/// The digest used when the client does not ask for one. SHA-256: accepted by
/// every verifier, and the fastest on CPUs with SHA extensions.
pub const DEFAULT_HASH: HashAlgo = HashAlgo::Sha256;

pub fn hash_algorithm(h: HashAlgo) -> HashAlgorithm {
    match h {
        HashAlgo::Sha256 => HashAlgorithm::SHA256,
        HashAlgo::Sha384 => HashAlgorithm::SHA384,
        HashAlgo::Sha512 => HashAlgorithm::SHA512,
        HashAlgo::Sha224 => HashAlgorithm::SHA224,
    }
}

/// Refuses a digest too short for the key: RFC 9580 5.2.3.3 forbids making
/// (and verifying) an EdDSA signature over a digest shorter than 256 bits, and
/// OpenPGP.js refuses one ("Hash algorithm too weak for EdDSA."). GnuPG 2.2
/// makes them with `--digest-algo SHA224`; a signature that verifiers must
/// refuse is no use, so the vault says so instead, in gpg's words for the
/// same rule on (EC)DSA keys.
pub fn check_digest_for_key(algo: HashAlgo, pk_algo: PublicKeyAlgorithm, keyid: &str) -> Result<(), String> {
    let eddsa = matches!(pk_algo, PublicKeyAlgorithm::EdDSA | PublicKeyAlgorithm::Ed25519);
    let bits = match algo {
        HashAlgo::Sha224 => 224,
        HashAlgo::Sha256 => 256,
        HashAlgo::Sha384 => 384,
        HashAlgo::Sha512 => 512,
    };
    if eddsa && bits < 256 {
        return Err(format!("EdDSA key {keyid} requires a 256 bit or larger hash (hash is {})", hash_algorithm(algo)));
    }
    Ok(())
}

/// A notation to put in the signature's hashed area.
pub struct Notation {
    pub name: String,
    pub value: String,
}

/// Where the data's digest comes from.
enum DataHash {
    /// The vault hashes the data as it streams in.
    Vault(Context),
    /// The client hashed it and sent the state (protocol version 2).
    Client(Sha256Midstate),
}

pub struct SignJob {
    canon: Canonicalizer,
    hash: DataHash,
    sig_type: SignatureType,
    algo: HashAlgo,
    offered_client_hash: bool,
    len: u64,
}

/// What the log needs to know about a finished signature.
pub struct Finished {
    pub signature: Signature,
    /// Hash (with the signature's algorithm) of the canonical signed data.
    pub data_digest: Vec<u8>,
    pub data_len: u64,
    /// The client hashed the data; the vault never saw it.
    pub client_hashed: bool,
}

/// Sequoia's name for the random salt it puts in v4 signatures so that nobody
/// can predict the hashed data (a defence against chosen-prefix collisions).
/// We add the same notation ourselves: Sequoia's own path draws it from a
/// freshly seeded Yarrow generator per signature, which cost most of a small
/// signature's CPU time (docs/benchmarks.md).
pub const SALT_NOTATION: &str = "salt@notations.sequoia-pgp.org";

impl SignJob {
    pub fn new(req: &SignRequest) -> anyhow::Result<SignJob> {
        let algo = req.digest.unwrap_or(DEFAULT_HASH);
        let canon = Canon::for_signing(req.mode, req.text);
        let sig_type = if canon == Canon::Binary { SignatureType::Binary } else { SignatureType::Text };
        let ctx = hash_algorithm(algo).context()?.for_signature(4);
        Ok(SignJob {
            canon: Canonicalizer::new(canon),
            hash: DataHash::Vault(ctx),
            sig_type,
            algo,
            offered_client_hash: req.client_hash,
            len: 0,
        })
    }

    /// The plan sent to the client. `client_hash_allowed`: the policy lets this
    /// caller hash the data itself; it is used only if the client offered it
    /// and the digest is SHA-256 (the one state format defined).
    pub fn plan(&self, key: &SigningKey<'_>, client_hash_allowed: bool, max_data_bytes: Option<u64>) -> SignPlan {
        SignPlan {
            signer_fpr: key.key.fingerprint().to_hex(),
            primary_fpr: key.stored.cert.fingerprint().to_hex(),
            pk_algo: u8::from(key.key.pk_algo()),
            hash_algo: self.algo.openpgp_id(),
            sig_class: u8::from(self.sig_type),
            client_hash: client_hash_allowed && self.offered_client_hash && self.algo == HashAlgo::Sha256,
            max_data_bytes,
        }
    }

    pub fn update(&mut self, data: &[u8]) -> Result<(), WhitespaceRunTooLong> {
        self.len += data.len() as u64;
        match &mut self.hash {
            DataHash::Vault(ctx) => self.canon.update(data, &mut |b| ctx.update(b)),
            // Not reachable: the session takes data or a state, never both.
            DataHash::Client(_) => Ok(()),
        }
    }

    /// Takes the client's hash state in place of the data.
    pub fn set_client_state(&mut self, state: &HashState) -> Result<(), StateError> {
        let m = Sha256Midstate::from_wire(state)?;
        self.len = m.len();
        self.hash = DataHash::Client(m);
        Ok(())
    }

    /// The client hashed the data and sent its hash state.
    pub fn client_hashed(&self) -> bool {
        matches!(self.hash, DataHash::Client(_))
    }

    /// The digest of the canonical data so far (the hash state is cloned).
    pub fn data_digest(&self) -> anyhow::Result<Vec<u8>> {
        match &self.hash {
            DataHash::Vault(ctx) => Ok(ctx.clone().into_digest()?),
            DataHash::Client(m) => Ok(m.clone().finalize().to_vec()),
        }
    }

    pub fn finish(
        self,
        key: &SigningKey<'_>,
        created: std::time::SystemTime,
        notations: &[Notation],
    ) -> anyhow::Result<Finished> {
        let data_digest = self.data_digest()?;
        let mut salt = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(salt.as_mut());
        let mut builder = SignatureBuilder::new(self.sig_type)
            .set_signature_creation_time(created)?
            .set_issuer(key.key.keyid())?
            .set_issuer_fingerprint(key.key.fingerprint())?;
        let readable = NotationDataFlags::empty().set_human_readable();
        for n in notations {
            builder = builder.add_notation(&n.name, n.value.as_bytes(), readable.clone(), false)?;
        }
        builder = builder.add_notation(SALT_NOTATION, salt.as_ref(), NotationDataFlags::empty(), false)?;
        let hashed = builder.hashed_area().clone();
        let pk_algo = key.key.pk_algo();
        let hash_algo = hash_algorithm(self.algo);
        let trailer = v4_trailer(self.sig_type, pk_algo, hash_algo, &hashed)?;
        let client_hashed = self.client_hashed();
        let digest = match self.hash {
            DataHash::Vault(mut ctx) => {
                ctx.update(&trailer);
                ctx.into_digest()?
            }
            DataHash::Client(mut m) => {
                m.update(&trailer);
                m.finalize().to_vec()
            }
        };
        let mut signer = key.signer()?;
        let mpis = signer.sign(hash_algo, &digest)?;
        let signature: Signature = Signature4::new(
            self.sig_type,
            pk_algo,
            hash_algo,
            hashed,
            SubpacketArea::default(),
            [digest[0], digest[1]],
            mpis,
        )
        .into();
        check_signature(&key.key, &signature, &digest)?;
        Ok(Finished { signature, data_digest, data_len: self.len, client_hashed })
    }
}

/// What a version 4 signature hashes after the data (RFC 9580 5.2.4): the
/// packet's first fields and hashed area, then `04 FF` and their length.
fn v4_trailer(
    typ: SignatureType,
    pk_algo: PublicKeyAlgorithm,
    hash_algo: HashAlgorithm,
    hashed: &SubpacketArea,
) -> anyhow::Result<Vec<u8>> {
    let area = hashed.to_vec()?;
    let area_len = u16::try_from(area.len()).map_err(|_| anyhow::anyhow!("the hashed area is too large"))?;
    let mut t = Vec::with_capacity(12 + area.len());
    t.extend_from_slice(&[4, u8::from(typ), u8::from(pk_algo), u8::from(hash_algo)]);
    t.extend_from_slice(&area_len.to_be_bytes());
    t.extend_from_slice(&area);
    t.extend_from_slice(&[4, 0xff]);
    t.extend_from_slice(&(6 + u32::from(area_len)).to_be_bytes());
    Ok(t)
}

/// Nothing leaves the vault unchecked: a fault during signing (RSA-CRT, or
/// deterministic EdDSA's second scalar multiplication) can produce a value
/// that reveals the key. Ed25519 is checked with ed25519-dalek, a quarter of
/// Nettle's verification cost (it was 40% of a small signature's instructions);
/// the other algorithms with Sequoia.
fn check_signature(
    key: &openpgp::packet::Key<openpgp::packet::key::PublicParts, openpgp::packet::key::UnspecifiedRole>,
    sig: &Signature,
    digest: &[u8],
) -> anyhow::Result<()> {
    use openpgp::crypto::mpi;
    use openpgp::types::Curve;
    let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("the new signature does not verify: {e}");
    let ed25519 = match (key.mpis(), sig.mpis()) {
        (mpi::PublicKey::EdDSA { curve: Curve::Ed25519, q }, mpi::Signature::EdDSA { r, s }) => {
            let (point, _) = q.decode_point(&Curve::Ed25519).map_err(|e| fail(&e))?;
            let (r, s) = (r.value_padded(32).map_err(|e| fail(&e))?, s.value_padded(32).map_err(|e| fail(&e))?);
            let mut rs = [0u8; 64];
            rs[..32].copy_from_slice(&r);
            rs[32..].copy_from_slice(&s);
            Some((<[u8; 32]>::try_from(point).map_err(|e| fail(&e))?, rs))
        }
        (mpi::PublicKey::Ed25519 { a }, mpi::Signature::Ed25519 { s }) => Some((*a, **s)),
        _ => None,
    };
    match ed25519 {
        Some((public, rs)) => {
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&public).map_err(|e| fail(&e))?;
            vk.verify_strict(digest, &ed25519_dalek::Signature::from_bytes(&rs)).map_err(|e| fail(&e))
        }
        None => sig.verify_digest(key, digest).map_err(|e| fail(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eddsa_keys_refuse_digests_shorter_than_256_bits() {
        let e = check_digest_for_key(HashAlgo::Sha224, PublicKeyAlgorithm::EdDSA, "0123456789ABCDEF").unwrap_err();
        assert_eq!(e, "EdDSA key 0123456789ABCDEF requires a 256 bit or larger hash (hash is SHA224)");
        for h in [HashAlgo::Sha256, HashAlgo::Sha384, HashAlgo::Sha512] {
            assert!(check_digest_for_key(h, PublicKeyAlgorithm::EdDSA, "k").is_ok(), "{h:?}");
        }
        // RSA signs with SHA-224 as RFC 9580 allows.
        assert!(check_digest_for_key(HashAlgo::Sha224, PublicKeyAlgorithm::RSAEncryptSign, "k").is_ok());
    }
    use openpgp::cert::CertBuilder;
    use openpgp::crypto::Signer as _;
    use openpgp::packet::key::{PublicParts, UnspecifiedRole};
    use openpgp::packet::Key;

    fn signed(suite: openpgp::cert::CipherSuite) -> (Key<PublicParts, UnspecifiedRole>, Signature, Vec<u8>) {
        let (cert, _) =
            CertBuilder::general_purpose(Some("t <t@example.org>")).set_cipher_suite(suite).generate().unwrap();
        let key = cert.primary_key().key().clone().parts_into_secret().unwrap().role_into_unspecified();
        let mut pair = key.clone().into_keypair().unwrap();
        let mut ctx = HashAlgorithm::SHA256.context().unwrap().for_signature(4);
        ctx.update(b"data");
        let hashed = SignatureBuilder::new(SignatureType::Binary)
            .set_signature_creation_time(std::time::SystemTime::now())
            .unwrap()
            .hashed_area()
            .clone();
        let trailer = v4_trailer(SignatureType::Binary, key.pk_algo(), HashAlgorithm::SHA256, &hashed).unwrap();
        ctx.update(&trailer);
        let digest = ctx.into_digest().unwrap();
        let mpis = pair.sign(HashAlgorithm::SHA256, &digest).unwrap();
        let sig = Signature4::new(
            SignatureType::Binary,
            key.pk_algo(),
            HashAlgorithm::SHA256,
            hashed,
            SubpacketArea::default(),
            [digest[0], digest[1]],
            mpis,
        )
        .into();
        (key.parts_into_public(), sig, digest)
    }

    #[test]
    fn new_signatures_are_checked_before_release() {
        for suite in [openpgp::cert::CipherSuite::Cv25519, openpgp::cert::CipherSuite::P256] {
            let (key, sig, digest) = signed(suite);
            check_signature(&key, &sig, &digest).unwrap();
            // Sequoia agrees that what we built is a valid signature.
            sig.verify_digest(&key, &digest).unwrap();
            let mut other = digest.clone();
            other[5] ^= 1;
            assert!(check_signature(&key, &sig, &other).is_err(), "{suite:?}: a wrong digest must fail");
        }
    }

    #[test]
    fn trailer_is_rfc9580_v4_layout() {
        let hashed = SubpacketArea::default();
        let t = v4_trailer(SignatureType::Text, PublicKeyAlgorithm::EdDSA, HashAlgorithm::SHA256, &hashed).unwrap();
        assert_eq!(t, vec![4, 1, 22, 8, 0, 0, 4, 0xff, 0, 0, 0, 6]);
    }
}
