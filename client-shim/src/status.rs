//! gpg's machine-readable status lines (`--status-fd`), as GnuPG's doc/DETAILS
//! specifies them. Nothing else in qvault-gpg prints `[GNUPG:]`.

use std::fs::OpenOptions;
use std::io::Write;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status<'a> {
    KeyConsidered {
        fpr: &'a str,
        flags: u8,
    },
    BeginSigning {
        hash: u8,
    },
    SigCreated {
        kind: char,
        pk_algo: u8,
        hash_algo: u8,
        class: u8,
        ts: i64,
        fpr: &'a str,
    },
    NewSig,
    GoodSig {
        keyid: &'a str,
        uid: &'a str,
    },
    BadSig {
        keyid: &'a str,
        uid: &'a str,
    },
    ExpKeySig {
        keyid: &'a str,
        uid: &'a str,
    },
    RevKeySig {
        keyid: &'a str,
        uid: &'a str,
    },
    ErrSig {
        keyid: &'a str,
        pk_algo: u8,
        hash_algo: u8,
        class: u8,
        ts: i64,
        rc: u8,
        fpr: Option<&'a str>,
    },
    ValidSig {
        fpr: &'a str,
        ts: i64,
        expires: i64,
        pk_algo: u8,
        hash_algo: u8,
        class: u8,
        primary: &'a str,
    },
    NoPubkey {
        keyid: &'a str,
    },
    TrustUltimate,
    TrustUndefined,
    InvSgnr {
        reason: u8,
        who: &'a str,
    },
    KeyExpired {
        ts: i64,
    },
    KeyRevoked,
    Failure {
        location: &'a str,
        code: u32,
    },
    NoData {
        what: u8,
    },
    ImportOk {
        reason: u8,
        fpr: &'a str,
    },
    Imported {
        keyid: &'a str,
        uid: &'a str,
    },
    Exported {
        fpr: &'a str,
    },
    /// A notation of a good signature (gpg prints those in the hashed area):
    /// `NOTATION_NAME`, `NOTATION_FLAGS` when critical or human-readable, and
    /// `NOTATION_DATA`, which GPGME reads into the signature's notations.
    Notation {
        name: &'a str,
        value: &'a [u8],
        critical: bool,
        human: bool,
    },
    /// The literal data packet of a signed message: format byte, date, name.
    Plaintext {
        format: u8,
        ts: u32,
        name: &'a [u8],
    },
    PlaintextLength {
        len: u32,
    },
    /// Certificates exported, of which secret (always 0 here), written.
    ExportRes {
        count: usize,
        exported: usize,
    },
}

/// Escapes a free-text field as gpg does: `%XX` for control characters and `%`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '%' || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub fn date(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0).map_or_else(|| "1970-01-01".into(), |d| d.format("%Y-%m-%d").to_string())
}

/// gpg's `write_status_buffer`: `%`, bytes up to space and DEL escaped as
/// `%XX`, other bytes as they are (a binary notation's bytes too), and a new
/// line with the same keyword after `wrap` input bytes (0: never).
fn status_buffer(out: &mut Vec<u8>, keyword: &str, buf: &[u8], wrap: usize) {
    let mut count = 0;
    let mut dowrap = true;
    let mut rest = buf;
    loop {
        if dowrap {
            out.extend_from_slice(format!("[GNUPG:] {keyword} ").as_bytes());
            count = 0;
            dowrap = false;
        }
        let (mut i, mut esc) = (0, false);
        while let Some(&b) = rest.get(i) {
            esc = b == b'%' || b <= b' ' || b == 127;
            count += 1;
            dowrap = wrap > 0 && count > wrap;
            if esc || dowrap {
                break;
            }
            i += 1;
        }
        out.extend_from_slice(&rest[..i]);
        if esc {
            out.extend_from_slice(format!("%{:02X}", rest[i]).as_bytes());
            i += 1;
        }
        rest = &rest[i..];
        if rest.is_empty() {
            break;
        }
        if dowrap {
            out.push(b'\n');
        }
    }
    out.push(b'\n');
}

impl Status<'_> {
    /// The line(s) as written; only a notation's data may be other than UTF-8.
    pub fn render_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Status::Plaintext { format, ts, name } = self {
            status_buffer(&mut out, &format!("PLAINTEXT {format:X} {ts}"), name, 0);
            return out;
        }
        let Status::Notation { name, value, critical, human } = self else {
            return self.render().into_bytes();
        };
        status_buffer(&mut out, "NOTATION_NAME", name.as_bytes(), 0);
        if *critical || *human {
            out.extend_from_slice(
                format!("[GNUPG:] NOTATION_FLAGS {} {}\n", u8::from(*critical), u8::from(*human)).as_bytes(),
            );
        }
        status_buffer(&mut out, "NOTATION_DATA", value, if *human { 50 } else { 250 });
        out
    }

    pub fn render(&self) -> String {
        let body = match self {
            Status::Notation { .. } | Status::Plaintext { .. } => {
                return String::from_utf8_lossy(&self.render_bytes()).into_owned()
            }
            Status::PlaintextLength { len } => format!("PLAINTEXT_LENGTH {len}"),
            Status::KeyConsidered { fpr, flags } => format!("KEY_CONSIDERED {fpr} {flags}"),
            Status::BeginSigning { hash } => format!("BEGIN_SIGNING H{hash}"),
            Status::SigCreated { kind, pk_algo, hash_algo, class, ts, fpr } => {
                format!("SIG_CREATED {kind} {pk_algo} {hash_algo} {class:02X} {ts} {fpr}")
            }
            Status::NewSig => "NEWSIG".into(),
            Status::GoodSig { keyid, uid } => format!("GOODSIG {keyid} {}", escape(uid)),
            Status::BadSig { keyid, uid } => format!("BADSIG {keyid} {}", escape(uid)),
            Status::ExpKeySig { keyid, uid } => format!("EXPKEYSIG {keyid} {}", escape(uid)),
            Status::RevKeySig { keyid, uid } => format!("REVKEYSIG {keyid} {}", escape(uid)),
            Status::ErrSig { keyid, pk_algo, hash_algo, class, ts, rc, fpr } => {
                format!("ERRSIG {keyid} {pk_algo} {hash_algo} {class:02X} {ts} {rc} {}", fpr.unwrap_or("-"))
            }
            Status::ValidSig { fpr, ts, expires, pk_algo, hash_algo, class, primary } => {
                format!("VALIDSIG {fpr} {} {ts} {expires} 4 0 {pk_algo} {hash_algo} {class:02X} {primary}", date(*ts))
            }
            Status::NoPubkey { keyid } => format!("NO_PUBKEY {keyid}"),
            Status::TrustUltimate => "TRUST_ULTIMATE 0 pgp".into(),
            Status::TrustUndefined => "TRUST_UNDEFINED 0 pgp".into(),
            Status::InvSgnr { reason, who } => format!("INV_SGNR {reason} {}", escape(who)),
            Status::KeyExpired { ts } => format!("KEYEXPIRED {ts}"),
            Status::KeyRevoked => "KEYREVOKED".into(),
            Status::Failure { location, code } => format!("FAILURE {location} {code}"),
            Status::NoData { what } => format!("NODATA {what}"),
            Status::ImportOk { reason, fpr } => format!("IMPORT_OK {reason} {fpr}"),
            Status::Imported { keyid, uid } => format!("IMPORTED {keyid} {}", escape(uid)),
            Status::Exported { fpr } => format!("EXPORTED {fpr}"),
            Status::ExportRes { count, exported } => format!("EXPORT_RES {count} 0 {exported}"),
        };
        format!("[GNUPG:] {body}\n")
    }
}

/// Where status lines go: nowhere, stdout, stderr, or another inherited fd.
pub struct StatusOut {
    out: Option<Box<dyn Write>>,
    exit_on_error: bool,
}

impl StatusOut {
    /// `exit_on_error`: `--exit-on-status-write-error`, as GPGME asks; see [`StatusOut::emit`].
    pub fn open(fd: Option<i32>, exit_on_error: bool) -> std::io::Result<StatusOut> {
        let out: Option<Box<dyn Write>> = match fd {
            None => None,
            Some(1) => Some(Box::new(std::io::stdout())),
            Some(2) => Some(Box::new(std::io::stderr())),
            // Another inherited descriptor, reopened through /proc without unsafe.
            Some(n) => Some(Box::new(OpenOptions::new().append(true).open(format!("/proc/self/fd/{n}"))?)),
        };
        Ok(StatusOut { out, exit_on_error })
    }

    /// Writes one line. Status output failing (a closed pipe) does not turn
    /// success into failure, unless `--exit-on-status-write-error` was given:
    /// then, as gpg, the process ends at once (the reader that asked for it is
    /// gone). gpg then exits 0 when nothing else failed; qvault-gpg exits 2, so
    /// that no one takes an interrupted run for a success.
    pub fn emit(&mut self, s: Status<'_>) {
        if let Some(w) = self.out.as_mut() {
            let ok = w.write_all(&s.render_bytes()).and_then(|()| w.flush()).is_ok();
            if !ok && self.exit_on_error {
                std::process::exit(2);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_gpg() {
        let fpr = "FAFFA0878262B879D9F59D29026DC399F704569E";
        assert_eq!(
            Status::SigCreated { kind: 'D', pk_algo: 22, hash_algo: 8, class: 0, ts: 1795705438, fpr }.render(),
            format!("[GNUPG:] SIG_CREATED D 22 8 00 1795705438 {fpr}\n")
        );
        assert_eq!(
            Status::ValidSig { fpr, ts: 1795705438, expires: 0, pk_algo: 22, hash_algo: 8, class: 1, primary: "P" }
                .render(),
            format!("[GNUPG:] VALIDSIG {fpr} 2026-11-26 1795705438 0 4 0 22 8 01 P\n")
        );
        assert_eq!(Status::GoodSig { keyid: "K", uid: "a%b\nc" }.render(), "[GNUPG:] GOODSIG K a%25b%0Ac\n");
    }

    /// As gpg 2.2.40 wrote them for a vault signature (tests/e2e/gpgme.rs
    /// compares whole verifications with gpg's).
    #[test]
    fn notations_render_like_gpg() {
        let log = Status::Notation {
            name: "log@qvault.invalid",
            value: b"qvault.invalid/testvault/49e1756cb0fb6694 3",
            critical: false,
            human: true,
        };
        assert_eq!(
            log.render(),
            "[GNUPG:] NOTATION_NAME log@qvault.invalid\n[GNUPG:] NOTATION_FLAGS 0 1\n\
             [GNUPG:] NOTATION_DATA qvault.invalid/testvault/49e1756cb0fb6694%203\n"
        );
        assert_eq!(
            Status::Plaintext { format: b'b', ts: 1796021192, name: b"a b" }.render(),
            "[GNUPG:] PLAINTEXT 62 1796021192 a%20b\n"
        );
        assert_eq!(Status::Plaintext { format: b't', ts: 0, name: b"" }.render(), "[GNUPG:] PLAINTEXT 74 0 \n");
        let salt = Status::Notation { name: "salt@x", value: b"\x00\xff%", critical: false, human: false };
        assert_eq!(salt.render_bytes(), b"[GNUPG:] NOTATION_NAME salt@x\n[GNUPG:] NOTATION_DATA %00\xff%25\n");
        // Human-readable data wraps after 50 bytes, each line with its keyword.
        let long = "a".repeat(50) + "bb";
        let wrapped = Status::Notation { name: "n", value: long.as_bytes(), critical: true, human: true };
        assert_eq!(
            wrapped.render(),
            format!(
                "[GNUPG:] NOTATION_NAME n\n[GNUPG:] NOTATION_FLAGS 1 1\n[GNUPG:] NOTATION_DATA {}\n[GNUPG:] NOTATION_DATA bb\n",
                "a".repeat(50)
            )
        );
    }
}
