//! Engine-level behaviour: result shapes, limits, timeouts and cancellation.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use metricsd_model::{Labels, Sample};
use metricsd_promql::{Engine, EngineOptions, QueryContext, QueryError, Value};
use metricsd_tsdb::{Db, DbOptions};

fn store(series: usize, points: i64) -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Db::open(dir.path(), "t", DbOptions::default()).unwrap();
    let mut app = db.appender();
    for s in 0..series {
        let l = Labels::from_pairs([("__name__", "m"), ("i", &*s.to_string())]);
        let samples: Vec<Sample> = (0..points).map(|k| Sample::new(k * 15_000, k as f64)).collect();
        app.append_many(l, &samples);
    }
    app.commit().unwrap();
    (dir, db)
}

#[test]
fn instant_range_selector_returns_raw_samples() {
    let (_d, db) = store(1, 10);
    let e = Engine::default();
    let r = e
        .instant_query(&db, "m[1m]", 60_000, &QueryContext::default())
        .unwrap();
    let Value::Matrix(m) = r.value else { panic!() };
    assert_eq!(m.len(), 1);
    // Both window ends are inclusive: 0s, 15s, 30s, 45s, 60s.
    let ts: Vec<i64> = m[0].points.iter().map(|p| p.t).collect();
    assert_eq!(ts, vec![0, 15_000, 30_000, 45_000, 60_000]);
    assert_eq!(m[0].labels.get("__name__"), Some("m"));
}

#[test]
fn range_query_of_a_scalar_is_one_unlabelled_series() {
    let (_d, db) = store(1, 1);
    let r = Engine::default()
        .range_query(&db, "1 + 1", 0, 60_000, 30_000, &QueryContext::default())
        .unwrap();
    let Value::Matrix(m) = r.value else { panic!() };
    assert_eq!(m.len(), 1);
    assert!(m[0].labels.is_empty());
    assert_eq!(m[0].points.len(), 3);
    assert!(m[0].points.iter().all(|p| p.v == 2.0));
}

#[test]
fn range_query_parameters_are_checked() {
    let (_d, db) = store(1, 1);
    let e = Engine::default();
    let ctx = QueryContext::default();
    let err = e.range_query(&db, "m", 10, 0, 1, &ctx).unwrap_err();
    assert_eq!(err.error_type(), "bad_data");
    let err = e.range_query(&db, "m", 0, 10, 0, &ctx).unwrap_err();
    assert_eq!(err.error_type(), "bad_data");
    let err = e.range_query(&db, "m", 0, 11_001_000, 1_000, &ctx).unwrap_err();
    assert!(err.to_string().contains("11000 points"), "{err}");
    // Exactly 11,000 steps after the start is allowed, as in Prometheus.
    e.range_query(&db, "m", 0, 11_000_000, 1_000, &ctx).unwrap();
    let err = e.range_query(&db, "m[5m]", 0, 10, 1, &ctx).unwrap_err();
    assert!(err.to_string().contains("range vector"), "{err}");
    let err = e.instant_query(&db, "sum(", 0, &ctx).unwrap_err();
    assert_eq!((err.error_type(), err.http_status()), ("bad_data", 400));
}

#[test]
fn max_samples_is_enforced() {
    let (_d, db) = store(50, 100);
    let e = Engine::new(EngineOptions {
        max_samples: 1_000,
        ..EngineOptions::default()
    });
    let err = e
        .range_query(&db, "m", 0, 1_485_000, 15_000, &QueryContext::default())
        .unwrap_err();
    assert_eq!(err.error_type(), "execution");
    assert!(err.to_string().contains("too many samples"), "{err}");
    // Streaming aggregation holds one series at a time, so this fits.
    e.range_query(&db, "sum(m)", 0, 1_485_000, 15_000, &QueryContext::default())
        .unwrap();
}

#[test]
fn timeout_and_cancellation() {
    let (_d, db) = store(10, 10);
    let e = Engine::default();
    let ctx = QueryContext {
        cancel: None,
        deadline: Some(Instant::now() - Duration::from_secs(1)),
    };
    let err = e.instant_query(&db, "m", 0, &ctx).unwrap_err();
    assert!(matches!(err, QueryError::Timeout(_)), "{err:?}");
    assert_eq!(err.http_status(), 503);
    let flag = Arc::new(AtomicBool::new(true));
    let err = e
        .instant_query(&db, "m", 0, &QueryContext::with_cancel(flag))
        .unwrap_err();
    assert!(matches!(err, QueryError::Canceled(_)), "{err:?}");
}

#[test]
fn duplicate_series_on_the_one_side_is_an_execution_error() {
    let (_d, db) = store(3, 10);
    let err = Engine::default()
        .instant_query(&db, "m + on() m", 60_000, &QueryContext::default())
        .unwrap_err();
    assert_eq!(err.error_type(), "execution");
    assert!(err.to_string().contains("many-to-many"), "{err}");
}

#[test]
fn parallel_evaluation_equals_sequential() {
    // Enough series for the parallel path (it starts at 128), with resets and gaps.
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Db::open(dir.path(), "t", DbOptions::default()).unwrap();
    let mut app = db.appender();
    for s in 0..1000i64 {
        for name in ["a_total", "b_total"] {
            let l = Labels::from_pairs([
                ("__name__", name),
                ("i", &*s.to_string()),
                ("g", &*(s % 7).to_string()),
            ]);
            let samples: Vec<Sample> = (0..200)
                .filter(|k| (k + s) % 13 != 0)
                .map(|k| Sample::new(k * 15_000, ((k * (s % 5 + 1)) % 97) as f64))
                .collect();
            app.append_many(l, &samples);
        }
    }
    app.commit().unwrap();
    let seq = Engine::new(EngineOptions {
        query_threads: 1,
        ..EngineOptions::default()
    });
    let par = Engine::new(EngineOptions {
        query_threads: 3,
        ..EngineOptions::default()
    });
    let ctx = QueryContext::default();
    for q in [
        "a_total",
        "sum by (g) (rate(a_total[2m]))",
        "rate(a_total[5m])",
        "topk(3, irate(a_total[1m]))",
        "last_over_time(a_total[1m])",
        "absent_over_time(a_total{i=\"7\"}[30s])",
        "max_over_time(a_total[3m]) - ignoring(__name__) min_over_time(b_total[3m])",
    ] {
        let a = seq.range_query(&db, q, 300_000, 2_900_000, 30_000, &ctx).unwrap();
        let b = par.range_query(&db, q, 300_000, 2_900_000, 30_000, &ctx).unwrap();
        assert_eq!(a.value, b.value, "{q}");
        assert_eq!(a.stats.samples_loaded, b.stats.samples_loaded, "{q}");
        let a = seq.instant_query(&db, q, 1_000_000, &ctx).unwrap();
        let b = par.instant_query(&db, q, 1_000_000, &ctx).unwrap();
        assert_eq!(a.value, b.value, "{q}");
    }
    // Errors raised while the workers run stop the query.
    let err = par
        .range_query(
            &db,
            "rate({__name__=~\"a_total|b_total\"}[5m])",
            0,
            2_900_000,
            30_000,
            &ctx,
        )
        .unwrap_err();
    assert_eq!(err.error_type(), "execution");
    let flag = Arc::new(AtomicBool::new(true));
    let err = par
        .range_query(
            &db,
            "sum(rate(a_total[5m]))",
            0,
            2_900_000,
            30_000,
            &QueryContext::with_cancel(flag),
        )
        .unwrap_err();
    assert!(matches!(err, QueryError::Canceled(_)), "{err:?}");
}

/// A `le="NaN"` bucket among many (an exporter's bad bucket summed with good ones): the
/// bounds were sorted with a comparison that is no order with NaN, and the standard sort
/// may panic on one; it did on these 22 buckets. A NaN bound now sorts above +Inf, so the
/// group has no +Inf bound last and its quantile is NaN.
#[test]
fn histogram_quantile_over_a_nan_bound_is_nan_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Db::open(dir.path(), "t", DbOptions::default()).unwrap();
    let mut app = db.appender();
    let mut put = |instance: &str, le: &str, v: f64| {
        let l = Labels::from_pairs([("__name__", "h_bucket"), ("instance", instance), ("le", le)]);
        app.append_many(l, &[Sample::new(0, v)]);
    };
    put("a", "100", 20.0);
    put("a", "NaN", 20.0);
    for k in 1..20 {
        put("b", &(k * 5).to_string(), f64::from(k));
    }
    put("b", "+Inf", 20.0);
    // A well-formed histogram beside it keeps its answer.
    put("c", "1", 5.0);
    put("c", "+Inf", 10.0);
    app.commit().unwrap();
    let e = Engine::default();
    let ctx = QueryContext::default();
    let q = |q: &str| {
        let Value::Vector(v) = e.instant_query(&db, q, 0, &ctx).unwrap().value else {
            panic!("{q}: not a vector")
        };
        v
    };
    let v = q("histogram_quantile(0.5, sum by (le) (h_bucket{instance=~\"a|b\"}))");
    assert_eq!(v.len(), 1);
    assert!(v[0].v.is_nan(), "{v:?}");
    let v = q("histogram_quantile(0.5, sum by (le) (h_bucket{instance=\"c\"}))");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].v, 1.0);
}
