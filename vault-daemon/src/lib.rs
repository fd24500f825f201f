//! The vault: keystore, signer, attestation log writer, qrexec service. Used by
//! the `qvault` binary; a library so that fuzz targets, benches and `build.rs`
//! reach its parts.
//!
//! It must never hand out secret key material: no function here writes a
//! secret key anywhere but the vault's own key files.
#![forbid(unsafe_code)]

pub mod agent;
pub mod ask_wire;
pub mod cli;
pub mod clock;
pub mod confirm;
pub mod criticality;
pub mod declared;
pub mod desktop;
pub mod desktop_helper;
pub mod exec;
pub mod fsutil;
pub mod gate;
pub mod harden;
pub mod home;
pub mod keygen;
pub mod keystore;
pub mod lifecycle;
pub mod log;
pub mod policy;
pub mod policy_file;
pub mod record;
pub mod select;
pub mod server;
pub mod session;
pub mod sign;
pub mod summary;
