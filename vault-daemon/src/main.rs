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

use qvault::cli::{Cli, Cmd, LogCmd, PolicyCmd};
use qvault::gate::Gate;
use qvault::home::Home;
use qvault::keystore::{Keystore, Origin};
use qvault::policy::Policy;
use qvault::policy_file::{self, PolicyFile};
use qvault::session::Vault;
use qvault::{exec, fsutil, harden, keygen, log, server};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.cmd, Cmd::Serve { .. }) { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // journald and log files get plain text; colours only on a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
            let (message, code) = failure(&e);
            eprintln!("qvault: {message}");
            ExitCode::from(code)
        }
    }
}

/// Every error's message and exit code, in one place (the man page's EXIT
/// STATUS lists the codes): 3 an exec-service call refused (no or an unknown
/// service), 4 an exec-service call ended because its caller stalled, 2 any
/// other error.
fn failure(e: &anyhow::Error) -> (String, u8) {
    let code = match e.downcast_ref::<exec::ExecError>() {
        Some(exec::ExecError::Refused(_)) => 3,
        Some(exec::ExecError::TimedOut(_)) => 4,
        Some(exec::ExecError::Call(_)) | None => 2,
    };
    (format!("{e:#}"), code)
}

/// An exec-service call's caller and vault, in a hardened process.
fn start_exec(home: Option<std::path::PathBuf>, allow_network: bool) -> anyhow::Result<(qubes_rpc::QubeName, Vault)> {
    let source = qubes_rpc::transport::remote_domain_from_env()?;
    let home = Home::resolve(home)?;
    harden::prepare_to_serve(allow_network)?;
    Ok((source, open_vault(&home, Opener::Exec)?))
}

/// How long a command waits for another process holding the log.
const LOG_WAIT: Duration = Duration::from_secs(30);

/// Who opens the vault: the socket daemon, one exec-service call, or an admin
/// command that serves no calls.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Opener {
    Daemon,
    Exec,
    Admin,
}

fn open_vault(home: &Home, opener: Opener) -> anyhow::Result<Vault> {
    home.config()?;
    let log = match opener {
        Opener::Daemon => log::Log::open(&home.log_dir(), Duration::ZERO)?,
        // One call per process: the writer lock only from reserve to commit.
        Opener::Exec => log::Log::open_with(&home.log_dir(), log::Access::PerAppend, LOG_WAIT)?,
        // Reads what the newest durable checkpoint covers, beside a running daemon.
        Opener::Admin => log::Log::open_with(&home.log_dir(), log::Access::ReadOnly, Duration::ZERO)?,
    };
    // Serving openers read the policy file at the start of every call.
    let file = || PolicyFile::new(home.policy_path(), &home.state_dir());
    let (policy, gate) = match opener {
        Opener::Admin => (PolicyFile::fixed(policy_file::empty()), Gate::in_memory()),
        Opener::Daemon => (file(), Gate::in_memory()),
        Opener::Exec => (file(), Gate::on_disk(home.state_dir())?),
    };
    // Serving openers declare the vault's state before signing under it.
    let declared = (opener != Opener::Admin).then(|| qvault::declared::Declared::new(&home.state_dir()));
    let vault = Vault { keystore: Keystore::load(&home.keys_dir())?, log, policy, gate, declared, desktop: None };
    if opener == Opener::Daemon {
        // A daemon does not start on a policy it could not serve under (later
        // breakage only refuses calls until the file is fixed).
        vault.policy.current(&vault.log)?;
    }
    Ok(vault)
}

/// Exactly one key matching a selector.
fn one_key(ks: &Keystore, selector: &str) -> anyhow::Result<openpgp::Cert> {
    match ks.find(&[selector.to_owned()]).as_slice() {
        [one] => Ok(one.cert.clone()),
        [] => anyhow::bail!("no key in the vault matches {selector:?}"),
        many => anyhow::bail!("{} keys match {selector:?}; give a fingerprint", many.len()),
    }
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
        Cmd::Init { home, name, no_confirm } => {
            let home = Home::resolve(home.home)?;
            let name = match name {
                Some(n) => n,
                None => nix::unistd::gethostname()?.to_string_lossy().into_owned(),
            };
            home.init(&name, !no_confirm)?;
            let log = log::Log::create(&home.log_dir(), &name)?;
            policy_file::record_text(&log, &home.state_dir(), &std::fs::read_to_string(home.policy_path())?)?;
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
        Cmd::ExtendExpiry { home, key, expire } => {
            let home = Home::resolve(home.home)?;
            home.config()?;
            let validity = keygen::parse_expiry(&expire).map_err(anyhow::Error::msg)?;
            let log = log::Log::open(&home.log_dir(), LOG_WAIT)?;
            let mut ks = Keystore::load(&home.keys_dir())?;
            let cert = one_key(&ks, &key)?;
            let updated = qvault::lifecycle::set_expiry(&cert, validity)?;
            let change = match validity {
                Some(d) => format!(
                    "expiry set to {}",
                    chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now() + d).to_rfc3339()
                ),
                None => "expiry removed".into(),
            };
            ks.update(updated, change.clone(), &log)?;
            println!("{}: {change}", cert.fingerprint().to_hex());
        }
        Cmd::Revoke { home, key, reason, message } => {
            let home = Home::resolve(home.home)?;
            home.config()?;
            let log = log::Log::open(&home.log_dir(), LOG_WAIT)?;
            let mut ks = Keystore::load(&home.keys_dir())?;
            let cert = one_key(&ks, &key)?;
            let updated = qvault::lifecycle::revoke(&cert, reason, &message)?;
            let change = format!(
                "revoked: {reason:?}{}",
                if message.is_empty() { String::new() } else { format!(" ({message})") }
            );
            ks.update(updated, change.clone(), &log)?;
            println!("{}: {change}", cert.fingerprint().to_hex());
        }
        Cmd::Attach { home, gnupghome, key } => {
            let home = Home::resolve(home.home)?;
            home.config()?;
            let cert = qvault::agent::public_cert(&gnupghome, &key)?;
            let card = qvault::agent::check_signing_keys(&gnupghome, &cert)?;
            let log = log::Log::open(&home.log_dir(), LOG_WAIT)?;
            let mut ks = Keystore::load(&home.keys_dir())?;
            let fpr = ks.attach(cert, &gnupghome, card, &log)?;
            println!("{} attached from gpg-agent{}", fpr.to_hex(), if card { " (smartcard)" } else { "" });
        }
        Cmd::List { home } => {
            let home = Home::resolve(home.home)?;
            let vault = open_vault(&home, Opener::Admin)?;
            for k in vault.keystore.keys() {
                let origin = match k.provenance.origin {
                    Origin::Attached if k.provenance.card => "attached from gpg-agent (smartcard)",
                    Origin::Attached => "attached from gpg-agent",
                    Origin::Generated => "generated in vault",
                    Origin::Imported => "imported",
                };
                println!("{}  {}", k.cert.fingerprint().to_hex(), origin);
                for ua in k.cert.userids() {
                    println!("    {}", String::from_utf8_lossy(ua.userid().value()));
                }
            }
        }
        Cmd::Serve { home, socket, max_calls, io_timeout, allow_network, ask_socket, ask_user } => {
            let home = Home::resolve(home.home)?;
            harden::prepare_to_serve(allow_network)?;
            let mut vault = open_vault(&home, Opener::Daemon)?;
            if let (Some(path), Some(user)) = (&ask_socket, &ask_user) {
                // A missing desktop user (a qube whose user is not the
                // unit's default) must not stop the vault: its questions are
                // refused, saying why, and rules that do not ask still work.
                let uid = qvault::desktop::lookup_uid(user).context("--ask-user")?;
                vault.desktop = Some(qvault::desktop::Desktop::listen(path, uid)?);
            }
            anyhow::ensure!(max_calls > 0, "--max-calls must be at least 1");
            let interfaces = log::interfaces();
            let version = env!("CARGO_PKG_VERSION").to_owned();
            vault.log.append(None, |_| Ok((qvault_attest::Event::DaemonStarted { version, interfaces }, ())))?;
            if let (Some(d), Some(policy)) = (&vault.declared, vault.policy.digest()) {
                d.declare(&vault.log, &policy, true).context("declaring the vault's state in the log")?;
            }
            let served = server::run(
                vault,
                server::ServeOptions { socket, max_calls, io_timeout: Duration::from_secs(io_timeout.max(1)) },
            );
            if let Some(path) = &ask_socket {
                let _ = std::fs::remove_file(path);
            }
            served?;
        }
        Cmd::Desktop { socket, daemon_user, if_exists, zenity } => {
            if if_exists.as_ref().is_some_and(|p| !p.exists()) {
                return Ok(());
            }
            let daemon_uid = qvault::desktop::lookup_uid(&daemon_user)
                .context("--daemon-user")?
                .ok_or_else(|| anyhow::anyhow!("--daemon-user: no user {daemon_user:?}"))?;
            qvault::desktop_helper::run(&qvault::desktop_helper::Options { socket, daemon_uid, zenity })?;
        }
        Cmd::Status { home } => {
            let home = Home::resolve(home.home)?;
            let cfg = home.config()?;
            let ks = Keystore::load(&home.keys_dir())?;
            println!("vault:   {} ({})", cfg.name, home.root().display());
            println!("keys:    {}", ks.keys().len());
            println!("log key: {}", read_log_key(&home)?);
            let entries = std::fs::metadata(home.log_dir().join("tree/00")).map_or(0, |m| m.len() / 32);
            println!("log:     {entries} entries");
            match std::fs::read_to_string(home.policy_path()).map(|t| Policy::parse(&t)) {
                Ok(Ok(p)) => println!("policy:  {} rule(s), valid", p.rules.len()),
                Ok(Err(e)) => println!("policy:  INVALID: {e}"),
                Err(e) => println!("policy:  unreadable: {e}"),
            }
            let up = harden::non_loopback_up();
            println!(
                "network: {}",
                if up.is_empty() { "none (good)".to_owned() } else { format!("UP: {}", up.join(", ")) }
            );
        }
        Cmd::Policy { cmd: PolicyCmd::Check { home, file } } => {
            let path = match file {
                Some(f) => f,
                None => Home::resolve(home.home)?.policy_path(),
            };
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let p = Policy::parse(&text).map_err(|e| anyhow::anyhow!("{}:{e}", path.display()))?;
            println!("{}: valid, {} rule(s)", path.display(), p.rules.len());
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
            LogCmd::Export { home, tiles } => {
                let home = Home::resolve(home.home)?;
                let vault = open_vault(&home, Opener::Admin)?;
                if let Some(dir) = tiles {
                    // From the export format, so the tiles hold exactly what
                    // auditors fetch; the newest checkpoint's root is checked.
                    let mut export = Vec::new();
                    vault.log.export(&mut export)?;
                    let (entries, note) = qvault_attest::tiles::from_export(&export[..])?;
                    let n = qvault_attest::tiles::write_dir(&dir, &entries, &note)?;
                    eprintln!("wrote {n} new tile files for {} entries to {}", entries.len(), dir.display());
                } else {
                    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                    vault.log.export(&mut out)?;
                    std::io::Write::flush(&mut out)?;
                }
            }
            LogCmd::Checkpoint { home } => {
                let home = Home::resolve(home.home)?;
                let vault = open_vault(&home, Opener::Admin)?;
                print!("{}", vault.log.latest().1);
            }
            LogCmd::Recover { home } => {
                let home = Home::resolve(home.home)?;
                home.config()?;
                println!("{}", log::Log::recover(&home.log_dir(), LOG_WAIT)?);
            }
        },
        Cmd::Rpc { home, io_timeout, allow_network } => {
            let mut out = exec::Stdout::new(Duration::from_secs(io_timeout.max(1)))?;
            let full_name = match std::env::var("QREXEC_SERVICE_FULL_NAME") {
                Ok(s) => Some(s),
                Err(std::env::VarError::NotPresent) => None,
                Err(std::env::VarError::NotUnicode(_)) => Some("(not UTF-8)".to_owned()),
            };
            let argument = std::env::var("QREXEC_SERVICE_ARGUMENT").ok();
            let service = match exec::service_from_env(full_name.as_deref(), argument.as_deref()) {
                Ok(s) => s,
                Err(refusal) => {
                    let why = refusal.message.clone();
                    exec::refuse(&mut out, refusal);
                    return Err(exec::ExecError::Refused(why).into());
                }
            };
            let (source, vault) = match start_exec(home.home, allow_network) {
                Ok(v) => v,
                Err(e) => {
                    // qrexec shows the caller nothing but our stdout: say why there.
                    exec::refuse(
                        &mut out,
                        qubes_rpc::RpcError::new(
                            qubes_rpc::ErrorCode::Unavailable,
                            "the vault cannot serve: see its log (qvault rpc failed to start)",
                        ),
                    );
                    return Err(e);
                }
            };
            exec::serve(&vault, service, &source, out)?;
        }
    }
    Ok(())
}
