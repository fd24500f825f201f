//! Typed protocol messages. Options never travel as strings: a request is one of
//! these values, so nothing that reads files or runs programs can be expressed.

use serde::{Deserialize, Serialize};

/// Version of the message set below. A vault answers a request with another
/// version with [`ErrorCode::UnsupportedVersion`] (it reads the version before
/// the rest, see [`request_version`]). Version 2 added client-side hashing;
/// version 3 the size limit in the plan (`SignPlan::max_data_bytes`).
pub const PROTOCOL_VERSION: u16 = 3;

/// Limits on request fields, checked by [`Request::validate`] after decoding.
pub const MAX_SELECTORS: usize = 64;
pub const MAX_SELECTOR_LEN: usize = 512;

/// A frame sent by the client. A conversation is one `Request`, then, for
/// requests that carry data, any number of `Data` chunks and one `End`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientFrame<'a> {
    Request(Request),
    Data(#[serde(borrow, with = "serde_bytes")] &'a [u8]),
    End,
    /// Instead of `Data`* and `End`, when the vault's plan asked for it: the
    /// hash state after the client hashed the (canonical) data itself.
    HashState(HashState),
}

/// A SHA-256 computation stopped before its final block (see [`crate::prehash`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashState {
    pub algo: HashAlgo,
    /// The chaining value, big-endian words (32 bytes for SHA-256).
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
    /// The bytes of the last, partial block (fewer than 64).
    #[serde(with = "serde_bytes")]
    pub tail: Vec<u8>,
    /// Bytes hashed in all (canonical data, `tail` included).
    pub len: u64,
}

/// The protocol version of a request frame, read before the rest is decoded so
/// that a peer speaking another version gets a clear answer. `None` if the
/// payload is not a request.
pub fn request_version(payload: &[u8]) -> Option<u16> {
    match postcard::take_from_bytes::<(u32, u16)>(payload) {
        Ok(((0, version), _)) => Some(version),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub version: u16,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Key listing; `secret` asks for the secret-key view (which keys the vault can
    /// sign with). Neither view contains secret material.
    ListKeys { secret: bool, selectors: Vec<String> },
    /// Public certificates (transferable public keys), binary OpenPGP.
    ExportPublic { selectors: Vec<String> },
    /// Sign the data that follows in `Data` frames.
    Sign(SignRequest),
    /// The log's newest signed checkpoint and, if `old_size` is given, a consistency
    /// proof from that size to the checkpoint's.
    Checkpoint { old_size: Option<u64> },
    /// The whole log in the export format, as `Output` frames then `Exported`.
    ExportLog,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignRequest {
    /// gpg-style key selector (fingerprint, key ID, user ID pattern); `None` means
    /// the vault's default key.
    pub key: Option<String>,
    pub mode: SignMode,
    pub armor: bool,
    pub digest: Option<HashAlgo>,
    /// Text signature (class 0x01) rather than binary (0x00).
    pub text: bool,
    /// Size of the newest log checkpoint the client has seen; the receipt then
    /// carries a consistency proof from it.
    pub known_log_size: Option<u64>,
    /// The client can hash the data itself and send a [`HashState`] instead of
    /// the data; the vault's plan says whether it should.
    pub client_hash: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignMode {
    Detached,
    Cleartext,
    Inline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HashAlgo {
    Sha256,
    Sha384,
    Sha512,
    Sha224,
}

impl HashAlgo {
    /// The OpenPGP algorithm number (RFC 4880 9.4).
    pub fn openpgp_id(self) -> u8 {
        match self {
            HashAlgo::Sha256 => 8,
            HashAlgo::Sha384 => 9,
            HashAlgo::Sha512 => 10,
            HashAlgo::Sha224 => 11,
        }
    }

    /// Parses gpg's `--digest-algo` names.
    pub fn from_gpg_name(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "SHA256" | "SHA-256" | "H8" | "8" => Some(HashAlgo::Sha256),
            "SHA384" | "SHA-384" | "H9" | "9" => Some(HashAlgo::Sha384),
            "SHA512" | "SHA-512" | "H10" | "10" => Some(HashAlgo::Sha512),
            "SHA224" | "SHA-224" | "H11" | "11" => Some(HashAlgo::Sha224),
            _ => None,
        }
    }
}

/// A frame sent by the vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerFrame<'a> {
    Keys(Vec<KeyInfo>),
    /// The vault accepted a sign request and will sign with this plan; the client
    /// now streams the data.
    Ready(SignPlan),
    /// A chunk of output (signature, signed message, certificates).
    Output(#[serde(borrow, with = "serde_bytes")] &'a [u8]),
    /// End of an export.
    Exported,
    /// End of a signature: metadata the client reports in status lines.
    Signed(SignResult),
    Checkpoint(CheckpointReply),
    /// A protocol-level refusal; the connection ends after it.
    Error(RpcError),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignPlan {
    /// Fingerprint of the (sub)key that will sign, upper-case hex.
    pub signer_fpr: String,
    /// Fingerprint of its primary key.
    pub primary_fpr: String,
    pub pk_algo: u8,
    pub hash_algo: u8,
    /// Signature class (0x00 binary, 0x01 text).
    pub sig_class: u8,
    /// Send a [`HashState`] instead of the data (the client offered, the
    /// vault's policy allows it for this caller and key, the digest is SHA-256).
    pub client_hash: bool,
    /// The caller's size limit (policy `max_data_bytes`): the vault refuses more
    /// data, streamed or hashed, with [`RpcError::too_large`]; a client that
    /// hashes the data itself stops reading there with the same error.
    pub max_data_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignResult {
    /// The signature packet, binary OpenPGP. The client wraps it in the output
    /// format it was asked for (detached, cleartext, inline; armored or not).
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    /// Signature class (0x00 binary, 0x01 text).
    pub sig_class: u8,
    pub pk_algo: u8,
    pub hash_algo: u8,
    /// Signature creation time, seconds since the epoch.
    pub created: i64,
    /// Fingerprint of the (sub)key that made the signature, upper-case hex.
    pub signer_fpr: String,
    /// Fingerprint of its primary key.
    pub primary_fpr: String,
    /// Receipt proving the signature's log entry is included in a signed
    /// checkpoint (JSON, `docs/log-format.md`).
    #[serde(with = "serde_bytes")]
    pub receipt: Vec<u8>,
    /// The log's verifier key (C2SP note verifier string).
    pub log_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointReply {
    /// The signed checkpoint note (C2SP tlog-checkpoint).
    pub checkpoint: String,
    /// Consistency proof hashes from the requested old size.
    pub consistency: Vec<[u8; 32]>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcError {
    pub code: ErrorCode,
    /// A human message; never contains key material.
    pub message: String,
    /// For an unusable key: its primary fingerprint, and the expiry times of its
    /// expired keys (what gpg reports in `KEY_CONSIDERED` and `KEYEXPIRED`).
    pub key: Option<String>,
    pub expired_at: Vec<i64>,
}

impl RpcError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RpcError { code, message: message.into(), key: None, expired_at: Vec::new() }
    }

    /// The data exceeds the caller's `max_data_bytes`: one refusal, whether the
    /// vault counted streamed bytes or the client counted what it hashed.
    pub fn too_large(limit: u64) -> Self {
        RpcError::new(ErrorCode::TooLarge, format!("the data exceeds this qube's limit of {limit} bytes"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    BadRequest,
    UnsupportedVersion,
    UnknownKey,
    KeyExpired,
    KeyRevoked,
    Denied,
    TooLarge,
    Unavailable,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub primary: SubkeyInfo,
    pub uids: Vec<UidInfo>,
    pub subkeys: Vec<SubkeyInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubkeyInfo {
    /// Upper-case hex fingerprint.
    pub fingerprint: String,
    /// OpenPGP public-key algorithm number.
    pub algo: u8,
    pub bits: u32,
    /// gpg's curve name (`ed25519`, `nistp256`, ...), if an ECC key.
    pub curve: Option<String>,
    pub created: i64,
    pub expires: Option<i64>,
    pub caps: Caps,
    pub revoked: bool,
    pub expired: bool,
    /// The vault holds (or reaches, through an agent) the secret part.
    pub secret: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caps {
    pub certify: bool,
    pub sign: bool,
    pub encrypt: bool,
    pub authenticate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UidInfo {
    pub uid: String,
    pub created: i64,
    pub revoked: bool,
}

/// Why a decoded request is not acceptable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("unsupported protocol version {0} (this vault speaks {PROTOCOL_VERSION})")]
    Version(u16),
    #[error("too many key selectors ({0}, at most {MAX_SELECTORS})")]
    TooManySelectors(usize),
    #[error("a key selector is longer than {MAX_SELECTOR_LEN} bytes")]
    SelectorTooLong,
    #[error("a key selector contains a control character")]
    SelectorControlChar,
}

impl Request {
    pub fn new(op: Op) -> Self {
        Request { version: PROTOCOL_VERSION, op }
    }

    /// Checks the bounds the type system does not express.
    pub fn validate(&self) -> Result<(), RequestError> {
        if self.version != PROTOCOL_VERSION {
            return Err(RequestError::Version(self.version));
        }
        let check = |s: &String| {
            if s.len() > MAX_SELECTOR_LEN {
                Err(RequestError::SelectorTooLong)
            } else if s.chars().any(char::is_control) {
                Err(RequestError::SelectorControlChar)
            } else {
                Ok(())
            }
        };
        match &self.op {
            Op::ListKeys { selectors, .. } | Op::ExportPublic { selectors } => {
                if selectors.len() > MAX_SELECTORS {
                    return Err(RequestError::TooManySelectors(selectors.len()));
                }
                selectors.iter().try_for_each(check)
            }
            Op::Sign(s) => s.key.as_ref().map_or(Ok(()), check),
            Op::Checkpoint { .. } | Op::ExportLog => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_rejects_wrong_version_and_bad_selectors() {
        let mut r = Request::new(Op::ListKeys { secret: false, selectors: vec![] });
        assert!(r.validate().is_ok());
        r.version = 7;
        assert_eq!(r.validate(), Err(RequestError::Version(7)));
        let r = Request::new(Op::ExportPublic { selectors: vec!["x".into(); 65] });
        assert_eq!(r.validate(), Err(RequestError::TooManySelectors(65)));
        let r = Request::new(Op::ExportPublic { selectors: vec!["a\nb".into()] });
        assert_eq!(r.validate(), Err(RequestError::SelectorControlChar));
        let r = Request::new(Op::Sign(SignRequest {
            key: Some("k".repeat(MAX_SELECTOR_LEN + 1)),
            mode: SignMode::Detached,
            armor: false,
            digest: None,
            text: false,
            known_log_size: None,
            client_hash: false,
        }));
        assert_eq!(r.validate(), Err(RequestError::SelectorTooLong));
    }

    #[test]
    fn version_is_read_before_the_request() {
        let frame = postcard::to_allocvec(&ClientFrame::Request(Request::new(Op::ExportLog))).unwrap();
        assert_eq!(request_version(&frame), Some(PROTOCOL_VERSION));
        // A version-1 list request, whose layout this version need not decode.
        assert_eq!(request_version(&[0, 1, 0, 1, 0]), Some(1));
        assert_eq!(request_version(&postcard::to_allocvec(&ClientFrame::End).unwrap()), None);
        assert_eq!(request_version(&[]), None);
    }

    #[test]
    fn gpg_digest_names() {
        assert_eq!(HashAlgo::from_gpg_name("sha512"), Some(HashAlgo::Sha512));
        assert_eq!(HashAlgo::from_gpg_name("SHA1"), None);
        assert_eq!(HashAlgo::from_gpg_name("MD5"), None);
    }
}
