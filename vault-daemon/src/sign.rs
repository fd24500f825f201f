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
use qubes_rpc::{HashAlgo, HashState, SignMode, SignPlan, SignRequest};
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
        let (canon, sig_type) = match (req.mode, req.text) {
            (SignMode::Cleartext, _) => (Canon::Cleartext, SignatureType::Text),
            (_, true) => (Canon::Text, SignatureType::Text),
            (_, false) => (Canon::Binary, SignatureType::Binary),
        };
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
    pub fn plan(&self, key: &SigningKey<'_>, client_hash_allowed: bool) -> SignPlan {
        SignPlan {
            signer_fpr: key.key.fingerprint().to_hex(),
            primary_fpr: key.stored.cert.fingerprint().to_hex(),
            pk_algo: u8::from(key.key.pk_algo()),
            hash_algo: self.algo.openpgp_id(),
            sig_class: u8::from(self.sig_type),
            client_hash: client_hash_allowed && self.offered_client_hash && self.algo == HashAlgo::Sha256,
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
        let client_hashed = matches!(self.hash, DataHash::Client(_));
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
        // Nothing leaves the vault unchecked: a faulty computation (RSA-CRT in
        // particular) could otherwise hand out a value that reveals the key.
        signature
            .verify_digest(&key.key, &digest)
            .map_err(|e| anyhow::anyhow!("the new signature does not verify: {e}"))?;
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
