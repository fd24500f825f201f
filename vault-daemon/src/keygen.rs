//! Key generation inside the vault. The default structure is what distributions
//! expect of an uploader: a certification-only primary key and a signing subkey,
//! with an expiry.

use std::time::Duration;

use openpgp::cert::prelude::*;
use openpgp::types::KeyFlags;
use openpgp::Cert;
use sequoia_openpgp as openpgp;

pub use crate::cli::Algo;

/// Parses `never`, or a number with `d`, `w`, `m` (30 days) or `y` (365 days).
pub fn parse_expiry(s: &str) -> Result<Option<Duration>, String> {
    if s == "never" || s == "0" {
        return Ok(None);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("bad expiry {s:?}: expected e.g. 2y, 18m, 30d or never"))?;
    let days = match unit {
        "" | "d" => n,
        "w" => n * 7,
        "m" => n * 30,
        "y" => n * 365,
        _ => return Err(format!("bad expiry unit in {s:?}: use d, w, m or y")),
    };
    if n == 0 {
        return Err("expiry must be positive (or `never`)".into());
    }
    Ok(Some(Duration::from_secs(days * 86400)))
}

/// Generates a certificate and its revocation certificate.
pub fn generate(
    userid: &str,
    algo: Algo,
    expiry: Option<Duration>,
) -> anyhow::Result<(Cert, openpgp::packet::Signature)> {
    let suite = match algo {
        Algo::Ed25519 => CipherSuite::Cv25519,
        Algo::Rsa3072 => CipherSuite::RSA3k,
        Algo::Rsa4096 => CipherSuite::RSA4k,
    };
    let (cert, rev) = CertBuilder::new()
        // v4 keys: what GnuPG 2.2, gpgv and Debian's keyring tools read.
        .set_profile(openpgp::Profile::RFC4880)?
        .set_cipher_suite(suite)
        .add_userid(userid)
        .set_primary_key_flags(KeyFlags::empty().set_certification())
        .add_signing_subkey()
        .set_validity_period(expiry)
        .generate()?;
    // Sequoia marks subpackets critical that rpm 4.18 refuses (criticality.rs).
    let cert = crate::criticality::relax(cert)?;
    let rev = crate::criticality::relax_key_revocation(&cert, rev)?;
    Ok((cert, rev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_forms() {
        assert_eq!(parse_expiry("never").unwrap(), None);
        assert_eq!(parse_expiry("2y").unwrap(), Some(Duration::from_secs(730 * 86400)));
        assert_eq!(parse_expiry("30").unwrap(), Some(Duration::from_secs(30 * 86400)));
        assert!(parse_expiry("2x").is_err());
        assert!(parse_expiry("y").is_err());
        assert!(parse_expiry("0d").is_err());
    }
}
