//! Chunk codec throughput on one host of `metricsd-datagen`'s node_exporter-like data set
//! (noisy profile, ±5 ms of scrape jitter; every series of the host, 480 samples at 15 s):
//! XorChunk append, XOR and Pco decode, encode_best.
//!
//! `cargo bench -p metricsd-tsdb --bench chunkenc -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use metricsd_datagen::{GenConfig, generate};
use metricsd_model::Sample;
use metricsd_tsdb::chunkenc::{Encoding, XorChunk, decode, encode_best, encode_pco, encode_xor};

/// Every series of one host (a few hundred), noisy and jittered.
fn series() -> Vec<Vec<Sample>> {
    let ds = generate(&GenConfig {
        jitter_ms: 5,
        ..Default::default()
    });
    ds.iter().map(|(_, s)| s).collect()
}

fn bench(c: &mut Criterion) {
    let data = series();
    let total: usize = data.iter().map(Vec::len).sum();
    let xor: Vec<Vec<u8>> = data.iter().map(|s| encode_xor(s).unwrap()).collect();
    let pco: Vec<Vec<u8>> = data.iter().map(|s| encode_pco(s).unwrap()).collect();

    let mut g = c.benchmark_group("chunkenc");
    // An iteration codes a whole host (hundreds of thousands of samples, milliseconds):
    // criterion's default of 100 samples takes at least 5,050 iterations, ten (its minimum) 55.
    g.sample_size(10);
    g.throughput(Throughput::Elements(total as u64));
    g.bench_function("xor_append", |b| {
        b.iter(|| {
            for s in &data {
                let mut c = XorChunk::new();
                for x in s {
                    c.append(x.t, x.v);
                }
                black_box(c.bytes());
            }
        })
    });
    let mut dst = Vec::with_capacity(480);
    g.bench_function("xor_decode", |b| {
        b.iter(|| {
            for x in &xor {
                dst.clear();
                decode(Encoding::Xor, black_box(x), &mut dst).unwrap();
            }
        })
    });
    g.bench_function("pco_decode", |b| {
        b.iter(|| {
            for p in &pco {
                dst.clear();
                decode(Encoding::Pco, black_box(p), &mut dst).unwrap();
            }
        })
    });
    g.bench_function("encode_best", |b| {
        b.iter(|| {
            for s in &data {
                black_box(encode_best(black_box(s)));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
