//! The `qvault-audit` command line, kept free of other code so that `build.rs`
//! can include it to generate the man page and shell completions.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "qvault-audit", version, about = "Verify qvault attestation logs, signatures and receipts offline")]
pub struct Cli {
    /// Machine-readable JSON output
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(clap::Args)]
pub struct KeyArg {
    /// The log's verifier key: the key string, or a file holding it
    #[arg(long, value_name = "KEY|FILE")]
    pub log_key: String,
}

/// The vault's log an archive checks uploads against.
#[derive(clap::Args)]
pub struct LogEvidence {
    #[command(flatten)]
    pub key: KeyArg,
    /// The vault's log (`qvault log export`, `qvault-audit fetch`), covering the signatures
    #[arg(long)]
    pub log: PathBuf,
    /// More signed checkpoints to check against the log (from clients, receipts)
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Vec<PathBuf>,
    /// Witnesses and quorum (C2SP tlog-policy) the log's checkpoint must meet.
    /// Without it the verdict says the witness quorum was not checked.
    #[arg(long, value_name = "FILE")]
    pub tlog_policy: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Replay a whole log: entries, root, checkpoints.
    VerifyLog {
        /// Log export (`qvault log export`)
        log: PathBuf,
        #[command(flatten)]
        key: KeyArg,
        /// More signed checkpoints to check against the log (from clients, receipts)
        #[arg(long, value_name = "FILE")]
        checkpoint: Vec<PathBuf>,
    },
    /// Verify one detached signature and its place in the log.
    VerifySignature {
        /// The signed file
        file: PathBuf,
        /// The detached signature
        sig: PathBuf,
        #[command(flatten)]
        key: KeyArg,
        /// The receipt that came with the signature: JSON, or a C2SP
        /// tlog-proof (`qvault-gpg --proof-out`)
        #[arg(long, visible_alias = "proof", conflicts_with = "log", required_unless_present = "log")]
        receipt: Option<PathBuf>,
        /// The whole log instead of a receipt
        #[arg(long)]
        log: Option<PathBuf>,
        /// A C2SP tlog-policy file: the receipt's checkpoint must carry
        /// cosignatures of its witnesses that meet its quorum
        #[arg(long, value_name = "FILE", requires = "receipt")]
        policy: Option<PathBuf>,
    },
    /// Check that NEW extends OLD (two signed checkpoints).
    Consistency {
        old: PathBuf,
        new: PathBuf,
        #[command(flatten)]
        key: KeyArg,
        /// The log, to compute the proof from
        #[arg(long, conflicts_with = "proof", required_unless_present = "proof")]
        log: Option<PathBuf>,
        /// A consistency proof: hex hashes, one per line
        #[arg(long)]
        proof: Option<PathBuf>,
    },
    /// Check a Debian upload for an archive: the clearsigned .changes, every
    /// .dsc it lists and every file either lists, each signature's place in
    /// the vault's log, its key's origin (generated in the vault) and the
    /// vault's declared state when it signed.
    VerifyUpload {
        /// The .changes file; the files it lists are read from its directory
        changes: PathBuf,
        #[command(flatten)]
        evidence: LogEvidence,
    },
    /// Check any signed files against the vault's log, as verify-upload does:
    /// clearsigned documents, and detached signatures X.asc, X.sig or X.gpg
    /// over the file X beside them.
    VerifyBundle {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        evidence: LogEvidence,
    },
    /// Verify a whole log from its C2SP tlog-tiles alone (a directory holding
    /// checkpoint, tile/<L>/<N> and tile/entries/<N>, as `qvault log export
    /// --tiles` writes it): every tile, every entry, the root, the checkpoint.
    VerifyTiles {
        /// The tiles' directory
        dir: PathBuf,
        #[command(flatten)]
        key: KeyArg,
    },
    /// Submit the newest checkpoint of a log export to the witnesses of a
    /// C2SP tlog-policy file (tlog-witness add-checkpoint over https://, the
    /// certificate verified; plain http:// only to 127.0.0.1, ::1 or
    /// localhost), keep their cosignatures in STATE/checkpoint and check the quorum. Exit 0:
    /// quorum met; 1: not met; 2: a witness refused the checkpoint as
    /// inconsistent (a fork) or unsigned, or is ahead of the log (evidence in
    /// STATE/evidence).
    Witness {
        /// Log export (`qvault log export`, `qvault-audit fetch`)
        log: PathBuf,
        #[command(flatten)]
        key: KeyArg,
        /// The C2SP tlog-policy file: witnesses (with URLs) and the quorum
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// Where to keep the cosigned checkpoint, each witness's size and evidence
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// Receipts or tlog-proofs of entries of this log: rewritten as
        /// tlog-proofs in the cosigned checkpoint (new inclusion proofs)
        #[arg(long, value_name = "FILE")]
        proof: Vec<PathBuf>,
        /// PEM CA certificates trusted for https:// witnesses besides the
        /// system's store (/etc/ssl/certs): a private witness's CA
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
    },
    /// List a log's entries.
    Show { log: PathBuf },
    /// Fetch a vault's log over the read-only qrexec service qvault.LogRead
    /// (from an audit qube that dom0 policy allows), in the export format.
    Fetch {
        /// The vault qube
        vault: String,
        /// Where to write the log export
        #[arg(short, long, required_unless_present = "tiles")]
        output: Option<PathBuf>,
        /// Write the log as C2SP tlog-tiles into this directory (checkpoint,
        /// tile/<L>/<N>, tile/entries/<N>); tiles already there must agree
        #[arg(long, value_name = "DIR")]
        tiles: Option<PathBuf>,
        /// Also write the newest checkpoint here
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
}
