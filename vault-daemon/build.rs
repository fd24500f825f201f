//! Generates qvault(8) (plus one page per subcommand) and the bash and zsh
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
\fBqvault\fR is the vault daemon of qvault, a split-gpg signer for Qubes OS.
It runs in a network-less vault qube and holds the OpenPGP secret keys; client
qubes ask it for signatures over qrexec with \fBqvault-gpg\fR(1). For each
request it checks its policy, appends the request to its attestation log (an
append-only Merkle tree with signed checkpoints), signs, and answers with the
signature and a receipt proving the signature is in the log. No command
exports a secret key.
"#;

/// Sections after OPTIONS and SUBCOMMANDS, in roff.
const EXTRA: &str = r#".SH "QUBES INTEGRATION"
\fBqvault serve\fR is a qrexec socket-based service (Qubes OS 4.1 and later).
For each call, qrexec-agent connects to \fI/etc/qubes-rpc/qvault.Gpg\fR (or
\fI/etc/qubes-rpc/qvault.LogRead\fR) and first writes the NUL-terminated
descriptor \fIservice source\fR; the source qube's name comes from dom0 and is
the identity that policy and the attestation log use.
.PP
The packaged systemd unit \fBqvault.service\fR runs
\fBqvault serve \-\-home /var/lib/qvault \-\-socket /run/qvault/qvault.sock\fR
as the system user \fBqvault\fR, and both \fI/etc/qubes-rpc\fR names are
symbolic links to that socket.
It starts only in a qube where the Qubes service is enabled, from dom0:
\fBqvm-service \-\-enable VAULT qvault\fR.
Which qubes may call the vault is decided by dom0 policy in
\fI/etc/qubes/policy.d/30-qvault.policy\fR.
.PP
While the daemon runs it holds the log's writer lock: stop it
(\fBsystemctl stop qvault\fR) before \fBkeygen\fR, \fBimport\fR,
\fBlist\fR, \fBlog export\fR or \fBlog checkpoint\fR, and run them as the
\fBqvault\fR user, for example
\fBsudo \-u qvault qvault keygen \-\-home /var/lib/qvault \-\-userid "Alice <alice@example.org>"\fR.
.PP
The packaged unit gives the daemon no access to the qube's display, so a
confirmation question in the vault (\fBconfirm = "ask"\fR in the policy) cannot
be shown and the call is denied: initialize a packaged vault with
\fB\-\-no\-confirm\fR and let dom0's \fBask\fR policy be the confirmation.
.SH ENVIRONMENT
.TP
.B QVAULT_HOME
The vault directory when \fB\-\-home\fR is not given.
.TP
.B XDG_DATA_HOME
Without \fB\-\-home\fR and \fBQVAULT_HOME\fR, the vault is \fI$XDG_DATA_HOME/qvault\fR,
else \fI~/.local/share/qvault\fR.
.TP
.B QVAULT_LOG
Log filter for messages on standard error, e.g. \fBinfo\fR or \fBdebug\fR
(default: \fBinfo\fR for \fBserve\fR, \fBwarn\fR otherwise).
.TP
.B QREXEC_REMOTE_DOMAIN
For \fBrpc\fR (exec-service mode): the calling qube, set by qrexec.
.TP
.B QREXEC_SERVICE_FULL_NAME
For \fBrpc\fR: the service called (\fBqvault.Gpg\fR or \fBqvault.LogRead\fR,
with any \fB+\fIargument\fR), set by qrexec. Without it, or for another
service, the call is refused.
.SH FILES
.TP
.I /var/lib/qvault
The packaged service's vault: \fIvault.toml\fR, \fIkeys/\fR (secret keys and
revocation certificates), \fIlog/\fR (the attestation log and its key).
Kept across reboots of a template-based qube by
\fI/usr/lib/qubes-bind-dirs.d/30_qvault.conf\fR.
.TP
.I /run/qvault/qvault.sock
The socket the service listens on.
.TP
.I /etc/qubes-rpc/qvault.Gpg\fR, \fI/etc/qubes-rpc/qvault.LogRead
Symbolic links to the socket, where qrexec looks for the services.
.SH "EXIT STATUS"
0 on success, 2 on any error (the message is on standard error).
\fBrpc\fR also exits 3 when it refuses a call (no or an unknown service name)
and 4 when it ends a call because the caller sent or read nothing for
\fB\-\-io\-timeout\fR seconds; the caller gets an \fBError\fR frame where it
can still be sent.
.SH EXAMPLES
Set up the vault (in the vault qube, once):
.PP
.nf
.RS
sudo systemctl stop qvault
sudo \-u qvault qvault init \-\-home /var/lib/qvault \-\-name vault \-\-no\-confirm
sudo \-u qvault qvault keygen \-\-home /var/lib/qvault \e
    \-\-userid "Alice Volunteer <alice@example.org>"
sudo \-u qvault qvault log key \-\-home /var/lib/qvault
sudo systemctl start qvault
.RE
.fi
.SH "SEE ALSO"
.BR qvault-gpg (1),
.BR qvault-audit (1),
.BR systemctl (1)
"#;

fn main() -> std::io::Result<()> {
    let top = cli_assets::Sections { description: DESCRIPTION, extra: EXTRA };
    cli_assets::generate(cli::Cli::command(), "8", top, &cli_assets::out_dir()?)
}
