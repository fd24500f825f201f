//! Generates qvault-audit(1) (plus one page per subcommand) and the bash and zsh
//! completions from the same clap definitions the binary parses with
//! (`src/cli.rs`), into `$OUT_DIR`; `packaging/stage` installs them.

use clap::CommandFactory as _;

#[allow(dead_code)]
#[path = "src/cli.rs"]
mod cli;

#[allow(dead_code)]
#[path = "../packaging/cli_assets.rs"]
mod cli_assets;

/// The DESCRIPTION section, in roff.
const DESCRIPTION: &str = r#".SH DESCRIPTION
\fBqvault-audit\fR checks, offline, what a qvault vault says it did.
A vault appends every event (log created, key generated or imported,
signature made, daemon started) to an append-only Merkle tree log and signs
checkpoints of it with a log key made in the vault at \fBqvault init\fR.
Give \fB\-\-log\-key\fR the verifier key the vault owner published
(\fBqvault log key\fR); nothing from the client qube is trusted.
.PP
A verified signature with its receipt proves that the signature is entry
\fIN\fR of the log whose checkpoint the log key signed: the vault recorded it
before it released it.
It does not prove who asked for it beyond the calling qube's name that dom0
reported, that the signed content is what a person meant to sign, or that the
log was not forked after that checkpoint; \fBconsistency\fR between checkpoints
seen by different parties, and \fBverify-log\fR on the whole log, check that.
"#;

/// Sections after OPTIONS and SUBCOMMANDS, in roff.
const EXTRA: &str = r#".SH "EXIT STATUS"
.TP
.B 0
Verified.
.TP
.B 1
Verification failed (the verdict says why).
.TP
.B 2
Usage or input error (unreadable file, malformed log, key or receipt).
.PP
With \fB\-\-json\fR the verdict is also printed as JSON on standard output:
\fB"verdict"\fR is \fB"verified"\fR, \fB"FAILED"\fR or \fB"error"\fR.
.SH EXAMPLES
.nf
.RS
qvault-audit verify-signature \-\-log\-key vault.key \e
    \-\-receipt foo.dsc.receipt.json foo.dsc foo.dsc.asc
qvault-audit \-\-json verify-log \-\-log\-key vault.key vault.log
qvault-audit consistency \-\-log\-key vault.key \-\-log vault.log old.checkpoint new.checkpoint
.RE
.fi
.SH "SEE ALSO"
.BR qvault (8),
.BR qvault-gpg (1)
"#;

fn main() -> std::io::Result<()> {
    let top = cli_assets::Sections { description: DESCRIPTION, extra: EXTRA };
    cli_assets::generate(cli::Cli::command(), "1", top, &cli_assets::out_dir()?)
}
