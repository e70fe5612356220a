//! Append throughput into the head (no WAL), one thread and all threads, and through
//! `Db::appender` with the WAL, on node_exporter-like series.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use metricsd_model::Labels;
use metricsd_tsdb::head::{Head, HeadOptions, SeriesRef};
use metricsd_tsdb::{Db, DbOptions, FsyncPolicy, WalOptions};

const SERIES: usize = 10_000;
const STEPS: i64 = 20;

fn series_labels(i: usize) -> Labels {
    let modes = [
        "user", "system", "idle", "iowait", "irq", "softirq", "steal", "nice",
    ];
    Labels::from_pairs([
        ("__name__", "node_cpu_seconds_total".to_owned()),
        ("cpu", (i / 8 % 16).to_string()),
        ("instance", format!("host-{:05}:9100", i / 128)),
        ("job", "node".to_owned()),
        ("mode", modes[i % 8].to_owned()),
    ])
}

/// A counter-like value: increases by a varying amount with two decimals.
fn value(i: usize, step: i64) -> f64 {
    let x = (i as i64 * 7919 + step * 104_729) % 1000;
    ((step * 1500 + x) as f64) / 100.0
}

fn refs(head: &Head) -> Vec<SeriesRef> {
    (0..SERIES)
        .map(|i| head.series_ref(&series_labels(i)).unwrap())
        .collect()
}

fn bench_head(c: &mut Criterion) {
    let mut g = c.benchmark_group("head_append");
    g.throughput(Throughput::Elements(SERIES as u64 * STEPS as u64));
    g.sample_size(10);
    g.bench_function("one_thread", |b| {
        b.iter_batched(
            || {
                let head = Head::new(HeadOptions::default());
                let r = refs(&head);
                (head, r)
            },
            |(head, r)| {
                for step in 0..STEPS {
                    let t = 1_700_000_000_000 + step * 15_000;
                    for (i, s) in r.iter().enumerate() {
                        head.append_sample(s, t, value(i, step)).unwrap();
                    }
                }
                black_box(head)
            },
            BatchSize::PerIteration,
        )
    });
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    g.bench_function(format!("{threads}_threads"), |b| {
        b.iter_batched(
            || {
                let head = Arc::new(Head::new(HeadOptions::default()));
                let r = Arc::new(refs(&head));
                (head, r)
            },
            |(head, r)| {
                std::thread::scope(|sc| {
                    for th in 0..threads {
                        let (head, r) = (&head, &r);
                        sc.spawn(move || {
                            for step in 0..STEPS {
                                let t = 1_700_000_000_000 + step * 15_000;
                                for i in (th..SERIES).step_by(threads) {
                                    head.append_sample(&r[i], t, value(i, step)).unwrap();
                                }
                            }
                        });
                    }
                });
                black_box(head)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("db_commit");
    g.throughput(Throughput::Elements(SERIES as u64 * STEPS as u64));
    g.sample_size(10);
    let labels: Vec<Labels> = (0..SERIES).map(series_labels).collect();
    for (name, fsync) in [
        ("wal_fsync_never", FsyncPolicy::Never),
        ("wal_fsync_1s", FsyncPolicy::default()),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().unwrap();
                    let opts = DbOptions {
                        wal: WalOptions {
                            fsync,
                            ..WalOptions::default()
                        },
                        ..DbOptions::default()
                    };
                    let (db, _) = Db::open(dir.path(), "default", opts).unwrap();
                    // Series exist already: measure steady-state ingestion, 2,000-sample batches.
                    let mut a = db.appender();
                    for l in &labels {
                        a.append(l.clone(), 1_699_999_985_000, 0.0);
                    }
                    a.commit().unwrap();
                    (dir, db)
                },
                |(dir, db)| {
                    for step in 0..STEPS {
                        let t = 1_700_000_000_000 + step * 15_000;
                        for chunk in labels.chunks(2000).enumerate() {
                            let mut a = db.appender();
                            for (j, l) in chunk.1.iter().enumerate() {
                                a.append(l.clone(), t, value(chunk.0 * 2000 + j, step));
                            }
                            a.commit().unwrap();
                        }
                    }
                    black_box((dir, db))
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench_head);
criterion_main!(benches);
