//! Signature creation: the data is canonicalized and hashed as it streams in (one
//! pass, bounded memory); the signature packet is built only at the end, so the
//! log entry can be written, and its position put in the signature, before any
//! signature exists.

use openpgp::crypto::hash::Context;
use openpgp::packet::signature::SignatureBuilder;
use openpgp::packet::Signature;
use openpgp::types::{HashAlgorithm, SignatureType};
use qubes_rpc::{HashAlgo, SignMode, SignPlan, SignRequest};
use sequoia_openpgp as openpgp;

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

pub struct SignJob {
    canon: Canonicalizer,
    ctx: Context,
    sig_type: SignatureType,
    hash: HashAlgo,
    len: u64,
}

/// What the log needs to know about a finished signature.
pub struct Finished {
    pub signature: Signature,
    /// Hash (with the signature's algorithm) of the canonical signed data.
    pub data_digest: Vec<u8>,
    pub data_len: u64,
}

impl SignJob {
    pub fn new(req: &SignRequest) -> anyhow::Result<SignJob> {
        let hash = req.digest.unwrap_or(DEFAULT_HASH);
        let (canon, sig_type) = match (req.mode, req.text) {
            (SignMode::Cleartext, _) => (Canon::Cleartext, SignatureType::Text),
            (_, true) => (Canon::Text, SignatureType::Text),
            (_, false) => (Canon::Binary, SignatureType::Binary),
        };
        let ctx = hash_algorithm(hash).context()?.for_signature(4);
        Ok(SignJob { canon: Canonicalizer::new(canon), ctx, sig_type, hash, len: 0 })
    }

    pub fn plan(&self, key: &SigningKey<'_>) -> SignPlan {
        SignPlan {
            signer_fpr: key.key.fingerprint().to_hex(),
            primary_fpr: key.stored.cert.fingerprint().to_hex(),
            pk_algo: u8::from(key.key.pk_algo()),
            hash_algo: self.hash.openpgp_id(),
            sig_class: u8::from(self.sig_type),
        }
    }

    pub fn update(&mut self, data: &[u8]) -> Result<(), WhitespaceRunTooLong> {
        self.len += data.len() as u64;
        let ctx = &mut self.ctx;
        self.canon.update(data, &mut |b| ctx.update(b))
    }

    /// The digest of the canonical data so far (the hash state is cloned).
    pub fn data_digest(&self) -> anyhow::Result<Vec<u8>> {
        let mut c = self.ctx.clone();
        let mut d = vec![0; c.digest_size()];
        c.digest(&mut d)?;
        Ok(d)
    }

    pub fn finish(
        self,
        key: &SigningKey<'_>,
        created: std::time::SystemTime,
        notations: &[Notation],
    ) -> anyhow::Result<Finished> {
        let data_digest = self.data_digest()?;
        let mut builder = SignatureBuilder::new(self.sig_type).set_signature_creation_time(created)?;
        for n in notations {
            builder = builder.add_notation(
                &n.name,
                n.value.as_bytes(),
                openpgp::packet::signature::subpacket::NotationDataFlags::empty().set_human_readable(),
                false,
            )?;
        }
        let mut signer = key.signer()?;
        let signature = builder.sign_hash(signer.as_mut(), self.ctx)?;
        Ok(Finished { signature, data_digest, data_len: self.len })
    }
}
