//! Receipts as C2SP tlog-proof (https://c2sp.org/tlog-proof), the text format
//! of an offline-verifiable proof that an entry is in a log:
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 of {"v":1,"entry":"...","key_entry":{...}}>
//! index <decimal>
//! <base64 inclusion proof hash, leaf's sibling first, one per line>
//!
//! <the signed checkpoint note, verbatim, with any witness cosignatures>
//! ```
//!
//! The proof format carries only an index, so the entry's bytes (needed to
//! hash the leaf) and the signing key's entry ride in `extra`, which the spec
//! keeps for "data necessary to reconstruct the record hash". Both are proven
//! by inclusion proofs, so nothing in `extra` is trusted unproven. A proof
//! converts losslessly to and from a [`Receipt`] (without the optional
//! consistency proof, which is the client's business), so one check,
//! `receipt::check_signature_receipt`, serves both. Specified in
//! `docs/log-format.md`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::receipt::{hashes, hex_hashes, KeyEntry, Receipt, ReceiptError, MAX_RECEIPT, RECEIPT_VERSION};

pub const HEADER: &str = "c2sp.org/tlog-proof@v1";
/// More proof lines than a 2^64-leaf tree needs is malformed.
const MAX_PROOF: usize = 64;

/// What qvault puts in `extra`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Extra {
    v: u32,
    entry: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_entry: Option<KeyEntry>,
}

/// Whether `bytes` look like a tlog-proof rather than a JSON receipt.
pub fn is_tlog_proof(bytes: &[u8]) -> bool {
    bytes.starts_with(format!("{HEADER}\n").as_bytes())
}

fn bad(what: &'static str) -> ReceiptError {
    ReceiptError::Proof(what)
}

/// The tlog-proof of a receipt.
pub fn encode(r: &Receipt) -> Result<String, ReceiptError> {
    let extra = Extra { v: RECEIPT_VERSION, entry: r.entry.clone(), key_entry: r.key_entry.clone() };
    let json = serde_json::to_vec(&extra).map_err(|e| ReceiptError::Json(e.to_string()))?;
    let mut out = format!("{HEADER}\nextra {}\nindex {}\n", B64.encode(json), r.index);
    for h in hashes(&r.inclusion)? {
        out.push_str(&B64.encode(h));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&r.checkpoint);
    Ok(out)
}

/// Parses a tlog-proof strictly into a receipt (not yet verified: that is
/// `check_signature_receipt`'s).
pub fn parse(bytes: &[u8]) -> Result<Receipt, ReceiptError> {
    if bytes.len() > MAX_RECEIPT {
        return Err(ReceiptError::TooLong);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8"))?;
    let rest = text.strip_prefix(HEADER).and_then(|t| t.strip_prefix('\n')).ok_or(bad("no header line"))?;
    let (head, checkpoint) = rest.split_once("\n\n").ok_or(bad("no empty line before the checkpoint"))?;
    let mut lines = head.split('\n');
    let extra = lines
        .next()
        .and_then(|l| l.strip_prefix("extra "))
        .ok_or(bad("no extra line (qvault's proofs carry the entry there)"))?;
    let index = lines.next().and_then(|l| l.strip_prefix("index ")).ok_or(bad("no index line"))?;
    let canonical =
        !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) && (index == "0" || !index.starts_with('0'));
    let index: u64 = index.parse().ok().filter(|_| canonical).ok_or(bad("index is not a plain decimal number"))?;
    let mut inclusion = Vec::new();
    for l in lines {
        if inclusion.len() == MAX_PROOF {
            return Err(bad("too many proof lines"));
        }
        let h: [u8; 32] =
            B64.decode(l).ok().and_then(|b| b.try_into().ok()).ok_or(bad("a proof line is not a base64 hash"))?;
        inclusion.push(h);
    }
    let extra = B64.decode(extra).map_err(|_| bad("extra is not base64"))?;
    let extra: Extra = serde_json::from_slice(&extra).map_err(|e| ReceiptError::Json(e.to_string()))?;
    if extra.v != RECEIPT_VERSION {
        return Err(ReceiptError::Version(extra.v));
    }
    Ok(Receipt {
        v: RECEIPT_VERSION,
        entry: extra.entry,
        index,
        inclusion: hex_hashes(&inclusion),
        key_entry: extra.key_entry,
        checkpoint: checkpoint.to_owned(),
        consistency_from: None,
        consistency: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt() -> Receipt {
        Receipt {
            v: 1,
            entry: "{\"v\":1}".into(),
            index: 3,
            inclusion: vec![hex::encode([1u8; 32]), hex::encode([2u8; 32])],
            key_entry: Some(KeyEntry { entry: "{}".into(), index: 2, inclusion: vec![hex::encode([3u8; 32])] }),
            checkpoint: "o\n4\nAAAA\n\n\u{2014} o sig\n\u{2014} witness cosig\n".into(),
            consistency_from: None,
            consistency: vec![],
        }
    }

    #[test]
    fn roundtrip() {
        let r = receipt();
        let p = encode(&r).unwrap();
        assert!(p.starts_with("c2sp.org/tlog-proof@v1\nextra "));
        assert!(p.contains("\nindex 3\nAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\nAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\n\no\n4\n"));
        assert!(is_tlog_proof(p.as_bytes()));
        assert_eq!(parse(p.as_bytes()).unwrap(), r);
    }

    #[test]
    fn defects_are_refused() {
        let p = encode(&receipt()).unwrap();
        for (name, bad_proof) in [
            ("index_leading_zero", p.replace("\nindex 3\n", "\nindex 03\n")),
            ("index_missing", p.replace("\nindex 3\n", "\n")),
            ("extra_missing", p.replacen("extra ", "xtra ", 1)),
            ("hash_short", p.replace("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=", "AQEB")),
            ("no_blank_line", p.replace("\n\no\n4\n", "\no\n4\n")),
            ("other_header", p.replace("@v1", "@v2")),
        ] {
            assert!(parse(bad_proof.as_bytes()).is_err(), "{name}");
        }
    }
}
