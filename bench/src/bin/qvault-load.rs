//! `qvault-load`: a load generator for `qvault serve`.
//!
//! Socket mode (default): N worker threads, each making M sequential signing
//! calls over the daemon's socket with the raw protocol (descriptor, Request,
//! Data, End; one connection per call, as qrexec makes them). Every answer must
//! be a `Signed` frame with a signature and a receipt.
//!
//! Exec mode (`--exec -- CMD ARGS...`): the same, but each call runs a process
//! (e.g. `qvault-gpg --detach-sign` through simulated qrexec, or `gpg`) with the
//! data on its stdin; the call succeeds when it exits 0.
//!
//! Prints a summary and one `RESULT key=value ...` line for scripts.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use qubes_rpc::HashAlgo;
use qvault_bench::client::{detached_request, sign_once, Scratch};
use qvault_bench::stats::{ms, summarize};

#[derive(Parser)]
#[command(name = "qvault-load", about = "Concurrent signing load against `qvault serve` (or any signing command)")]
struct Args {
    /// The daemon's socket (socket mode)
    #[arg(long, required_unless_present = "exec")]
    socket: Option<PathBuf>,
    /// Concurrent workers (connections held at once)
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Sequential calls per worker
    #[arg(long, default_value_t = 1000)]
    calls: usize,
    /// Bytes of data per signature
    #[arg(long, default_value_t = 6)]
    size: usize,
    /// Calling qube name put in the qrexec descriptor
    #[arg(long, default_value = "work")]
    source: String,
    /// Key selector (default: the vault's default key)
    #[arg(long)]
    key: Option<String>,
    /// Digest: sha256, sha384, sha512 (default: the vault's)
    #[arg(long)]
    digest: Option<String>,
    /// Send known_log_size (the last checkpoint size this worker saw), so every
    /// receipt carries a consistency proof, as qvault-gpg does
    #[arg(long)]
    consistency: bool,
    /// Exec mode: run the command after `--` for every call
    #[arg(long)]
    exec: bool,
    /// Exec mode: set VAR to PREFIX/w<worker> (created) for each worker, e.g.
    /// QVAULT_GPG_HOME=/tmp/x for a client state directory per worker
    #[arg(long, value_name = "VAR=PREFIX")]
    worker_env: Vec<String>,
    /// A label for the RESULT line
    #[arg(long, default_value = "load")]
    label: String,
    #[arg(last = true)]
    command: Vec<String>,
}

struct WorkerReport {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
    indices: Vec<u64>,
}

fn worker(args: &Args, id: usize, barrier: &Barrier) -> WorkerReport {
    let data: Vec<u8> = (0..args.size).map(|i| b"hello\n"[i % 6]).collect();
    let digest = args.digest.as_deref().and_then(HashAlgo::from_gpg_name);
    let mut rep =
        WorkerReport { latencies: Vec::with_capacity(args.calls), errors: 0, first_error: None, indices: Vec::new() };
    let mut env: Vec<(String, PathBuf)> = Vec::new();
    for spec in &args.worker_env {
        if let Some((var, prefix)) = spec.split_once('=') {
            let dir = PathBuf::from(prefix).join(format!("w{id}"));
            let _ = std::fs::create_dir_all(&dir);
            env.push((var.to_owned(), dir));
        }
    }
    let mut scratch = Scratch::default();
    let mut known: Option<u64> = None;
    barrier.wait();
    for _ in 0..args.calls {
        let t = Instant::now();
        let res: anyhow::Result<Option<u64>> = if args.exec {
            run_command(&args.command, &env, &data).map(|()| None)
        } else {
            let req = detached_request(args.key.clone(), digest, if args.consistency { known } else { None });
            let socket = args.socket.as_deref().unwrap_or(std::path::Path::new(""));
            sign_once(socket, &args.source, &req, &data, &mut scratch).map(|s| {
                if let Some(i) = s.index {
                    known = Some(known.map_or(i + 1, |k| k.max(i + 1)));
                }
                s.index
            })
        };
        let dt = t.elapsed();
        match res {
            Ok(idx) => {
                rep.latencies.push(dt);
                rep.indices.extend(idx);
            }
            Err(e) => {
                rep.errors += 1;
                rep.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    rep
}

fn run_command(cmd: &[String], env: &[(String, PathBuf)], data: &[u8]) -> anyhow::Result<()> {
    let (prog, rest) = cmd.split_first().context("no command after --")?;
    let mut c = Command::new(prog);
    c.args(rest).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().with_context(|| format!("running {prog}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(data)?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        anyhow::bail!("{prog} exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.workers > 0 && args.calls > 0, "--workers and --calls must be at least 1");
    anyhow::ensure!(!args.exec || !args.command.is_empty(), "--exec needs a command after --");
    let args = Arc::new(args);
    let barrier = Arc::new(Barrier::new(args.workers + 1));
    let handles: Vec<_> = (0..args.workers)
        .map(|id| {
            let (args, barrier) = (args.clone(), barrier.clone());
            std::thread::spawn(move || worker(&args, id, &barrier))
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut reports = Vec::new();
    for h in handles {
        reports.push(h.join().map_err(|_| anyhow::anyhow!("a worker panicked"))?);
    }
    let elapsed = start.elapsed();
    let mut lat: Vec<Duration> = reports.iter().flat_map(|r| r.latencies.iter().copied()).collect();
    let errors: usize = reports.iter().map(|r| r.errors).sum();
    let mut seen = HashSet::new();
    let dup = reports.iter().flat_map(|r| r.indices.iter()).filter(|i| !seen.insert(**i)).count();
    let ok = lat.len();
    let s = summarize(&mut lat);
    let rate = ok as f64 / elapsed.as_secs_f64();
    println!(
        "{}: {} workers x {} calls ({} bytes each): {ok} signed, {errors} failed, in {:.3} s = {rate:.1} signatures/s",
        args.label,
        args.workers,
        args.calls,
        args.size,
        elapsed.as_secs_f64()
    );
    println!(
        "  latency ms: min {} p50 {} p90 {} p99 {} max {} mean {}",
        ms(s.min),
        ms(s.p50),
        ms(s.p90),
        ms(s.p99),
        ms(s.max),
        ms(s.mean)
    );
    if dup > 0 {
        println!("  WARNING: {dup} log indices were returned twice");
    }
    if let Some(e) = reports.iter().find_map(|r| r.first_error.as_ref()) {
        println!("  first error: {e}");
    }
    println!(
        "RESULT label={} workers={} calls={} ok={ok} errors={errors} dup_indices={dup} elapsed_s={:.4} sigs_per_s={rate:.1} \
         p50_ms={} p90_ms={} p99_ms={} max_ms={}",
        args.label,
        args.workers,
        args.calls,
        elapsed.as_secs_f64(),
        ms(s.p50),
        ms(s.p90),
        ms(s.p99),
        ms(s.max)
    );
    if errors > 0 {
        std::process::exit(1);
    }
    Ok(())
}
