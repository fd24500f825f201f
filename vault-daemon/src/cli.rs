//! The `qvault` command line, kept free of other code so that `build.rs` can
//! include it to generate the man page and shell completions.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Seconds a call may wait for its peer, under `serve` and `rpc` alike.
pub const DEFAULT_IO_TIMEOUT: u64 = 60;

/// Reasons `qvault revoke` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Reason {
    Retired,
    Superseded,
    Compromised,
    Unspecified,
}

/// Key algorithms `qvault keygen` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Algo {
    Ed25519,
    Rsa3072,
    Rsa4096,
}

#[derive(Parser)]
#[command(name = "qvault", version, about = "qvault vault daemon: signs over Qubes qrexec, keys never leave")]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(clap::Args)]
pub struct HomeArg {
    /// Vault directory [default: $QVAULT_HOME, else $XDG_DATA_HOME/qvault]
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Create a new vault.
    Init {
        #[command(flatten)]
        home: HomeArg,
        /// The vault's name, used in the log's origin [default: the host name]
        #[arg(long)]
        name: Option<String>,
        /// Write a policy that signs without asking in the vault (for the demo,
        /// tests, and people who rely on dom0's `ask`)
        #[arg(long)]
        no_confirm: bool,
    },
    /// Generate a key inside the vault (certification primary key + signing subkey).
    Keygen {
        #[command(flatten)]
        home: HomeArg,
        /// User ID, e.g. 'Alice Volunteer <alice@example.org>'
        #[arg(long)]
        userid: String,
        #[arg(long, value_enum, default_value = "ed25519")]
        algo: Algo,
        /// Validity: e.g. 2y, 18m, 30d, or never
        #[arg(long, default_value = "3y")]
        expire: String,
    },
    /// Import a secret key made elsewhere (recorded as imported, not generated).
    Import {
        #[command(flatten)]
        home: HomeArg,
        /// File holding the transferable secret key (binary or armored)
        file: PathBuf,
    },
    /// Set a new expiry for a key (its primary key and signing subkeys); logged.
    ExtendExpiry {
        #[command(flatten)]
        home: HomeArg,
        /// The key: fingerprint, key ID or user ID
        key: String,
        /// New validity from now: e.g. 2y, 18m, 30d, or never
        #[arg(long, default_value = "2y")]
        expire: String,
    },
    /// Revoke a key; logged. Clients see it when they next fetch the certificate.
    Revoke {
        #[command(flatten)]
        home: HomeArg,
        /// The key: fingerprint, key ID or user ID
        key: String,
        #[arg(long, value_enum, default_value = "retired")]
        reason: Reason,
        /// A short human explanation stored in the revocation
        #[arg(long, default_value = "")]
        message: String,
    },
    /// Use a key held by a gpg-agent in the vault (software key or smartcard):
    /// signing goes through the agent; the log records the key as attached.
    Attach {
        #[command(flatten)]
        home: HomeArg,
        /// The GNUPGHOME whose gpg-agent holds the key
        #[arg(long, value_name = "DIR")]
        gnupghome: PathBuf,
        /// The key as gpg names it (fingerprint, key ID, user ID)
        key: String,
    },
    /// List the vault's keys.
    List {
        #[command(flatten)]
        home: HomeArg,
    },
    /// Serve qrexec calls on a Unix socket (qrexec socket-service protocol).
    Serve {
        #[command(flatten)]
        home: HomeArg,
        #[arg(long, value_name = "PATH")]
        socket: PathBuf,
        /// Most calls served at once
        #[arg(long, default_value_t = 32)]
        max_calls: usize,
        /// Seconds a call may wait for its peer before it is dropped
        #[arg(long, default_value_t = DEFAULT_IO_TIMEOUT)]
        io_timeout: u64,
        /// Start even though a network interface other than loopback is up (the
        /// vault is meant to have no network)
        #[arg(long)]
        allow_network: bool,
        /// Ask questions (policy `confirm = "ask"`) through the desktop helper
        /// (`qvault desktop`), which connects to this socket from the user's
        /// graphical session, instead of running the policy's confirm command
        #[arg(long, value_name = "PATH", requires = "ask_user")]
        ask_socket: Option<PathBuf>,
        /// The user (name or uid) whose desktop helper may connect to the ask
        /// socket; connections from any other user are closed
        #[arg(long, value_name = "USER", requires = "ask_socket")]
        ask_user: Option<String>,
    },
    /// The desktop helper: shows the vault daemon's questions in this
    /// graphical session (a zenity dialog) and sends back the answers. Started
    /// by the session (XDG autostart); it reconnects when the daemon restarts.
    Desktop {
        /// The daemon's ask socket (its `serve --ask-socket`)
        #[arg(long, value_name = "PATH", default_value = "/run/qvault/ask.sock")]
        socket: PathBuf,
        /// The user (name or uid) the daemon runs as: a socket served by
        /// anyone else is not the vault and is not answered
        #[arg(long, value_name = "USER", default_value = "qvault")]
        daemon_user: String,
        /// Exit at once, quietly, unless this path exists (the packaged
        /// autostart entry gives /run/qubes-service/qvault, so the helper runs
        /// only in the vault qube of a shared template)
        #[arg(long, value_name = "PATH")]
        if_exists: Option<PathBuf>,
        /// The dialog program (zenity, or a command line compatible with its
        /// --question)
        #[arg(long, value_name = "PROGRAM", default_value = "zenity")]
        zenity: PathBuf,
    },
    /// Show the vault's name, keys, log size and policy.
    Status {
        #[command(flatten)]
        home: HomeArg,
    },
    /// The vault's policy.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Serve one call on stdin/stdout (qrexec exec-service mode); the service
    /// comes from QREXEC_SERVICE_FULL_NAME, the caller from QREXEC_REMOTE_DOMAIN.
    Rpc {
        #[command(flatten)]
        home: HomeArg,
        /// Seconds the call may wait for its caller (each read from stdin, each
        /// write to stdout) before it is ended
        #[arg(long, default_value_t = DEFAULT_IO_TIMEOUT)]
        io_timeout: u64,
        /// Serve even though a network interface other than loopback is up (the
        /// vault is meant to have no network)
        #[arg(long)]
        allow_network: bool,
    },
    /// The attestation log.
    Log {
        #[command(subcommand)]
        cmd: LogCmd,
    },
}

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Validate a policy file (default: the vault's policy.toml); errors name the line.
    Check {
        #[command(flatten)]
        home: HomeArg,
        /// The file to check
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum LogCmd {
    /// Print the log's verifier key (give it to auditors).
    Key {
        #[command(flatten)]
        home: HomeArg,
        /// Also write it to this file
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Write the whole log, in the export format qvault-audit reads, to stdout.
    Export {
        #[command(flatten)]
        home: HomeArg,
        /// Instead, write it as C2SP tlog-tiles into this directory (checkpoint,
        /// tile/<L>/<N>, tile/entries/<N>) for static serving; tiles already
        /// there must agree
        #[arg(long, value_name = "DIR")]
        tiles: Option<PathBuf>,
    },
    /// Print the newest signed checkpoint.
    Checkpoint {
        #[command(flatten)]
        home: HomeArg,
    },
    /// Check the whole log against the vault's newest checkpoint, as `serve`
    /// does at start; rebuild the tree files when only they disagree.
    Recover {
        #[command(flatten)]
        home: HomeArg,
    },
}
