//! `qvault`: the vault daemon and its administration commands.
//!
//! Runs in the network-less vault qube. It holds the secret keys and must never
//! hand one out: no command, flag or request exports secret key material.
#![forbid(unsafe_code)]

use std::io::Read as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use openpgp::parse::Parse as _;
use sequoia_openpgp as openpgp;

use qvault::cli::{Cli, Cmd, LogCmd};
use qvault::home::Home;
use qvault::keystore::{Keystore, Origin};
use qvault::session::{self, Service, Vault};
use qvault::{fsutil, keygen, log, server};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.cmd, Cmd::Serve { .. }) { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("QVAULT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .init();
    // Files we create are private whatever the caller's umask.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    match run(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qvault: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// How long a command waits for another process holding the log.
const LOG_WAIT: Duration = Duration::from_secs(30);

fn open_vault(home: &Home) -> anyhow::Result<Vault> {
    home.config()?;
    let log = log::Log::open(&home.log_dir(), LOG_WAIT)?;
    Ok(Vault { keystore: Keystore::load(&home.keys_dir())?, log })
}

/// The verifier key, read without taking the writer lock (a daemon may hold it).
fn read_log_key(home: &Home) -> anyhow::Result<String> {
    let dir = home.log_dir();
    let mut seed = [0u8; 32];
    std::fs::File::open(dir.join("key"))
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))
        .with_context(|| format!("reading the log key in {}", dir.display()))?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    zeroize::Zeroize::zeroize(&mut seed);
    let origin = std::fs::read_to_string(dir.join("origin"))?.trim().to_owned();
    Ok(qvault_attest::Verifier { name: origin, key: key.verifying_key() }.encode())
}

fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Init { home, name } => {
            let home = Home::resolve(home.home)?;
            let name = match name {
                Some(n) => n,
                None => nix::unistd::gethostname()?.to_string_lossy().into_owned(),
            };
            home.init(&name)?;
            let log = log::Log::create(&home.log_dir(), &name)?;
            println!("log key: {}", log.verifier().encode());
            println!("initialized vault {name:?} in {}", home.root().display());
        }
        Cmd::Keygen { home, userid, algo, expire } => {
            let home = Home::resolve(home.home)?;
            home.config()?;
            anyhow::ensure!(!userid.trim().is_empty(), "the user ID is empty");
            anyhow::ensure!(!userid.chars().any(char::is_control), "the user ID has control characters");
            let expiry = keygen::parse_expiry(&expire).map_err(anyhow::Error::msg)?;
            let mut ks = Keystore::load(&home.keys_dir())?;
            let log = log::Log::open(&home.log_dir(), LOG_WAIT)?;
            let (cert, rev) = keygen::generate(&userid, algo, expiry)?;
            let fpr = ks.add(cert, Origin::Generated, &log)?;
            let mut rev_bytes = Vec::new();
            openpgp::serialize::Serialize::serialize(&openpgp::Packet::from(rev), &mut rev_bytes)?;
            fsutil::write_private(&home.keys_dir().join(format!("{}.rev", fpr.to_hex())), &rev_bytes)?;
            println!("{}", fpr.to_hex());
        }
        Cmd::Import { home, file } => {
            let home = Home::resolve(home.home)?;
            home.config()?;
            let mut bytes = Vec::new();
            std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?
                .take(16 << 20)
                .read_to_end(&mut bytes)?;
            let cert = openpgp::Cert::from_bytes(&bytes).context("not an OpenPGP key")?;
            zeroize::Zeroize::zeroize(&mut bytes);
            let mut ks = Keystore::load(&home.keys_dir())?;
            let log = log::Log::open(&home.log_dir(), LOG_WAIT)?;
            let fpr = ks.add(cert, Origin::Imported, &log)?;
            println!("{}", fpr.to_hex());
        }
        Cmd::List { home } => {
            let home = Home::resolve(home.home)?;
            let vault = open_vault(&home)?;
            for k in vault.keystore.keys() {
                let origin = match k.provenance.origin {
                    Origin::Generated => "generated in vault",
                    Origin::Imported => "imported",
                };
                println!("{}  {}", k.cert.fingerprint().to_hex(), origin);
                for ua in k.cert.userids() {
                    println!("    {}", String::from_utf8_lossy(ua.userid().value()));
                }
            }
        }
        Cmd::Serve { home, socket, max_calls, io_timeout } => {
            let home = Home::resolve(home.home)?;
            let vault = open_vault(&home)?;
            anyhow::ensure!(max_calls > 0, "--max-calls must be at least 1");
            let interfaces = log::interfaces();
            let version = env!("CARGO_PKG_VERSION").to_owned();
            vault.log.append(None, |_| Ok((qvault_attest::Event::DaemonStarted { version, interfaces }, ())))?;
            server::run(
                vault,
                server::ServeOptions { socket, max_calls, io_timeout: Duration::from_secs(io_timeout.max(1)) },
            )?;
        }
        Cmd::Log { cmd } => match cmd {
            LogCmd::Key { home, output } => {
                let home = Home::resolve(home.home)?;
                home.config()?;
                let key = read_log_key(&home)?;
                if let Some(p) = output {
                    std::fs::write(&p, format!("{key}\n")).with_context(|| format!("writing {}", p.display()))?;
                }
                println!("{key}");
            }
            LogCmd::Export { home } => {
                let home = Home::resolve(home.home)?;
                let vault = open_vault(&home)?;
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                vault.log.export(&mut out)?;
                std::io::Write::flush(&mut out)?;
            }
            LogCmd::Checkpoint { home } => {
                let home = Home::resolve(home.home)?;
                let vault = open_vault(&home)?;
                print!("{}", vault.log.latest().1);
            }
        },
        Cmd::Rpc { home } => {
            let home = Home::resolve(home.home)?;
            let vault = open_vault(&home)?;
            let source = qubes_rpc::transport::remote_domain_from_env()?;
            let service = match std::env::var("QREXEC_SERVICE_FULL_NAME").ok().as_deref().map(|s| s.split('+').next()) {
                Some(Some(qubes_rpc::transport::SERVICE_LOG_READ)) => Service::LogRead,
                _ => Service::Gpg,
            };
            let stdin = std::io::stdin();
            let stdout = std::io::stdout();
            session::serve_call(&vault, service, &source, stdin.lock(), stdout.lock())?;
        }
    }
    Ok(())
}
