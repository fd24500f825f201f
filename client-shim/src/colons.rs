//! Key listings: `--with-colons` records (GnuPG doc/DETAILS, as GnuPG 2.2 prints
//! them) and the human format. Nothing else prints listings.

use std::fmt::Write as _;

use qubes_rpc::{KeyInfo, SubkeyInfo};
use sequoia_openpgp::types::HashAlgorithm;

use crate::args::KeyidFormat;

/// How much the user trusts a key: keys in the vault are the user's own.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    Ultimate,
    Unknown,
}

fn validity(k: &SubkeyInfo, trust: Trust) -> char {
    if k.revoked {
        'r'
    } else if k.expired {
        'e'
    } else if trust == Trust::Ultimate {
        'u'
    } else {
        '-'
    }
}

fn caps_lower(k: &SubkeyInfo) -> String {
    let mut s = String::new();
    if k.caps.encrypt {
        s.push('e');
    }
    if k.caps.sign {
        s.push('s');
    }
    if k.caps.certify {
        s.push('c');
    }
    if k.caps.authenticate {
        s.push('a');
    }
    s
}

fn caps_primary(info: &KeyInfo) -> String {
    let usable: Vec<&SubkeyInfo> =
        std::iter::once(&info.primary).chain(&info.subkeys).filter(|k| !k.revoked && !k.expired).collect();
    let mut s = caps_lower(&info.primary);
    if usable.iter().any(|k| k.caps.encrypt) {
        s.push('E');
    }
    if usable.iter().any(|k| k.caps.sign) {
        s.push('S');
    }
    if usable.iter().any(|k| k.caps.certify) {
        s.push('C');
    }
    if usable.iter().any(|k| k.caps.authenticate) {
        s.push('A');
    }
    s
}

pub fn keyid(fpr: &str) -> &str {
    &fpr[fpr.len().saturating_sub(16)..]
}

/// gpg's user-ID hash (colon field 8): RIPEMD-160 of the user ID.
fn uid_hash(uid: &str) -> String {
    let Ok(b) = HashAlgorithm::RipeMD.context() else {
        return String::new();
    };
    let mut ctx = b.for_digest();
    ctx.update(uid.as_bytes());
    let mut d = vec![0; ctx.digest_size()];
    if ctx.digest(&mut d).is_err() {
        return String::new();
    }
    hex::encode_upper(d)
}

/// Field 18: gpg 2.2 marks keys usable under the German VS-NfD rules ("de-vs")
/// with compliance code 23: RSA of 2048-4096 bits and the Brainpool curves.
fn compliance(k: &SubkeyInfo) -> &'static str {
    let rsa = matches!(k.algo, 1..=3) && matches!(k.bits, 2048 | 3072 | 4096);
    let brainpool = k.curve.as_deref().is_some_and(|c| c.starts_with("brainpool"));
    if rsa || brainpool {
        "23"
    } else {
        ""
    }
}

fn opt_ts(t: Option<i64>) -> String {
    t.map(|t| t.to_string()).unwrap_or_default()
}

/// Colon listing. `secret` selects `sec`/`ssb` records; `with_secret`
/// (`--with-secret`) marks, in `pub`/`sub` records, the keys whose secret part
/// the vault holds with `+` in field 15, as gpg does.
pub fn colons(keys: &[(KeyInfo, Trust)], secret: bool, with_secret: bool, now: i64) -> String {
    let has = |secret: bool| if with_secret && secret { "+" } else { "" };
    let mut out = String::new();
    if !secret {
        let _ = writeln!(out, "tru::1:{now}:0:3:1:5");
    }
    for (info, trust) in keys {
        let p = &info.primary;
        let v = validity(p, *trust);
        let own = if *trust == Trust::Ultimate { "u" } else { "-" };
        let (tag, sn) = if secret { ("sec", if p.secret { "+" } else { "#" }) } else { ("pub", has(p.secret)) };
        let _ = writeln!(
            out,
            "{tag}:{v}:{}:{}:{}:{}:{}::{own}:::{}:::{sn}::{}:{}::0:",
            p.bits,
            p.algo,
            keyid(&p.fingerprint),
            p.created,
            opt_ts(p.expires),
            caps_primary(info),
            p.curve.as_deref().unwrap_or(""),
            compliance(p)
        );
        let _ = writeln!(out, "fpr:::::::::{}:", p.fingerprint);
        for u in &info.uids {
            let uv = if u.revoked { 'r' } else { v };
            let _ =
                writeln!(out, "uid:{uv}::::{}::{}::{}::::::::::0:", u.created, uid_hash(&u.uid), colon_escape(&u.uid));
        }
        for s in &info.subkeys {
            let (tag, sn) = if secret { ("ssb", if s.secret { "+" } else { "#" }) } else { ("sub", has(s.secret)) };
            let _ = writeln!(
                out,
                "{tag}:{}:{}:{}:{}:{}:{}:::::{}:::{sn}::{}:{}:",
                validity(s, *trust),
                s.bits,
                s.algo,
                keyid(&s.fingerprint),
                s.created,
                opt_ts(s.expires),
                caps_lower(s),
                s.curve.as_deref().unwrap_or(""),
                compliance(s)
            );
            let _ = writeln!(out, "fpr:::::::::{}:", s.fingerprint);
        }
    }
    out
}

/// Colon fields escape `:` and control characters as `\xHH`.
fn colon_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c == ':' || c == '\\' || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "\\x{b:02x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn algo_name(k: &SubkeyInfo) -> String {
    match (&k.curve, k.algo) {
        (Some(c), _) => c.clone(),
        (None, 1..=3) => format!("rsa{}", k.bits),
        (None, 17) => format!("dsa{}", k.bits),
        (None, a) => format!("algo{a}"),
    }
}

fn caps_upper(k: &SubkeyInfo) -> String {
    caps_lower(k).to_uppercase()
}

fn key_line(out: &mut String, tag: &str, k: &SubkeyInfo, fmt: KeyidFormat) {
    let id = match fmt {
        KeyidFormat::None => String::new(),
        KeyidFormat::Short => format!("/{}", &k.fingerprint[k.fingerprint.len() - 8..]),
        KeyidFormat::Long => format!("/{}", keyid(&k.fingerprint)),
        KeyidFormat::ZeroXShort => format!("/0x{}", &k.fingerprint[k.fingerprint.len() - 8..]),
        KeyidFormat::ZeroXLong => format!("/0x{}", keyid(&k.fingerprint)),
    };
    let _ = write!(out, "{tag}   {}{id} {} [{}]", algo_name(k), crate::status::date(k.created), caps_upper(k));
    if k.revoked {
        out.push_str(" [revoked]");
    } else if let Some(e) = k.expires {
        let word = if k.expired { "expired" } else { "expires" };
        let _ = write!(out, " [{word}: {}]", crate::status::date(e));
    }
    out.push('\n');
}

/// The human listing, as `gpg --list-keys` prints it.
pub fn human(keys: &[(KeyInfo, Trust)], secret: bool, fmt: KeyidFormat, fingerprints: u8, header: &str) -> String {
    let mut out = String::new();
    if keys.is_empty() {
        return out;
    }
    let _ = writeln!(out, "{header}\n{}", "-".repeat(header.chars().count()));
    for (info, trust) in keys {
        let (ptag, stag) = if secret { ("sec", "ssb") } else { ("pub", "sub") };
        key_line(&mut out, ptag, &info.primary, fmt);
        let _ = writeln!(out, "      {}", info.primary.fingerprint);
        // gpg indents user IDs by the key ID's printed width plus one.
        let pad = match fmt {
            KeyidFormat::None | KeyidFormat::ZeroXShort => 11,
            KeyidFormat::Short => 9,
            KeyidFormat::Long => 17,
            KeyidFormat::ZeroXLong => 19,
        };
        for u in &info.uids {
            let t = if u.revoked {
                "revoked"
            } else if info.primary.expired {
                "expired"
            } else if *trust == Trust::Ultimate {
                "ultimate"
            } else {
                "unknown"
            };
            let _ = writeln!(out, "uid{}[{t}] {}", " ".repeat(pad), u.uid);
        }
        for s in &info.subkeys {
            key_line(&mut out, stag, s, fmt);
            if fingerprints > 1 {
                let _ = writeln!(out, "      {}", s.fingerprint);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use qubes_rpc::{Caps, UidInfo};

    fn sample() -> KeyInfo {
        let k = |fpr: &str, caps: Caps| SubkeyInfo {
            fingerprint: fpr.into(),
            algo: 22,
            bits: 255,
            curve: Some("ed25519".into()),
            created: 1795705438,
            expires: Some(1858777438),
            caps,
            revoked: false,
            expired: false,
            secret: true,
        };
        KeyInfo {
            primary: k("141D21733B5F8ECD58D052BE29D37993D4989C8F", Caps { certify: true, ..Caps::default() }),
            uids: vec![UidInfo { uid: "Test User <test@example.org>".into(), created: 1795705438, revoked: false }],
            subkeys: vec![k("FAFFA0878262B879D9F59D29026DC399F704569E", Caps { sign: true, ..Caps::default() })],
        }
    }

    /// Pinned against GnuPG 2.2.40's output for the same key structure.
    #[test]
    fn secret_colons_match_gnupg() {
        let got = colons(&[(sample(), Trust::Ultimate)], true, false, 0);
        let want = "sec:u:255:22:29D37993D4989C8F:1795705438:1858777438::u:::cSC:::+::ed25519:::0:\n\
fpr:::::::::141D21733B5F8ECD58D052BE29D37993D4989C8F:\n\
uid:u::::1795705438::D462B084DC933A38664A2D87101B43FA0779DB8F::Test User <test@example.org>::::::::::0:\n\
ssb:u:255:22:026DC399F704569E:1795705438:1858777438:::::s:::+::ed25519::\n\
fpr:::::::::FAFFA0878262B879D9F59D29026DC399F704569E:\n";
        assert_eq!(got, want);
    }

    /// `--with-secret` (GPGME's keylist with GPGME_KEYLIST_MODE_WITH_SECRET), as
    /// gpg 2.2.40 marks the keys of a `-k` listing whose secret it holds.
    #[test]
    fn with_secret_marks_public_records() {
        let got = colons(&[(sample(), Trust::Ultimate)], false, true, 0);
        assert!(
            got.contains("\npub:u:255:22:29D37993D4989C8F:1795705438:1858777438::u:::cSC:::+::ed25519:::0:\n"),
            "{got}"
        );
        assert!(got.contains("\nsub:u:255:22:026DC399F704569E:1795705438:1858777438:::::s:::+::ed25519::\n"), "{got}");
        let without = colons(&[(sample(), Trust::Ultimate)], false, false, 0);
        assert!(without.contains(":::cSC:::::ed25519:::0:\n"), "{without}");
    }

    #[test]
    fn human_listing_matches_gnupg_layout() {
        let got = human(&[(sample(), Trust::Ultimate)], false, KeyidFormat::None, 0, "h");
        assert!(got.contains("pub   ed25519 2026-11-26 [C] [expires: 2028-11-25]\n      141D21733B5F8ECD58D052BE29D37993D4989C8F\nuid           [ultimate] Test User <test@example.org>\nsub   ed25519 2026-11-26 [S] [expires: 2028-11-25]\n"), "{got}");
        let got = human(&[(sample(), Trust::Ultimate)], true, KeyidFormat::Long, 0, "h");
        assert!(got.contains("sec   ed25519/29D37993D4989C8F 2026-11-26 [C] [expires: 2028-11-25]\n"), "{got}");
        assert!(got.contains("\nuid                 [ultimate] Test User"), "{got}");
    }
}
