//! What an archive checks before it accepts an upload (`qvault-audit
//! verify-upload`, `verify-bundle`): every signature in it verifies with the key
//! the vault's log names, is recorded in that log (which verifies as a whole),
//! was made with a key generated in the vault and never seen outside it, under
//! a state the vault declared; and for a Debian upload, that the files the
//! signed .changes and .dsc list are the files at hand.
//!
//! The uploaded files are hostile: sizes are bounded, names are plain file
//! names in the upload's directory, and nothing in them is trusted before its
//! signature verified.

use std::io::Read;
use std::path::{Path, PathBuf};

use openpgp::parse::stream::{DetachedVerifierBuilder, VerifierBuilder};
use openpgp::parse::Parse as _;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::Marshal as _;
use openpgp::{Cert, Packet};
use sequoia_openpgp as openpgp;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::audit::{entry_in_log, signatures_in, LogReport, OneCert};
use crate::entry::{Entry, Event};
use crate::note::Verifier;
use crate::receipt::{decode_cert, signature_position};

/// Largest signed document (.changes, .dsc, InRelease) read.
pub const MAX_DOCUMENT: u64 = 4 << 20;
/// Most files one .changes or .dsc may list.
const MAX_FILES: usize = 2000;

/// What the tool cannot prove, said in every verdict.
pub const CANNOT_PROVE: [&str; 3] = [
    "that the log's signing key never left the vault: a holder of it could write another log; witnesses that cosign the checkpoints limit this to a fork they would see",
    "the hardware and the software that really ran: the vault's declared state is its own word, on the record",
    "that the person who owns the key approved this upload: the log shows which qube asked, and the policy decision",
];

/// The vault's declared state (`vault_state` entry) a signature was made under.
#[derive(Debug, Clone, Serialize)]
pub struct DeclaredState {
    pub index: u64,
    pub time: i64,
    pub version: String,
    pub binary_sha256: String,
    pub policy_digest: String,
    pub interfaces: Vec<String>,
    pub qube_name: Option<String>,
    pub qube_template: Option<String>,
    pub self_reported: bool,
}

/// Where the signing key came from, by the log.
#[derive(Debug, Clone, Serialize)]
pub struct KeyOrigin {
    pub fingerprint: String,
    pub origin: String,
    pub generated_in_vault: bool,
    pub index: u64,
    pub time: i64,
    /// The vault that logged it (the log's `log_created` entry).
    pub vault: Option<String>,
    /// How "never exported" is established.
    pub never_exported: String,
}

/// One signature's checks.
#[derive(Debug, Default, Serialize)]
pub struct SignatureCheck {
    pub file: String,
    pub ok: bool,
    pub signature_valid: bool,
    pub signer: Option<String>,
    pub primary: Option<String>,
    pub log_index: Option<u64>,
    pub logged_at: Option<i64>,
    pub caller: Option<String>,
    pub decision: Option<String>,
    pub summary: Option<String>,
    pub key: Option<KeyOrigin>,
    pub declared_state: Option<DeclaredState>,
    pub problems: Vec<String>,
}

/// One file a signed document lists.
#[derive(Debug, Serialize)]
pub struct FileCheck {
    pub name: String,
    pub listed_in: String,
    pub ok: bool,
    pub problem: Option<String>,
}

/// The whole verdict.
#[derive(Debug, Default, Serialize)]
pub struct UploadReport {
    pub ok: bool,
    pub log_ok: bool,
    pub log_entries: u64,
    pub log_origin: Option<String>,
    pub checkpoint_size: Option<u64>,
    pub signatures: Vec<SignatureCheck>,
    pub files: Vec<FileCheck>,
    /// `not checked: ...` without a tlog-policy; `met (...)` or `NOT met (...)` with one.
    pub witness_quorum: String,
    pub cannot_prove: Vec<&'static str>,
    pub problems: Vec<String>,
}

impl UploadReport {
    pub fn new(log: &LogReport) -> UploadReport {
        let mut rep = UploadReport {
            log_ok: log.ok,
            log_entries: log.entries,
            log_origin: log.origin.clone(),
            checkpoint_size: log.latest_checkpoint_size,
            witness_quorum: "not checked: no tlog-policy was given, so this verdict rests on the vault's log alone"
                .into(),
            cannot_prove: CANNOT_PROVE.to_vec(),
            ..UploadReport::default()
        };
        if !log.ok {
            rep.problems.extend(log.problems.iter().map(|p| format!("the log does not verify: {p}")));
        }
        rep
    }

    /// Sets `ok` from everything checked.
    pub fn finish(&mut self) {
        self.ok = self.log_ok
            && self.problems.is_empty()
            && !self.signatures.is_empty()
            && self.signatures.iter().all(|s| s.ok)
            && self.files.iter().all(|f| f.ok);
    }
}

/// Reads at most [`MAX_DOCUMENT`] bytes of a file.
pub fn read_document(p: &Path) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    std::fs::File::open(p)?.take(MAX_DOCUMENT + 1).read_to_end(&mut v)?;
    if v.len() as u64 > MAX_DOCUMENT {
        return Err(std::io::Error::other(format!("larger than {MAX_DOCUMENT} bytes")));
    }
    Ok(v)
}

/// What the signature's entry and the log say, and the key's certificate to
/// verify it with. Problems go into `check`.
fn check_in_log(
    check: &mut SignatureCheck,
    log: &LogReport,
    sig: &openpgp::packet::Signature,
    key: &Verifier,
) -> Option<Cert> {
    match signature_position(sig) {
        Ok((origin, _)) if origin != key.name => {
            check.problems.push(format!(
                "the signature is recorded in another log ({origin}), not in the log given ({}): its proof is from another log",
                key.name
            ));
            return None;
        }
        Ok((_, i)) => check.log_index = Some(i),
        Err(e) => {
            check.problems.push(e.to_string());
            return None;
        }
    }
    let (entry, key_entry) = match entry_in_log(log, sig, key) {
        Ok(found) => found,
        Err(p) => {
            check.problems.push(p);
            return None;
        }
    };
    let Event::Signature { key: signer, primary, decision, summary, .. } = &entry.event else { return None };
    check.signer = Some(signer.clone());
    check.primary = Some(primary.clone());
    check.logged_at = Some(entry.time);
    check.caller = entry.source.clone();
    check.decision = Some(decision.clone());
    check.summary = summary.clone();
    check.declared_state = declared_state(log, entry.index);
    match &check.declared_state {
        None => check.problems.push(format!(
            "the log declares no vault state before entry {} (a vault older than vault_state entries): the state it signed under is unknown",
            entry.index
        )),
        Some(s) => {
            let networked: Vec<&str> = s.interfaces.iter().map(String::as_str).filter(|i| *i != "lo").collect();
            if !networked.is_empty() {
                check.problems.push(format!(
                    "the vault declared network interfaces when it signed (entry {}): {}; a vault has only loopback",
                    s.index,
                    networked.join(", ")
                ));
            }
        }
    }
    let Some(ke) = key_entry else {
        check.problems.push(format!("no log entry says where key {primary} came from"));
        return None;
    };
    let (fpr, how, cert_b64) = ke.key_fact()?;
    let generated = matches!(ke.event, Event::KeyGenerated { .. });
    // The log records every key event; the vault has no operation that
    // exports a secret key, so there is no export entry to look for. A key
    // the log also shows imported or attached had its secret outside.
    let other = log.keys.iter().find(|k| k.fingerprint == fpr && k.index != ke.index);
    check.key = Some(KeyOrigin {
        fingerprint: fpr.to_owned(),
        origin: how.to_owned(),
        generated_in_vault: generated,
        index: ke.index,
        time: ke.time,
        vault: vault_name(log),
        never_exported: "the vault has no operation that exports a secret key, and the log records every key event: no entry brings this key in from elsewhere".into(),
    });
    if !generated {
        check.problems.push(format!(
            "key {fpr} was {how} (log entry {}), not generated in the vault: its secret existed outside the vault",
            ke.index
        ));
    }
    if let Some(k) = other {
        check.problems.push(format!(
            "key {fpr} is also {} at log entry {}: its secret existed outside the vault",
            k.origin, k.index
        ));
    }
    let cert = decode_cert(cert_b64).and_then(|b| Cert::from_bytes(&b).ok());
    if cert.is_none() {
        check.problems.push("the key entry's certificate does not parse".into());
    }
    cert
}

fn vault_name(log: &LogReport) -> Option<String> {
    let e = Entry::parse(log.entry_bytes.first()?, 0).ok()?;
    match e.event {
        Event::LogCreated { vault, .. } => Some(vault),
        _ => None,
    }
}

/// The newest `vault_state` entry before `index`.
fn declared_state(log: &LogReport, index: u64) -> Option<DeclaredState> {
    let upto = (index as usize).min(log.entry_bytes.len());
    log.entry_bytes[..upto].iter().enumerate().rev().find_map(|(i, b)| match Entry::parse(b, i as u64).ok()? {
        Entry {
            time,
            event:
                Event::VaultState {
                    version,
                    binary_sha256,
                    policy_digest,
                    interfaces,
                    qube_name,
                    qube_template,
                    self_reported,
                },
            ..
        } => Some(DeclaredState {
            index: i as u64,
            time,
            version,
            binary_sha256,
            policy_digest,
            interfaces,
            qube_name,
            qube_template,
            self_reported,
        }),
        _ => None,
    })
}

fn one_signature(check: &mut SignatureCheck, bytes: &[u8]) -> Option<openpgp::packet::Signature> {
    let mut sigs = signatures_in(bytes);
    match sigs.len() {
        0 => {
            check.problems.push("no OpenPGP signature found".into());
            None
        }
        1 => sigs.pop(),
        n => {
            check.problems.push(format!("{n} signatures where one was expected"));
            None
        }
    }
}

/// A clearsigned document: its checks, and its signed text once the
/// signature verified.
pub fn verify_clearsigned(
    name: &str,
    bytes: &[u8],
    log: &LogReport,
    key: &Verifier,
) -> (SignatureCheck, Option<String>) {
    let mut check = SignatureCheck { file: name.to_owned(), ..SignatureCheck::default() };
    if !bytes.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----") {
        check.problems.push("not a clearsigned document".into());
        return (check, None);
    }
    let Some(sig) = one_signature(&mut check, bytes) else { return (check, None) };
    let Some(cert) = check_in_log(&mut check, log, &sig, key) else { return (check, None) };
    let p = StandardPolicy::new();
    let mut text = Vec::new();
    let read = VerifierBuilder::from_bytes(bytes)
        .and_then(|b| b.with_policy(&p, None, OneCert(cert)))
        .and_then(|mut v| Ok(v.by_ref().take(MAX_DOCUMENT).read_to_end(&mut text)?));
    let text = match read.map(|_| String::from_utf8(text)) {
        Ok(Ok(t)) => {
            check.signature_valid = true;
            Some(t)
        }
        Ok(Err(_)) => {
            check.problems.push("the signed text is not UTF-8".into());
            None
        }
        Err(e) => {
            check
                .problems
                .push(format!("the signature does not verify over the document (changed after signing?): {e}"));
            None
        }
    };
    check.ok = check.problems.is_empty() && check.signature_valid;
    (check, text)
}

/// A detached signature over `data`.
pub fn verify_detached(
    name: &str,
    data: &mut (dyn Read + Send + Sync),
    sig_bytes: &[u8],
    log: &LogReport,
    key: &Verifier,
) -> SignatureCheck {
    let mut check = SignatureCheck { file: name.to_owned(), ..SignatureCheck::default() };
    let Some(sig) = one_signature(&mut check, sig_bytes) else { return check };
    let Some(cert) = check_in_log(&mut check, log, &sig, key) else { return check };
    let p = StandardPolicy::new();
    let mut one = Vec::new();
    let _ = Packet::from(sig).serialize(&mut one);
    let valid = DetachedVerifierBuilder::from_bytes(&one)
        .and_then(|b| b.with_policy(&p, None, OneCert(cert)))
        .and_then(|mut v| v.verify_reader(data));
    match valid {
        Ok(()) => check.signature_valid = true,
        Err(e) => check.problems.push(format!("the signature does not verify over the file: {e}")),
    }
    check.ok = check.problems.is_empty() && check.signature_valid;
    check
}

/// `(sha256, size, name)` of the files a .changes or .dsc lists in its
/// `Checksums-Sha256` field.
pub fn listed_files(text: &str) -> Result<Vec<(String, u64, String)>, String> {
    let mut out = Vec::new();
    let mut inside = false;
    let mut seen = false;
    for line in text.lines() {
        if line.trim().is_empty() {
            if seen {
                break;
            }
            continue;
        }
        seen = true;
        if line.starts_with(' ') || line.starts_with('\t') {
            if !inside {
                continue;
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [sha, size, name] = parts[..] else { return Err(format!("malformed Checksums-Sha256 line {line:?}")) };
            let size: u64 = size.parse().map_err(|_| format!("malformed size in {line:?}"))?;
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("malformed SHA-256 in {line:?}"));
            }
            if !plain_name(name) {
                return Err(format!("{name:?} is not a plain file name"));
            }
            if out.len() == MAX_FILES {
                return Err(format!("more than {MAX_FILES} files"));
            }
            out.push((sha.to_ascii_lowercase(), size, name.to_owned()));
        } else {
            inside = line.split_once(':').is_some_and(|(n, _)| n.eq_ignore_ascii_case("checksums-sha256"));
        }
    }
    if out.is_empty() {
        return Err("no Checksums-Sha256 field lists any file".into());
    }
    Ok(out)
}

fn plain_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 255
        && !n.starts_with('.')
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-._~".contains(&b))
}

/// Checks a listed file in `dir` against its size and SHA-256.
pub fn check_file(dir: &Path, listed_in: &str, (sha, size, name): &(String, u64, String)) -> FileCheck {
    let path = dir.join(name);
    let problem = (|| {
        let mut f = std::fs::File::open(&path).map_err(|e| format!("missing or unreadable: {e}"))?;
        let mut h = Sha256::new();
        let n = std::io::copy(&mut (&mut f).take(size.saturating_add(1)), &mut h)
            .map_err(|e| format!("read error: {e}"))?;
        if n != *size {
            return Err(format!("{n} bytes on disk where {listed_in} lists {size}: changed after signing"));
        }
        if hex::encode(h.finalize()) != *sha {
            return Err(format!("SHA-256 differs from the one {listed_in} lists: changed after signing"));
        }
        Ok(())
    })()
    .err();
    FileCheck { name: name.clone(), listed_in: listed_in.to_owned(), ok: problem.is_none(), problem }
}

/// A Debian upload: the .changes, every .dsc it lists, every file either lists.
pub fn verify_upload(changes: &Path, log: &LogReport, key: &Verifier) -> std::io::Result<UploadReport> {
    let mut rep = UploadReport::new(log);
    let dir = changes.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let name = changes.file_name().map_or_else(|| changes.display().to_string(), |n| n.to_string_lossy().into_owned());
    let bytes = read_document(changes)?;
    let (check, text) = verify_clearsigned(&name, &bytes, log, key);
    rep.signatures.push(check);
    if let Some(text) = text {
        match listed_files(&text) {
            Err(e) => rep.problems.push(format!("{name}: {e}")),
            Ok(files) => {
                for f in &files {
                    rep.files.push(check_file(&dir, &name, f));
                }
                for (_, _, dsc) in files.iter().filter(|(_, _, n)| n.ends_with(".dsc")) {
                    let bytes = match read_document(&dir.join(dsc)) {
                        Ok(b) => b,
                        // Already reported as a missing file.
                        Err(_) => continue,
                    };
                    let (check, text) = verify_clearsigned(dsc, &bytes, log, key);
                    rep.signatures.push(check);
                    match text.map(|t| listed_files(&t)) {
                        Some(Ok(files)) => {
                            for f in &files {
                                rep.files.push(check_file(&dir, dsc, f));
                            }
                        }
                        Some(Err(e)) => rep.problems.push(format!("{dsc}: {e}")),
                        None => {}
                    }
                }
            }
        }
    }
    rep.finish();
    Ok(rep)
}

/// Any set of signed files: clearsigned documents, or detached signatures
/// (`X.asc`, `X.sig`, `X.gpg`) over the file `X` beside them.
pub fn verify_bundle(files: &[PathBuf], log: &LogReport, key: &Verifier) -> std::io::Result<UploadReport> {
    let mut rep = UploadReport::new(log);
    for f in files {
        let name = f.display().to_string();
        let bytes = read_document(f)?;
        if bytes.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----") {
            rep.signatures.push(verify_clearsigned(&name, &bytes, log, key).0);
            continue;
        }
        let data = ["asc", "sig", "gpg"]
            .iter()
            .find(|ext| f.extension().is_some_and(|e| e == **ext))
            .map(|_| f.with_extension(""));
        match data {
            Some(d) => {
                let mut file = std::fs::File::open(&d)?;
                rep.signatures.push(verify_detached(&name, &mut file, &bytes, log, key));
            }
            None => rep.problems.push(format!(
                "{name}: neither a clearsigned document nor a detached signature named X.asc, X.sig or X.gpg"
            )),
        }
    }
    rep.finish();
    Ok(rep)
}

/// Applies a C2SP tlog-policy to a verdict: some checkpoint among `notes` (the
/// `--checkpoint` files, e.g. the cosigned one `qvault-audit witness` keeps)
/// must be signed by the log key, lie within the log (whose agreement with
/// every given checkpoint `verify_log` checked), cover every signature's
/// entry, and carry cosignatures meeting the policy's quorum. Otherwise the
/// verdict fails, naming who did cosign.
pub fn check_quorum(
    rep: &mut UploadReport,
    policy: &crate::witness::Policy,
    name: &str,
    notes: &[String],
    key: &Verifier,
) {
    let needed = rep.signatures.iter().filter_map(|s| s.log_index).max().map_or(0, |i| i + 1);
    let mut best: Option<(u64, Vec<&str>)> = None;
    let mut seen = Vec::new();
    for note in notes {
        let Ok(cp) = crate::note::Checkpoint::open(note, key) else { continue };
        let who = policy.cosigners(note, &cp);
        let names = policy.names(&who);
        if cp.size >= needed && cp.size <= rep.log_entries && policy.quorum_met(&who) {
            if best.as_ref().is_none_or(|(size, _)| cp.size > *size) {
                best = Some((cp.size, names));
            }
        } else {
            seen.push(format!(
                "{} entries, cosigned by {}",
                cp.size,
                if names.is_empty() { "no witness of the policy".to_owned() } else { names.join(", ") }
            ));
        }
    }
    match best {
        Some((size, names)) => {
            rep.witness_quorum = format!(
                "met ({name}): the checkpoint of {size} entries, which covers every signature, is cosigned by {}",
                names.join(", ")
            );
        }
        None => {
            rep.ok = false;
            let why = if seen.is_empty() {
                "no checkpoint signed by the log key was given (--checkpoint, e.g. the cosigned one `qvault-audit witness` keeps)".to_owned()
            } else {
                format!("no given checkpoint covering entry {} meets it: {}", needed.saturating_sub(1), seen.join("; "))
            };
            rep.witness_quorum = format!("NOT met ({name}): {why}");
            rep.problems.push(format!("the witness quorum of {name} is not met: {why}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_files_are_strict() {
        let t =
            "Format: 1.8\nChecksums-Sha256:\n ".to_owned() + &"ab".repeat(32) + " 12 hello_1.0.dsc\nFiles:\n x 1 y\n";
        assert_eq!(listed_files(&t).unwrap(), vec![("ab".repeat(32), 12, "hello_1.0.dsc".to_owned())]);
        for bad in ["../etc/passwd", ".hidden", "a/b"] {
            let t = format!("Checksums-Sha256:\n {} 1 {bad}\n", "00".repeat(32));
            assert!(listed_files(&t).is_err(), "{bad}");
        }
        assert!(listed_files("Source: x\n").is_err());
        assert!(listed_files(&format!("Checksums-Sha256:\n {} x f\n", "00".repeat(32))).is_err());
    }
}
