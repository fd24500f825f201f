//! `--verify`, done locally with the client's keyring (the vault's certificates,
//! fetched and cached, plus imported ones), reported with gpg's status lines,
//! messages and exit codes: 0 all good, 1 a bad signature, 2 anything else.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use openpgp::cert::prelude::*;
use openpgp::packet::key::PublicParts;
use openpgp::packet::signature::subpacket::{SubpacketTag, SubpacketValue};
use openpgp::packet::Signature;
use openpgp::parse::stream::{
    DetachedVerifierBuilder, MessageLayer, MessageStructure, VerificationError, VerificationHelper, VerifierBuilder,
};
use openpgp::parse::{PacketParser, PacketParserBuilder, PacketParserResult, Parse as _};
use openpgp::policy::StandardPolicy;
use openpgp::types::{PublicKeyAlgorithm, RevocationStatus};
use openpgp::{Cert, KeyHandle, Packet};
use sequoia_openpgp as openpgp;

use crate::args::Invocation;
use crate::colons::{keyid, Trust};
use crate::error::{ShimError, Verdict};
use crate::keyring::Keyring;
use crate::output::{open_name, Name, Output};
use crate::status::{Status, StatusOut};

/// One signature's verdict, owned so it outlives the verifier.
enum Outcome {
    Good { sig: Signature, key: KeyFacts },
    Bad { sig: Signature, key: KeyFacts },
    KeyUnusable { sig: Signature, key: KeyFacts },
    Missing { sig: Signature },
    Broken { sig: Option<Signature>, why: String },
}

struct KeyFacts {
    signer_fpr: String,
    primary_fpr: String,
    uids: Vec<String>,
    trust: Trust,
    expired: bool,
    revoked: bool,
}

struct Helper<'a> {
    keyring: &'a mut Keyring,
    refreshed: bool,
    outcomes: Vec<Outcome>,
}

fn facts(ka: &ValidErasedKeyAmalgamation<'_, PublicParts>, keyring: &Keyring) -> KeyFacts {
    let vc = ka.valid_cert();
    let cert = vc.cert();
    let trust = keyring.find(&cert.key_handle()).map_or(Trust::Unknown, |(_, t)| *t);
    let primary_uid = vc.primary_userid().ok().map(|u| String::from_utf8_lossy(u.userid().value()).into_owned());
    let mut uids: Vec<String> = primary_uid.into_iter().collect();
    for u in cert.userids() {
        let s = String::from_utf8_lossy(u.userid().value()).into_owned();
        if !uids.contains(&s) {
            uids.push(s);
        }
    }
    KeyFacts {
        signer_fpr: ka.key().fingerprint().to_hex(),
        primary_fpr: cert.fingerprint().to_hex(),
        uids,
        trust,
        expired: ka.alive().is_err() || vc.alive().is_err(),
        revoked: matches!(ka.revocation_status(), RevocationStatus::Revoked(_))
            || matches!(vc.revocation_status(), RevocationStatus::Revoked(_)),
    }
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        if !self.refreshed && ids.iter().any(|id| self.keyring.find(id).is_none()) {
            self.refreshed = true;
            // The vault may know the key; if it is unreachable, the cache decides.
            if let Err(e) = self.keyring.refresh_from_vault() {
                eprintln!("gpg: note: could not refresh keys from the vault: {e}");
            }
        }
        Ok(self.keyring.certs.iter().map(|(c, _)| c.clone()).collect())
    }

    fn check(&mut self, structure: MessageStructure<'_>) -> openpgp::Result<()> {
        for layer in structure {
            let MessageLayer::SignatureGroup { results } = layer else {
                continue;
            };
            for r in results {
                let o = match r {
                    Ok(g) => Outcome::Good { sig: g.sig.clone(), key: facts(&g.ka, self.keyring) },
                    Err(VerificationError::MissingKey { sig }) => Outcome::Missing { sig: sig.clone() },
                    Err(VerificationError::BadSignature { sig, ka, .. }) => {
                        Outcome::Bad { sig: sig.clone(), key: facts(&ka, self.keyring) }
                    }
                    Err(VerificationError::BadKey { sig, ka, .. }) => {
                        Outcome::KeyUnusable { sig: sig.clone(), key: facts(&ka, self.keyring) }
                    }
                    Err(VerificationError::UnboundKey { sig, error, .. }) => {
                        Outcome::Broken { sig: Some(sig.clone()), why: format!("key not bound: {error}") }
                    }
                    Err(VerificationError::MalformedSignature { sig, error }) => {
                        Outcome::Broken { sig: Some(sig.clone()), why: format!("malformed signature: {error}") }
                    }
                    Err(e) => Outcome::Broken { sig: None, why: e.to_string() },
                };
                self.outcomes.push(o);
            }
        }
        Ok(())
    }
}

fn sig_time(sig: &Signature) -> i64 {
    sig.signature_creation_time()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

fn algo_word(a: PublicKeyAlgorithm) -> &'static str {
    match a {
        #[allow(deprecated)]
        PublicKeyAlgorithm::RSAEncryptSign | PublicKeyAlgorithm::RSASign => "RSA",
        #[allow(deprecated)]
        PublicKeyAlgorithm::DSA => "DSA",
        PublicKeyAlgorithm::ECDSA => "ECDSA",
        PublicKeyAlgorithm::EdDSA | PublicKeyAlgorithm::Ed25519 | PublicKeyAlgorithm::Ed448 => "EDDSA",
        _ => "unknown",
    }
}

fn human_time(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map_or_else(String::new, |d| d.format("%a %b %e %H:%M:%S %Y UTC").to_string())
}

fn issuer_fpr(sig: &Signature) -> Option<String> {
    sig.issuer_fingerprints().next().map(|f| f.to_hex())
}

fn issuer_keyid(sig: &Signature) -> String {
    sig.get_issuers().first().map(|h| openpgp::KeyID::from(h).to_hex()).unwrap_or_else(|| "0000000000000000".into())
}

/// Reports one outcome and its verdict.
fn report(o: &Outcome, status: &mut StatusOut) -> Verdict {
    status.emit(Status::NewSig);
    let sig = match o {
        Outcome::Good { sig, .. }
        | Outcome::Bad { sig, .. }
        | Outcome::KeyUnusable { sig, .. }
        | Outcome::Missing { sig } => Some(sig),
        Outcome::Broken { sig, .. } => sig.as_ref(),
    };
    if let Some(sig) = sig {
        eprintln!("gpg: Signature made {}", human_time(sig_time(sig)));
        let who = issuer_fpr(sig).unwrap_or_else(|| issuer_keyid(sig));
        eprintln!("gpg:                using {} key {who}", algo_word(sig.pk_algo()));
    }
    let trust_word = |k: &KeyFacts| {
        if k.trust == Trust::Ultimate {
            "ultimate"
        } else {
            "unknown"
        }
    };
    let uid0 = |k: &KeyFacts| k.uids.first().cloned().unwrap_or_default();
    match o {
        Outcome::Good { sig, key } => {
            status.emit(Status::KeyConsidered { fpr: &key.primary_fpr, flags: 0 });
            let kid = keyid(&key.signer_fpr).to_owned();
            let uid = uid0(key);
            if key.revoked {
                status.emit(Status::RevKeySig { keyid: &kid, uid: &uid });
            } else if key.expired {
                status.emit(Status::ExpKeySig { keyid: &kid, uid: &uid });
            } else {
                status.emit(Status::GoodSig { keyid: &kid, uid: &uid });
            }
            // As gpg, the hashed area's notations of a good signature, last
            // first (gpg builds its list by prepending).
            let notations: Vec<_> = sig.hashed_area().subpackets(SubpacketTag::NotationData).collect();
            for sp in notations.into_iter().rev() {
                if let SubpacketValue::NotationData(n) = sp.value() {
                    status.emit(Status::Notation {
                        name: n.name(),
                        value: n.value(),
                        critical: sp.critical(),
                        human: n.flags().human_readable(),
                    });
                }
            }
            let expires = sig
                .signature_expiration_time()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() as i64);
            status.emit(Status::ValidSig {
                fpr: &key.signer_fpr,
                ts: sig_time(sig),
                expires,
                pk_algo: u8::from(sig.pk_algo()),
                hash_algo: u8::from(sig.hash_algo()),
                class: u8::from(sig.typ()),
                primary: &key.primary_fpr,
            });
            for (i, u) in key.uids.iter().enumerate() {
                if i == 0 {
                    eprintln!("gpg: Good signature from \"{u}\" [{}]", trust_word(key));
                } else {
                    eprintln!("gpg:                 aka \"{u}\" [{}]", trust_word(key));
                }
            }
            if key.trust == Trust::Ultimate {
                status.emit(Status::TrustUltimate);
            } else {
                status.emit(Status::TrustUndefined);
                eprintln!("gpg: WARNING: This key is not certified with a trusted signature!");
                eprintln!("gpg:          There is no indication that the signature belongs to the owner.");
                eprintln!("Primary key fingerprint: {}", key.primary_fpr);
            }
            Verdict::Good
        }
        Outcome::Bad { key, .. } => {
            status.emit(Status::KeyConsidered { fpr: &key.primary_fpr, flags: 0 });
            let uid = uid0(key);
            status.emit(Status::BadSig { keyid: keyid(&key.signer_fpr), uid: &uid });
            eprintln!("gpg: BAD signature from \"{uid}\" [{}]", trust_word(key));
            Verdict::Bad
        }
        Outcome::KeyUnusable { sig, key } => {
            status.emit(Status::KeyConsidered { fpr: &key.primary_fpr, flags: 0 });
            let uid = uid0(key);
            let kid = keyid(&key.signer_fpr);
            if key.revoked {
                status.emit(Status::RevKeySig { keyid: kid, uid: &uid });
                eprintln!("gpg: Signature by revoked key \"{uid}\"");
            } else {
                status.emit(Status::ExpKeySig { keyid: kid, uid: &uid });
                eprintln!("gpg: Signature by expired key \"{uid}\" made {}", human_time(sig_time(sig)));
            }
            Verdict::Bad
        }
        Outcome::Missing { sig } => {
            let kid = issuer_keyid(sig);
            let fpr = issuer_fpr(sig);
            status.emit(Status::ErrSig {
                keyid: &kid,
                pk_algo: u8::from(sig.pk_algo()),
                hash_algo: u8::from(sig.hash_algo()),
                class: u8::from(sig.typ()),
                ts: sig_time(sig),
                rc: 9,
                fpr: fpr.as_deref(),
            });
            status.emit(Status::NoPubkey { keyid: &kid });
            eprintln!("gpg: Can't check signature: No public key");
            Verdict::Failed
        }
        Outcome::Broken { why, .. } => {
            eprintln!("gpg: Can't check signature: {why}");
            Verdict::Failed
        }
    }
}

/// The time to verify at. GnuPG 2.2 does not compare a signature's creation
/// time with its own clock (sig-check.c checks only the key's creation time
/// against the signature's and the clock): a signature dated in the future, by
/// a vault whose clock runs ahead, is a good signature to gpg and gpgv, exit 0,
/// no warning. Sequoia refuses one that is not yet "alive", so when the newest
/// signature in the input is from the future, verify as of its creation time;
/// otherwise as of now (`None`, with Sequoia's usual clock-skew tolerance).
fn reference_time(bytes: &[u8]) -> Option<std::time::SystemTime> {
    let now = std::time::SystemTime::now();
    let mut newest = None;
    // Cleartext messages too (their signatures follow the text).
    let parser = PacketParserBuilder::from_bytes(bytes).map(|b| b.process_csf_message(true).build());
    let Ok(Ok(mut ppr)) = parser else { return None };
    while let PacketParserResult::Some(pp) = ppr {
        if let Packet::Signature(sig) = &pp.packet {
            newest = newest.max(sig.signature_creation_time());
        }
        // Into containers too: an inline message's signature may be compressed.
        match pp.recurse() {
            Ok((_, next)) => ppr = next,
            Err(_) => break,
        }
    }
    newest.filter(|t| *t > now)
}

/// gpg's PLAINTEXT (and, for a literal packet of known length,
/// PLAINTEXT_LENGTH) line for a signed message; a cleartext message has a text
/// literal with no date and no name, as gpg reports it.
fn plaintext_status(bytes: &[u8], status: &mut StatusOut) {
    if is_cleartext(bytes) {
        status.emit(Status::Plaintext { format: b't', ts: 0, name: b"" });
        return;
    }
    let Ok(mut ppr) = PacketParser::from_bytes(bytes) else { return };
    while let PacketParserResult::Some(pp) = ppr {
        if let Packet::Literal(l) = &pp.packet {
            let ts = l.date().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs());
            // The data's length: the body less format, name length, name and date.
            let name_len = l.filename().map_or(0, <[u8]>::len);
            let len = match pp.header().length() {
                openpgp::packet::header::BodyLength::Full(n) => usize::try_from(*n)
                    .ok()
                    .and_then(|n| n.checked_sub(6 + name_len))
                    .and_then(|n| u32::try_from(n).ok()),
                _ => None,
            };
            status.emit(Status::Plaintext {
                format: u8::from(l.format()),
                ts: u32::try_from(ts).unwrap_or(0),
                name: l.filename().unwrap_or_default(),
            });
            if let Some(len) = len {
                status.emit(Status::PlaintextLength { len });
            }
            return;
        }
        // Into containers too: an inline message's data may be compressed.
        match pp.recurse() {
            Ok((_, next)) => ppr = next,
            Err(_) => return,
        }
    }
}

fn is_cleartext(bytes: &[u8]) -> bool {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(0);
    bytes[start..].starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----")
}

/// Is this input a bare signature (detached), rather than a signed message?
fn is_detached_signature(bytes: &[u8]) -> bool {
    if is_cleartext(bytes) {
        return false;
    }
    let Ok(mut ppr) = PacketParser::from_bytes(bytes) else {
        return false;
    };
    let mut only_sigs = true;
    let mut any = false;
    while let PacketParserResult::Some(pp) = ppr {
        any = true;
        if !matches!(pp.packet, Packet::Signature(_)) {
            only_sigs = false;
            break;
        }
        match pp.next() {
            Ok((_, next)) => ppr = next,
            Err(_) => return false,
        }
    }
    any && only_sigs
}

fn read_limited(r: &mut dyn Read, what: &str) -> Result<Vec<u8>, ShimError> {
    let mut v = Vec::new();
    r.take(64 << 20).read_to_end(&mut v).map_err(ShimError::io(format!("reading {what}")))?;
    Ok(v)
}

/// `--verify` (`write_data` false), or gpg's default action on a signed message
/// (no command, as GPGME verifies one: `--output - -- -&N`): verify it and write
/// the signed data to the output.
pub fn verify(inv: &Invocation, write_data: bool, status: &mut StatusOut) -> Result<Verdict, ShimError> {
    let special = inv.special_filenames;
    let open = |path: &OsStr| open_name(path, special);
    let p = StandardPolicy::new();
    let mut keyring = Keyring::load();
    // The vault may have extended or revoked a key since the cache was filled.
    let mut refreshed = false;
    if keyring.vault_cache_stale() {
        refreshed = keyring.refresh_from_vault().is_ok();
    }
    let helper = Helper { keyring: &mut keyring, refreshed, outcomes: Vec::new() };
    let ops = &inv.operands;
    let (sig_src, data_src): (OsString, Option<Vec<OsString>>) = match ops.as_slice() {
        [] => ("-".into(), None),
        [one] => (one.clone(), None),
        [sig, rest @ ..] => (sig.clone(), Some(rest.to_vec())),
    };
    let sig_bytes = read_limited(&mut *open(&sig_src)?, &Path::new(&sig_src).display().to_string())?;
    let detached_data = match data_src {
        Some(files) => Some(files),
        None if is_detached_signature(&sig_bytes) => {
            // gpg's convention: `--verify x.sig` checks x.
            let name = sig_src.as_bytes();
            let data = name.strip_suffix(b".sig").or_else(|| name.strip_suffix(b".asc")).map(OsStr::from_bytes);
            match data {
                Some(d) if !Name::of(&sig_src, special).is_stream() && Path::new(d).exists() => {
                    eprintln!("gpg: assuming signed data in '{}'", Path::new(d).display());
                    Some(vec![d.to_owned()])
                }
                _ => {
                    eprintln!("gpg: no signed data");
                    eprintln!("gpg: can't hash datafile: No data");
                    return Ok(Verdict::Failed);
                }
            }
        }
        None => None,
    };
    let attached = detached_data.is_none();
    let at = reference_time(&sig_bytes);
    let run = match detached_data {
        Some(files) => {
            let data: Box<dyn Read + Send + Sync> = match files.as_slice() {
                [one] => open(one)?,
                _ => {
                    return Err(ShimError::Usage(
                        "verifying a detached signature over several files is not supported".into(),
                    ))
                }
            };
            DetachedVerifierBuilder::from_bytes(&sig_bytes).and_then(|b| b.with_policy(&p, at, helper)).and_then(
                |mut v| {
                    v.verify_reader(data)?;
                    Ok(v.into_helper())
                },
            )
        }
        None => {
            let mut out =
                if write_data { Some(Output::create(inv.output.as_deref(), inv.yes, special)?) } else { None };
            let run = VerifierBuilder::from_bytes(&sig_bytes).and_then(|b| b.with_policy(&p, at, helper)).and_then(
                |mut v| {
                    match out.as_mut() {
                        Some(o) => {
                            // gpg writes each line of a cleartext message with its
                            // line end, the last one too (the line end before the
                            // signature, which is not signed); Sequoia drops it.
                            if io::copy(&mut v, o)? > 0 && is_cleartext(&sig_bytes) {
                                o.write_all(b"\n")?;
                            }
                        }
                        None => {
                            io::copy(&mut v, &mut io::sink())?;
                        }
                    };
                    Ok(v.into_helper())
                },
            );
            if let (Ok(_), Some(o)) = (&run, out) {
                o.commit()?;
            }
            run
        }
    };
    let helper = match run {
        Ok(h) => h,
        Err(e) => {
            status.emit(Status::NoData { what: 4 });
            eprintln!("gpg: verify signatures failed: {e}");
            return Ok(Verdict::Failed);
        }
    };
    if attached {
        plaintext_status(&sig_bytes, status);
    }
    if helper.outcomes.is_empty() {
        status.emit(Status::NoData { what: 4 });
        eprintln!("gpg: no signature found");
        return Ok(Verdict::Failed);
    }
    Ok(helper.outcomes.iter().map(|o| report(o, status)).max().unwrap_or(Verdict::Failed))
}
