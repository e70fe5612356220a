//! Hostile queries: each is refused (or answered) with bounded stack, memory and time, and
//! the engine stays usable. The rows of issue 11's table, at the engine's level; the HTTP
//! layer's regressions are in `crates/cli/tests/api/abuse.rs`.

use std::time::{Duration, Instant};

use metricsd_model::{Labels, Sample};
use metricsd_promql::{Engine, EngineOptions, QueryContext, QueryError, Value};
use metricsd_tsdb::{Db, DbOptions};

const MIN: i64 = 60_000;

fn store(series: usize, minutes: i64) -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Db::open(dir.path(), "t", DbOptions::default()).unwrap();
    let mut app = db.appender();
    for s in 0..series {
        let l = Labels::from_pairs([("__name__", "x"), ("i", &*s.to_string())]);
        let samples: Vec<Sample> = (0..minutes).map(|k| Sample::new(k * MIN, k as f64)).collect();
        app.append_many(l, &samples);
    }
    app.commit().unwrap();
    (dir, db)
}

fn instant(e: &Engine, db: &Db, q: &str, t: i64) -> Result<metricsd_promql::QueryResult, QueryError> {
    e.instant_query(db, q, t, &QueryContext::default())
}

fn too_many_samples(r: Result<metricsd_promql::QueryResult, QueryError>) {
    let e = r.expect_err("refused");
    assert_eq!(e.error_type(), "execution", "{e}");
    assert!(e.to_string().contains("too many samples"), "{e}");
}

#[test]
fn deep_nesting_is_refused_before_parsing() {
    let (_d, db) = store(1, 1);
    let e = Engine::default();
    for q in [
        format!("{}x{}", "abs(".repeat(1500), ")".repeat(1500)),
        format!("1{}", "+1".repeat(5000)),
        format!("{}1", "-".repeat(5000)),
        format!("x{}", "[1m:1m]".repeat(1000)),
        format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000)),
    ] {
        let err = instant(&e, &db, &q, 0).expect_err("refused");
        assert_eq!(err.error_type(), "bad_data");
        assert!(err.to_string().contains("nests more than 512"), "{err}");
    }
    // Long but shallow queries are not: many matchers, arguments and grouping labels.
    let labels: Vec<String> = (0..2000).map(|i| format!("l{i}")).collect();
    let q = format!(
        "sum by ({}) (x{{i=~\"{}\"}})",
        labels.join(", "),
        "a|".repeat(2000)
    );
    instant(&e, &db, &q, 0).unwrap();
}

#[test]
fn accepted_depths_evaluate_on_a_small_stack() {
    // The evaluator grows its stack as it recurses, so the deepest accepted trees run even
    // on a thread with 256 KiB of stack (each level is several frames of several KiB).
    let (_d, db) = store(3, 10);
    let e = Engine::default();
    let queries = [
        (format!("{}x{}", "abs(".repeat(250), ")".repeat(250)), 3usize),
        (format!("x{}", " + x".repeat(500)), 3),
        (format!("{}sum(x){}", "-(".repeat(250), ")".repeat(250)), 1),
    ];
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn_scoped(s, || {
                for (q, n) in &queries {
                    let r = instant(&e, &db, q, 5 * MIN).unwrap_or_else(|e| panic!("{q:.40}: {e}"));
                    let Value::Vector(v) = r.value else { panic!() };
                    assert_eq!(v.len(), *n, "{q:.40}");
                }
            })
            .unwrap()
            .join()
            .unwrap();
    });
}

#[test]
fn huge_subquery_grids_are_refused_before_allocation() {
    let (_d, db) = store(20, 10);
    let e = Engine::default();
    let start = Instant::now();
    too_many_samples(instant(&e, &db, "quantile_over_time(0.5, x[30d:1ms])", 10 * MIN));
    too_many_samples(instant(&e, &db, "vector(1)[100y:1ms]", 10 * MIN));
    too_many_samples(instant(&e, &db, "sum(count_over_time(x[1d:1ms]))", 10 * MIN));
    too_many_samples(e.range_query(
        &db,
        "max_over_time(x[1d:1ms])",
        0,
        10 * MIN,
        MIN,
        &QueryContext::default(),
    ));
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
}

#[test]
fn wide_subquery_rows_are_charged_as_they_are_made() {
    // 20 series on a 600k-step grid: one row fits a 1M-sample budget (2M slots), twenty do
    // not, and the query fails after a few rows instead of allocating all of them.
    let (_d, db) = store(20, 10);
    let e = Engine::new(EngineOptions {
        max_samples: 1_000_000,
        ..EngineOptions::default()
    });
    too_many_samples(instant(&e, &db, "max_over_time(x[10m:1ms])", 10 * MIN));
    too_many_samples(instant(&e, &db, "sum(count_over_time(x[10m:1ms]))", 10 * MIN));
    // The same shapes at a coarse step are fine.
    let r = instant(&e, &db, "sum(count_over_time(x[10m:1s]))", 10 * MIN).unwrap();
    let Value::Vector(v) = r.value else { panic!() };
    assert_eq!(v[0].v, 20.0 * 601.0);
}

#[test]
fn wide_results_are_charged_before_they_exceed_the_budget() {
    // 500 series x 11,000 steps is 5.5M slots: over a 2M-sample budget (4M slots) even if
    // the values were sparse.
    let (_d, db) = store(500, 2);
    let e = Engine::new(EngineOptions {
        max_samples: 2_000_000,
        lookback_delta_ms: 1,
        ..EngineOptions::default()
    });
    let ctx = QueryContext::default();
    too_many_samples(e.range_query(&db, "x", 0, 11_000 * 1000, 1000, &ctx));
    too_many_samples(e.range_query(&db, "rate(x[5m])", 0, 11_000 * 1000, 1000, &ctx));
    too_many_samples(e.range_query(&db, "count_values(\"v\", x)", 0, 11_000 * 1000, 1000, &ctx));
    // Streamed aggregations hold one row per group, not per series.
    e.range_query(&db, "sum(x)", 0, 11_000 * 1000, 1000, &ctx)
        .unwrap();
}

#[test]
fn the_deadline_ends_a_long_query() {
    // One series, one step: every step's window holds a day of samples, sorted for the
    // quantile, 11,000 times. The deadline is checked inside the step loop, so the query
    // stops within about its timeout although each series alone takes far longer.
    let (_d, db) = store(4, 60 * 24 * 3);
    let e = Engine::new(EngineOptions {
        query_threads: 1,
        ..EngineOptions::default()
    });
    let ctx = QueryContext {
        deadline: Some(Instant::now() + Duration::from_millis(300)),
        ..QueryContext::default()
    };
    let start = Instant::now();
    let end = 3 * 24 * 60 * MIN;
    let err = e
        .range_query(
            &db,
            "quantile_over_time(0.5, x[1d])",
            end - 10_999 * 10_000,
            end,
            10_000,
            &ctx,
        )
        .expect_err("timed out");
    assert!(matches!(err, QueryError::Timeout(_)), "{err}");
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
}

#[test]
fn time_arithmetic_saturates_instead_of_overflowing() {
    let (_d, db) = store(1, 10);
    let e = Engine::default();
    let ctx = QueryContext::default();
    for q in [
        "x offset 292000000y",
        "x offset -292000000y",
        "rate(x[292000000y])",
        "x @ 9223372036854775.807",
        "x @ -9223372036854775.808",
        "max_over_time(x[292000000y:1y])",
        "max_over_time(x[1m:1m] offset -292000000y)",
    ] {
        // Either an answer or an error: never a panic or a wrapped window.
        let _ = e.instant_query(&db, q, 5 * MIN, &ctx);
        let _ = e.range_query(&db, q, i64::MIN / 2, i64::MIN / 2 + 1000, 1000, &ctx);
    }
    let err = e.range_query(&db, "x", i64::MIN, i64::MAX, 1, &ctx).unwrap_err();
    assert_eq!(err.error_type(), "bad_data");
    let err = e
        .range_query(&db, "x", i64::MIN, i64::MAX, i64::MAX, &ctx)
        .map(|_| ());
    assert!(err.is_ok(), "{err:?}");
}
