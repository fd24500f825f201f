//! `qvault-ab`: runs two or more commands alternately (A B, B A, A B, ...: the
//! order flips every round so drift and cache effects hit both sides alike),
//! several times each, and reports wall-time medians and ratios to the first.
//!
//! Commands are exec'd directly (no shell), with stdin from `--stdin` (or
//! /dev/null) and stdout/stderr discarded; a non-zero exit fails the benchmark.
//! With `--rss` each run is wrapped in `/usr/bin/time -f %M` to get its peak RSS
//! (adds about a millisecond of wall time to every side alike).
//!
//! Usage: `qvault-ab --label L --name gpg --name qvault -- A ARGS ::: [VAR=VALUE...] B ARGS`
//! (leading `VAR=VALUE` words set that command's environment, as in a shell).

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use qvault_bench::stats::{median, ms, summarize};

#[derive(Parser)]
#[command(name = "qvault-ab", about = "Alternating A/B wall-time benchmark of whole commands")]
struct Args {
    /// Measured runs per command
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Unmeasured runs per command first
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// File fed to every run's stdin
    #[arg(long)]
    stdin: Option<PathBuf>,
    /// Measure peak RSS with /usr/bin/time
    #[arg(long)]
    rss: bool,
    /// Bytes processed per run, to report throughput
    #[arg(long)]
    bytes: Option<u64>,
    /// A name per command, in order
    #[arg(long)]
    name: Vec<String>,
    /// Label of the case in RESULT lines
    #[arg(long, default_value = "ab")]
    label: String,
    /// Commands, separated by `:::`
    #[arg(last = true)]
    commands: Vec<String>,
}

struct Side {
    name: String,
    /// Leading `VAR=VALUE` words of the command, set in its environment.
    env: Vec<(String, String)>,
    argv: Vec<String>,
    times: Vec<Duration>,
    rss_kib: Vec<u64>,
}

fn run_once(args: &Args, side: &Side, rss_file: &std::path::Path) -> anyhow::Result<(Duration, Option<u64>)> {
    let mut cmd = if args.rss {
        let mut c = Command::new("/usr/bin/time");
        c.arg("-f").arg("%M").arg("-o").arg(rss_file).args(&side.argv);
        c
    } else {
        let mut c = Command::new(&side.argv[0]);
        c.args(&side.argv[1..]);
        c
    };
    let stdin = match &args.stdin {
        Some(p) => Stdio::from(File::open(p).with_context(|| format!("opening {}", p.display()))?),
        None => Stdio::null(),
    };
    cmd.envs(side.env.iter().map(|(k, v)| (k, v))).stdin(stdin).stdout(Stdio::null()).stderr(Stdio::piped());
    let t = Instant::now();
    let out = cmd.spawn().with_context(|| format!("running {}", side.argv[0]))?.wait_with_output()?;
    let dt = t.elapsed();
    if !out.status.success() {
        anyhow::bail!("{} failed ({}): {}", side.name, out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    let rss = if args.rss {
        std::fs::read_to_string(rss_file)?.lines().filter_map(|l| l.trim().parse::<u64>().ok()).next_back()
    } else {
        None
    };
    Ok((dt, rss))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut sides: Vec<Side> = Vec::new();
    for part in args.commands.split(|a| a == ":::") {
        anyhow::ensure!(!part.is_empty(), "an empty command");
        let i = sides.len();
        let name = args.name.get(i).cloned().unwrap_or_else(|| format!("cmd{}", i + 1));
        let n_env = part.iter().take_while(|w| w.contains('=') && !w.starts_with(['/', '-', '.'])).count();
        let env =
            part[..n_env].iter().filter_map(|w| w.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))).collect();
        let argv = part[n_env..].to_vec();
        anyhow::ensure!(!argv.is_empty(), "a command with only VAR=VALUE words");
        sides.push(Side { name, env, argv, times: Vec::new(), rss_kib: Vec::new() });
    }
    anyhow::ensure!(!sides.is_empty(), "no command given (after --, separated by :::)");
    let rss_file = std::env::temp_dir().join(format!("qvault-ab-rss.{}", std::process::id()));
    let total = args.warmup + args.runs;
    for round in 0..total {
        let order: Vec<usize> =
            if round % 2 == 0 { (0..sides.len()).collect() } else { (0..sides.len()).rev().collect() };
        for i in order {
            let (dt, rss) = run_once(&args, &sides[i], &rss_file)?;
            if round >= args.warmup {
                sides[i].times.push(dt);
                sides[i].rss_kib.extend(rss);
            }
        }
    }
    let _ = std::fs::remove_file(&rss_file);
    let base = median(&{
        let mut t = sides[0].times.clone();
        t.sort_unstable();
        t
    });
    println!("{}: {} runs each after {} warm-up, alternating", args.label, args.runs, args.warmup);
    for s in &mut sides {
        let sum = summarize(&mut s.times);
        let ratio = sum.p50.as_secs_f64() / base.as_secs_f64();
        let mut line = format!(
            "  {:<28} median {:>10} ms  min {:>10}  max {:>10}  ratio to {} {:.3}",
            s.name,
            ms(sum.p50),
            ms(sum.min),
            ms(sum.max),
            "first",
            ratio
        );
        let mut result = format!(
            "RESULT label={} name={} median_ms={} min_ms={} max_ms={} ratio={ratio:.4}",
            args.label,
            s.name,
            ms(sum.p50),
            ms(sum.min),
            ms(sum.max)
        );
        if let Some(b) = args.bytes {
            let mbps = b as f64 / sum.p50.as_secs_f64() / 1e6;
            line.push_str(&format!("  {mbps:.0} MB/s"));
            result.push_str(&format!(" mb_per_s={mbps:.1}"));
        }
        if !s.rss_kib.is_empty() {
            s.rss_kib.sort_unstable();
            let med = s.rss_kib[s.rss_kib.len() / 2];
            let max = s.rss_kib[s.rss_kib.len() - 1];
            line.push_str(&format!(
                "  peak RSS median {:.1} MiB (max {:.1})",
                med as f64 / 1024.0,
                max as f64 / 1024.0
            ));
            result.push_str(&format!(" rss_median_kib={med} rss_max_kib={max}"));
        }
        println!("{line}");
        println!("{result}");
    }
    Ok(())
}
