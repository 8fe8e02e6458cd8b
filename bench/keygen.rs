//! Criterion benchmark of code generation (seed P-06: > 10,000 keys/s; our target
//! 1,000,000 codes/s).
//!
//! `permutation`: the pure counter → code mapping. `generator`: the whole key
//! generator handing out codes from blocks leased from a real SQLite store, as the
//! create path uses it. Run: `cargo bench --bench keygen`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kurz::keygen::{KeyGenerator, Permutation};
use kurz::store::LinkStore;

#[path = "support.rs"]
mod support;

fn permutation(c: &mut Criterion) {
    let perm = Permutation::new(*b"benchmark-key-16");
    let mut g = c.benchmark_group("keygen");
    g.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    g.bench_function("permutation", |b| {
        b.iter(|| {
            n += 1;
            black_box(perm.code_for(black_box(n)))
        })
    });
    g.finish();
}

fn generator(c: &mut Criterion) {
    let (rt, store, _dir) = support::sqlite_store();
    let store: Arc<dyn LinkStore> = Arc::new(store);
    let keygen = KeyGenerator::new(*b"benchmark-key-16", store, 100_000);
    let mut g = c.benchmark_group("keygen");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("generator_batch_1000", |b| {
        b.iter(|| rt.block_on(keygen.next_codes(1000)))
    });
    g.finish();
}

criterion_group!(benches, permutation, generator);
criterion_main!(benches);
