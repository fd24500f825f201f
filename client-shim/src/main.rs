//! `qvault-gpg`: a gpg-compatible command line for client qubes. It signs by
//! asking the vault over qrexec, verifies locally, and lists and exports the
//! vault's public keys, so git, debsign, dpkg-buildpackage and rpmsign work
//! unchanged.
//!
//! It must never hold secret key material, and never pass an option string to the
//! vault: requests are typed values. Errors print as `gpg: ...` with gpg's exit
//! codes (0 success, 1 bad signature, 2 error).
#![forbid(unsafe_code)]

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use qubes_rpc::{Op, ServerFrame, SignMode};
use sequoia_openpgp as openpgp;

use qvault_gpg::args::{self, Command, Invocation};
use qvault_gpg::colons::{self, Trust};
use qvault_gpg::error::ShimError;
use qvault_gpg::status::{self, StatusOut};
use qvault_gpg::{keyring, output, sign, vault, verify};

fn main() -> ExitCode {
    let inv = match args::parse(std::env::args().skip(1)) {
        Ok(inv) => inv,
        Err(e) => {
            eprintln!("gpg: {e}");
            return ExitCode::from(2);
        }
    };
    let mut status = match StatusOut::open(inv.status_fd) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gpg: can't open status fd: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&inv, &mut status) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            match &e {
                ShimError::Vault(..) | ShimError::Unreachable(..) | ShimError::Protocol(..)
                    if matches!(inv.command, Some(Command::Sign | Command::DetachSign | Command::ClearSign)) =>
                {
                    eprintln!("gpg: signing failed: {e}");
                }
                _ => eprintln!("gpg: {e}"),
            }
            ExitCode::from(2)
        }
    }
}

fn run(inv: &Invocation, status: &mut StatusOut) -> Result<u8, ShimError> {
    let Some(cmd) = inv.command else {
        return Err(ShimError::Usage(
            "no command given (qvault-gpg implements -s, -b, --clearsign, --verify, -k, -K, --export, --import)".into(),
        ));
    };
    match cmd {
        Command::Sign => sign::sign(inv, SignMode::Inline, status).map(|()| 0),
        Command::DetachSign => sign::sign(inv, SignMode::Detached, status).map(|()| 0),
        Command::ClearSign => sign::sign(inv, SignMode::Cleartext, status).map(|()| 0),
        Command::Verify => verify::verify(inv, status).map(|c| c as u8),
        Command::ListKeys | Command::Fingerprint => list(inv, false),
        Command::ListSecretKeys => list(inv, true),
        Command::Export => export(inv),
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
            Ok(0)
        }
        Command::Help => {
            println!("Usage: qvault-gpg [options] [files]\nSign in a Qubes vault; verify locally.\n");
            println!("Commands: -s, -b/--detach-sign, --clearsign, --verify, -k/--list-keys, -K/--list-secret-keys, --export, --import, --version");
            println!("Options: -a, -t, -u KEY, --default-key KEY, -o FILE, --yes, --status-fd N, --digest-algo ALGO, --keyid-format F, --with-colons, --receipt-out FILE");
            println!("The vault qube: QUBES_GPG_DOMAIN, or vault = \"NAME\" in ~/.config/qvault/client.toml or /etc/qvault/client.toml");
            Ok(0)
        }
    }
}

fn list(inv: &Invocation, secret: bool) -> Result<u8, ShimError> {
    if inv.with_keygrip {
        return Err(ShimError::Usage("--with-keygrip is not supported: keygrips belong to the vault's agent".into()));
    }
    let mut conn = vault::Conn::open()?;
    conn.request(Op::ListKeys { secret, selectors: inv.operands.clone() })?;
    let keys = match conn.recv()? {
        ServerFrame::Keys(k) => k,
        _ => return Err(ShimError::Protocol("unexpected answer to a key listing".into())),
    };
    conn.finish();
    let keys: Vec<_> = keys.into_iter().map(|k| (k, Trust::Ultimate)).collect();
    let now = chrono::Utc::now().timestamp();
    let text = if inv.with_colons {
        colons::colons(&keys, secret, now)
    } else {
        let header = format!("qvault:{}", vault::vault_name()?);
        colons::human(&keys, secret, inv.keyid_format, inv.fingerprint.max(1), &header)
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).map_err(ShimError::io("writing to stdout"))?;
    if keys.is_empty() && !inv.operands.is_empty() {
        eprintln!("gpg: error reading key: No {} key", if secret { "secret" } else { "public" });
        return Ok(2);
    }
    Ok(0)
}

fn export(inv: &Invocation) -> Result<u8, ShimError> {
    let bytes = keyring::export_from_vault(&inv.operands)?;
    if bytes.is_empty() {
        eprintln!("gpg: WARNING: nothing exported");
        return Ok(0);
    }
    let mut out = output::Output::create(inv.output.as_deref(), inv.yes)?;
    if inv.armor {
        let mut w = openpgp::armor::Writer::new(&mut out, openpgp::armor::Kind::PublicKey)
            .map_err(|e| ShimError::OpenPgp(e.to_string()))?;
        w.write_all(&bytes).map_err(ShimError::io("writing output"))?;
        w.finalize().map_err(ShimError::io("writing output"))?;
    } else {
        out.write_all(&bytes).map_err(ShimError::io("writing output"))?;
    }
    out.commit()?;
    Ok(0)
}

fn import(inv: &Invocation, status: &mut StatusOut) -> Result<u8, ShimError> {
    let mut bytes = Vec::new();
    let sources: Vec<String> = if inv.operands.is_empty() { vec!["-".into()] } else { inv.operands.clone() };
    for s in &sources {
        let mut r: Box<dyn std::io::Read> = if s == "-" {
            Box::new(std::io::stdin())
        } else {
            Box::new(std::fs::File::open(s).map_err(ShimError::io(format!("can't open '{s}'")))?)
        };
        r.by_ref().take(64 << 20).read_to_end(&mut bytes).map_err(ShimError::io(format!("reading {s}")))?;
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
    Ok(0)
}
