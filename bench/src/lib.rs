//! Shared parts of qvault's benchmarks: a raw-protocol signing client (what
//! `qrexec` plus `qvault-gpg` put on the daemon's socket, without the processes),
//! latency statistics, and a synthetic attestation log built with the same
//! `qvault_attest` APIs the vault uses.
//!
//! Nothing here is production code: the binaries `qvault-load`, `qvault-ab`,
//! `qvault-synth-log` and `qrexec-client-vm-native` are driven by `scripts/bench`.
#![forbid(unsafe_code)]

pub mod client;
pub mod stats;
pub mod synth;
