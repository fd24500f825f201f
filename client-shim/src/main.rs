//! `qvault-gpg`: a gpg-compatible command line for client qubes. It signs by
//! asking the vault over qrexec, verifies locally, and lists and exports the
//! vault's public keys, so git, debsign, dpkg-buildpackage and rpmsign work
//! unchanged.
//!
//! It must never hold secret key material, and never pass an option string to the
//! vault: requests are typed values. Errors print as `gpg: ...` with gpg's exit
//! codes (0 success, 1 bad signature, 2 error).
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use openpgp::parse::Parse as _;
use qubes_rpc::{Op, ServerFrame, SignMode};
use sequoia_openpgp as openpgp;

use qvault_gpg::args::{self, Command, Invocation};
use qvault_gpg::colons::{self, Trust};
use qvault_gpg::error::{ShimError, Verdict};
use qvault_gpg::status::{self, StatusOut};
use qvault_gpg::{fds, keyring, output, sign, vault, verify};

fn main() -> ExitCode {
    // OS strings: file names and key selectors need not be UTF-8.
    let inv = args::parse(std::env::args_os().skip(1));
    let command = inv.as_ref().ok().and_then(|i| i.command);
    let result = inv.map_err(ShimError::from).and_then(|inv| {
        fds::setup(&inv)?;
        let mut status = StatusOut::open(inv.status_fd, inv.exit_on_status_write_error)
            .map_err(ShimError::io("can't open status fd"))?;
        run(&inv, &mut status)
    });
    ExitCode::from(exit_code(result, command))
}

/// The one place where a verdict or an error becomes gpg's exit code (0
/// success, 1 a bad signature, 2 anything else) and an error its message.
fn exit_code(result: Result<Verdict, ShimError>, command: Option<Command>) -> u8 {
    match result {
        Ok(Verdict::Good) => 0,
        Ok(Verdict::Bad) => 1,
        Ok(Verdict::Failed) => 2,
        Err(e) => {
            match &e {
                ShimError::Vault(..) | ShimError::Unreachable(..) | ShimError::Protocol(..)
                    if matches!(command, Some(Command::Sign | Command::DetachSign | Command::ClearSign)) =>
                {
                    eprintln!("gpg: signing failed: {e}");
                }
                _ => eprintln!("gpg: {e}"),
            }
            2
        }
    }
}

fn run(inv: &Invocation, status: &mut StatusOut) -> Result<Verdict, ShimError> {
    let Some(cmd) = inv.command else {
        // gpg's default action on a signed message named on the command line
        // (GPGME verifies a normal or cleartext signature so): verify it and
        // write the signed data out.
        if !inv.operands.is_empty() {
            return verify::verify(inv, true, status);
        }
        return Err(ShimError::Usage(
            "no command given (qvault-gpg implements -s, -b, --clearsign, --verify, -k, -K, --export, --import)".into(),
        ));
    };
    match cmd {
        Command::Sign => sign::sign(inv, SignMode::Inline, status).map(|()| Verdict::Good),
        Command::DetachSign => sign::sign(inv, SignMode::Detached, status).map(|()| Verdict::Good),
        Command::ClearSign => sign::sign(inv, SignMode::Cleartext, status).map(|()| Verdict::Good),
        Command::Verify => verify::verify(inv, false, status),
        Command::ListKeys | Command::Fingerprint => list(inv, false),
        Command::ListSecretKeys => list(inv, true),
        Command::Export => export(inv, status),
        Command::Import => import(inv, status),
        Command::Version => {
            // A reader that stops early (`--version | head -n 1`) is not an error.
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "gpg (GnuPG) 2.2.40\nqvault-gpg {} (signs in a Qubes vault over qrexec)\nHome: {}\n\
                 Supported algorithms:\nPubkey: RSA, EDDSA\nHash: SHA256, SHA384, SHA512, SHA224",
                env!("CARGO_PKG_VERSION"),
                keyring::data_dir().display()
            );
            Ok(Verdict::Good)
        }
        Command::Help => {
            println!("Usage: qvault-gpg [options] [files]\nSign in a Qubes vault; verify locally.\n");
            println!("Commands: -s, -b/--detach-sign, --clearsign, --verify, -k/--list-keys, -K/--list-secret-keys, --export, --import, --version");
            println!("Options: -a, -t, -u KEY, --default-key KEY, -o FILE, --yes, --status-fd N, --digest-algo ALGO, --keyid-format F, --with-colons, --receipt-out FILE, --proof-out FILE");
            println!("The vault qube: QUBES_GPG_DOMAIN, or vault = \"NAME\" in ~/.config/qvault/client.toml or /etc/qvault/client.toml");
            Ok(Verdict::Good)
        }
    }
}

/// Key selectors for the vault. User IDs and fingerprints are UTF-8, so a
/// selector that is not matches nothing; its bytes are replaced, not dropped
/// (dropping it could turn `-k <selector>` into a listing of every key).
fn selectors(operands: &[OsString]) -> Vec<String> {
    operands.iter().map(|o| o.to_string_lossy().into_owned()).collect()
}

fn list(inv: &Invocation, secret: bool) -> Result<Verdict, ShimError> {
    let mut conn = vault::Conn::open()?;
    conn.request(Op::ListKeys { secret, selectors: selectors(&inv.operands) })?;
    let keys = match conn.recv()? {
        ServerFrame::Keys(k) => k,
        _ => return Err(ShimError::Protocol("unexpected answer to a key listing".into())),
    };
    conn.finish();
    let keys: Vec<_> = keys.into_iter().map(|k| (k, Trust::Ultimate)).collect();
    let now = chrono::Utc::now().timestamp();
    let text = if inv.with_colons {
        // `--with-keygrip` adds no `grp` records: keygrips name keys in a
        // gpg-agent, and the client has none (GPGME then leaves keygrip unset).
        colons::colons(&keys, secret, inv.with_secret, now)
    } else {
        let header = format!("qvault:{}", vault::vault_name()?);
        colons::human(&keys, secret, inv.keyid_format, inv.fingerprint.max(1), &header)
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).map_err(ShimError::io("writing to stdout"))?;
    if keys.is_empty() && !inv.operands.is_empty() {
        eprintln!("gpg: error reading key: No {} key", if secret { "secret" } else { "public" });
        return Ok(Verdict::Failed);
    }
    Ok(Verdict::Good)
}

fn export(inv: &Invocation, status: &mut StatusOut) -> Result<Verdict, ShimError> {
    let bytes = keyring::export_from_vault(&selectors(&inv.operands))?;
    // gpg's EXPORTED and EXPORT_RES lines (GPGME reads them), one per certificate.
    let fprs: Vec<String> = if bytes.is_empty() {
        Vec::new()
    } else {
        openpgp::cert::CertParser::from_bytes(&bytes)
            .map_err(|e| ShimError::Protocol(format!("the vault's export: {e}")))?
            .map(|c| c.map(|c| c.fingerprint().to_hex()))
            .collect::<openpgp::Result<_>>()
            .map_err(|e| ShimError::Protocol(format!("the vault's export: {e}")))?
    };
    if bytes.is_empty() {
        eprintln!("gpg: WARNING: nothing exported");
        status.emit(status::Status::ExportRes { count: 0, exported: 0 });
        return Ok(Verdict::Good);
    }
    let mut out = output::Output::create(inv.output.as_deref(), inv.yes, inv.special_filenames)?;
    if inv.armor {
        let mut w = openpgp::armor::Writer::new(&mut out, openpgp::armor::Kind::PublicKey)
            .map_err(|e| ShimError::OpenPgp(e.to_string()))?;
        w.write_all(&bytes).map_err(ShimError::io("writing output"))?;
        w.finalize().map_err(ShimError::io("writing output"))?;
    } else {
        out.write_all(&bytes).map_err(ShimError::io("writing output"))?;
    }
    out.commit()?;
    for fpr in &fprs {
        status.emit(status::Status::Exported { fpr });
    }
    status.emit(status::Status::ExportRes { count: fprs.len(), exported: fprs.len() });
    Ok(Verdict::Good)
}

fn import(inv: &Invocation, status: &mut StatusOut) -> Result<Verdict, ShimError> {
    let mut bytes = Vec::new();
    let sources: Vec<OsString> = if inv.operands.is_empty() { vec!["-".into()] } else { inv.operands.clone() };
    for s in &sources {
        let mut r: Box<dyn std::io::Read> =
            if s == "-" { Box::new(std::io::stdin()) } else { Box::new(output::open_file(s)?) };
        let name = std::path::Path::new(s).display().to_string();
        r.by_ref().take(64 << 20).read_to_end(&mut bytes).map_err(ShimError::io(format!("reading {name}")))?;
    }
    let report = keyring::import(&bytes)?;
    for (cert, had_secret) in &report {
        let fpr = cert.fingerprint().to_hex();
        let uid =
            cert.userids().next().map(|u| String::from_utf8_lossy(u.userid().value()).into_owned()).unwrap_or_default();
        let kid = colons::keyid(&fpr).to_owned();
        eprintln!("gpg: key {kid}: public key \"{uid}\" imported");
        if *had_secret {
            eprintln!("gpg: key {kid}: secret key material ignored: secret keys belong in the vault");
        }
        status.emit(status::Status::Imported { keyid: &kid, uid: &uid });
        status.emit(status::Status::ImportOk { reason: 1, fpr: &fpr });
    }
    eprintln!("gpg: Total number processed: {}", report.len());
    Ok(Verdict::Good)
}
