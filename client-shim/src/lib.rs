//! The library behind `qvault-gpg`: gpg's command line, status lines, colon
//! listings, signing through the vault, local verification, receipts. A library
//! so that fuzz targets and tests reach the parsers; the binary is `main.rs`.
//!
//! It must never hold secret key material, and never pass an option string to
//! the vault: requests are typed values.
#![forbid(unsafe_code)]

pub mod args;
pub mod colons;
pub mod dash_escape;
pub mod error;
pub mod fds;
pub mod keyring;
pub mod output;
pub mod receipts;
pub mod refused;
pub mod sign;
pub mod status;
pub mod vault;
pub mod verify;
