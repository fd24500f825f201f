//! Keys held by a gpg-agent in the vault (a software key in a GNUPGHOME, or a
//! smartcard the agent drives). The vault stores only the public certificate;
//! every signature is made by the agent (`sequoia-gpg-agent`).

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;
use openpgp::parse::Parse as _;
use openpgp::Cert;
use sequoia_gpg_agent::keyinfo::KeyType;
use sequoia_gpg_agent::Agent;
use sequoia_openpgp as openpgp;

use crate::keystore::policy;

/// The public certificate of `key` from the GNUPGHOME's keyring (gpg itself
/// reads its keybox).
pub fn public_cert(gnupghome: &Path, key: &str) -> anyhow::Result<Cert> {
    let out = Command::new("gpg")
        .arg("--homedir")
        .arg(gnupghome)
        .args(["--batch", "--export", "--"])
        .arg(key)
        .output()
        .context("running gpg --export")?;
    anyhow::ensure!(
        out.status.success() && !out.stdout.is_empty(),
        "gpg knows no key {key:?} in {}",
        gnupghome.display()
    );
    let cert = Cert::from_bytes(&out.stdout).context("gpg's export is not one certificate (give a fingerprint)")?;
    Ok(cert)
}

/// Checks that the agent holds the secret of at least one valid signing key;
/// returns whether any of them is on a smartcard.
pub fn check_signing_keys(gnupghome: &Path, cert: &Cert) -> anyhow::Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let mut agent = Agent::connect_to(gnupghome).await.context("connecting to the gpg-agent")?;
        let p = policy();
        let vc = cert.with_policy(&p, None)?;
        let mut held = 0;
        let mut card = false;
        for ka in vc.keys().for_signing() {
            let key = ka.key().role_as_unspecified().clone();
            if !agent.has_key(&key).await.unwrap_or(false) {
                continue;
            }
            held += 1;
            let grip = sequoia_gpg_agent::sequoia_ipc::Keygrip::of(key.mpis())?;
            if let Ok(info) = agent.key_info(&grip).await {
                card |= info.keytype() == KeyType::Smartcard;
            }
        }
        anyhow::ensure!(
            held > 0,
            "the gpg-agent of {} holds no secret signing key of this certificate",
            gnupghome.display()
        );
        Ok(card)
    })
}
