//! WAL benchmarks: encoding a 1000-sample record, and `Wal::log` throughput in samples/s
//! under the fsync policies that do not fsync per call.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use metricsd_tsdb::wal::{FsyncPolicy, Record, RefSample, Wal, WalOptions};

const SAMPLES: usize = 1000;

/// A scrape-like batch: 1000 series with consecutive refs, one timestamp, gauge-ish values
/// and a few staleness markers.
fn batch(t: i64) -> Record {
    Record::Samples(
        (0..SAMPLES)
            .map(|i| RefSample {
                series_ref: 10_000 + i as u64,
                t: t + (i % 3) as i64,
                v: if i % 97 == 0 {
                    f64::from_bits(metricsd_model::STALE_NAN)
                } else {
                    (i as f64 * 1.37).sin() * 1e3
                },
            })
            .collect(),
    )
}

fn encode(c: &mut Criterion) {
    let rec = batch(1_700_000_000_000);
    let mut buf = Vec::new();
    rec.encode(&mut buf);
    let mut g = c.benchmark_group("wal_record");
    g.throughput(Throughput::Elements(SAMPLES as u64));
    g.bench_function("encode_samples_1000", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&rec).encode(&mut buf);
            black_box(buf.len())
        })
    });
    g.bench_function("decode_samples_1000", |b| {
        b.iter(|| Record::decode(black_box(&buf)).unwrap())
    });
    g.finish();
    eprintln!("encoded 1000 samples: {} bytes", buf.len());
}

fn log(c: &mut Criterion) {
    let recs: Vec<Record> = (0..16).map(|i| batch(1_700_000_000_000 + i * 15_000)).collect();
    let mut g = c.benchmark_group("wal_log");
    g.throughput(Throughput::Elements(SAMPLES as u64));
    for (name, fsync) in [
        ("never", FsyncPolicy::Never),
        ("interval_1s", FsyncPolicy::Interval(Duration::from_secs(1))),
    ] {
        g.bench_function(format!("log_samples_1000_{name}"), |b| {
            // A fresh WAL per measurement so that the directory does not grow without bound.
            b.iter_custom(|iters| {
                let dir = tempfile::tempdir().unwrap();
                let opts = WalOptions {
                    segment_size: 128 << 20,
                    fsync,
                };
                let (wal, _) = Wal::open(dir.path(), opts).unwrap();
                let start = Instant::now();
                for i in 0..iters {
                    wal.log(std::slice::from_ref(&recs[i as usize % recs.len()]))
                        .unwrap();
                }
                let elapsed = start.elapsed();
                wal.close().unwrap();
                elapsed
            })
        });
    }
    g.finish();
}

criterion_group!(benches, encode, log);
criterion_main!(benches);
