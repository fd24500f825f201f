//! The vault's policy (`$QVAULT_HOME/policy.toml`): which calling qube may do
//! what with which key, with size and rate limits and a confirmation mode.
//! Rules are tried in order; the first rule whose caller, key and operation all
//! match decides. What no rule allows is denied. A policy that does not parse or
//! validate is an error: the vault never falls back to allowing.

use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// Operations a rule can allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    List,
    ExportPublic,
    SignDetached,
    SignCleartext,
    SignInline,
}

impl Operation {
    pub const ALL: [(&'static str, Operation); 5] = [
        ("list", Operation::List),
        ("export", Operation::ExportPublic),
        ("sign-detached", Operation::SignDetached),
        ("sign-cleartext", Operation::SignCleartext),
        ("sign-inline", Operation::SignInline),
    ];

    pub fn name(self) -> &'static str {
        Operation::ALL.iter().find(|(_, o)| *o == self).map_or("?", |(n, _)| n)
    }

    pub fn is_sign(self) -> bool {
        matches!(self, Operation::SignDetached | Operation::SignCleartext | Operation::SignInline)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    Allow,
    Deny,
    /// Ask; after an approval, the same caller and key are allowed without
    /// asking for `auto_accept` (as QUBES_GPG_AUTOACCEPT does in split-gpg).
    Ask {
        auto_accept: Option<Duration>,
    },
}

#[derive(Debug, Clone)]
pub struct Rule {
    /// 1-based line of the rule in the file, for messages.
    pub line: usize,
    /// What approvals and remembered answers are kept under: the rule's index
    /// and the SHA-256 of its canonical form, so an edited, moved or other rule
    /// never inherits an answer given under this one.
    pub id: String,
    pub callers: Vec<String>,
    pub keys: Vec<String>,
    pub operations: Vec<Operation>,
    pub confirm: Confirm,
    pub max_data_bytes: Option<u64>,
    pub rate_per_minute: Option<u32>,
    /// The caller may hash the data itself and send only the hash state (fast
    /// for large files; the vault then signs a digest it cannot check against
    /// the data, and logs that the client hashed it). Off unless set.
    pub client_hash: bool,
    /// The vault puts a summary of what it signed (package, version, commit
    /// subject, ...) in the log and its question. On unless set to false, for
    /// qubes whose content is private.
    pub summaries: bool,
}

#[derive(Debug, Clone)]
pub struct ConfirmCommand {
    pub argv: Vec<String>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub confirm: ConfirmCommand,
}

/// A policy error with the line it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct PolicyError {
    pub line: usize,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: Spanned<u32>,
    #[serde(default, rename = "rule")]
    rules: Vec<Spanned<RawRule>>,
    confirm: Option<Spanned<RawConfirm>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    caller: Spanned<OneOrMany>,
    keys: Spanned<OneOrMany>,
    operations: Spanned<Vec<Spanned<String>>>,
    confirm: Spanned<String>,
    auto_accept_seconds: Option<Spanned<u64>>,
    max_data_bytes: Option<Spanned<u64>>,
    rate_per_minute: Option<Spanned<u32>>,
    client_hash: Option<Spanned<bool>>,
    summaries: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfirm {
    command: Spanned<Vec<String>>,
    timeout_seconds: Option<Spanned<u64>>,
}

/// The question shown when no `[confirm]` section says otherwise.
pub fn default_confirm() -> ConfirmCommand {
    ConfirmCommand {
        argv: vec![
            "zenity".into(),
            "--question".into(),
            "--title=qvault".into(),
            "--no-markup".into(),
            "--text={message}".into(),
        ],
        timeout: Duration::from_secs(60),
    }
}

fn line_of(text: &str, span: Range<usize>) -> usize {
    text[..span.start.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

const MAX_POLICY: usize = 1 << 20;
const MAX_RULES: usize = 1000;

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        if text.len() > MAX_POLICY {
            return Err(PolicyError { line: 1, message: format!("the policy is larger than {MAX_POLICY} bytes") });
        }
        let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError {
            line: e.span().map_or(1, |s| line_of(text, s)),
            message: e.message().to_owned(),
        })?;
        let err = |span: Range<usize>, message: String| PolicyError { line: line_of(text, span), message };
        if *raw.version.get_ref() != 1 {
            return Err(err(
                raw.version.span(),
                format!("unsupported policy version {} (this vault reads 1)", raw.version.get_ref()),
            ));
        }
        if raw.rules.len() > MAX_RULES {
            return Err(err(0..0, format!("more than {MAX_RULES} rules")));
        }
        let mut rules = Vec::new();
        for r in raw.rules {
            let line = line_of(text, r.span());
            let r = r.into_inner();
            let callers_span = r.caller.span();
            let callers = r.caller.into_inner().into_vec();
            if callers.is_empty() {
                return Err(err(callers_span, "`caller` lists no qube".into()));
            }
            for c in &callers {
                let check = c.replace(['*', '?'], "a");
                if qubes_rpc::QubeName::parse(&check).is_err() && c != "*" {
                    return Err(err(callers_span.clone(), format!("{c:?} is not a qube name or pattern")));
                }
            }
            let keys_span = r.keys.span();
            let keys = r.keys.into_inner().into_vec();
            if keys.is_empty() || keys.iter().any(|k| k.trim().is_empty() || k.chars().any(char::is_control)) {
                return Err(err(keys_span, "`keys` must list fingerprints or user-ID patterns (\"*\" for all)".into()));
            }
            let mut operations = Vec::new();
            for op in r.operations.into_inner() {
                let found = Operation::ALL.iter().find(|(n, _)| *n == op.get_ref().as_str());
                match found {
                    Some((_, o)) => operations.push(*o),
                    None => {
                        let names: Vec<&str> = Operation::ALL.iter().map(|(n, _)| *n).collect();
                        return Err(err(
                            op.span(),
                            format!("unknown operation {:?} (known: {})", op.get_ref(), names.join(", ")),
                        ));
                    }
                }
            }
            let auto = r.auto_accept_seconds.as_ref().map(|s| *s.get_ref());
            let confirm = match r.confirm.get_ref().as_str() {
                "allow" => Confirm::Allow,
                "deny" => Confirm::Deny,
                "ask" => Confirm::Ask { auto_accept: auto.filter(|&s| s > 0).map(Duration::from_secs) },
                other => {
                    return Err(err(r.confirm.span(), format!("confirm must be allow, deny or ask, not {other:?}")));
                }
            };
            if let (Some(a), false) = (&r.auto_accept_seconds, matches!(confirm, Confirm::Ask { .. })) {
                return Err(err(a.span(), "auto_accept_seconds only applies to confirm = \"ask\"".into()));
            }
            if let Some(a) = &r.auto_accept_seconds {
                if *a.get_ref() > 86400 {
                    return Err(err(a.span(), "auto_accept_seconds is at most 86400 (one day)".into()));
                }
            }
            if let Some(m) = &r.rate_per_minute {
                if *m.get_ref() == 0 {
                    return Err(err(
                        m.span(),
                        "rate_per_minute must be at least 1 (use confirm = \"deny\" to forbid)".into(),
                    ));
                }
            }
            if let Some(c) = &r.client_hash {
                if *c.get_ref() && !operations.iter().any(|o| o.is_sign()) {
                    return Err(err(c.span(), "client_hash only applies to rules with a sign operation".into()));
                }
            }
            let max_data_bytes = r.max_data_bytes.map(Spanned::into_inner);
            let rate_per_minute = r.rate_per_minute.map(Spanned::into_inner);
            let client_hash = r.client_hash.is_some_and(|c| *c.get_ref());
            let summaries = r.summaries.as_ref().is_none_or(|c| *c.get_ref());
            let id = rule_id(
                rules.len(),
                &callers,
                &keys,
                &operations,
                confirm,
                (max_data_bytes, rate_per_minute, client_hash),
            );
            rules.push(Rule {
                line,
                id,
                callers,
                keys,
                operations,
                confirm,
                max_data_bytes,
                rate_per_minute,
                client_hash,
                summaries,
            });
        }
        let confirm = match raw.confirm {
            None => default_confirm(),
            Some(c) => {
                let c = c.into_inner();
                let span = c.command.span();
                let argv = c.command.into_inner();
                if argv.is_empty() || argv[0].trim().is_empty() {
                    return Err(err(span, "confirm.command names no program".into()));
                }
                let timeout = c.timeout_seconds.map_or(60, Spanned::into_inner);
                if timeout == 0 || timeout > 3600 {
                    return Err(err(span, "confirm.timeout_seconds must be 1..=3600".into()));
                }
                ConfirmCommand { argv, timeout: Duration::from_secs(timeout) }
            }
        };
        Ok(Policy { rules, confirm })
    }

    /// The rule deciding `op` by `caller` on a key with these identities, if any.
    pub fn decide(&self, caller: &str, key: &KeyIdentity<'_>, op: Operation) -> Option<&Rule> {
        self.rules.iter().find(|r| {
            r.operations.contains(&op)
                && r.callers.iter().any(|c| glob(c, caller))
                && r.keys.iter().any(|k| key_matches(k, key))
        })
    }

    /// Is any key operation allowed for this caller at all (for listings)?
    pub fn allows_key(&self, caller: &str, key: &KeyIdentity<'_>, op: Operation) -> bool {
        self.decide(caller, key, op).is_some_and(|r| r.confirm != Confirm::Deny)
    }

    /// May this caller know the key exists: is some operation on it not denied?
    /// A key the caller may not see is, to that caller, a key the vault lacks.
    pub fn visible(&self, caller: &str, key: &KeyIdentity<'_>) -> bool {
        Operation::ALL.iter().any(|(_, op)| self.allows_key(caller, key, *op))
    }
}

/// `<index>:<sha256 hex>` of a rule's parsed content (not its text's layout:
/// comments and spacing do not matter; what the rule says does).
fn rule_id(
    index: usize,
    callers: &[String],
    keys: &[String],
    operations: &[Operation],
    confirm: Confirm,
    (max_data_bytes, rate_per_minute, client_hash): (Option<u64>, Option<u32>, bool),
) -> String {
    use sha2::{Digest, Sha256};
    let confirm = match confirm {
        Confirm::Allow => serde_json::json!("allow"),
        Confirm::Deny => serde_json::json!("deny"),
        Confirm::Ask { auto_accept } => serde_json::json!({ "ask": auto_accept.map(|d| d.as_secs()) }),
    };
    let canonical = serde_json::json!({
        "caller": callers,
        "keys": keys,
        "operations": operations.iter().map(|o| o.name()).collect::<Vec<_>>(),
        "confirm": confirm,
        "max_data_bytes": max_data_bytes,
        "rate_per_minute": rate_per_minute,
        "client_hash": client_hash,
    });
    format!("{index}:{}", hex::encode(Sha256::digest(canonical.to_string().as_bytes())))
}

/// What policy matches keys against.
pub struct KeyIdentity<'a> {
    /// Upper-case hex fingerprints of the primary key and its subkeys.
    pub fingerprints: Vec<String>,
    pub userids: Vec<&'a str>,
}

fn key_matches(pattern: &str, key: &KeyIdentity<'_>) -> bool {
    let p = pattern.trim();
    let hex = p.strip_prefix("0x").unwrap_or(p);
    if matches!(hex.len(), 40 | 64) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return key.fingerprints.iter().any(|f| f.eq_ignore_ascii_case(hex));
    }
    // A pattern matches the whole user ID or just its email address, so
    // "*@debian.org" matches "Name <name@debian.org>".
    let p = p.to_lowercase();
    key.userids.iter().any(|u| {
        let u = u.to_lowercase();
        glob(&p, &u) || crate::select::email_of(&u).is_some_and(|e| glob(&p, e))
    })
}

/// Shell-style `*` and `?` matching, iterative (no exponential backtracking).
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The policy `qvault init` writes.
pub fn default_policy_text(confirm: bool) -> String {
    let (mode, auto) = if confirm { ("ask", "auto_accept_seconds = 300\n") } else { ("allow", "") };
    format!(
        r#"# qvault policy: who may do what with which key. Checked on every call:
# the vault looks at this file (its size, times and inode) at the start of each
# call and re-reads it when it changed, so an edit applies from the next call
# on, with no restart; each valid new version is recorded in the log ("policy
# changed"). Rules are tried in order; the first rule whose caller, key and
# operation all match decides. Anything no rule allows is denied, and a key a
# qube may do nothing with is, to that qube, a key the vault does not hold.
# `qvault policy check` validates this file. While it does not validate (or
# cannot be read), the vault refuses every call, saying why, until it is fixed;
# `qvault serve` does not start with it.
version = 1

# Every qube that dom0's qrexec policy lets through may list keys, export
# public keys and sign with every key.
[[rule]]
# The calling qube's name as dom0 reports it: exact, or a pattern with * and ?.
caller = "*"
# Fingerprints, or user-ID patterns such as "*@debian.org"; "*" is every key.
keys = ["*"]
# list, export, sign-detached, sign-cleartext, sign-inline
operations = ["list", "export", "sign-detached", "sign-cleartext", "sign-inline"]
# allow, deny, or ask (a question in the vault before each signature).
confirm = "{mode}"
# With ask: after an approval, the same qube and key sign under this same rule
# without asking for this many seconds (QUBES_GPG_AUTOACCEPT in split-gpg); a
# "no" is remembered as long, so a tool retrying in a loop is not asked again.
# Editing the rule forgets both.
{auto}# Optional limits:
# max_data_bytes = 1073741824
# rate_per_minute = 120
# Let the client hash the data and send only the hash state (SHA-256): much
# faster for large files, but the vault then signs a digest it cannot check
# against the data; the log records "hashed_by": "client". Off by default.
# client_hash = true
# The vault logs and shows a short summary of what it signs when it recognises
# the data (a Debian upload's package, version and files; a git commit's tree,
# author and subject; an apt Release file's suite and date). Turn it off for
# qubes whose content is private:
# summaries = false

# Examples:
# [[rule]]
# caller = "build-*"
# keys = ["*@example.org"]
# operations = ["sign-detached"]
# confirm = "allow"
# rate_per_minute = 30
#
# The question asked in the vault; {{message}} is replaced by the details, which
# are also in the environment (QVAULT_CALLER, QVAULT_KEY, QVAULT_OPERATION,
# QVAULT_DATA_SIZE, QVAULT_DATA_DIGEST, QVAULT_HASHED_BY, and QVAULT_SUMMARY when
# the vault recognised the data). Exit status 0 approves.
# Under `qvault serve --ask-socket` (the packaged unit) the desktop helper,
# `qvault desktop`, asks instead of this command; timeout_seconds still applies.
# [confirm]
# command = ["zenity", "--question", "--title=qvault", "--no-markup", "--text={{message}}"]
# timeout_seconds = 60
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(uid: &'a str) -> KeyIdentity<'a> {
        KeyIdentity { fingerprints: vec!["A".repeat(40), "B".repeat(40)], userids: vec![uid] }
    }

    #[test]
    fn default_policies_parse() {
        let p = Policy::parse(&default_policy_text(true)).unwrap();
        assert_eq!(p.rules.len(), 1);
        assert_eq!(p.rules[0].confirm, Confirm::Ask { auto_accept: Some(Duration::from_secs(300)) });
        let p = Policy::parse(&default_policy_text(false)).unwrap();
        assert_eq!(p.rules[0].confirm, Confirm::Allow);
        assert!(p.decide("work", &key("a <a@x>"), Operation::SignInline).is_some());
    }

    #[test]
    fn first_matching_rule_decides_and_unlisted_is_denied() {
        let p = Policy::parse(
            r#"version = 1
[[rule]]
caller = ["dev-*", "work"]
keys = ["*@debian.org"]
operations = ["sign-detached"]
confirm = "allow"
rate_per_minute = 5
client_hash = true
[[rule]]
caller = "work"
keys = "*"
operations = ["list", "sign-detached"]
confirm = "deny"
[[rule]]
caller = "*"
keys = ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]
operations = ["sign-cleartext"]
confirm = "ask"
max_data_bytes = 10
"#,
        )
        .unwrap();
        let deb = key("Dev <dev@debian.org>");
        let other = key("Other <o@example.org>");
        assert_eq!(p.decide("dev-1", &deb, Operation::SignDetached).unwrap().line, 2);
        assert!(p.decide("dev-1", &deb, Operation::SignDetached).unwrap().client_hash);
        assert!(!p.decide("anything", &other, Operation::SignCleartext).unwrap().client_hash, "off unless set");
        assert_eq!(p.decide("work", &other, Operation::SignDetached).unwrap().confirm, Confirm::Deny);
        assert!(p.decide("dev-1", &other, Operation::SignDetached).is_none());
        assert!(p.decide("untrusted", &deb, Operation::SignDetached).is_none());
        assert!(p.decide("dev-1", &deb, Operation::SignInline).is_none());
        let r = p.decide("anything", &other, Operation::SignCleartext).unwrap();
        assert_eq!((r.max_data_bytes, r.confirm), (Some(10), Confirm::Ask { auto_accept: None }));
        assert!(!p.allows_key("work", &other, Operation::List));
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("version = 2\n", 1, "unsupported policy version"),
            ("version = 1\n[[rule]]\ncaller = \"*\"\nkeys = \"*\"\noperations = [\"sign\"]\nconfirm = \"allow\"\n", 5, "unknown operation \"sign\""),
            ("version = 1\n[[rule]]\ncaller = \"*\"\nkeys = \"*\"\noperations = []\nconfirm = \"maybe\"\n", 6, "confirm must be"),
            ("version = 1\n\n[[rule]]\ncaller = \"a b\"\nkeys = \"*\"\noperations = []\nconfirm = \"allow\"\n", 4, "not a qube name"),
            ("version = 1\n[[rule]]\ncaller = \"*\"\nkeys = \"*\"\noperations = []\nconfirm = \"allow\"\nauto_accept_seconds = 5\n", 7, "only applies"),
            ("version = 1\n[[rule]]\ncaller = \"*\"\nkeys = \"*\"\nopperations = []\nconfirm = \"allow\"\n", 5, "unknown field"),
            ("version = 1\n[[rule]\n", 2, ""),
            ("version = 1\n[[rule]]\ncaller = \"*\"\nkeys = \"*\"\noperations = [\"list\"]\nconfirm = \"allow\"\nclient_hash = true\n", 7, "client_hash only applies"),
            ("", 1, "missing field `version`"),
        ];
        for (text, line, msg) in cases {
            let e = Policy::parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(msg), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_rule_id_changes_with_what_the_rule_says_not_how_it_is_written() {
        let one = "version = 1\n[[rule]]\ncaller = \"*\"\nkeys = \"*\"\noperations = [\"sign-detached\"]\nconfirm = \"ask\"\nauto_accept_seconds = 60\n";
        let two = format!("{one}[[rule]]\ncaller = \"*\"\nkeys = \"*\"\noperations = [\"sign-cleartext\"]\nconfirm = \"ask\"\nauto_accept_seconds = 60\n");
        let ids = |t: &str| Policy::parse(t).unwrap().rules.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        let base = ids(&two);
        assert_ne!(base[0], base[1]);
        assert!(base[0].starts_with("0:") && base[0].len() == 2 + 64, "{}", base[0]);
        // Comments, spacing and the confirm command do not change it.
        let spaced = format!("# note\n\n{}\n[confirm]\ncommand = [\"true\"]\n", two.replace(" = ", "="));
        assert_eq!(ids(&spaced), base);
        // Any setting of the rule does; so does its place.
        for edit in [
            two.replacen("auto_accept_seconds = 60", "auto_accept_seconds = 61", 1),
            two.replacen("keys = \"*\"", "keys = \"*@x\"", 1),
            two.replacen("caller = \"*\"", "caller = \"w*\"", 1),
            two.replacen("sign-detached", "sign-inline", 1),
            two.replacen("confirm = \"ask\"\n", "confirm = \"ask\"\nmax_data_bytes = 5\n", 1),
        ] {
            assert_ne!(ids(&edit)[0..1], base[0..1], "{edit}");
        }
        let moved = format!(
            "version = 1\n[[rule]]\ncaller = \"x\"\nkeys = \"*\"\noperations = []\nconfirm = \"deny\"\n{}",
            &one[12..]
        );
        assert_ne!(ids(&moved)[1], base[0]);
    }

    #[test]
    fn a_key_is_visible_when_some_operation_is_not_denied() {
        let p = Policy::parse(
            r#"version = 1
[[rule]]
caller = "shown"
keys = "*"
operations = ["export"]
confirm = "allow"
[[rule]]
caller = "asked"
keys = "*"
operations = ["sign-inline"]
confirm = "ask"
[[rule]]
caller = ["denied", "shown"]
keys = "*"
operations = ["list", "export", "sign-detached", "sign-cleartext", "sign-inline"]
confirm = "deny"
"#,
        )
        .unwrap();
        let k = key("a <a@x>");
        assert!(p.visible("shown", &k));
        assert!(p.visible("asked", &k));
        assert!(!p.visible("denied", &k));
        assert!(!p.visible("unlisted", &k));
    }

    #[test]
    fn globs() {
        assert!(glob("*", ""));
        assert!(glob("dev-*", "dev-1"));
        assert!(!glob("dev-*", "xdev-1"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("*@debian.org", "x <x@debian.org>"));
        assert!(glob("*@debian.org>", "x <x@debian.org>"));
        assert!(!glob("*a*a*a*a*a*a*b", &"a".repeat(200)));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,400}") {
            let _ = Policy::parse(&s);
        }
    }
}
