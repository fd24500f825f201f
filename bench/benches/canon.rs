//! Canonicalizer throughput per mode on 16 MiB of text-like data, fed in the
//! daemon's 256 KiB chunks; the sink only counts (hashing is measured apart).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use qubes_rpc::canon::{Canon, Canonicalizer};
use qubes_rpc::CHUNK_SIZE;

const SIZE: usize = 16 << 20;

/// Source-code-like lines: 20 to 100 bytes, every 8th with trailing spaces,
/// every 16th CR LF terminated.
fn text() -> Vec<u8> {
    let mut v = Vec::with_capacity(SIZE + 128);
    let mut i = 0usize;
    while v.len() < SIZE {
        let len = 20 + (i * 37) % 80;
        v.extend((0..len).map(|j| b"abcdefghij klmnopqrst-uvwxyz(){};"[(i + j) % 33]));
        if i.is_multiple_of(8) {
            v.extend_from_slice(b"   ");
        }
        v.extend_from_slice(if i.is_multiple_of(16) { b"\r\n" } else { b"\n" });
        i += 1;
    }
    v.truncate(SIZE);
    v
}

fn canon(c: &mut Criterion) {
    let data = text();
    let mut g = c.benchmark_group("canon_16MiB");
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.sample_size(20);
    for (name, mode) in [("binary", Canon::Binary), ("text", Canon::Text), ("cleartext", Canon::Cleartext)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut c = Canonicalizer::new(mode);
                let mut n = 0usize;
                for chunk in black_box(&data).chunks(CHUNK_SIZE) {
                    c.update(chunk, &mut |s| n += black_box(s).len()).expect("canon");
                }
                n
            })
        });
    }
    g.finish();
}

criterion_group!(benches, canon);
criterion_main!(benches);
