//! Merkle proofs: verifying an inclusion proof and a consistency proof in a
//! tree of one million leaves (20-21 hashes each), and appending a leaf.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use qvault_attest::merkle::{leaf_hash, verify_consistency, verify_inclusion, Frontier, MemTree, Subtrees as _};

const N: u64 = 1_000_000;

fn merkle(c: &mut Criterion) {
    let mut t = MemTree::default();
    for i in 0..N {
        t.push_leaf(leaf_hash(&i.to_be_bytes()));
    }
    let root = t.root();
    let m = 765_431u64;
    let leaf = leaf_hash(&m.to_be_bytes());
    let Ok(proof) = t.inclusion_proof(m, N);
    assert!(verify_inclusion(&leaf, m, N, &proof, &root));
    let old = 654_321u64;
    let Ok(old_root) = t.range(0, old);
    let Ok(cproof) = t.consistency_proof(old, N);
    assert!(verify_consistency(old, N, &old_root, &root, &cproof));

    let mut g = c.benchmark_group("merkle_1M");
    g.bench_function("verify_inclusion", |b| {
        b.iter(|| verify_inclusion(black_box(&leaf), black_box(m), N, black_box(&proof), &root))
    });
    g.bench_function("verify_consistency", |b| {
        b.iter(|| verify_consistency(black_box(old), N, &old_root, &root, black_box(&cproof)))
    });
    g.bench_function("inclusion_proof_from_memtree", |b| b.iter(|| t.inclusion_proof(black_box(m), N)));
    let mut f = Frontier::new();
    g.bench_function("frontier_push_and_root", |b| {
        b.iter(|| {
            f.push(black_box(leaf));
            f.root()
        })
    });
    g.finish();
}

criterion_group!(benches, merkle);
criterion_main!(benches);
