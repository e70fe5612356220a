//! What the values mean: counters, histograms, summaries, batches, tenants, limits.

use serde_json::json;

use crate::util::{Server, sample};

#[test]
fn counter_accumulates_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = |v: f64| json!({"name": "orders_total", "value": v, "type": "counter", "labels": {"shop": "a"}});
    let s = Server::start(dir.path());
    for v in [1.0, 2.5, 0.0] {
        assert_eq!(s.track(&c(v)).0, 200);
    }
    assert_eq!(
        sample(&s.get("/metrics").1, r#"orders_total{shop="a"}"#),
        Some(3.5)
    );
    assert_eq!(s.stop(), Some(0));
    let s = Server::start(dir.path());
    assert_eq!(s.track(&c(4.0)).0, 200);
    assert_eq!(
        sample(&s.get("/metrics").1, r#"orders_total{shop="a"}"#),
        Some(7.5)
    );
    let v = s.get_json("/metrics/series?name=orders_total");
    let vals: Vec<f64> = v["series"][0]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_f64().unwrap())
        .collect();
    assert_eq!(vals, vec![1.0, 3.5, 3.5, 7.5]);
    // Gauges set.
    s.track(&json!({"name": "temp_celsius", "value": 20, "type": "gauge"}));
    s.track(&json!({"name": "temp_celsius", "value": -3.5, "type": "gauge"}));
    assert_eq!(sample(&s.get("/metrics").1, "temp_celsius"), Some(-3.5));
}

#[test]
fn histogram_buckets_for_known_observations() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let items: Vec<_> = [0.003, 0.02, 0.3, 7.0, 20.0]
        .iter()
        .map(|v| json!({"name": "rt_seconds", "value": v, "type": "histogram"}))
        .collect();
    assert_eq!(
        s.post("/metrics/track/batch", json!(items).to_string(), &[]).0,
        200
    );
    let text = s.get("/metrics").1;
    let want = [
        ("0.005", 1.0),
        ("0.01", 1.0),
        ("0.025", 2.0),
        ("0.05", 2.0),
        ("0.1", 2.0),
        ("0.25", 2.0),
        ("0.5", 3.0),
        ("1", 3.0),
        ("2.5", 3.0),
        ("5", 3.0),
        ("10", 4.0),
        ("+Inf", 5.0),
    ];
    for (le, n) in want {
        assert_eq!(
            sample(&text, &format!("rt_seconds_bucket{{le=\"{le}\"}}")),
            Some(n),
            "le={le}\n{text}"
        );
    }
    assert!((sample(&text, "rt_seconds_sum").unwrap() - 27.323).abs() < 1e-9);
    assert_eq!(sample(&text, "rt_seconds_count"), Some(5.0));
    // Buckets given on first use stick, also across a restart.
    s.track(&json!({"name": "size_bytes", "value": 150, "type": "histogram", "buckets": [100, 1000]}));
    assert_eq!(s.stop(), Some(0));
    let s = Server::start(dir.path());
    s.track(&json!({"name": "size_bytes", "value": 50, "type": "histogram"}));
    let text = s.get("/metrics").1;
    assert_eq!(
        sample(&text, "size_bytes_bucket{le=\"100\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, "size_bytes_bucket{le=\"1000\"}"), Some(2.0));
    assert_eq!(sample(&text, "size_bytes_bucket{le=\"+Inf\"}"), Some(2.0));
    assert_eq!(sample(&text, "size_bytes_count"), Some(2.0));
    assert!(sample(&text, "size_bytes_bucket{le=\"0.005\"}").is_none());
}

#[test]
fn summary_quantiles() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let items: Vec<_> = (1..=100)
        .map(|v| json!({"name": "job_seconds", "value": v, "type": "summary"}))
        .collect();
    assert_eq!(
        s.post("/metrics/track/batch", json!(items).to_string(), &[]).0,
        200
    );
    let text = s.get("/metrics").1;
    assert!(text.contains("# TYPE job_seconds summary"));
    assert_eq!(sample(&text, "job_seconds{quantile=\"0.5\"}"), Some(50.0));
    assert_eq!(sample(&text, "job_seconds{quantile=\"0.9\"}"), Some(90.0));
    assert_eq!(sample(&text, "job_seconds{quantile=\"0.99\"}"), Some(99.0));
    assert_eq!(sample(&text, "job_seconds_sum"), Some(5050.0));
    assert_eq!(sample(&text, "job_seconds_count"), Some(100.0));
}

#[test]
fn partial_batch_failure_stores_the_valid_items() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let body = json!([
        {"name": "a_total", "value": 1, "type": "counter"},
        {"name": "b", "value": "x", "type": "gauge"},
        {"name": "c", "value": 3, "type": "gauge"},
        {"name": "d_total", "value": -1, "type": "counter"},
        {"name": "", "value": 1, "type": "gauge"},
    ]);
    let (st, v) = s.post("/metrics/track/batch", body.to_string(), &[]);
    assert_eq!(st, 200);
    assert_eq!(v["success"], false);
    assert_eq!(
        (
            v["total"].as_u64(),
            v["successful"].as_u64(),
            v["failed"].as_u64()
        ),
        (Some(5), Some(2), Some(3))
    );
    let errs = v["errors"].as_array().unwrap();
    let idx: Vec<u64> = errs.iter().map(|e| e["index"].as_u64().unwrap()).collect();
    assert_eq!(idx, vec![1, 3, 4]);
    assert_eq!(errs[0]["error"]["field"], "[1].value");
    assert_eq!(errs[1]["error"]["field"], "[3].value");
    assert_eq!(errs[2]["error"]["field"], "[4].name");
    let text = s.get("/metrics").1;
    assert_eq!(sample(&text, "a_total"), Some(1.0));
    assert_eq!(sample(&text, "c"), Some(3.0));
    assert!(sample(&text, "b").is_none() && sample(&text, "d_total").is_none());
    assert_eq!(s.get_json("/metrics/stats")["collector"]["total_points"], 2);
    // A batch where everything fails answers 400.
    let (st, v) = s.post("/metrics/track/batch", json!([{"name": "x"}]).to_string(), &[]);
    assert_eq!((st, v["failed"].as_u64()), (400, Some(1)));
}

#[test]
fn tenants_are_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let g = |t: &str, v: f64| json!({"name": "secret", "value": v, "type": "gauge", "tenant_id": t});
    assert_eq!(s.track(&g("acme", 1.0)).0, 200);
    let (st, _) = s.post(
        "/metrics/track",
        json!({"name": "secret", "value": 2, "type": "gauge"}).to_string(),
        &[("X-Scope-OrgID", "globex")],
    );
    assert_eq!(st, 200);
    // The field and the header must agree.
    let (st, v) = s.post(
        "/metrics/track",
        g("acme", 3.0).to_string(),
        &[("X-Scope-OrgID", "globex")],
    );
    assert_eq!((st, v["error"]["field"].as_str()), (400, Some("tenant_id")));
    assert_eq!(sample(&s.get("/metrics?tenant_id=acme").1, "secret"), Some(1.0));
    let r = s
        .client
        .get(s.url("/metrics"))
        .header("X-Scope-OrgID", "globex")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(sample(&r, "secret"), Some(2.0));
    assert!(sample(&s.get("/metrics").1, "secret").is_none());
    assert_eq!(
        s.get_json("/metrics/series?tenant_id=acme")["series"][0]["points"][0]["value"],
        1
    );
    assert_eq!(
        s.get_json("/metrics/series?tenant_id=acme")["series"][0]["tenant_id"],
        "acme"
    );
    assert_eq!(s.get_json("/metrics/series?tenant_id=initech")["total"], 0);
    assert_eq!(s.get_json("/metrics/series")["total"], 0);
    assert!(
        !dir.path().join("tenants").join("initech").exists(),
        "reads must not create tenants"
    );
}

#[test]
fn series_limit_rejects_per_item() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &[("ACCESS_MAX_METRIC_SERIES", "3")], &[]);
    let items: Vec<_> = (0..5)
        .map(|i| json!({"name": format!("g{i}"), "value": i, "type": "gauge"}))
        .collect();
    let (st, v) = s.post("/metrics/track/batch", json!(items).to_string(), &[]);
    assert_eq!(st, 200);
    assert_eq!(
        (v["successful"].as_u64(), v["failed"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(v["errors"][0]["error"]["code"], "limit_exceeded");
    // Existing series still take samples; a histogram that would not fit is not half-stored.
    assert_eq!(
        s.track(&json!({"name": "g0", "value": 9, "type": "gauge"})).0,
        200
    );
    let (st, v) = s.track(&json!({"name": "h", "value": 1, "type": "histogram"}));
    assert_eq!((st, v["error"]["code"].as_str()), (400, Some("limit_exceeded")));
    assert!(!s.get("/metrics").1.contains("h_bucket"));
    assert_eq!(s.get_json("/metrics/stats")["collector"]["total_series"], 3);
    assert!(s.healthy());
}

#[test]
fn series_returns_the_most_recent_points_within_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &[("ACCESS_MAX_POINTS_PER_SERIES", "3")], &[]);
    let base = 1_700_000_000_000i64;
    for i in 0..5 {
        let item = json!({"name": "q", "value": i, "type": "gauge", "timestamp": base + i * 1000});
        assert_eq!(s.track(&item).0, 200);
    }
    let v = s.get_json("/metrics/series?name=q");
    let vals: Vec<i64> = v["series"][0]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_i64().unwrap())
        .collect();
    assert_eq!(vals, vec![2, 3, 4]);
    assert_eq!(v["series"][0]["points"][0]["timestamp"], "2023-11-14T22:13:22Z");
    // start/end select a window (RFC 3339 or Unix seconds).
    let v = s.get_json("/metrics/series?name=q&start=1700000000&end=2023-11-14T22:13:21Z");
    let vals: Vec<i64> = v["series"][0]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_i64().unwrap())
        .collect();
    assert_eq!(vals, vec![0, 1]);
}

/// The collector forgets idle series (here after 1 s) and reloads them from the store:
/// the counter's cumulative value continues across the eviction.
#[test]
fn counter_continues_after_idle_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &[], &["--series-idle-timeout-seconds", "1"]);
    let inc = |v: f64| {
        let (st, b) =
            s.track(&json!({"name": "evicted_total", "value": v, "type": "counter", "labels": {"q": "a"}}));
        assert_eq!(st, 200, "{b}");
    };
    inc(5.0);
    inc(2.0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (_, text) = s.get("/metrics");
        if sample(&text, "metricsd_collector_evictions_total") >= Some(1.0) {
            assert_eq!(sample(&text, "metricsd_collector_series"), Some(0.0), "{text}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no eviction: {text}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    inc(3.0);
    let (_, text) = s.get("/metrics");
    assert_eq!(sample(&text, "evicted_total{q=\"a\"}"), Some(10.0), "{text}");
}

/// The store's figures are self-metrics (`metricsd_tsdb_*`) of the asking tenant, with no
/// tenant label; another tenant's export shows its own store, or none.
#[test]
fn store_figures_are_self_metrics_of_the_asking_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    for v in [1.0, 2.0] {
        let (st, b) = s.track(&json!({"name": "stored_total", "value": v, "type": "counter"}));
        assert_eq!(st, 200, "{b}");
    }
    let (_, text) = s.get("/metrics");
    assert!(sample(&text, "metricsd_tsdb_head_series") >= Some(1.0), "{text}");
    assert!(
        sample(&text, "metricsd_tsdb_head_samples_appended_total") >= Some(2.0),
        "{text}"
    );
    assert!(sample(&text, "metricsd_tsdb_wal_bytes") > Some(0.0), "{text}");
    assert!(
        sample(&text, "metricsd_tsdb_head_memory_bytes") > Some(0.0),
        "{text}"
    );
    assert_eq!(sample(&text, "metricsd_tsdb_blocks"), Some(0.0), "{text}");
    assert!(sample(&text, "metricsd_tsdb_open_tenants") >= Some(1.0), "{text}");
    assert!(!text.contains("tenant=\""), "no tenant label: {text}");
    // A tenant without a store: the count, none of its figures.
    let (_, other) = s.get_with_headers("/metrics", &[("X-Scope-OrgID", "nobody-yet")]);
    assert_eq!(sample(&other, "metricsd_tsdb_head_series"), None, "{other}");
    assert!(
        sample(&other, "metricsd_tsdb_open_tenants") >= Some(1.0),
        "{other}"
    );
}
