//! Bad input of every kind: a 4xx JSON error naming the field, nothing stored, still healthy.

use serde_json::{Value, json};

use crate::util::Server;

#[test]
fn bad_input_table() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let many_labels: serde_json::Map<String, Value> =
        (0..10_000).map(|i| (format!("l{i}"), json!("v"))).collect();
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("invalid json", "{\"name\":".into(), 400, "body"),
        ("empty body", "".into(), 400, "body"),
        ("not an object", "[1]".into(), 400, "body"),
        (
            "missing name",
            json!({"value": 1, "type": "gauge"}).to_string(),
            400,
            "name",
        ),
        (
            "empty name",
            json!({"name": "", "value": 1, "type": "gauge"}).to_string(),
            400,
            "name",
        ),
        (
            "invalid name",
            json!({"name": "9lives", "value": 1, "type": "gauge"}).to_string(),
            400,
            "name",
        ),
        (
            "name not a string",
            json!({"name": 7, "value": 1, "type": "gauge"}).to_string(),
            400,
            "name",
        ),
        (
            "missing value",
            json!({"name": "x", "type": "gauge"}).to_string(),
            400,
            "value",
        ),
        (
            "string value",
            json!({"name": "x", "value": "1", "type": "gauge"}).to_string(),
            400,
            "value",
        ),
        (
            "NaN value",
            r#"{"name":"x","value":"NaN","type":"gauge"}"#.into(),
            400,
            "value",
        ),
        (
            "bare NaN",
            r#"{"name":"x","value":NaN,"type":"gauge"}"#.into(),
            400,
            "body",
        ),
        (
            "huge number",
            r#"{"name":"x","value":1e999,"type":"gauge"}"#.into(),
            400,
            "body",
        ),
        (
            "negative counter",
            json!({"name": "x_total", "value": -1, "type": "counter"}).to_string(),
            400,
            "value",
        ),
        (
            "unknown type",
            json!({"name": "x", "value": 1, "type": "meter"}).to_string(),
            400,
            "type",
        ),
        (
            "missing type",
            json!({"name": "x", "value": 1}).to_string(),
            400,
            "type",
        ),
        (
            "bad label name",
            json!({"name": "x", "value": 1, "type": "gauge", "labels": {"a b": "c"}}).to_string(),
            400,
            "labels.a b",
        ),
        (
            "reserved label",
            json!({"name": "x", "value": 1, "type": "gauge", "labels": {"__name__": "y"}}).to_string(),
            400,
            "labels.__name__",
        ),
        (
            "le on histogram",
            json!({"name": "x", "value": 1, "type": "histogram", "labels": {"le": "1"}}).to_string(),
            400,
            "labels.le",
        ),
        (
            "label not string",
            json!({"name": "x", "value": 1, "type": "gauge", "labels": {"a": {"b": 1}}}).to_string(),
            400,
            "labels.a",
        ),
        (
            "labels not object",
            json!({"name": "x", "value": 1, "type": "gauge", "labels": ["a"]}).to_string(),
            400,
            "labels",
        ),
        (
            "10k labels",
            json!({"name": "x", "value": 1, "type": "gauge", "labels": many_labels}).to_string(),
            400,
            "labels",
        ),
        (
            "long label value",
            json!({"name": "x", "value": 1, "type": "gauge", "labels": {"a": "v".repeat(5000)}}).to_string(),
            400,
            "labels",
        ),
        ("deep nesting", deep, 400, "body"),
        (
            "bad timestamp",
            json!({"name": "x", "value": 1, "type": "gauge", "timestamp": "noon"}).to_string(),
            400,
            "timestamp",
        ),
        (
            "bad tenant",
            json!({"name": "x", "value": 1, "type": "gauge", "tenant_id": "a/b"}).to_string(),
            400,
            "tenant_id",
        ),
        (
            "bad buckets",
            json!({"name": "x", "value": 1, "type": "histogram", "buckets": [2, 1]}).to_string(),
            400,
            "buckets[1]",
        ),
        (
            "type change",
            json!({"name": "ok_gauge", "value": 1, "type": "counter"}).to_string(),
            400,
            "type",
        ),
    ];
    assert_eq!(
        s.track(&json!({"name": "ok_gauge", "value": 1, "type": "gauge"}))
            .0,
        200
    );
    for (what, body, status, field) in cases {
        let (st, v) = s.post("/metrics/track", body, &[]);
        assert_eq!(st, status, "{what}: {v}");
        assert_eq!(v["success"], false, "{what}: {v}");
        assert!(
            v["error"]["code"].is_string() && v["error"]["message"].is_string(),
            "{what}: {v}"
        );
        assert_eq!(v["error"]["field"], field, "{what}: {v}");
    }
    // Oversized body: 413 with the same error shape.
    let big = format!(
        "{{\"name\":\"x\",\"value\":1,\"type\":\"gauge\",\"help\":\"{}\"}}",
        "a".repeat(11 << 20)
    );
    // Its own client: the server answers before reading the body and closes that connection.
    let r = reqwest::blocking::Client::new()
        .post(s.url("/metrics/track"))
        .body(big)
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"]["code"], "body_too_large");
    // Nothing but ok_gauge was stored, and the service is healthy.
    let series = s.get_json("/metrics/series");
    assert_eq!(series["total"], 1, "{series}");
    assert_eq!(s.get_json("/metrics/stats")["collector"]["total_points"], 1);
    assert!(s.healthy());
    // Unknown routes and bad query parameters answer JSON 4xx too.
    let (st, body) = s.get("/nope");
    assert_eq!(st, 404);
    assert!(body.contains("\"success\":false"));
    assert_eq!(s.get("/metrics/series?limit=abc").0, 400);
    assert_eq!(s.get("/metrics/trends/x?hours=-1").0, 400);
}
