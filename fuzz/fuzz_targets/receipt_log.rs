//! The attestation formats a verifier reads from places it does not trust: a
//! receipt handed over with a signature, a verifier key string, a checkpoint
//! note, a log entry, and a whole log export (`qvault-log v1`).
//!
//! Every input is used as each of them. Signatures are checked against one
//! fixed log key: Ed25519 seed `[7; 32]`, name `fuzz.invalid/log`. The seed
//! corpus has real receipts and exports re-signed with that key (see
//! `fuzz/README.md`), so the fuzzer starts past the signature checks.
#![no_main]

use std::sync::LazyLock;

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use qvault_attest::audit::verify_log;
use qvault_attest::entry::EntryError;
use qvault_attest::{Checkpoint, Entry, Receipt, Verifier};

const LOG_NAME: &str = "fuzz.invalid/log";

static LOG_KEY: LazyLock<Verifier> = LazyLock::new(|| Verifier {
    name: LOG_NAME.to_owned(),
    key: SigningKey::from_bytes(&[7; 32]).verifying_key(),
});

fuzz_target!(|data: &[u8]| {
    let key = &*LOG_KEY;
    let text = String::from_utf8_lossy(data);

    if let Ok(r) = Receipt::parse(data) {
        match r.verify(key) {
            Ok(v) => {
                // A verified receipt's proof of consistency with its own
                // checkpoint is trivially true; with an empty tree, too.
                let _ = r.consistent_with(&v.checkpoint, &v.checkpoint);
                let _ = r.encode();
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }

    if let Ok(v) = Verifier::parse(&text) {
        // What parses must encode back to an equivalent key.
        let again = Verifier::parse(&v.encode()).expect("an encoded verifier key must parse");
        assert_eq!(again, v);
    }

    if let Ok(cp) = Checkpoint::parse_text(&text) {
        let _ = cp.text();
    }
    let _ = Checkpoint::open(&text, key);

    // Parse at position 0, then, if the entry claims another index, there: the
    // field checks come after the index check.
    match Entry::parse(data, 0) {
        Err(EntryError::Index { claimed, .. }) => {
            if let Ok(e) = Entry::parse(data, claimed) {
                let _ = (e.kind(), e.key_fact(), e.encode());
            }
        }
        Ok(e) => {
            let _ = (e.kind(), e.key_fact(), e.encode());
        }
        Err(_) => {}
    }

    let report = verify_log(data, key, &[], true);
    assert_eq!(report.ok, report.problems.is_empty());
});
