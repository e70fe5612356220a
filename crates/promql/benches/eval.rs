//! Evaluator benchmarks over a real store: `cargo bench -p metricsd-promql --bench eval`.
//!
//! The data: `PROMQL_BENCH_SERIES` (default 20,000) counter series
//! `node_cpu_seconds_total{job, instance, cpu, mode}` plus a 12-bucket histogram
//! `http_request_duration_seconds_bucket` per instance, 2h at 15s (480 samples each), in
//! the head. The side-by-side comparison with Prometheus and VictoriaMetrics is
//! `bench/src/bin/query_compare.rs`; this bench tracks our own regressions.

use criterion::{Criterion, criterion_group, criterion_main};
use metricsd_model::{Labels, Sample};
use metricsd_promql::{Engine, QueryContext};
use metricsd_tsdb::{Db, DbOptions};

const STEP: i64 = 15_000;
const POINTS: i64 = 480;

fn load() -> (tempfile::TempDir, Db) {
    let n: usize = std::env::var("PROMQL_BENCH_SERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();
    let opts = DbOptions {
        block_range_ms: 24 * 3600 * 1000,
        ..DbOptions::default()
    };
    let (db, _) = Db::open(dir.path(), "bench", opts).unwrap();
    let modes = [
        "user", "system", "idle", "iowait", "irq", "softirq", "steal", "nice",
    ];
    let per_instance = 8 * modes.len();
    let instances = n.div_ceil(per_instance);
    let mut samples = Vec::with_capacity(POINTS as usize);
    let mut app = db.appender();
    let mut added = 0;
    for inst in 0..instances {
        let instance = format!("host-{inst:05}:9100");
        let job = format!("job-{}", inst % 10);
        for cpu in 0..8 {
            for (mi, mode) in modes.iter().enumerate() {
                if added == n {
                    break;
                }
                let l = Labels::from_pairs([
                    ("__name__", "node_cpu_seconds_total"),
                    ("job", job.as_str()),
                    ("instance", instance.as_str()),
                    ("cpu", &*cpu.to_string()),
                    ("mode", mode),
                ]);
                samples.clear();
                let rate = 0.1 + (mi as f64) * 0.7 + (inst % 7) as f64 * 0.01;
                let mut v = 1000.0 * (cpu + 1) as f64;
                for k in 0..POINTS {
                    v += rate * 15.0;
                    samples.push(Sample::new(k * STEP, (v * 100.0).round() / 100.0));
                }
                app.append_many(l, &samples);
                added += 1;
            }
        }
        let bounds = [
            "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
        ];
        for (bi, le) in bounds.iter().enumerate() {
            let l = Labels::from_pairs([
                ("__name__", "http_request_duration_seconds_bucket"),
                ("job", job.as_str()),
                ("instance", instance.as_str()),
                ("le", le),
            ]);
            samples.clear();
            for k in 0..POINTS {
                samples.push(Sample::new(k * STEP, (k * (bi as i64 + 1) * 3) as f64));
            }
            app.append_many(l, &samples);
        }
        if inst % 50 == 49 {
            app.commit().unwrap();
            app = db.appender();
        }
    }
    app.commit().unwrap();
    (dir, db)
}

fn bench(c: &mut Criterion) {
    let (_dir, db) = load();
    let e = Engine::default();
    let ctx = QueryContext::default();
    let end = (POINTS - 1) * STEP;
    let start = end - 2 * 3600 * 1000 + 15 * 60 * 1000; // 1h45m of steps, 5m windows inside
    let mut g = c.benchmark_group("promql");
    g.sample_size(10);
    let (e, db, ctx) = (&e, &db, &ctx);
    let range = |q: &'static str| move || e.range_query(db, q, start, end, STEP, ctx).unwrap();
    g.bench_function("range_sum_by_rate", |b| {
        b.iter(range("sum by (job) (rate(node_cpu_seconds_total[5m]))"))
    });
    g.bench_function("range_histogram_quantile", |b| {
        b.iter(range(
            "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
        ))
    });
    g.bench_function("range_topk", |b| {
        b.iter(range("topk(10, rate(node_cpu_seconds_total[5m]))"))
    });
    g.bench_function("range_one_series", |b| {
        b.iter(range(
            "rate(node_cpu_seconds_total{instance=\"host-00001:9100\",cpu=\"0\",mode=\"user\"}[5m])",
        ))
    });
    g.bench_function("instant_regex", |b| {
        b.iter(|| {
            e.instant_query(
                db,
                "node_cpu_seconds_total{instance=~\"host-0000[0-9]:9100\",mode=~\"user|system\"}",
                end,
                ctx,
            )
            .unwrap()
        })
    });
    g.bench_function("instant_sum_rate", |b| {
        b.iter(|| {
            e.instant_query(db, "sum(rate(node_cpu_seconds_total[5m]))", end, ctx)
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
