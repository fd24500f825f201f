//! `verify_log` over a synthetic 100,000-entry export held in memory (made in
//! the setup with `qvault_bench::synth`, i.e. the `qvault_attest` entry, tree,
//! note and bundle APIs), as `qvault-audit verify-log` runs it.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use qvault_attest::audit::verify_log;
use qvault_bench::synth;

const N: u64 = 100_000;

fn audit(c: &mut Criterion) {
    let mut export = Vec::new();
    synth::write_log(N, &mut export).expect("synthesize");
    let key = synth::verifier();
    let rep = verify_log(&export[..], &key, &[], false);
    assert!(rep.ok && rep.entries == N, "{:?}", rep.problems);

    let mut g = c.benchmark_group("verify_log_100k");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("verify_log", |b| b.iter(|| verify_log(black_box(&export[..]), &key, &[], false).entries));
    g.finish();
}

criterion_group!(benches, audit);
criterion_main!(benches);
