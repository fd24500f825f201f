//! `qvault-audit`: offline verification of qvault logs, signatures and receipts.
//!
//! Exit codes: 0 verified, 1 verification failed, 2 usage or input error.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use qvault_attest::audit::{self, Evidence};
use qvault_attest::bundle::{self, Record};
use qvault_attest::cli::{Cli, Cmd, KeyArg, LogEvidence};
use qvault_attest::merkle::verify_consistency;
use qvault_attest::note::{Checkpoint, Verifier};
use qvault_attest::receipt::hashes;
use qvault_attest::tiles;
use qvault_attest::upload;
use qvault_attest::Entry;

#[path = "../witness_cmd.rs"]
mod witness_cmd;

/// A failed verification (exit 1), as opposed to bad input (exit 2).
struct Failed;

/// `println!` that ignores a reader that has gone (`qvault-audit ... | head`):
/// the verdict is the exit status, which must not become a panic.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(Failed)) => ExitCode::from(1),
        Err(e) => {
            if cli.json {
                say!("{}", serde_json::json!({ "verdict": "error", "error": format!("{e:#}") }));
            }
            eprintln!("qvault-audit: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn read_limited(p: &Path, limit: u64) -> anyhow::Result<Vec<u8>> {
    let mut v = Vec::new();
    File::open(p).with_context(|| format!("opening {}", p.display()))?.take(limit + 1).read_to_end(&mut v)?;
    anyhow::ensure!(v.len() as u64 <= limit, "{} is larger than {limit} bytes", p.display());
    Ok(v)
}

fn log_key(arg: &KeyArg) -> anyhow::Result<Verifier> {
    let text = if Path::new(&arg.log_key).is_file() {
        String::from_utf8(read_limited(Path::new(&arg.log_key), 4096)?)?
    } else {
        arg.log_key.clone()
    };
    Ok(Verifier::parse(text.trim())?)
}

fn open_log(p: &Path) -> anyhow::Result<BufReader<File>> {
    Ok(BufReader::with_capacity(1 << 20, File::open(p).with_context(|| format!("opening {}", p.display()))?))
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "verified"
    } else {
        "FAILED"
    }
}

fn run(cli: &Cli) -> anyhow::Result<Result<(), Failed>> {
    match &cli.cmd {
        Cmd::VerifyLog { log, key, checkpoint } => {
            let key = log_key(key)?;
            let extra = checkpoint
                .iter()
                .map(|p| Ok(String::from_utf8(read_limited(p, 16 * 1024)?)?))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let rep = audit::verify_log(open_log(log)?, &key, &extra, false);
            if cli.json {
                let mut v = serde_json::to_value(&rep)?;
                v["verdict"] = verdict(rep.ok).into();
                say!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                say!("log {}: {}", log.display(), verdict(rep.ok));
                say!("  origin:      {}", rep.origin.as_deref().unwrap_or("?"));
                say!("  entries:     {}", rep.entries);
                say!("  root:        {}", rep.root);
                say!(
                    "  checkpoints: {} verified, newest covers {} entries",
                    rep.checkpoints_verified,
                    rep.latest_checkpoint_size.unwrap_or(0)
                );
                say!("  signatures:  {}", rep.signatures);
                for k in &rep.keys {
                    say!("  key {}: {} (entry {}, {})", k.fingerprint, k.origin, k.index, when(k.time));
                }
                for p in &rep.problems {
                    say!("  PROBLEM: {p}");
                }
            }
            Ok(if rep.ok { Ok(()) } else { Err(Failed) })
        }
        Cmd::Witness { log, key, policy, state, proof, ca_file } => {
            let key = log_key(key)?;
            let text = String::from_utf8(read_limited(policy, qvault_attest::witness::MAX_POLICY as u64)?)?;
            let policy =
                qvault_attest::witness::Policy::parse(&text).with_context(|| format!("{}", policy.display()))?;
            let rep = audit::verify_log(open_log(log)?, &key, &[], false);
            anyhow::ensure!(rep.ok, "the log does not verify: {}", rep.problems.join("; "));
            let (entries, note) = tiles::from_export(open_log(log)?)?;
            let (tree, cp) = witness_cmd::tree_of(&entries, &note, &key)?;
            let r = witness_cmd::run(&policy, &tree, &note, &cp, state, ca_file.as_deref())?;
            if !r.alarm {
                let cosigned = std::fs::read_to_string(&r.cosigned_checkpoint)?;
                for p in proof {
                    witness_cmd::reanchor(p, &entries, &tree, &cosigned, &key)?;
                }
            }
            if cli.json {
                say!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                say!("checkpoint of {} entries: quorum {}", r.size, if r.quorum_met { "met" } else { "NOT met" });
                for o in &r.witnesses {
                    say!("  witness {}: {}", o.witness, o.result);
                    if let Some(e) = &o.evidence {
                        say!("    evidence kept in {e}");
                    }
                }
                say!("  cosigned checkpoint: {}", r.cosigned_checkpoint.display());
            }
            if r.alarm {
                anyhow::bail!(
                    "a witness refused this log's checkpoint or has seen a larger one: see the evidence kept"
                );
            }
            Ok(if r.quorum_met { Ok(()) } else { Err(Failed) })
        }
        Cmd::VerifyTiles { dir, key } => {
            let key = log_key(key)?;
            // A tile that is missing, malformed or disagrees fails the log
            // (exit 1), as a bad entry does; only unreadable input is exit 2.
            let (rep, files) = match tiles::read_dir(dir, &key) {
                Ok(t) => (audit::verify_log(&tiles::to_export(&t)[..], &key, &[], false), t.files),
                Err(tiles::TilesError::Io(p, e)) => anyhow::bail!("{p}: {e}"),
                Err(e) => {
                    let mut rep = audit::LogReport::default();
                    rep.problems.push(e.to_string());
                    (rep, 0)
                }
            };
            if cli.json {
                let mut v = serde_json::to_value(&rep)?;
                v["verdict"] = verdict(rep.ok).into();
                v["tile_files"] = files.into();
                say!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                say!("tiles {}: {}", dir.display(), verdict(rep.ok));
                say!("  origin:      {}", rep.origin.as_deref().unwrap_or("?"));
                say!("  entries:     {} (from {files} tile and bundle files)", rep.entries);
                say!("  root:        {}", rep.root);
                say!("  signatures:  {}", rep.signatures);
                for p in &rep.problems {
                    say!("  PROBLEM: {p}");
                }
            }
            Ok(if rep.ok { Ok(()) } else { Err(Failed) })
        }
        Cmd::VerifySignature { file, sig, key, receipt, log, policy } => {
            let key = log_key(key)?;
            let sig_bytes = read_limited(sig, 1 << 20)?;
            let mut data = File::open(file).with_context(|| format!("opening {}", file.display()))?;
            let receipt_bytes;
            let evidence = match (receipt, log) {
                (Some(r), _) => {
                    receipt_bytes = read_limited(r, qvault_attest::receipt::MAX_RECEIPT as u64)?;
                    Evidence::Receipt(&receipt_bytes)
                }
                (None, Some(l)) => Evidence::Log(Box::new(audit::verify_log(open_log(l)?, &key, &[], true))),
                (None, None) => anyhow::bail!("give --receipt or --log"),
            };
            let mut rep = audit::verify_signature(&mut data, &sig_bytes, evidence, &key);
            // The witnesses' quorum on the receipt's checkpoint, from a tlog-policy.
            let mut witnessed = None;
            if let (Some(p), Some(r)) = (policy, receipt) {
                let text = String::from_utf8(read_limited(p, qvault_attest::witness::MAX_POLICY as u64)?)?;
                let policy =
                    qvault_attest::witness::Policy::parse(&text).with_context(|| format!("{}", p.display()))?;
                let receipt =
                    qvault_attest::Receipt::parse(&read_limited(r, qvault_attest::receipt::MAX_RECEIPT as u64)?)?;
                if let Ok(cp) = Checkpoint::open(&receipt.checkpoint, &key) {
                    let who = policy.cosigners(&receipt.checkpoint, &cp);
                    let names = policy.names(&who);
                    let met = policy.quorum_met(&who);
                    if !met {
                        rep.ok = false;
                        rep.problems.push(format!(
                            "the witness quorum of {} is not met: the checkpoint is cosigned by {}",
                            p.display(),
                            if names.is_empty() { "no witness of the policy".to_owned() } else { names.join(", ") }
                        ));
                    }
                    witnessed = Some((names.join(", "), met));
                }
            }
            if cli.json {
                let mut v = serde_json::to_value(&rep)?;
                v["verdict"] = verdict(rep.ok).into();
                if let Some((names, met)) = &witnessed {
                    v["witnesses"] = names.as_str().into();
                    v["quorum_met"] = (*met).into();
                }
                say!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                say!("signature {}: {}", sig.display(), verdict(rep.ok));
                say!("  signature valid over {}: {}", file.display(), if rep.signature_valid { "yes" } else { "no" });
                if let Some(s) = &rep.signer {
                    say!("  signing key: {s} (primary {})", rep.primary.as_deref().unwrap_or("?"));
                }
                if let (Some(o), Some(t)) = (&rep.key_origin, rep.key_time) {
                    say!("  key origin:  {o}, {} (log entry {})", when(t), rep.key_index.unwrap_or(0));
                }
                if let Some(i) = rep.log_index {
                    say!(
                        "  log entry:   {i}, {} in a checkpoint of {} entries{}",
                        if rep.logged { "included" } else { "NOT matched" },
                        rep.checkpoint_size.unwrap_or(0),
                        rep.caller.as_deref().map(|c| format!(", requested by qube {c}")).unwrap_or_default()
                    );
                }
                if let Some((names, met)) = &witnessed {
                    say!(
                        "  witnesses:   {} (quorum {})",
                        if names.is_empty() { "none" } else { names },
                        if *met { "met" } else { "NOT met" }
                    );
                }
                match rep.hashed_by.as_deref() {
                    Some("client") => say!("  data hashed: by the calling qube (the vault signed its hash state)"),
                    Some(_) => say!("  data hashed: in the vault"),
                    None => {}
                }
                for p in &rep.problems {
                    say!("  PROBLEM: {p}");
                }
            }
            Ok(if rep.ok { Ok(()) } else { Err(Failed) })
        }
        Cmd::Consistency { old, new, key, log, proof } => {
            let key = log_key(key)?;
            let old_note = String::from_utf8(read_limited(old, 16 * 1024)?)?;
            let new_note = String::from_utf8(read_limited(new, 16 * 1024)?)?;
            let o = Checkpoint::open(&old_note, &key).with_context(|| format!("{}", old.display()))?;
            let n = Checkpoint::open(&new_note, &key).with_context(|| format!("{}", new.display()))?;
            let (ok, why) = if o.size == n.size && o.root != n.root {
                (
                    false,
                    "equivocation: both are signed by the log key for the same size with different roots".to_owned(),
                )
            } else if o.size > n.size {
                (false, format!("NEW ({} entries) is older than OLD ({} entries): rollback", n.size, o.size))
            } else if let Some(l) = log {
                let rep = audit::verify_log(open_log(l)?, &key, &[old_note.clone(), new_note.clone()], false);
                (rep.ok, rep.problems.join("\n"))
            } else if let Some(p) = proof {
                let text = String::from_utf8(read_limited(p, 64 * 1024)?)?;
                let proof =
                    hashes(&text.lines().map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()).collect::<Vec<_>>())?;
                let ok = verify_consistency(o.size, n.size, &o.root, &n.root, &proof);
                (ok, if ok { String::new() } else { "the consistency proof does not hold: the log forked".into() })
            } else {
                anyhow::bail!("give --log or --proof");
            };
            if cli.json {
                say!(
                    "{}",
                    serde_json::json!({"verdict": verdict(ok), "old_size": o.size, "new_size": n.size, "problem": why})
                );
            } else {
                say!(
                    "checkpoints {} -> {} entries: {}",
                    o.size,
                    n.size,
                    if ok { "consistent" } else { "NOT consistent" }
                );
                if !ok {
                    say!("  PROBLEM: {why}\n--- old:\n{old_note}--- new:\n{new_note}");
                }
            }
            Ok(if ok { Ok(()) } else { Err(Failed) })
        }
        Cmd::Fetch { vault, output, tiles: tiles_dir, checkpoint } => {
            let (log, note) = fetch(vault)?;
            if let Some(output) = output {
                std::fs::write(output, &log).with_context(|| format!("writing {}", output.display()))?;
            }
            if let Some(dir) = tiles_dir {
                let (entries, newest) = tiles::from_export(&log[..])?;
                let n = tiles::write_dir(dir, &entries, &newest)?;
                eprintln!("wrote {n} new tile files for {} entries to {}", entries.len(), dir.display());
            }
            if let Some(c) = checkpoint {
                std::fs::write(c, &note).with_context(|| format!("writing {}", c.display()))?;
            }
            eprintln!("fetched {} bytes of log from {vault}", log.len());
            Ok(Ok(()))
        }
        Cmd::VerifyUpload { changes, evidence } => {
            let (log, key, notes) = upload_log(evidence)?;
            let mut rep =
                upload::verify_upload(changes, &log, &key).with_context(|| format!("reading {}", changes.display()))?;
            upload_quorum(evidence, &mut rep, &key, &notes)?;
            report_upload(cli.json, &format!("upload {}", changes.display()), &rep)
        }
        Cmd::VerifyBundle { files, evidence } => {
            let (log, key, notes) = upload_log(evidence)?;
            let mut rep = upload::verify_bundle(files, &log, &key)?;
            upload_quorum(evidence, &mut rep, &key, &notes)?;
            report_upload(cli.json, "bundle", &rep)
        }
        Cmd::Show { log } => {
            let mut r = bundle::Reader::new(open_log(log)?)?;
            let mut i = 0u64;
            let mut out = Vec::new();
            while let Some(rec) = r.next_record()? {
                match rec {
                    Record::Entry(bytes) => {
                        match Entry::parse(bytes, i) {
                            Ok(e) => {
                                if cli.json {
                                    out.push(serde_json::to_value(&e)?);
                                } else {
                                    say!("{}", describe(&e));
                                }
                            }
                            Err(err) => say!("{i:>8}  MALFORMED: {err}"),
                        }
                        i += 1;
                    }
                    Record::Checkpoint(_) => {}
                }
            }
            if cli.json {
                say!("{}", serde_json::to_string_pretty(&out)?);
            }
            Ok(Ok(()))
        }
    }
}

/// The log an upload is checked against, verified whole (entries kept).
fn upload_log(ev: &LogEvidence) -> anyhow::Result<(audit::LogReport, Verifier, Vec<String>)> {
    let key = log_key(&ev.key)?;
    let extra = ev
        .checkpoint
        .iter()
        .map(|p| Ok(String::from_utf8(read_limited(p, 16 * 1024)?)?))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((audit::verify_log(open_log(&ev.log)?, &key, &extra, true), key, extra))
}

/// With `--tlog-policy`, the witnesses' quorum on the given checkpoints.
fn upload_quorum(
    ev: &LogEvidence,
    rep: &mut upload::UploadReport,
    key: &Verifier,
    notes: &[String],
) -> anyhow::Result<()> {
    let Some(p) = &ev.tlog_policy else { return Ok(()) };
    let text = String::from_utf8(read_limited(p, qvault_attest::witness::MAX_POLICY as u64)?)?;
    let policy = qvault_attest::witness::Policy::parse(&text).with_context(|| format!("{}", p.display()))?;
    upload::check_quorum(rep, &policy, &p.display().to_string(), notes, key);
    Ok(())
}

fn report_upload(json: bool, what: &str, rep: &upload::UploadReport) -> anyhow::Result<Result<(), Failed>> {
    if json {
        let mut v = serde_json::to_value(rep)?;
        v["verdict"] = verdict(rep.ok).into();
        say!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(if rep.ok { Ok(()) } else { Err(Failed) });
    }
    say!("{what}: {}", verdict(rep.ok));
    say!(
        "  log:          {} ({} entries, newest checkpoint covers {}){}",
        rep.log_origin.as_deref().unwrap_or("?"),
        rep.log_entries,
        rep.checkpoint_size.unwrap_or(0),
        if rep.log_ok { "" } else { ", DOES NOT VERIFY" }
    );
    for s in &rep.signatures {
        say!("  signature on {}: {}", s.file, verdict(s.ok));
        if let (Some(signer), Some(i)) = (&s.signer, s.log_index) {
            say!(
                "    signed by {signer}, log entry {i}, {}{}",
                s.logged_at.map(when).unwrap_or_default(),
                s.caller.as_deref().map(|c| format!(", requested by qube {c}")).unwrap_or_default()
            );
        }
        if let Some(d) = &s.decision {
            say!("    policy:     {d}");
        }
        if let Some(sum) = &s.summary {
            say!("    what:       {sum}");
        }
        if let Some(k) = &s.key {
            say!(
                "    key:        {} {}, {} (log entry {}{})",
                k.fingerprint,
                k.origin,
                when(k.time),
                k.index,
                k.vault.as_deref().map(|v| format!(", vault {v:?}")).unwrap_or_default()
            );
            if k.generated_in_vault {
                say!("    never exported: {}", k.never_exported);
            }
        }
        if let Some(st) = &s.declared_state {
            say!(
                "    vault state (self-reported, entry {}): qvault {}, binary sha256 {}, policy {}, interfaces {}, qube {}, template {}",
                st.index,
                st.version,
                st.binary_sha256,
                st.policy_digest,
                st.interfaces.join(","),
                st.qube_name.as_deref().unwrap_or("(not told)"),
                st.qube_template.as_deref().unwrap_or("(not told)")
            );
        }
        for p in &s.problems {
            say!("    PROBLEM: {p}");
        }
    }
    for f in &rep.files {
        match &f.problem {
            None => say!("  file {}: matches {}", f.name, f.listed_in),
            Some(p) => say!("  file {}: PROBLEM: {p}", f.name),
        }
    }
    for p in &rep.problems {
        say!("  PROBLEM: {p}");
    }
    say!("  witness quorum: {}", rep.witness_quorum);
    say!("  this cannot prove:");
    for c in &rep.cannot_prove {
        say!("    - {c}");
    }
    Ok(if rep.ok { Ok(()) } else { Err(Failed) })
}

/// One call to qvault.LogRead for each of: the export, the newest checkpoint.
fn fetch(vault: &str) -> anyhow::Result<(Vec<u8>, String)> {
    use qubes_rpc::transport::{spawn_client, SERVICE_LOG_READ};
    use qubes_rpc::{ClientFrame, FrameReader, FrameWriter, Op, Request, ServerFrame};
    let call = |op: Op| -> anyhow::Result<(Vec<u8>, Option<String>)> {
        let mut child = spawn_client(vault, SERVICE_LOG_READ)?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            anyhow::bail!("no pipes to qrexec-client-vm");
        };
        let mut w = FrameWriter::new(stdin);
        w.send(&ClientFrame::Request(Request::new(op)))?;
        drop(w);
        let mut r = FrameReader::new(stdout);
        let mut out = Vec::new();
        let mut note = None;
        loop {
            match r.next::<ServerFrame<'_>>()? {
                Some(ServerFrame::Output(b)) => {
                    anyhow::ensure!(out.len() + b.len() <= 4 << 30, "the log export exceeds 4 GiB");
                    out.extend_from_slice(b);
                }
                Some(ServerFrame::Exported) | None => break,
                Some(ServerFrame::Checkpoint(c)) => {
                    note = Some(c.checkpoint);
                    break;
                }
                Some(ServerFrame::Error(e)) => anyhow::bail!("the vault refused: {}", e.message),
                Some(_) => anyhow::bail!("unexpected answer from the vault"),
            }
        }
        let st = child.wait()?;
        anyhow::ensure!(st.success() || !out.is_empty() || note.is_some(), "qrexec-client-vm failed: {st}");
        Ok((out, note))
    };
    let (log, _) = call(Op::ExportLog)?;
    anyhow::ensure!(!log.is_empty(), "the vault sent no log");
    let (_, note) = call(Op::Checkpoint { old_size: None })?;
    Ok((log, note.unwrap_or_default()))
}

fn when(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map_or_else(|| t.to_string(), |d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

fn describe(e: &Entry) -> String {
    use qvault_attest::Event::*;
    let what = match &e.event {
        LogCreated { vault, origin, .. } => format!("log created for vault {vault:?} ({origin})"),
        KeyGenerated { fingerprint, algorithm, .. } => {
            format!("key {fingerprint} ({algorithm}) generated in the vault")
        }
        KeyImported { fingerprint, algorithm, .. } => format!("key {fingerprint} ({algorithm}) imported"),
        KeyAttached { fingerprint, algorithm, card, .. } => {
            format!(
                "key {fingerprint} ({algorithm}) attached from gpg-agent{}",
                if *card { " (smartcard)" } else { "" }
            )
        }
        KeyUpdated { fingerprint, change, .. } => format!("key {fingerprint}: {change}"),
        Signature { key, mode, sig_type, hash_algo, data_len, data_digest, decision, summary, .. } => format!(
            "{mode} {sig_type} signature by {key}, {data_len} bytes, {hash_algo} {}..., {decision}{}",
            &data_digest[..16.min(data_digest.len())],
            summary.as_deref().map(|s| format!("\n          what: {s}")).unwrap_or_default()
        ),
        VaultState { version, binary_sha256, policy_digest, interfaces, qube_name, qube_template, .. } => format!(
            "vault state (self-reported): qvault {version}, binary {}..., policy {}..., interfaces: {}, qube {}, template {}",
            &binary_sha256[..16],
            &policy_digest[..16],
            interfaces.join(","),
            qube_name.as_deref().unwrap_or("(not told)"),
            qube_template.as_deref().unwrap_or("(not told)")
        ),
        DaemonStarted { version, interfaces } => {
            format!("daemon {version} started, interfaces: {}", interfaces.join(","))
        }
        PolicyChanged { policy_digest } => format!("policy changed ({}...)", &policy_digest[..16]),
        Void { reason } => format!("position void, no signature made: {reason}"),
    };
    let src = e.source.as_deref().map(|s| format!(" [{s}]")).unwrap_or_default();
    format!("{:>8}  {}  {what}{src}", e.index, when(e.time))
}
