//! Start-up, configuration errors, shutdown, request ids and logs, naming policy.

use std::process::Command;

use serde_json::{Value, json};

use crate::util::Server;

#[test]
fn invalid_configuration_exits_2_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_metricsd"));
        c.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[("ACCESS_MAX_POINTS_PER_SERIES", "many")], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("ACCESS_MAX_POINTS_PER_SERIES"), "{err}");
    let (code, err) = run(&[("ACCESS_AGGREGATION_WINDOW_SECONDS", "0")], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("aggregation_window_seconds"), "{err}");
    let yml = dir.path().join("metricsd.yml");
    std::fs::write(&yml, "max_metric_series: 10\nlog_levle: debug\n").unwrap();
    let (code, err) = run(&[], &["--config", yml.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("log_levle"), "{err}");
}

#[test]
fn sigterm_exits_0_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    assert_eq!(s.track(&json!({"name": "g", "value": 4, "type": "gauge"})).0, 200);
    assert_eq!(s.stop(), Some(0));
    let s = Server::start(dir.path());
    assert_eq!(
        s.get_json("/metrics/series?name=g")["series"][0]["points"][0]["value"],
        4
    );
}

#[test]
fn request_ids_and_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let r = s
        .client
        .post(s.url("/metrics/track"))
        .header("X-Request-Id", "req-456")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(r#"{"name":"x"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-request-id"], "req-456");
    let r = s.client.get(s.url("/health")).send().unwrap();
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(!generated.is_empty());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let logs = s.logs.lock().unwrap().clone();
    let line: Value = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["request_id"] == "req-456")
        .expect("a log line with the request id");
    assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(line["service"], "metricsd");
    for k in ["timestamp", "level", "message"] {
        assert!(line[k].is_string(), "{k} in {line}");
    }
}

#[test]
fn naming_policy_enforce() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &[], &["--naming-policy", "enforce"]);
    let (st, v) = s.track(&json!({"name": "requests", "value": 1, "type": "counter"}));
    assert_eq!(
        (st, v["error"]["field"].as_str(), v["error"]["code"].as_str()),
        (400, Some("name"), Some("naming_policy"))
    );
    let (st, _) = s.track(&json!({"name": "latency_ms", "value": 1, "type": "histogram"}));
    assert_eq!(st, 400);
    assert_eq!(
        s.track(&json!({"name": "requests_total", "value": 1, "type": "counter"}))
            .0,
        200
    );
    assert_eq!(
        s.track(&json!({"name": "latency_seconds", "value": 1, "type": "histogram"}))
            .0,
        200
    );
    assert_eq!(
        crate::util::sample(&s.get("/metrics").1, "metrics_naming_violations_total"),
        Some(2.0)
    );
}

#[test]
fn health_degrades_when_the_data_dir_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data);
    assert!(s.healthy());
    std::fs::remove_dir_all(&data).unwrap();
    let (st, body) = s.get("/health");
    assert_eq!(st, 503, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "degraded");
    assert_eq!(v["dependencies"]["collector"], "failing");
}
