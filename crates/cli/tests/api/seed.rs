//! Every example of seed 000, shapes checked field by field.

use serde_json::{Value, json};

use crate::util::{Server, sample};

fn seed_single() -> Value {
    json!({
      "name": "api_requests_total",
      "value": 1,
      "type": "counter",
      "labels": {"service": "gateway", "endpoint": "/api/v1/instruments", "method": "GET", "status_code": "200"},
      "service": "gateway-service",
      "tenant_id": "tenant-1"
    })
}

fn seed_batch() -> Value {
    json!([
      {"name": "api_requests_total", "value": 1, "type": "counter",
       "labels": {"service": "gateway", "endpoint": "/api/v1/instruments"}, "service": "gateway-service"},
      {"name": "response_time_seconds", "value": 0.042, "type": "histogram",
       "labels": {"service": "gateway", "endpoint": "/api/v1/instruments"}, "service": "gateway-service"}
    ])
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() >= 20 && s.as_bytes()[4] == b'-' && s.contains('T') && s.ends_with('Z'))
}

#[test]
fn track_and_batch_responses() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let (st, body) = s.track(&seed_single());
    assert_eq!(st, 200);
    assert_eq!(
        body,
        json!({"success": true, "message": "Metric tracked successfully"})
    );
    let (st, body) = s.post("/metrics/track/batch", seed_batch().to_string(), &[]);
    assert_eq!(st, 200);
    assert_eq!(
        body,
        json!({"success": true, "total": 2, "successful": 2, "failed": 0})
    );
}

#[test]
fn export_series_trends_health_stats() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    for _ in 0..100 {
        assert_eq!(
            s.post("/metrics/track/batch", seed_batch().to_string(), &[]).0,
            200
        );
    }
    // Prometheus export: seed's counter and histogram families.
    let (st, text) = s.get("/metrics?format=prometheus");
    assert_eq!(st, 200);
    assert!(text.contains("# TYPE api_requests_total counter\n"), "{text}");
    assert!(
        text.contains("# TYPE response_time_seconds histogram\n"),
        "{text}"
    );
    let l = r#"{endpoint="/api/v1/instruments",service="gateway",service_name="gateway-service"}"#;
    assert_eq!(sample(&text, &format!("api_requests_total{l}")), Some(100.0));
    let bl = |le: &str| {
        format!(
            r#"response_time_seconds_bucket{{endpoint="/api/v1/instruments",le="{le}",service="gateway",service_name="gateway-service"}}"#
        )
    };
    assert_eq!(sample(&text, &bl("0.025")), Some(0.0));
    assert_eq!(sample(&text, &bl("0.05")), Some(100.0));
    assert_eq!(sample(&text, &bl("+Inf")), Some(100.0));
    let sum = sample(&text, &format!("response_time_seconds_sum{l}")).unwrap();
    assert!((sum - 4.2).abs() < 1e-9, "{sum}");
    assert_eq!(
        sample(&text, &format!("response_time_seconds_count{l}")),
        Some(100.0)
    );
    // Default export is Prometheus too; self-metrics are there.
    let (_, text2) = s.get("/metrics");
    for m in [
        "metrics_collected_total",
        "metrics_collection_duration_seconds_count",
        "metrics_series_total",
        "metrics_points_total",
        "metrics_exported_total",
        "metrics_errors_total",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(text2.lines().any(|x| x.starts_with(m)), "{m} missing");
    }
    assert!(text2.contains(
        "metricsd_http_requests_total{method=\"POST\",route=\"/metrics/track/batch\",status=\"200\"} 100"
    ));

    // Aggregated: _avg gauges.
    let (_, agg) = s.get("/metrics?format=prometheus&aggregated=true");
    assert!(agg.contains("# TYPE api_requests_total_avg gauge"), "{agg}");
    assert!(agg.contains("# TYPE response_time_seconds_avg gauge"), "{agg}");
    let avg = sample(&agg, &format!("response_time_seconds_avg{l}")).unwrap();
    assert!((avg - 0.042).abs() < 1e-9, "{avg}");
    // 100 increments of 1 in the 5-minute window, the first from zero (the series began in it).
    let per_min = sample(&agg, &format!("api_requests_total_avg{l}")).unwrap();
    assert!((per_min - 100.0 / 5.0).abs() < 1e-9, "{per_min}");

    // Series.
    let v = s.get_json("/metrics/series?service=gateway-service&limit=10&name=api_requests_total");
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 3, "{v}");
    assert_eq!(v["total"], 1);
    assert!(is_rfc3339(&v["timestamp"]));
    let se = &v["series"][0];
    assert_eq!(se.as_object().unwrap().len(), 6, "{se}");
    assert_eq!(se["name"], "api_requests_total");
    assert_eq!(se["type"], "counter");
    assert_eq!(
        se["labels"],
        json!({"service": "gateway", "endpoint": "/api/v1/instruments"})
    );
    assert_eq!(se["service"], "gateway-service");
    assert_eq!(se["tenant_id"], "default");
    let pts = se["points"].as_array().unwrap();
    assert_eq!(pts.len(), 100);
    assert_eq!(pts[0]["value"], 1);
    assert_eq!(pts[99]["value"], 100);
    assert!(is_rfc3339(&pts[0]["timestamp"]));
    let v = s.get_json("/metrics/series?service=gateway-service&limit=10");
    assert_eq!(v["series"].as_array().unwrap().len(), 10);
    assert_eq!(s.get_json("/metrics/series?service=nobody")["total"], 0);

    // Trends.
    let t = s.get_json("/metrics/trends/api_requests_total?hours=24");
    assert_eq!(t["metric_name"], "api_requests_total");
    assert!(["increasing", "decreasing", "stable"].contains(&t["trend"].as_str().unwrap()));
    assert!(t["change_percent"].is_number());
    let dp = t["data_points"].as_array().unwrap();
    assert_eq!(dp.len(), 1, "{t}");
    assert!(is_rfc3339(&dp[0]["timestamp"]));
    assert_eq!(dp[0]["value"], 99);

    // Health.
    let h = s.get_json("/health");
    assert_eq!(h["service"], "metrics");
    assert_eq!(h["status"], "ok");
    assert!(h["uptime_seconds"].is_u64());
    assert_eq!(h["dependencies"], json!({"collector": "ok", "aggregator": "ok"}));
    assert!(h["version"].is_string() && h["commit"].is_string());

    // Stats.
    let st = s.get_json("/metrics/stats");
    assert_eq!(st["collector"]["total_points"], 100 * 15);
    assert_eq!(st["collector"]["total_series"], 15);
    assert_eq!(st["collector"]["dropped_points"], 0);
    assert!(st["aggregator"]["total_windows"].as_u64().unwrap() >= 1);
    assert!(st["aggregator"]["aggregated_series"].as_u64().unwrap() >= 2);
    assert!(st["exporter"]["total_exports"].as_u64().unwrap() >= 3);
    assert!(is_rfc3339(&st["exporter"]["last_export"]));
    assert!(is_rfc3339(&st["timestamp"]));
}

#[test]
fn openmetrics_and_json_exports() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    s.track(&json!({"name": "jobs_total", "value": 2, "type": "counter", "help": "Jobs \"done\"\nall", "labels": {"q": "a\"b\\c"}}));
    let r = s.client.get(s.url("/metrics?format=openmetrics")).send().unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = r.text().unwrap();
    assert!(text.contains("# TYPE jobs counter\n"), "{text}");
    assert!(text.contains("jobs_total{q=\"a\\\"b\\\\c\"} 2.0\n"), "{text}");
    assert!(text.ends_with("# EOF\n"));
    let (_, prom) = s.get("/metrics");
    assert!(prom.contains("# HELP jobs_total Jobs \"done\"\\nall\n"), "{prom}");
    let j = s.get_json("/metrics?format=json");
    let m = j["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "jobs_total")
        .unwrap()
        .clone();
    assert_eq!(m["value"], 2);
    assert_eq!(m["labels"], json!({"q": "a\"b\\c"}));
    assert_eq!(s.get("/metrics?format=xml").0, 400);
}

/// Each `# TYPE` line of a text export is directly preceded by the `# HELP` line of the
/// same family, with a non-empty text.
fn assert_every_family_has_help(text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    let mut families = 0;
    for (i, l) in lines.iter().enumerate() {
        let Some(rest) = l.strip_prefix("# TYPE ") else {
            continue;
        };
        families += 1;
        let fam = rest.split(' ').next().unwrap();
        let prev = if i > 0 { lines[i - 1] } else { "" };
        let help = prev
            .strip_prefix(&format!("# HELP {fam} "))
            .unwrap_or_else(|| panic!("no # HELP before {l:?}:\n{text}"));
        assert!(!help.trim().is_empty(), "empty help for {fam}");
    }
    assert!(families > 0, "no families:\n{text}");
}

/// Families tracked without help (the seed's own examples give none) still get a `# HELP`
/// line, in both text formats and in the aggregated export: the generated `<name> (<type>)`.
#[test]
fn every_exported_family_has_help() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    assert_eq!(
        s.post("/metrics/track/batch", seed_batch().to_string(), &[]).0,
        200
    );
    s.track(&json!({"name": "queue_depth", "value": 3, "type": "gauge"}));
    s.track(&json!({"name": "rpc_seconds", "value": 0.5, "type": "summary"}));
    s.track(&json!({"name": "jobs_total", "value": 1, "type": "counter", "help": "Jobs done"}));
    for q in [
        "",
        "?format=openmetrics",
        "?aggregated=true",
        "?format=openmetrics&aggregated=true",
    ] {
        let (st, text) = s.get(&format!("/metrics{q}"));
        assert_eq!(st, 200);
        assert_every_family_has_help(&text);
    }
    let (_, text) = s.get("/metrics");
    assert!(
        text.contains("# HELP api_requests_total api_requests_total (counter)\n"),
        "{text}"
    );
    assert!(
        text.contains("# HELP response_time_seconds response_time_seconds (histogram)\n"),
        "{text}"
    );
    assert!(text.contains("# HELP jobs_total Jobs done\n"), "{text}");
    let (_, om) = s.get("/metrics?format=openmetrics");
    assert!(
        om.contains("# HELP api_requests api_requests_total (counter)\n"),
        "{om}"
    );
}

/// The aggregated `_avg` of a histogram or summary is the mean of the observations in the
/// window, the first included; a counter's is never `-0`.
#[test]
fn aggregated_avg_is_the_mean_of_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    for v in [0.1, 0.3] {
        for kind in ["histogram", "summary"] {
            let (st, body) =
                s.track(&json!({"name": format!("rt_{kind}_seconds"), "value": v, "type": kind}));
            assert_eq!(st, 200, "{body}");
        }
    }
    let (st, body) = s.post("/metrics/track/batch", seed_batch().to_string(), &[]);
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        s.track(&json!({"name": "idle_total", "value": 0, "type": "counter"}))
            .0,
        200
    );
    let (st, agg) = s.get("/metrics?aggregated=true");
    assert_eq!(st, 200);
    assert_eq!(sample(&agg, "rt_histogram_seconds_avg"), Some(0.2), "{agg}");
    assert_eq!(sample(&agg, "rt_summary_seconds_avg"), Some(0.2), "{agg}");
    assert!(agg.contains("\nrt_histogram_seconds_avg 0.2\n"), "{agg}");
    let l = r#"{endpoint="/api/v1/instruments",service="gateway",service_name="gateway-service"}"#;
    assert!(
        agg.contains(&format!("\nresponse_time_seconds_avg{l} 0.042\n")),
        "{agg}"
    );
    assert!(agg.contains("\nidle_total_avg 0\n"), "{agg}");
    assert!(!agg.contains(" -0\n"), "{agg}");
    let (_, om) = s.get("/metrics?aggregated=true&format=openmetrics");
    assert!(om.contains("\nidle_total_avg 0.0\n"), "{om}");
}

/// Observations older than the window are not averaged in: the increments are measured from
/// the newest sample before the window (here with a 2-second window).
#[test]
fn aggregated_avg_starts_from_the_sample_before_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &[("ACCESS_AGGREGATION_WINDOW_SECONDS", "2")], &[]);
    let track = |v: f64| {
        let (st, body) = s.track(&json!({"name": "old_seconds", "value": v, "type": "histogram"}));
        assert_eq!(st, 200, "{body}");
    };
    track(5.0);
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    track(0.1);
    track(0.3);
    let (_, agg) = s.get("/metrics?aggregated=true");
    // Differences of cumulative sums: 0.2 within float rounding (5 + 0.1 + 0.3 is not exact).
    let avg = sample(&agg, "old_seconds_avg").unwrap();
    assert!((avg - 0.2).abs() < 1e-12, "{agg}");
}

/// Items refused at the series limit count in `collector.dropped_points`, one per sample
/// they would have written (a histogram with the default buckets writes 14), on the single
/// and the batch endpoint alike.
#[test]
fn series_limit_rejections_are_dropped_points() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &[], &["--max-metric-series", "2"]);
    let dropped = || s.get_json("/metrics/stats")["collector"]["dropped_points"].clone();
    assert_eq!(
        s.track(&json!({"name": "a_total", "value": 1, "type": "counter"}))
            .0,
        200
    );
    assert_eq!(s.track(&json!({"name": "b", "value": 1, "type": "gauge"})).0, 200);
    assert_eq!(dropped(), 0);
    let (st, body) = s.track(&json!({"name": "c", "value": 1, "type": "gauge"}));
    assert_ne!(st, 200, "{body}");
    assert_eq!(dropped(), 1);
    let (st, body) = s.post(
        "/metrics/track/batch",
        json!([
            {"name": "a_total", "value": 1, "type": "counter"},
            {"name": "d", "value": 1, "type": "gauge"},
            {"name": "h_seconds", "value": 0.1, "type": "histogram"}
        ])
        .to_string(),
        &[],
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        (body["successful"].clone(), body["failed"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(dropped(), 1 + 1 + 14);
    let st = s.get_json("/metrics/stats");
    assert_eq!(st["collector"]["total_points"], 3);
    let (_, text) = s.get("/metrics");
    assert_eq!(
        sample(&text, "metrics_points_dropped_total"),
        Some(16.0),
        "{text}"
    );
}

/// `/health`'s `commit` (and buildinfo's `revision`) is the git revision the binary was
/// built from (build.rs of metricsd-server), when the tests run in the git checkout.
#[test]
fn health_commit_is_the_git_revision() {
    let out = std::process::Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short=12",
            "HEAD",
        ])
        .output();
    let want = match out {
        // A build given METRICSD_COMMIT reports it instead.
        _ if option_env!("METRICSD_COMMIT").is_some() => option_env!("METRICSD_COMMIT")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        Ok(o) if o.status.success() => String::from_utf8(o.stdout).unwrap().trim().to_owned(),
        _ => {
            eprintln!("skipped: not in a git checkout");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    assert_eq!(s.get_json("/health")["commit"], want.as_str());
    assert_eq!(
        s.get_json("/api/v1/status/buildinfo")["data"]["revision"],
        want.as_str()
    );
}

/// Seed 000's configuration tables in the YAML file, nested as the seed lays them out:
/// the limits apply and `aggregation_types` chooses the aggregated families.
#[test]
fn seed_configuration_sections() {
    let dir = tempfile::tempdir().unwrap();
    let yml = dir.path().join("metricsd.yml");
    std::fs::write(
        &yml,
        "collection:\n  max_series: 6\n  max_points_per_series: 1000\n  collection_interval: 60\n  batch_size: 2\n  timeout: 30\n\
aggregation:\n  window_seconds: 300\n  retention_hours: 24\n  aggregation_types: [\"avg\", \"max\"]\n  trend_hours: 24\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let s = Server::start_with(&data, &[], &["--config", yml.to_str().unwrap()]);
    for v in [0.1, 0.3] {
        assert_eq!(
            s.track(&json!({"name": "rt_seconds", "value": v, "type": "summary"}))
                .0,
            200
        );
    }
    // A summary is 5 series, a gauge 1: a seventh series is over max_series.
    assert_eq!(s.track(&json!({"name": "g", "value": 1, "type": "gauge"})).0, 200);
    let (st, body) = s.track(&json!({"name": "h", "value": 1, "type": "gauge"}));
    assert_ne!(st, 200, "{body}");
    assert!(body.to_string().contains("series limit of 6"), "{body}");
    // batch_size: at most 2 items per batch.
    let three = Value::Array(vec![
        json!({"name": "rt_seconds", "value": 1, "type": "summary"});
        3
    ]);
    let (st, body) = s.post("/metrics/track/batch", three.to_string(), &[]);
    assert_eq!(st, 413, "{body}");
    let (_, agg) = s.get("/metrics?aggregated=true");
    assert_eq!(sample(&agg, "rt_seconds_avg"), Some(0.2), "{agg}");
    let max = sample(&agg, "rt_seconds_max").unwrap();
    assert!((max - 0.3).abs() < 1e-12, "{agg}");
    assert!(
        !agg.contains("rt_seconds_sum") && !agg.contains("rt_seconds_min"),
        "{agg}"
    );
    let warned = s
        .logs
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("\"setting\":\"collection.collection_interval\"") && l.contains("WARN"));
    assert!(warned, "no warning for collection_interval");
}

/// The log lines of `s` that parse as JSON with `message` equal to `msg`, waiting up to 5 s
/// for at least `n`.
fn log_events(s: &Server, msg: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let found: Vec<Value> = s
            .logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["message"] == msg)
            .collect();
        if found.len() >= n || std::time::Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Seed 000's log line: one info event per accepted `/metrics/track` request, with
/// `metric_name` and the item's `service`; a batch logs one info event with its counts.
#[test]
fn collected_metrics_are_logged_as_the_seed_shows() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let (st, _) = s.post(
        "/metrics/track",
        seed_single().to_string(),
        &[("x-request-id", "req-456")],
    );
    assert_eq!(st, 200);
    let ev = log_events(&s, "Metric collected successfully", 1);
    assert_eq!(ev.len(), 1, "{ev:?}");
    let e = &ev[0];
    assert_eq!(e["level"], "INFO", "{e}");
    assert_eq!(e["metric_name"], "api_requests_total", "{e}");
    assert_eq!(e["service"], "gateway-service", "{e}");
    assert_eq!(e["request_id"], "req-456", "{e}");
    assert!(is_rfc3339(&e["timestamp"]), "{e}");
    // Without a service the line's service is ours; a rejected item logs no such event.
    assert_eq!(s.track(&json!({"name": "q", "value": 1, "type": "gauge"})).0, 200);
    assert_ne!(
        s.track(&json!({"name": "q", "value": 1, "type": "counter"})).0,
        200
    );
    let ev = log_events(&s, "Metric collected successfully", 2);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(
        (ev[1]["metric_name"].as_str(), ev[1]["service"].as_str()),
        (Some("q"), Some("metricsd"))
    );
    // A batch: one info event with the counts, no per-item info events.
    let (st, _) = s.post("/metrics/track/batch", seed_batch().to_string(), &[]);
    assert_eq!(st, 200);
    let b = log_events(&s, "Metric batch collected successfully", 1);
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(
        (
            b[0]["total"].clone(),
            b[0]["successful"].clone(),
            b[0]["failed"].clone()
        ),
        (json!(2), json!(2), json!(0))
    );
    assert_eq!(b[0]["level"], "INFO");
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(log_events(&s, "Metric collected successfully", 3).len(), 2);
}

/// At debug level each stored item of a batch logs its own event.
#[test]
fn batch_items_are_logged_at_debug() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &[], &["--log-level", "debug"]);
    let (st, _) = s.post("/metrics/track/batch", seed_batch().to_string(), &[]);
    assert_eq!(st, 200);
    let ev = log_events(&s, "Metric collected successfully", 2);
    let names: Vec<(&str, &str, &str)> = ev
        .iter()
        .map(|e| {
            (
                e["level"].as_str().unwrap(),
                e["metric_name"].as_str().unwrap(),
                e["service"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("DEBUG", "api_requests_total", "gateway-service"),
            ("DEBUG", "response_time_seconds", "gateway-service")
        ]
    );
}
