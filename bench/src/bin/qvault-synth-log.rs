//! `qvault-synth-log`: writes a synthetic log export of N entries (see
//! `qvault_bench::synth`) and its verifier key, for `qvault-audit verify-log`.

use std::io::BufWriter;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;

#[derive(Parser)]
#[command(name = "qvault-synth-log", about = "Write a synthetic qvault log export")]
struct Args {
    /// Number of entries
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
    /// Export file to write
    #[arg(long)]
    out: PathBuf,
    /// Where to write the log's verifier key
    #[arg(long)]
    key_out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let t = Instant::now();
    let f = std::fs::File::create(&args.out)?;
    let w = qvault_bench::synth::write_log(args.entries, BufWriter::with_capacity(1 << 20, f))?;
    std::fs::write(&args.key_out, format!("{}\n", qvault_bench::synth::verifier().encode()))?;
    println!(
        "wrote {} entries, {} checkpoints, {} bytes to {} in {:.2} s",
        w.entries,
        w.checkpoints,
        w.bytes,
        args.out.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
