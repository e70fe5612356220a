//! Block open and index lookups on a 100k-series block; the query path over a block
//! (select, then read and decode every chunk) on 10k series × 480 samples.
//!
//! `cargo bench -p metricsd-tsdb --bench block -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use metricsd_model::{Labels, MatchOp, Matcher, Sample};
use metricsd_tsdb::block::{Block, CompactionMeta, write_block};
use metricsd_tsdb::index::{IndexReader, postings_for_matchers};
use metricsd_tsdb::{Db, DbOptions, Queryable};

const METRICS: usize = 10;
const INSTANCES: usize = 10_000;

/// 100k series: 10 metrics × 10k instances × 1 of 4 jobs, 16 samples each.
fn build(dir: &std::path::Path) -> PathBuf {
    let mut series: Vec<(Labels, Vec<Sample>)> = Vec::with_capacity(METRICS * INSTANCES);
    for m in 0..METRICS {
        for i in 0..INSTANCES {
            let l = Labels::from_pairs([
                ("__name__", format!("metric_{m}")),
                ("instance", format!("host-{i}")),
                ("job", format!("job-{}", i % 4)),
            ]);
            let samples = (0..16)
                .map(|t| Sample::new(t * 15_000, (t + i as i64) as f64))
                .collect();
            series.push((l, samples));
        }
    }
    series.sort_by(|a, b| a.0.cmp(&b.0));
    let meta = write_block(dir, 0, 3_600_000, series.into_iter(), CompactionMeta::default()).unwrap();
    dir.join(meta.ulid)
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let bdir = build(tmp.path());
    let block = Block::open(&bdir).unwrap();
    eprintln!(
        "block: {} series, index {} bytes, total {} bytes",
        block.index().num_series(),
        std::fs::metadata(bdir.join("index")).unwrap().len(),
        block.size_bytes()
    );

    c.bench_function("block_open_100k_series", |b| {
        b.iter(|| black_box(Block::open(&bdir).unwrap()))
    });

    let re = [Matcher::new(MatchOp::Regex, "instance", "host-1.*").unwrap()];
    c.bench_function("select_instance_regex_host-1.*", |b| {
        b.iter(|| black_box(postings_for_matchers(block.index(), &re).unwrap()))
    });
    let re_name = [
        Matcher::equal("__name__", "metric_3"),
        Matcher::new(MatchOp::Regex, "instance", "host-1.*").unwrap(),
    ];
    c.bench_function("select_name_eq_and_instance_regex", |b| {
        b.iter(|| black_box(postings_for_matchers(block.index(), &re_name).unwrap()))
    });
    c.bench_function("label_values_instance_10k", |b| {
        b.iter(|| black_box(block.index().label_values("instance").unwrap()))
    });
    c.bench_function("for_each_label_value_instance_10k", |b| {
        b.iter(|| {
            let mut n = 0usize;
            block
                .index()
                .for_each_label_value("instance", &mut |v| n += v.len())
                .unwrap();
            black_box(n)
        })
    });
    c.bench_function("series_labels_and_chunks", |b| {
        let mut chunks = Vec::new();
        let mut id = 0u32;
        b.iter(|| {
            id = (id + 7919) % block.index().num_series();
            block.series_chunks(id, &mut chunks).unwrap();
            black_box((block.index().series_labels(id).unwrap(), chunks.len()))
        })
    });
}

/// A store holding one block of 10k series (1 metric × 2.5k instances × 4 modes) × 480
/// samples at 15 s (2h), noisy counters: what a `rate` over a block reads.
fn query_bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = Db::open(tmp.path(), "bench", DbOptions::default()).unwrap();
    let mut series = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..2_500 {
        for mode in ["idle", "user", "system", "iowait"] {
            let l = Labels::from_pairs([
                ("__name__", "node_cpu_seconds_total".to_string()),
                ("instance", format!("host-{i}")),
                ("mode", mode.to_string()),
            ]);
            let mut v = 0.0;
            let samples: Vec<Sample> = (0..480)
                .map(|t| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    v += (x % 1500) as f64 / 100.0;
                    Sample::new(t * 15_000, v)
                })
                .collect();
            series.push((l, samples));
        }
    }
    db.import(series).unwrap();
    assert_eq!(db.blocks().len(), 1);
    let all = [Matcher::equal("__name__", "node_cpu_seconds_total")];
    let q = db.querier(0, 7_200_000).unwrap();
    c.bench_function("block_query_decode_10k_series_x480", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for s in q.select(&all).unwrap() {
                n += s.iter().count();
            }
            assert_eq!(n, 4_800_000);
            black_box(n)
        })
    });
    let one = [
        Matcher::equal("__name__", "node_cpu_seconds_total"),
        Matcher::equal("instance", "host-1234"),
        Matcher::equal("mode", "user"),
    ];
    c.bench_function("block_query_decode_1_series_x480", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for s in q.select(&one).unwrap() {
                n += s.iter().count();
            }
            assert_eq!(n, 480);
            black_box(n)
        })
    });
}

criterion_group!(benches, bench, query_bench);
criterion_main!(benches);
