//! `qvault-audit witness`: submits the newest checkpoint of a verified log
//! export, with consistency proofs, to each witness of a C2SP tlog-policy
//! file (tlog-witness `add-checkpoint`), keeps the cosignatures, and checks
//! the quorum. Runs in the client or audit qube; the vault has no network.
//! Included by the `qvault-audit` binary only, so no library user links an
//! HTTP client.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use qvault_attest::merkle::{leaf_hash, MemTree, Subtrees as _};
use qvault_attest::note::{Checkpoint, Verifier};
use qvault_attest::witness::{self, Policy, Witness};

/// The longest witness answer read.
const MAX_ANSWER: u64 = 64 * 1024;

/// What one witness said.
#[derive(Debug, serde::Serialize)]
pub struct Outcome {
    pub witness: String,
    pub cosigned: bool,
    /// `cosigned`, `unreachable: ...`, `refused 422: ...`, ...
    pub result: String,
    /// Evidence kept for a refusal (422, 403, a witness ahead of the log).
    pub evidence: Option<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub size: u64,
    pub witnesses: Vec<Outcome>,
    pub quorum_met: bool,
    /// A witness refused the checkpoint as inconsistent or unsigned (422,
    /// 403) or is ahead of the log: a fork or another log; exit 2.
    pub alarm: bool,
    pub cosigned_checkpoint: PathBuf,
}

enum Answer {
    Status(u16, String),
    Unreachable(String),
}

fn post(agent: &ureq::Agent, url: &str, body: &str) -> Answer {
    let res =
        agent.post(&format!("{url}/add-checkpoint")).header("Content-Type", "text/plain; charset=utf-8").send(body);
    match res {
        Ok(mut r) => {
            let status = r.status().as_u16();
            match r.body_mut().with_config().limit(MAX_ANSWER).read_to_string() {
                Ok(text) => Answer::Status(status, text),
                Err(e) => Answer::Unreachable(format!("reading the answer: {e}")),
            }
        }
        Err(e) => Answer::Unreachable(describe(&e)),
    }
}

/// An error of the request, a failed TLS handshake or certificate check
/// named as such (rustls's errors reach ureq inside an io::Error).
fn describe(e: &ureq::Error) -> String {
    let tls = match e {
        ureq::Error::Rustls(t) => Some(t.to_string()),
        ureq::Error::Tls(t) => Some((*t).to_owned()),
        ureq::Error::Io(io) => io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()).map(|t| t.to_string()),
        _ => None,
    };
    match tls {
        Some(t) => format!("TLS: {t}"),
        None => e.to_string(),
    }
}

/// A witness URL qvault-audit will talk to: https:// to any host, verified
/// against the trust roots; plain http:// only to this machine (tests, a
/// local witness). Checked before any connection.
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| format!("{url}: not a URL: {e}"))?;
    let host = uri.host().ok_or_else(|| format!("{url}: no host"))?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err(format!(
            "{url}: plain http:// is refused for a witness that is not on this machine (127.0.0.1, ::1, localhost): use https://"
        )),
        _ => Err(format!("{url}: a witness URL is https:// (or http:// to this machine)")),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The trust roots for https:// witnesses: the platform's store (on Debian,
/// /etc/ssl/certs as ca-certificates manages it, or SSL_CERT_FILE /
/// SSL_CERT_DIR), plus the PEM certificates of `ca_file` for a private
/// witness's CA.
fn trust_roots(ca_file: Option<&Path>) -> anyhow::Result<Vec<ureq::tls::Certificate<'static>>> {
    // Unreadable entries in the platform store are skipped, as every TLS
    // client does; what loaded is all that is trusted.
    let native = rustls_native_certs::load_native_certs();
    let mut roots: Vec<_> =
        native.certs.iter().map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned()).collect();
    if let Some(p) = ca_file {
        let pem = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        let before = roots.len();
        for item in ureq::tls::parse_pem(&pem) {
            if let ureq::tls::PemItem::Certificate(c) = item.with_context(|| format!("{}", p.display()))? {
                roots.push(c);
            }
        }
        anyhow::ensure!(roots.len() > before, "{}: no PEM certificate in it", p.display());
    }
    Ok(roots)
}

/// The HTTP client: TLS by rustls with ring, certificates verified against
/// [`trust_roots`], redirects not followed (a redirect could lead to plain
/// http, and a witness has no reason to send one).
pub fn agent(ca_file: Option<&Path>) -> anyhow::Result<ureq::Agent> {
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .root_certs(ureq::tls::RootCerts::new_with_certs(&trust_roots(ca_file)?))
        .build();
    Ok(ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .tls_config(tls)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into())
}

fn keep(dir: &Path, w: &Witness, what: &str, request: &str, answer: &str) -> anyhow::Result<String> {
    let ev = dir.join("evidence");
    std::fs::create_dir_all(&ev).with_context(|| format!("creating {}", ev.display()))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.f");
    let safe: String = w.name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    let p = ev.join(format!("{stamp}-{safe}-{what}.txt"));
    std::fs::write(&p, format!("--- request to {}\n{request}--- answer\n{answer}", w.url.as_deref().unwrap_or("?")))
        .with_context(|| format!("writing {}", p.display()))?;
    Ok(p.display().to_string())
}

/// Submits `note` (the checkpoint of `tree`) to every witness with a URL.
pub fn run(
    policy: &Policy,
    tree: &MemTree,
    note: &str,
    cp: &Checkpoint,
    state: &Path,
    ca_file: Option<&Path>,
) -> anyhow::Result<Report> {
    for w in &policy.witnesses {
        if let Some(url) = &w.url {
            check_url(url).map_err(|e| anyhow::anyhow!("witness {}: {e}", w.name))?;
        }
    }
    let agent = agent(ca_file)?;
    std::fs::create_dir_all(state).with_context(|| format!("creating {}", state.display()))?;
    let mut outcomes = Vec::new();
    let mut lines = Vec::new();
    let mut alarm = false;
    for w in &policy.witnesses {
        let Some(url) = &w.url else {
            outcomes.push(Outcome {
                witness: w.name.clone(),
                cosigned: false,
                result: "no URL in the policy".into(),
                evidence: None,
            });
            continue;
        };
        // Start from the size this witness last cosigned for us (0 if
        // none); a 409 names its size, and one retry follows.
        let size_file = state.join(format!("{}.size", w.key.name.replace(['/', '.'], "_")));
        let mut old: u64 = std::fs::read_to_string(&size_file).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        let mut outcome = None;
        for _attempt in 0..2 {
            if old > cp.size {
                let ev = keep(state, w, "ahead", note, &format!("the witness has seen {old} entries\n"))?;
                alarm = true;
                outcome = Some((false, format!("AHEAD: the witness has seen a checkpoint of {old} entries, this log has {}: a fork, or a stale copy of the log", cp.size), Some(ev)));
                break;
            }
            let Ok(proof) = tree.consistency_proof(old, cp.size);
            let body = witness::add_checkpoint_body(old, if old == 0 { &[] } else { &proof }, note);
            match post(&agent, url, &body) {
                Answer::Status(200, text) => {
                    let got = witness::cosignature_lines(&text, w, cp);
                    if got.is_empty() {
                        outcome = Some((false, "answered 200 without a valid cosignature".into(), None));
                    } else {
                        lines.extend(got);
                        let _ = std::fs::write(&size_file, format!("{}\n", cp.size));
                        outcome = Some((true, "cosigned".into(), None));
                    }
                    break;
                }
                Answer::Status(409, text) => match witness::parse_size_body(&text) {
                    Ok(s) if s != old => old = s,
                    _ => {
                        outcome = Some((false, format!("409 without a usable size: {}", text.trim()), None));
                        break;
                    }
                },
                Answer::Status(code @ (403 | 422), text) => {
                    let ev = keep(state, w, &code.to_string(), &body, &text)?;
                    alarm = true;
                    let why = if code == 422 {
                        "REFUSED 422: the checkpoint is not consistent with the one this witness cosigned: the log FORKED"
                    } else {
                        "REFUSED 403: the witness does not accept the log's signature on the checkpoint"
                    };
                    outcome = Some((false, format!("{why} ({})", text.trim()), Some(ev)));
                    break;
                }
                Answer::Status(code, text) => {
                    outcome = Some((false, format!("answered {code}: {}", text.trim()), None));
                    break;
                }
                Answer::Unreachable(e) => {
                    outcome = Some((false, format!("unreachable: {e}"), None));
                    break;
                }
            }
        }
        let (cosigned, result, evidence) =
            outcome.unwrap_or_else(|| (false, "409 twice: the witness's size keeps changing".into(), None));
        outcomes.push(Outcome { witness: w.name.clone(), cosigned, result, evidence });
    }
    let cosigned_note = witness::add_signatures(note, &lines);
    let out = state.join("checkpoint");
    std::fs::write(&out, &cosigned_note).with_context(|| format!("writing {}", out.display()))?;
    let who = policy.cosigners(&cosigned_note, cp);
    Ok(Report {
        size: cp.size,
        witnesses: outcomes,
        quorum_met: policy.quorum_met(&who),
        alarm,
        cosigned_checkpoint: out,
    })
}

/// The entries' tree, and the newest checkpoint note, verified with `key`.
pub fn tree_of(entries: &[Vec<u8>], note: &str, key: &Verifier) -> anyhow::Result<(MemTree, Checkpoint)> {
    let cp = Checkpoint::open(note, key).context("the newest checkpoint")?;
    let mut tree = MemTree::default();
    entries.iter().for_each(|e| tree.push_leaf(leaf_hash(e)));
    anyhow::ensure!(tree.root() == cp.root, "the newest checkpoint's root is not the entries' root");
    Ok((tree, cp))
}

/// Re-anchors a receipt or tlog-proof at the witnessed checkpoint: its entry
/// (and key entry) must be the log's entries at their indexes; new inclusion
/// proofs are made in the witnessed tree, and the proof is written back as a
/// C2SP tlog-proof carrying the cosigned checkpoint.
pub fn reanchor(
    path: &Path,
    entries: &[Vec<u8>],
    tree: &MemTree,
    cosigned_note: &str,
    key: &Verifier,
) -> anyhow::Result<()> {
    use qvault_attest::receipt::{hex_hashes, Receipt, MAX_RECEIPT};
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
            MAX_RECEIPT as u64 + 1,
        ),
        &mut bytes,
    )?;
    let mut r = Receipt::parse(&bytes).with_context(|| format!("{}", path.display()))?;
    r.verify(key).with_context(|| format!("{}", path.display()))?;
    let size = tree.size();
    let same = |index: u64, entry: &str| entries.get(index as usize).is_some_and(|e| e.as_slice() == entry.as_bytes());
    anyhow::ensure!(
        same(r.index, &r.entry),
        "{}: entry {} is not this log's entry at that index: another log, or a fork",
        path.display(),
        r.index
    );
    let Ok(p) = tree.inclusion_proof(r.index, size);
    r.inclusion = hex_hashes(&p);
    if let Some(k) = &mut r.key_entry {
        anyhow::ensure!(same(k.index, &k.entry), "{}: the key entry is not this log's", path.display());
        let Ok(p) = tree.inclusion_proof(k.index, size);
        k.inclusion = hex_hashes(&p);
    }
    r.checkpoint = cosigned_note.to_owned();
    r.consistency_from = None;
    r.consistency.clear();
    r.verify(key).with_context(|| format!("{}: the re-anchored proof", path.display()))?;
    let text = qvault_attest::tlog_proof::encode(&r)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn https_anywhere_plain_http_only_on_this_machine() {
        for ok in [
            "https://witness.example/w",
            "https://192.0.2.1:8443",
            "http://127.0.0.1:8080",
            "http://127.0.0.2",
            "http://[::1]:8080/x",
            "http://localhost:1234",
            "http://LOCALHOST",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://witness.example/w",
            "http://192.0.2.1:8080",
            "http://[2001:db8::1]",
            "http://localhost.example",
            "http://127.0.0.1.example",
            "ftp://127.0.0.1",
            "witness.example",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        assert!(check_url("http://witness.example").is_err_and(|e| e.contains("plain http:// is refused")));
    }
}
