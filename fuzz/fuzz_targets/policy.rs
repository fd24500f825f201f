//! The vault's policy file (`policy.toml`) as `qvault::policy::Policy::parse`
//! reads it (the input as lossy UTF-8). The file is written by the vault's
//! owner, but `qvault policy check` and the daemon must refuse anything
//! malformed with a message naming a line, never crash or fall back to allowing.
//!
//! A policy that parses is then asked for decisions: a few callers, two keys,
//! every operation. Its caller and key patterns are also matched by `glob`
//! against those names and checked against a plain dynamic-programming
//! statement of `*`/`?` matching.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qvault::policy::{glob, Confirm, KeyIdentity, Operation, Policy};

const CALLERS: [&str; 5] = ["work", "build-1", "sys-net", "a", "disp1234"];
const FPR: &str = "2465AF1C18D58E8A15BA24B2692007C5B98425A6";
const SUB: &str = "CC8E1295DC3A89425628E29FC2D4B439DCDF9635";

fn glob_reference(p: &[char], t: &[char]) -> bool {
    // m[i][j]: p[..i] matches t[..j].
    let mut m = vec![vec![false; t.len() + 1]; p.len() + 1];
    m[0][0] = true;
    for i in 1..=p.len() {
        for j in 0..=t.len() {
            m[i][j] = match p[i - 1] {
                '*' => m[i - 1][j] || (j > 0 && m[i][j - 1]),
                '?' => j > 0 && m[i - 1][j - 1],
                c => j > 0 && t[j - 1] == c && m[i - 1][j - 1],
            };
        }
    }
    m[p.len()][t.len()]
}

fn check_glob(pattern: &str, text: &str) {
    // Bound the reference's quadratic table.
    if pattern.len() > 256 {
        return;
    }
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    assert_eq!(glob(pattern, text), glob_reference(&p, &t), "glob({pattern:?}, {text:?})");
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let policy = match Policy::parse(&text) {
        Ok(p) => p,
        Err(e) => {
            assert!(e.line >= 1, "policy error lines are 1-based: {e}");
            let _ = e.to_string();
            return;
        }
    };
    let keys = [
        KeyIdentity { fingerprints: vec![FPR.into(), SUB.into()], userids: vec!["Fuzz Seed <seed@example.org>"] },
        KeyIdentity { fingerprints: vec!["0".repeat(64)], userids: vec!["Ünïcode Ñame <x@debian.org>", "bare@example.org"] },
    ];
    for caller in CALLERS {
        for key in &keys {
            for (_, op) in Operation::ALL {
                let rule = policy.decide(caller, key, op);
                let allowed = policy.allows_key(caller, key, op);
                assert_eq!(allowed, rule.is_some_and(|r| r.confirm != Confirm::Deny));
                if let Some(r) = rule {
                    assert!(r.operations.contains(&op));
                }
            }
        }
    }
    for rule in &policy.rules {
        for c in &rule.callers {
            for caller in CALLERS {
                check_glob(c, caller);
            }
        }
        for k in &rule.keys {
            check_glob(&k.to_lowercase(), "fuzz seed <seed@example.org>");
        }
    }
});
