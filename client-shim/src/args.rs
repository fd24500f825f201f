//! gpg's command-line syntax, parsed with a table of the options qvault-gpg
//! implements: bundled short options (`-bsau KEY`), `--opt=val` and `--opt val`,
//! unambiguous long-option prefixes, `--`, and operands (`-` is stdin). As in
//! gpg, option parsing stops at the first operand.
//!
//! Low level (this module): words to options. High level: [`Invocation`] holds
//! validated values. Anything not in the tables is refused by name.
//!
//! Words are OS strings, as gpg takes them: file names (operands, `-o`,
//! `--receipt-out`) and key selectors (`-u`, `--default-key`) keep their bytes
//! whether or not they are UTF-8; option names and the values that are parsed
//! (`--status-fd`, `--digest-algo`, ...) must be UTF-8.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};

use crate::refused::{Reason, REFUSED, REFUSED_SHORT};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Sign,
    DetachSign,
    ClearSign,
    ListKeys,
    ListSecretKeys,
    Fingerprint,
    Export,
    Verify,
    Import,
    Version,
    Help,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Cmd(Command),
    Armor,
    NoArmor,
    Text,
    NoText,
    LocalUser,
    DefaultKey,
    Output,
    Yes,
    StatusFd,
    DigestAlgo,
    PersonalDigest,
    KeyidFormat,
    WithColons,
    Fingerprint,
    WithKeygrip,
    Quiet,
    Verbose,
    ReceiptOut,
    ProofOut,
    SpecialFilenames,
    LoggerFd,
    CommandFd,
    ExitOnStatusWriteError,
    SetFilename,
    InputSizeHint,
    Mime,
    Homedir,
    WithSecret,
    /// Accepted and without effect here.
    Ignore,
    /// Accepted with an argument that has no effect here.
    IgnoreValue,
}

struct Spec {
    long: &'static str,
    short: Option<char>,
    value: bool,
    act: Act,
}

const fn o(long: &'static str, short: Option<char>, value: bool, act: Act) -> Spec {
    Spec { long, short, value, act }
}

/// The options qvault-gpg implements.
const OPTIONS: &[Spec] = &[
    o("sign", Some('s'), false, Act::Cmd(Command::Sign)),
    o("detach-sign", Some('b'), false, Act::Cmd(Command::DetachSign)),
    o("detach-sig", None, false, Act::Cmd(Command::DetachSign)),
    o("clearsign", None, false, Act::Cmd(Command::ClearSign)),
    o("clear-sign", None, false, Act::Cmd(Command::ClearSign)),
    o("list-keys", Some('k'), false, Act::Cmd(Command::ListKeys)),
    o("list-public-keys", None, false, Act::Cmd(Command::ListKeys)),
    o("list-secret-keys", Some('K'), false, Act::Cmd(Command::ListSecretKeys)),
    o("fingerprint", None, false, Act::Fingerprint),
    o("export", None, false, Act::Cmd(Command::Export)),
    o("verify", None, false, Act::Cmd(Command::Verify)),
    o("import", None, false, Act::Cmd(Command::Import)),
    o("version", None, false, Act::Cmd(Command::Version)),
    o("help", Some('h'), false, Act::Cmd(Command::Help)),
    o("armor", Some('a'), false, Act::Armor),
    o("armour", None, false, Act::Armor),
    o("no-armor", None, false, Act::NoArmor),
    o("no-armour", None, false, Act::NoArmor),
    o("textmode", Some('t'), false, Act::Text),
    o("no-textmode", None, false, Act::NoText),
    o("local-user", Some('u'), true, Act::LocalUser),
    o("default-key", None, true, Act::DefaultKey),
    o("output", Some('o'), true, Act::Output),
    o("yes", None, false, Act::Yes),
    o("status-fd", None, true, Act::StatusFd),
    o("digest-algo", None, true, Act::DigestAlgo),
    o("personal-digest-preferences", None, true, Act::PersonalDigest),
    o("keyid-format", None, true, Act::KeyidFormat),
    o("with-colons", None, false, Act::WithColons),
    o("with-fingerprint", None, false, Act::Fingerprint),
    o("with-subkey-fingerprint", None, false, Act::Fingerprint),
    o("with-subkey-fingerprints", None, false, Act::Fingerprint),
    o("with-keygrip", None, false, Act::WithKeygrip),
    o("quiet", Some('q'), false, Act::Quiet),
    o("verbose", Some('v'), false, Act::Verbose),
    o("receipt-out", None, true, Act::ReceiptOut),
    o("proof-out", None, true, Act::ProofOut),
    // What GPGME sends (tests/vectors/gpgme-argv.txt).
    o("enable-special-filenames", None, false, Act::SpecialFilenames),
    o("logger-fd", None, true, Act::LoggerFd),
    o("command-fd", None, true, Act::CommandFd),
    o("exit-on-status-write-error", None, false, Act::ExitOnStatusWriteError),
    o("set-filename", None, true, Act::SetFilename),
    o("input-size-hint", None, true, Act::InputSizeHint),
    o("mimemode", None, false, Act::Mime),
    o("homedir", None, true, Act::Homedir),
    o("with-secret", None, false, Act::WithSecret),
    // No PROGRESS lines are written, which GPGME allows.
    o("enable-progress-filter", None, false, Act::Ignore),
    o("no-sk-comments", None, false, Act::Ignore),
    o("lc-ctype", None, true, Act::IgnoreValue),
    o("lc-messages", None, true, Act::IgnoreValue),
    o("batch", None, false, Act::Ignore),
    o("no-batch", None, false, Act::Ignore),
    o("no-tty", None, false, Act::Ignore),
    o("fixed-list-mode", None, false, Act::Ignore),
    o("no-verbose", None, false, Act::Ignore),
    o("no-auto-check-trustdb", None, false, Act::Ignore),
    o("use-agent", None, false, Act::Ignore),
    o("no-use-agent", None, false, Act::Ignore),
    o("no-greeting", None, false, Act::Ignore),
    o("no-permission-warning", None, false, Act::Ignore),
    o("no-secmem-warning", None, false, Act::Ignore),
    o("lock-never", None, false, Act::Ignore),
    o("lock-once", None, false, Act::Ignore),
    o("utf8-strings", None, false, Act::Ignore),
    o("no-utf8-strings", None, false, Act::Ignore),
    o("always-trust", None, false, Act::Ignore),
    o("no-comments", None, false, Act::Ignore),
    o("no-emit-version", None, false, Act::Ignore),
    o("emit-version", None, false, Act::Ignore),
    o("trust-model", None, true, Act::IgnoreValue),
    o("list-options", None, true, Act::IgnoreValue),
    o("verify-options", None, true, Act::IgnoreValue),
    o("charset", None, true, Act::IgnoreValue),
    o("display-charset", None, true, Act::IgnoreValue),
    o("pinentry-mode", None, true, Act::IgnoreValue),
    o("compress-algo", None, true, Act::IgnoreValue),
    o("compress-level", Some('z'), true, Act::IgnoreValue),
    o("cert-digest-algo", None, true, Act::IgnoreValue),
    o("comment", None, true, Act::IgnoreValue),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    Invalid(String),
    Refused { name: String, reason: Reason },
    Ambiguous { given: String, candidates: Vec<&'static str> },
    MissingValue(String),
    UnexpectedValue(String),
    BadValue { name: &'static str, value: String, why: &'static str },
    ConflictingCommands,
}

impl std::fmt::Display for ArgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArgError::Invalid(o) => write!(f, "invalid option \"{o}\""),
            ArgError::Refused { name, reason } => {
                write!(f, "option \"--{name}\" is refused by qvault-gpg: {}", reason.explain())
            }
            ArgError::Ambiguous { given, candidates } => {
                write!(f, "option \"{given}\" is ambiguous (--{})", candidates.join(", --"))
            }
            ArgError::MissingValue(o) => write!(f, "missing argument for option \"{o}\""),
            ArgError::UnexpectedValue(o) => write!(f, "option \"{o}\" does not expect an argument"),
            ArgError::BadValue { name, value, why } => {
                write!(f, "invalid value {value:?} for --{name}: {why}")
            }
            ArgError::ConflictingCommands => write!(f, "conflicting commands"),
        }
    }
}

impl std::error::Error for ArgError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyidFormat {
    #[default]
    None,
    Short,
    Long,
    ZeroXShort,
    ZeroXLong,
}

/// The validated, high-level view of a command line.
#[derive(Debug, Default)]
pub struct Invocation {
    pub command: Option<Command>,
    pub armor: bool,
    pub text: bool,
    pub local_users: Vec<OsString>,
    pub default_key: Option<OsString>,
    pub output: Option<OsString>,
    pub yes: bool,
    pub status_fd: Option<i32>,
    pub digest: Option<qubes_rpc::HashAlgo>,
    pub keyid_format: KeyidFormat,
    pub with_colons: bool,
    pub fingerprint: u8,
    pub with_keygrip: bool,
    pub quiet: bool,
    pub verbose: u8,
    pub receipt_out: Option<OsString>,
    /// `--proof-out FILE`: the receipt as a C2SP tlog-proof.
    pub proof_out: Option<OsString>,
    pub operands: Vec<OsString>,
    /// `--enable-special-filenames`: `-&N` names descriptor N.
    pub special_filenames: bool,
    /// `--logger-fd`: where gpg's messages go instead of stderr.
    pub logger_fd: Option<i32>,
    /// `--command-fd`: accepted and never read (qvault-gpg asks no questions).
    pub command_fd: Option<i32>,
    pub exit_on_status_write_error: bool,
    /// `--set-filename`: the name in an inline signature's literal packet.
    pub set_filename: Option<OsString>,
    /// `--mimemode`: a text signature over data in a literal packet of format `m`.
    pub mime: bool,
    /// `--homedir`: qvault-gpg's own data directory (as `QVAULT_GPG_HOME`).
    pub homedir: Option<OsString>,
    /// `--with-secret`: mark keys whose secret part the vault holds in `pub` listings.
    pub with_secret: bool,
    /// `--fingerprint` given as the command.
    fingerprint_cmd: bool,
}

fn lookup_long(name: &str) -> Result<Result<&'static Spec, (&'static str, bool, Reason)>, ArgError> {
    if let Some(s) = OPTIONS.iter().find(|s| s.long == name) {
        return Ok(Ok(s));
    }
    if let Some(r) = REFUSED.iter().find(|r| r.0 == name) {
        return Ok(Err(*r));
    }
    // Unambiguous prefixes, over implemented and refused names alike, so a prefix
    // of a refused option (`--home`) is refused too.
    let mut cands: Vec<&'static str> = OPTIONS.iter().map(|s| s.long).filter(|l| l.starts_with(name)).collect();
    cands.extend(REFUSED.iter().map(|r| r.0).filter(|l| l.starts_with(name)));
    cands.sort_unstable();
    cands.dedup();
    match cands.as_slice() {
        [] => Err(ArgError::Invalid(format!("--{name}"))),
        [one] => lookup_long(one),
        _ => {
            // Aliases of one option (e.g. --armor/--armour) are not ambiguous.
            let acts: Vec<Option<Act>> =
                cands.iter().map(|c| OPTIONS.iter().find(|s| s.long == *c).map(|s| s.act)).collect();
            if acts.iter().all(|a| a.is_some() && *a == acts[0]) {
                return lookup_long(cands[0]);
            }
            Err(ArgError::Ambiguous { given: format!("--{name}"), candidates: cands })
        }
    }
}

fn lookup_short(c: char) -> Result<&'static Spec, ArgError> {
    if let Some(s) = OPTIONS.iter().find(|s| s.short == Some(c)) {
        return Ok(s);
    }
    if let Some((_, long)) = REFUSED_SHORT.iter().find(|(s, _)| *s == c) {
        let reason = REFUSED.iter().find(|r| r.0 == *long).map_or(Reason::Unsupported, |r| r.2);
        return Err(ArgError::Refused { name: (*long).to_owned(), reason });
    }
    Err(ArgError::Invalid(format!("-{c}")))
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Invocation, ArgError> {
    let mut inv = Invocation::default();
    let mut commands = Vec::new();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let bytes = arg.as_bytes();
        if bytes == b"--" {
            inv.operands.extend(it.by_ref());
            break;
        }
        if let Some(long) = bytes.strip_prefix(b"--") {
            let (name, inline) = match long.iter().position(|&b| b == b'=') {
                Some(at) => (&long[..at], Some(OsStr::from_bytes(&long[at + 1..]).to_owned())),
                None => (long, None),
            };
            // Option names are ASCII: a name that is not UTF-8 is no option.
            let name = std::str::from_utf8(name).map_err(|_| ArgError::Invalid(format!("--{}", lossy(name))))?;
            let spec = match lookup_long(name)? {
                Ok(s) => s,
                Err((refused, _, reason)) => return Err(ArgError::Refused { name: refused.to_owned(), reason }),
            };
            let value = match (spec.value, inline) {
                (true, Some(v)) => Some(v),
                (true, None) => Some(it.next().ok_or_else(|| ArgError::MissingValue(format!("--{}", spec.long)))?),
                (false, Some(_)) => return Err(ArgError::UnexpectedValue(format!("--{}", spec.long))),
                (false, None) => None,
            };
            apply(&mut inv, &mut commands, spec, value)?;
        } else if bytes.len() > 1 && bytes[0] == b'-' {
            let mut i = 1;
            while i < bytes.len() {
                if !bytes[i].is_ascii() {
                    return Err(ArgError::Invalid(format!("-{}", lossy(&bytes[i..]))));
                }
                let spec = lookup_short(char::from(bytes[i]))?;
                let value = if spec.value {
                    let rest = &bytes[i + 1..];
                    i = bytes.len();
                    Some(if rest.is_empty() {
                        it.next().ok_or_else(|| ArgError::MissingValue(format!("-{}", spec.short.unwrap_or('?'))))?
                    } else {
                        OsString::from_vec(rest.to_vec())
                    })
                } else {
                    i += 1;
                    None
                };
                apply(&mut inv, &mut commands, spec, value)?;
            }
        } else {
            inv.operands.push(arg);
            inv.operands.extend(it.by_ref());
            break;
        }
    }
    inv.command = resolve_commands(&commands, inv.fingerprint_cmd)?;
    Ok(inv)
}

fn resolve_commands(cmds: &[Command], fingerprint: bool) -> Result<Option<Command>, ArgError> {
    let mut set: Vec<Command> = cmds.to_vec();
    set.sort_by_key(|c| *c as u8);
    set.dedup();
    // -s combines with -b (detached) and --clearsign, as in gpg.
    if set.len() > 1 && set.contains(&Command::Sign) {
        set.retain(|c| *c != Command::Sign);
    }
    match set.as_slice() {
        [] if fingerprint => Ok(Some(Command::Fingerprint)),
        [] => Ok(None),
        [c] => Ok(Some(*c)),
        _ => Err(ArgError::ConflictingCommands),
    }
}

/// A descriptor number as gpg takes it (`--status-fd 4`, `-&7`): decimal digits,
/// at most `i32::MAX`. Whether it is open is checked where it is used.
pub fn parse_fd(v: &str) -> Option<i32> {
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

fn fd_number(name: &'static str, v: &str) -> Result<i32, ArgError> {
    parse_fd(v).ok_or_else(|| ArgError::BadValue { name, value: v.to_owned(), why: "not a file descriptor number" })
}

fn apply(inv: &mut Invocation, cmds: &mut Vec<Command>, spec: &Spec, value: Option<OsString>) -> Result<(), ArgError> {
    let raw = value.unwrap_or_default();
    // The value as text, for the options whose values are parsed.
    let text = || {
        raw.to_str().map(str::to_owned).ok_or_else(|| ArgError::BadValue {
            name: spec.long,
            value: raw.to_string_lossy().into_owned(),
            why: "not valid UTF-8",
        })
    };
    match spec.act {
        Act::Cmd(c) => cmds.push(c),
        Act::Armor => inv.armor = true,
        Act::NoArmor => inv.armor = false,
        Act::Text => inv.text = true,
        Act::NoText => inv.text = false,
        Act::LocalUser => inv.local_users.push(raw),
        Act::DefaultKey => inv.default_key = Some(raw),
        Act::Output => inv.output = Some(raw),
        Act::Yes => inv.yes = true,
        Act::StatusFd => inv.status_fd = Some(fd_number(spec.long, &text()?)?),
        Act::LoggerFd => inv.logger_fd = Some(fd_number(spec.long, &text()?)?),
        Act::CommandFd => inv.command_fd = Some(fd_number(spec.long, &text()?)?),
        Act::SpecialFilenames => inv.special_filenames = true,
        Act::ExitOnStatusWriteError => inv.exit_on_status_write_error = true,
        Act::SetFilename => inv.set_filename = Some(raw),
        Act::InputSizeHint => {
            let v = text()?;
            // gpg takes a byte count, optionally with a k/m/g suffix; only a hint.
            let digits = v.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G']);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || v.len() > 24 {
                return Err(ArgError::BadValue { name: "input-size-hint", value: v, why: "not a size in bytes" });
            }
        }
        Act::Mime => {
            inv.mime = true;
            inv.text = true;
        }
        Act::Homedir => {
            if raw.is_empty() {
                return Err(ArgError::BadValue { name: "homedir", value: String::new(), why: "empty directory name" });
            }
            inv.homedir = Some(raw);
        }
        Act::WithSecret => inv.with_secret = true,
        Act::DigestAlgo => {
            let v = text()?;
            inv.digest = Some(qubes_rpc::HashAlgo::from_gpg_name(&v).ok_or(ArgError::BadValue {
                name: "digest-algo",
                value: v,
                why: "use SHA256, SHA384, SHA512 or SHA224",
            })?);
        }
        Act::PersonalDigest => {
            // The first listed algorithm we can use becomes the signing digest.
            if inv.digest.is_none() {
                inv.digest = text()?.split([' ', ',']).find_map(qubes_rpc::HashAlgo::from_gpg_name);
            }
        }
        Act::KeyidFormat => {
            let v = text()?;
            inv.keyid_format = match v.to_ascii_lowercase().as_str() {
                "none" => KeyidFormat::None,
                "short" => KeyidFormat::Short,
                "long" => KeyidFormat::Long,
                "0xshort" => KeyidFormat::ZeroXShort,
                "0xlong" => KeyidFormat::ZeroXLong,
                _ => {
                    return Err(ArgError::BadValue {
                        name: "keyid-format",
                        value: v,
                        why: "use none, short, long, 0xshort or 0xlong",
                    })
                }
            }
        }
        Act::WithColons => inv.with_colons = true,
        Act::Fingerprint => {
            if spec.long == "fingerprint" {
                inv.fingerprint_cmd = true;
            }
            inv.fingerprint = inv.fingerprint.saturating_add(1);
        }
        Act::WithKeygrip => inv.with_keygrip = true,
        Act::Quiet => inv.quiet = true,
        Act::Verbose => inv.verbose = inv.verbose.saturating_add(1),
        Act::ReceiptOut => inv.receipt_out = Some(raw),
        Act::ProofOut => inv.proof_out = Some(raw),
        Act::Ignore | Act::IgnoreValue => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Invocation, ArgError> {
        parse(args.iter().map(OsString::from))
    }

    fn raw(args: &[&[u8]]) -> Result<Invocation, ArgError> {
        parse(args.iter().map(|a| OsString::from_vec(a.to_vec())))
    }

    #[test]
    fn git_sign_form() {
        let inv = p(&["--status-fd=2", "-bsau", "ABCDEF0123456789"]).unwrap();
        assert_eq!(inv.command, Some(Command::DetachSign));
        assert!(inv.armor);
        assert_eq!(inv.local_users, vec!["ABCDEF0123456789"]);
        assert_eq!(inv.status_fd, Some(2));
    }

    #[test]
    fn git_verify_form() {
        let inv = p(&["--keyid-format=long", "--status-fd=1", "--verify", "/tmp/sig", "-"]).unwrap();
        assert_eq!(inv.command, Some(Command::Verify));
        assert_eq!(inv.operands, vec!["/tmp/sig", "-"]);
        assert_eq!(inv.keyid_format, KeyidFormat::Long);
    }

    #[test]
    fn values_inline_separate_and_bundled() {
        let inv = p(&["-uKEY", "--output", "out", "--digest-algo=sha512", "-s"]).unwrap();
        assert_eq!(inv.local_users, vec!["KEY"]);
        assert_eq!(inv.output, Some("out".into()));
        assert_eq!(inv.digest, Some(qubes_rpc::HashAlgo::Sha512));
        assert_eq!(inv.command, Some(Command::Sign));
    }

    #[test]
    fn prefixes() {
        assert_eq!(p(&["--clears"]).unwrap().command, Some(Command::ClearSign));
        assert_eq!(p(&["--detach"]).unwrap().command, Some(Command::DetachSign));
        assert!(p(&["--arm"]).unwrap().armor);
        assert!(matches!(p(&["--ver"]), Err(ArgError::Ambiguous { .. })));
        assert!(matches!(p(&["--keyr", "/x"]), Err(ArgError::Refused { .. })));
    }

    #[test]
    fn refusals_and_invalid() {
        assert!(
            matches!(p(&["--keyring", "/x", "-s"]), Err(ArgError::Refused { name, reason: Reason::Keyring }) if name == "keyring")
        );
        assert!(matches!(p(&["--export-secret-keys"]), Err(ArgError::Refused { reason: Reason::Secret, .. })));
        assert!(matches!(p(&["-e"]), Err(ArgError::Refused { .. })));
        assert_eq!(p(&["--frobnicate"]).unwrap_err(), ArgError::Invalid("--frobnicate".into()));
        assert_eq!(p(&["-Y"]).unwrap_err(), ArgError::Invalid("-Y".into()));
        assert_eq!(p(&["--armor=1"]).unwrap_err(), ArgError::UnexpectedValue("--armor".into()));
        assert_eq!(p(&["-u"]).unwrap_err(), ArgError::MissingValue("-u".into()));
        assert_eq!(p(&["--verify", "--export"]).unwrap_err(), ArgError::ConflictingCommands);
        assert!(matches!(p(&["--digest-algo", "SHA1"]), Err(ArgError::BadValue { .. })));
        assert!(matches!(p(&["--status-fd", "x"]), Err(ArgError::BadValue { .. })));
    }

    #[test]
    fn operands_stop_option_parsing() {
        let inv = p(&["--verify", "a.sig", "--homedir"]).unwrap();
        assert_eq!(inv.operands, vec!["a.sig", "--homedir"]);
        let inv = p(&["-s", "--", "-file"]).unwrap();
        assert_eq!(inv.operands, vec!["-file"]);
        let inv = p(&["-s", "-"]).unwrap();
        assert_eq!(inv.operands, vec!["-"]);
    }

    #[test]
    fn fingerprint_is_command_or_modifier() {
        assert_eq!(p(&["--fingerprint"]).unwrap().command, Some(Command::Fingerprint));
        let inv = p(&["--fingerprint", "-k"]).unwrap();
        assert_eq!(inv.command, Some(Command::ListKeys));
        assert_eq!(inv.fingerprint, 1);
    }

    #[test]
    fn file_names_and_selectors_keep_bytes_that_are_not_utf8() {
        let inv = raw(&[b"-bsau\xff", b"-o", b"out\xfe.sig", b"--receipt-out=r\xff", b"in\xff"]).unwrap();
        assert_eq!(inv.local_users, vec![OsString::from_vec(b"\xff".to_vec())]);
        assert_eq!(inv.output, Some(OsString::from_vec(b"out\xfe.sig".to_vec())));
        assert_eq!(inv.receipt_out, Some(OsString::from_vec(b"r\xff".to_vec())));
        assert_eq!(inv.operands, vec![OsString::from_vec(b"in\xff".to_vec())]);
        let inv = raw(&[b"--local-user", b"\xff\xfe", b"--default-key=\x80", b"-s"]).unwrap();
        assert_eq!(inv.local_users, vec![OsString::from_vec(b"\xff\xfe".to_vec())]);
        assert_eq!(inv.default_key, Some(OsString::from_vec(b"\x80".to_vec())));
    }

    #[test]
    fn parsed_values_and_option_names_must_be_utf8() {
        assert!(matches!(raw(&[b"--status-fd=\xff"]), Err(ArgError::BadValue { name: "status-fd", .. })));
        assert!(matches!(raw(&[b"--digest-algo", b"SHA\xff"]), Err(ArgError::BadValue { .. })));
        assert_eq!(raw(&[b"--arm\xff"]).unwrap_err(), ArgError::Invalid("--arm\u{fffd}".into()));
        assert_eq!(raw(&[b"-a\xff"]).unwrap_err(), ArgError::Invalid("-\u{fffd}".into()));
    }

    #[test]
    fn gpgme_sign_form() {
        // As recorded in tests/vectors/gpgme-argv.txt.
        let inv = p(&[
            "--enable-special-filenames",
            "--batch",
            "--no-sk-comments",
            "--lc-ctype",
            "C.UTF-8",
            "--homedir",
            "/h",
            "--status-fd",
            "4",
            "--no-tty",
            "--charset",
            "utf8",
            "--enable-progress-filter",
            "--exit-on-status-write-error",
            "--logger-fd",
            "6",
            "--sign",
            "--detach",
            "--armor",
            "-u",
            "B0919A21A0D91034",
            "--",
            "-&7",
        ])
        .unwrap();
        assert_eq!(inv.command, Some(Command::DetachSign));
        assert!(inv.special_filenames && inv.exit_on_status_write_error && inv.armor);
        assert_eq!((inv.status_fd, inv.logger_fd), (Some(4), Some(6)));
        assert_eq!(inv.homedir, Some("/h".into()));
        assert_eq!(inv.operands, vec!["-&7"]);
    }

    #[test]
    fn descriptor_numbers_are_validated() {
        for bad in ["-1", "", "x", "4x", "99999999999", "+4", " 4"] {
            assert!(matches!(p(&["--logger-fd", bad]), Err(ArgError::BadValue { name: "logger-fd", .. })), "{bad}");
            assert!(matches!(p(&["--command-fd", bad]), Err(ArgError::BadValue { .. })), "{bad}");
        }
        assert_eq!(parse_fd("2147483647"), Some(i32::MAX));
        assert_eq!(parse_fd("2147483648"), None);
        assert!(matches!(p(&["--input-size-hint", "12x"]), Err(ArgError::BadValue { .. })));
        assert!(p(&["--input-size-hint", "12k"]).is_ok());
        assert!(matches!(p(&["--homedir="]), Err(ArgError::BadValue { .. })));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(args in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..12), 0..8)) {
            let _ = parse(args.into_iter().map(OsString::from_vec));
        }
    }
}
