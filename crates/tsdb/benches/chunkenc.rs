//! Chunk codec throughput on synthetic node_exporter-like series (480 samples, 15 s scrapes):
//! XorChunk append, XOR and Pco decode, encode_best.
//!
//! `cargo bench -p metricsd-tsdb --bench chunkenc -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use metricsd_model::Sample;
use metricsd_tsdb::chunkenc::{Encoding, XorChunk, decode, encode_best, encode_pco, encode_xor};

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Noisy node_exporter-like series: a CPU-seconds counter (12345.67), memory bytes, a load
/// average (0.37), a temperature (45.5), a byte counter and a constant `up`, with ±5 ms jitter.
fn series(n: usize) -> Vec<Vec<Sample>> {
    let mut r = XorShift(0x9e37_79b9_7f4a_7c15);
    (0..6)
        .map(|kind| {
            let (mut t, mut cents, mut bytes, mut x) =
                (1_700_000_000_000i64, 1_234_567i64, 8_123_456_789i64, 0.5);
            (0..n)
                .map(|_| {
                    let v = match kind {
                        0 => {
                            cents += (r.unit() * 1500.0) as i64;
                            cents as f64 / 100.0
                        }
                        1 => {
                            bytes += ((r.next() % 2001) as i64 - 1000) * 4096;
                            bytes as f64
                        }
                        2 => {
                            x = (x + (r.unit() - 0.5) * 0.1f64).clamp(0.0, 4.0);
                            (x * 100.0).round() / 100.0
                        }
                        3 => {
                            x = (x + (r.unit() - 0.5) * 0.4f64).clamp(0.0, 10.0);
                            ((40.0 + x) * 10.0).round() / 10.0
                        }
                        4 => {
                            bytes += (r.unit() * 2_000_000.0) as i64;
                            bytes as f64
                        }
                        _ => 1.0,
                    };
                    let s = Sample::new(t + (r.next() % 11) as i64 - 5, v);
                    t += 15_000;
                    s
                })
                .collect()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let data = series(480);
    let total: usize = data.iter().map(Vec::len).sum();
    let xor: Vec<Vec<u8>> = data.iter().map(|s| encode_xor(s).unwrap()).collect();
    let pco: Vec<Vec<u8>> = data.iter().map(|s| encode_pco(s).unwrap()).collect();

    let mut g = c.benchmark_group("chunkenc");
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
