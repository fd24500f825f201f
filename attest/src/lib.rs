//! qvault's attestation log: the entry format, RFC 6962 Merkle tree, C2SP signed
//! checkpoints, receipts, the export format, and the auditor's checks.
//!
//! Depended on by all three binaries: the vault writes with it, the client checks
//! receipts with it, `qvault-audit` verifies with it. It holds no secret but the
//! log key's signing half, which only the vault loads; verification needs only
//! the verifier key string. The formats are specified in `docs/log-format.md`.
#![forbid(unsafe_code)]

pub mod audit;
pub mod bundle;
pub mod cli;
pub mod entry;
pub mod merkle;
pub mod note;
pub mod receipt;
pub mod tiles;
pub mod tlog_proof;
pub mod upload;
pub mod witness;

pub use entry::{Entry, Event, NOTATION};
pub use merkle::Hash;
pub use note::{Checkpoint, Verifier};
pub use receipt::Receipt;
