//! Witnessing, sans I/O: C2SP tlog-policy files (https://c2sp.org/tlog-policy),
//! the tlog-witness `add-checkpoint` request and answers
//! (https://c2sp.org/tlog-witness), and Ed25519 cosignature/v1 checkpoint
//! cosignatures (https://c2sp.org/tlog-cosignature). The HTTP client lives in
//! `qvault-audit` (the vault never talks to the network). Specified in
//! `docs/log-format.md`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;
use crate::note::{Checkpoint, Verifier};

/// Signature type byte of an Ed25519 cosignature/v1 key.
pub const ALG_COSIGNATURE: u8 = 0x04;
pub const MAX_POLICY: usize = 64 * 1024;
/// More witnesses than this in one policy is refused (the spec suggests 32).
const MAX_NAMES: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WitnessError {
    #[error("policy line {0}: {1}")]
    Policy(usize, String),
    #[error("policy: {0}")]
    PolicyFile(&'static str),
    #[error("witness answer: {0}")]
    Answer(&'static str),
}

/// A witness's cosignature verifier key: name and Ed25519 key, type 0x04.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignerKey {
    pub name: String,
    pub key: VerifyingKey,
}

fn cosigner_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_COSIGNATURE]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

impl CosignerKey {
    pub fn parse(s: &str) -> Result<CosignerKey, String> {
        let mut parts = s.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("a vkey is name+id+key".into());
        };
        let raw = B64.decode(b64).map_err(|_| "the vkey's key is not base64".to_owned())?;
        if raw.len() != 33 || raw[0] != ALG_COSIGNATURE {
            return Err("not an Ed25519 cosignature/v1 key (type 0x04)".into());
        }
        let pk: [u8; 32] = raw[1..].try_into().map_err(|_| "bad key length".to_owned())?;
        let key = VerifyingKey::from_bytes(&pk).map_err(|_| "invalid Ed25519 point".to_owned())?;
        if name.is_empty() || hex::encode(cosigner_id(name, &key)) != id.to_ascii_lowercase() {
            return Err("the vkey's key ID does not match".into());
        }
        Ok(CosignerKey { name: name.to_owned(), key })
    }

    pub fn id(&self) -> [u8; 4] {
        cosigner_id(&self.name, &self.key)
    }

    /// Checks one signature line `— <name> <base64(id || time || sig)>` as
    /// this witness's cosignature of `cp`; returns its timestamp.
    pub fn check_line(&self, line: &str, cp: &Checkpoint) -> Option<u64> {
        let rest = line.strip_prefix("\u{2014} ")?;
        let (name, b64) = rest.split_once(' ')?;
        let blob = B64.decode(b64).ok()?;
        if name != self.name || blob.len() != 4 + 8 + 64 || blob[..4] != self.id() {
            return None;
        }
        let time = u64::from_be_bytes(blob[4..12].try_into().ok()?);
        let sig: [u8; 64] = blob[12..].try_into().ok()?;
        let msg = format!("cosignature/v1\ntime {time}\n{}", cp.text());
        self.key.verify(msg.as_bytes(), &ed25519_dalek::Signature::from_bytes(&sig)).ok()?;
        Some(time)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Witness {
    pub name: String,
    pub key: CosignerKey,
    /// The submission prefix (`<url>/add-checkpoint`), if given.
    pub url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Member {
    Witness(usize),
    Group(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Group {
    name: String,
    k: usize,
    members: Vec<Member>,
}

/// A parsed tlog-policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub logs: Vec<(Verifier, Option<String>)>,
    pub witnesses: Vec<Witness>,
    groups: Vec<Group>,
    /// None: `quorum none`.
    quorum: Option<Member>,
}

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, WitnessError> {
        if text.len() > MAX_POLICY {
            return Err(WitnessError::PolicyFile("too long"));
        }
        if text.bytes().any(|b| b < 0x20 && b != b'\t' && b != b'\n' || b == 0x7f) {
            return Err(WitnessError::PolicyFile("control characters other than tab and newline"));
        }
        let mut p = Policy { logs: Vec::new(), witnesses: Vec::new(), groups: Vec::new(), quorum: None };
        let mut quorum_seen = false;
        for (n, line) in text.lines().enumerate() {
            let n = n + 1;
            let err = |m: &str| WitnessError::Policy(n, m.to_owned());
            let words: Vec<&str> = line.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
            match words.as_slice() {
                [] => {}
                [first, ..] if first.starts_with('#') => {}
                ["log", vkey, rest @ ..] if rest.len() <= 1 => {
                    let v = Verifier::parse(vkey).map_err(|e| err(&format!("log key: {e}")))?;
                    if p.logs.iter().any(|(l, _)| l.key == v.key) {
                        return Err(err("duplicate log"));
                    }
                    p.logs.push((v, rest.first().map(|u| (*u).to_owned())));
                }
                ["witness", name, vkey, rest @ ..] if rest.len() <= 1 => {
                    p.check_new_name(name).map_err(|m| err(&m))?;
                    let key = CosignerKey::parse(vkey).map_err(|e| err(&format!("witness key: {e}")))?;
                    if p.witnesses.iter().any(|w| w.key.key == key.key) {
                        return Err(err("duplicate witness"));
                    }
                    let url = rest.first().map(|u| u.trim_end_matches('/').to_owned());
                    p.witnesses.push(Witness { name: (*name).to_owned(), key, url });
                }
                ["group", name, k, members @ ..] if !members.is_empty() => {
                    p.check_new_name(name).map_err(|m| err(&m))?;
                    let mut ms = Vec::new();
                    for m in members {
                        let m = p.lookup(m).ok_or_else(|| err(&format!("{m} is not defined above")))?;
                        if ms.contains(&m) {
                            return Err(err("a member is listed twice"));
                        }
                        ms.push(m);
                    }
                    let k = match *k {
                        "all" => ms.len(),
                        "any" => 1,
                        k => {
                            let ok = k.bytes().all(|b| b.is_ascii_digit()) && !k.starts_with('0');
                            k.parse()
                                .ok()
                                .filter(|&k| ok && k >= 1 && k <= ms.len())
                                .ok_or_else(|| err("bad threshold"))?
                        }
                    };
                    p.groups.push(Group { name: (*name).to_owned(), k, members: ms });
                }
                ["quorum", name] => {
                    if quorum_seen {
                        return Err(err("a second quorum line"));
                    }
                    quorum_seen = true;
                    p.quorum = if *name == "none" {
                        None
                    } else {
                        Some(p.lookup(name).ok_or_else(|| err(&format!("{name} is not defined above")))?)
                    };
                }
                _ => return Err(err("not a log, witness, group or quorum line")),
            }
        }
        if !quorum_seen {
            return Err(WitnessError::PolicyFile("no quorum line"));
        }
        Ok(p)
    }

    fn check_new_name(&self, name: &str) -> Result<(), String> {
        if name == "none" || self.lookup(name).is_some() {
            return Err(format!("the name {name} is taken"));
        }
        if self.witnesses.len() + self.groups.len() >= MAX_NAMES {
            return Err("too many witnesses and groups".into());
        }
        Ok(())
    }

    fn lookup(&self, name: &str) -> Option<Member> {
        if let Some(i) = self.witnesses.iter().position(|w| w.name == name) {
            return Some(Member::Witness(i));
        }
        self.groups.iter().position(|g| g.name == name).map(Member::Group)
    }

    fn holds(&self, m: &Member, cosigned: &[bool]) -> bool {
        match m {
            Member::Witness(i) => cosigned.get(*i).copied().unwrap_or(false),
            Member::Group(g) => {
                let g = &self.groups[*g];
                g.members.iter().filter(|m| self.holds(m, cosigned)).count() >= g.k
            }
        }
    }

    /// Whether witnesses `cosigned[i]` (in policy order) meet the quorum.
    pub fn quorum_met(&self, cosigned: &[bool]) -> bool {
        self.quorum.as_ref().is_none_or(|q| self.holds(q, cosigned))
    }

    /// The names of the witnesses marked in `cosigned` (in policy order).
    pub fn names(&self, cosigned: &[bool]) -> Vec<&str> {
        self.witnesses.iter().zip(cosigned).filter(|(_, c)| **c).map(|(w, _)| w.name.as_str()).collect()
    }

    /// Which of the policy's witnesses cosigned `cp` among the signature lines
    /// of `note`.
    pub fn cosigners(&self, note: &str, cp: &Checkpoint) -> Vec<bool> {
        let sigs = note.rfind("\n\n").map_or("", |i| &note[i + 2..]);
        self.witnesses.iter().map(|w| sigs.lines().any(|l| w.key.check_line(l, cp).is_some())).collect()
    }
}

/// The body of an `add-checkpoint` request.
pub fn add_checkpoint_body(old_size: u64, proof: &[Hash], note: &str) -> String {
    let mut out = format!("old {old_size}\n");
    for h in proof {
        out.push_str(&B64.encode(h));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(note);
    out
}

/// A 409 answer's body: the witness's latest size for the log.
pub fn parse_size_body(body: &str) -> Result<u64, WitnessError> {
    let s = body.strip_suffix('\n').ok_or(WitnessError::Answer("the size does not end in a newline"))?;
    let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    s.parse().ok().filter(|_| ok).ok_or(WitnessError::Answer("the size is not a decimal number"))
}

/// A 200 answer's cosignature lines that verify with `w`'s key over `cp`.
pub fn cosignature_lines(body: &str, w: &Witness, cp: &Checkpoint) -> Vec<String> {
    body.lines().filter(|l| w.key.check_line(l, cp).is_some()).map(str::to_owned).collect()
}

/// `note` with `lines` added to its signatures (each once).
pub fn add_signatures(note: &str, lines: &[String]) -> String {
    let mut out = note.to_owned();
    for l in lines {
        if !out.lines().any(|x| x == l) {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};

    fn vkey(name: &str, seed: u8) -> (String, SigningKey) {
        let sk = SigningKey::from_bytes(&[seed; 32]);
        let k = CosignerKey { name: name.into(), key: sk.verifying_key() };
        let mut raw = vec![ALG_COSIGNATURE];
        raw.extend_from_slice(k.key.as_bytes());
        (format!("{name}+{}+{}", hex::encode(k.id()), B64.encode(raw)), sk)
    }

    fn policy(quorum: &str) -> Policy {
        let (a, _) = vkey("w1.example", 1);
        let (b, _) = vkey("w2.example", 2);
        let (c, _) = vkey("w3.example", 3);
        Policy::parse(&format!(
            "# three\nwitness A {a} http://127.0.0.1:1/\nwitness B {b}\n\twitness C {c}\ngroup two 2 A B C\n{quorum}\n"
        ))
        .unwrap()
    }

    #[test]
    fn quorum_rules() {
        let p = policy("quorum two");
        assert_eq!(p.witnesses[0].url.as_deref(), Some("http://127.0.0.1:1"));
        assert!(!p.quorum_met(&[true, false, false]));
        assert!(p.quorum_met(&[true, false, true]));
        assert!(policy("quorum none").quorum_met(&[false, false, false]));
        assert!(policy("quorum B").quorum_met(&[false, true, false]));
        assert!(!policy("quorum B").quorum_met(&[true, false, true]));
    }

    #[test]
    fn policy_defects() {
        let (a, _) = vkey("w1.example", 1);
        for (name, text) in [
            ("no_quorum", format!("witness A {a}\n")),
            ("two_quorums", format!("witness A {a}\nquorum A\nquorum A\n")),
            ("undefined", "quorum X\n".to_owned()),
            ("threshold_too_big", format!("witness A {a}\ngroup g 2 A\nquorum g\n")),
            ("duplicate_witness", format!("witness A {a}\nwitness B {a}\nquorum A\n")),
            ("member_twice", format!("witness A {a}\ngroup g any A A\nquorum g\n")),
            ("log_key_as_witness", "witness A n+00000000+AQ==\nquorum A\n".to_owned()),
            ("unknown_line", "quorom none\n".to_owned()),
            ("name_none", format!("witness none {a}\nquorum none\n")),
        ] {
            assert!(Policy::parse(&text).is_err(), "{name}");
        }
    }

    #[test]
    fn cosignature_lines_verify_only_for_their_checkpoint() {
        let (text, sk) = vkey("w1.example", 1);
        let w = Witness { name: "A".into(), key: CosignerKey::parse(&text).unwrap(), url: None };
        let cp = Checkpoint { origin: "o.example/log".into(), size: 5, root: [7; 32] };
        let time = 1_700_000_000u64;
        let sig = sk.sign(format!("cosignature/v1\ntime {time}\n{}", cp.text()).as_bytes());
        let mut blob = w.key.id().to_vec();
        blob.extend_from_slice(&time.to_be_bytes());
        blob.extend_from_slice(&sig.to_bytes());
        let line = format!("\u{2014} w1.example {}", B64.encode(blob));
        assert_eq!(cosignature_lines(&format!("{line}\n"), &w, &cp), vec![line.clone()]);
        let other = Checkpoint { size: 6, ..cp.clone() };
        assert!(cosignature_lines(&line, &w, &other).is_empty());
        assert_eq!(parse_size_body("12\n"), Ok(12));
        assert!(parse_size_body("012\n").is_err());
        assert_eq!(add_checkpoint_body(0, &[], "o\n"), "old 0\n\no\n");
    }
}
