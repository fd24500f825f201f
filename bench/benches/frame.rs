//! Frame codec: encode and decode of one full data frame (256 KiB), the unit
//! both ends move a large file in.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use qubes_rpc::frame::{decode, encode_into};
use qubes_rpc::{ClientFrame, FrameReader, FrameWriter, CHUNK_SIZE};

fn frames(c: &mut Criterion) {
    let data: Vec<u8> = (0..CHUNK_SIZE).map(|i| (i * 31 % 251) as u8).collect();
    let mut encoded = Vec::new();
    encode_into(&ClientFrame::Data(&data), &mut encoded).expect("encode");

    let mut g = c.benchmark_group("frame_256KiB");
    g.throughput(Throughput::Bytes(CHUNK_SIZE as u64));
    let mut out = Vec::with_capacity(CHUNK_SIZE + 64);
    g.bench_function("encode_into", |b| {
        b.iter(|| {
            out.clear();
            encode_into(&ClientFrame::Data(black_box(&data)), &mut out).expect("encode");
            black_box(out.len())
        })
    });
    let mut w = FrameWriter::new(std::io::sink());
    g.bench_function("FrameWriter::send", |b| b.iter(|| w.send(&ClientFrame::Data(black_box(&data))).expect("send")));
    g.bench_function("decode", |b| {
        b.iter(|| match decode::<ClientFrame<'_>>(black_box(&encoded[4..])).expect("decode") {
            ClientFrame::Data(d) => d.len(),
            _ => 0,
        })
    });
    g.bench_function("FrameReader::next", |b| {
        b.iter(|| {
            let mut r = FrameReader::new(black_box(&encoded[..]));
            match r.next::<ClientFrame<'_>>().expect("read") {
                Some(ClientFrame::Data(d)) => d.len(),
                _ => 0,
            }
        })
    });
    g.finish();
}

criterion_group!(benches, frames);
criterion_main!(benches);
