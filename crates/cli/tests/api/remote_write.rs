//! remote_write 1.0: snappy + protobuf in, readable through the JSON API.

use metricsd_ingest::{MetricMetadata, TimeSeries, WriteRequest, encode_write_request, metric_metadata};

use crate::util::{Server, now_ms, time_series};

fn ts(name: &str, job: &str, samples: &[(i64, f64)]) -> TimeSeries {
    time_series(&[("__name__", name), ("job", job)], samples)
}

/// POSTs a remote_write body; (status, body text).
fn send(s: &Server, body: Vec<u8>, tenant: Option<&str>) -> (u16, String) {
    let h: Vec<(&str, &str)> = tenant.map(|t| ("X-Scope-OrgID", t)).into_iter().collect();
    s.remote_write(body, &h)
}

#[test]
fn round_trip_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let t0 = now_ms() - 60_000;
    let req = WriteRequest {
        timeseries: vec![
            ts("up", "node", &[(t0, 1.0), (t0 + 15_000, 0.0)]),
            ts("node_load1", "node", &[(t0, 0.25)]),
        ],
        metadata: vec![],
    };
    let send = |body: Vec<u8>, tenant: Option<&str>| send(&s, body, tenant);
    assert_eq!(send(encode_write_request(&req), Some("prom")).0, 204);
    // Metadata goes to `/api/v1/metadata` of the tenant; an invalid family name is dropped.
    let meta = WriteRequest {
        timeseries: vec![],
        metadata: vec![
            MetricMetadata {
                r#type: metric_metadata::MetricType::Gauge as i32,
                metric_family_name: "node_load1".into(),
                help: "1m load average.".into(),
                unit: String::new(),
            },
            MetricMetadata {
                r#type: metric_metadata::MetricType::Counter as i32,
                metric_family_name: "not valid".into(),
                help: String::new(),
                unit: String::new(),
            },
        ],
    };
    assert_eq!(send(encode_write_request(&meta), Some("prom")).0, 204);
    let m = |tenant: &str| {
        s.client
            .get(s.url("/api/v1/metadata"))
            .header("X-Scope-OrgID", tenant)
            .send()
            .unwrap()
            .json::<serde_json::Value>()
            .unwrap()
    };
    assert_eq!(
        m("prom")["data"],
        serde_json::json!({"node_load1": [{"type": "gauge", "help": "1m load average.", "unit": ""}]})
    );
    assert_eq!(m("other")["data"], serde_json::json!({}));
    let v = s.get_json("/metrics/series?tenant_id=prom&name=up");
    let pts = v["series"][0]["points"].as_array().unwrap();
    assert_eq!(pts.len(), 2);
    assert_eq!(
        (pts[0]["value"].as_f64(), pts[1]["value"].as_f64()),
        (Some(1.0), Some(0.0))
    );
    assert_eq!(v["series"][0]["labels"]["job"], "node");
    assert_eq!(s.get_json("/metrics/series?tenant_id=prom")["total"], 2);
    assert_eq!(
        s.get_json("/metrics/series?name=up")["total"],
        0,
        "other tenants see nothing"
    );
    // Malformed bodies: 400, nothing stored.
    let (st, body) = send(b"not snappy at all".to_vec(), Some("prom"));
    assert_eq!(st, 400, "{body}");
    let junk = snap::raw::Encoder::new()
        .compress_vec(b"\x0a\xff\xff\xff\x0f")
        .unwrap();
    assert_eq!(send(junk, Some("prom")).0, 400);
    // Invalid series are rejected (400: retrying cannot help); valid ones in the same request are kept.
    let bad = WriteRequest {
        timeseries: vec![ts("bad name", "x", &[(t0, 1.0)]), ts("good", "x", &[(t0, 2.0)])],
        metadata: vec![],
    };
    let (st, body) = send(encode_write_request(&bad), Some("prom"));
    assert_eq!(st, 400);
    assert!(body.contains("1 of 2 samples rejected"), "{body}");
    assert_eq!(s.get_json("/metrics/series?tenant_id=prom&name=good")["total"], 1);
    assert!(
        s.get_json("/metrics/stats?tenant_id=prom")["collector"]["dropped_points"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert!(s.healthy());
}

/// The second and later requests of a series take the known-series path (its label bytes'
/// key): their samples land in the same series, per tenant, in any label order, after a
/// restart too; a rejected series stays rejected however often it is sent.
#[test]
fn known_series_across_requests_tenants_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now_ms() - 120_000;
    let one = |t: i64, v: f64| {
        encode_write_request(&WriteRequest {
            timeseries: vec![ts("up", "node", &[(t, v)]), ts("bad name", "x", &[(t, v)])],
            metadata: vec![],
        })
    };
    let points = |s: &Server, tenant: &str| -> Vec<f64> {
        let v = s.get_json(&format!("/metrics/series?tenant_id={tenant}&name=up"));
        assert_eq!(v["total"], 1, "one series: {v}");
        v["series"][0]["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["value"].as_f64().unwrap())
            .collect()
    };
    let s = Server::start(dir.path());
    for i in 0..3 {
        let (st, body) = send(&s, one(t0 + i * 15_000, i as f64), Some("a"));
        assert_eq!(st, 400, "the bad series is rejected every time: {body}");
        assert!(body.contains("1 of 2 samples rejected"), "{body}");
    }
    assert_eq!(send(&s, one(t0, 9.0), Some("b")).0, 400);
    // The same series with its labels in another order: other bytes, the same series.
    let mut swapped = ts("up", "node", &[(t0 + 45_000, 3.0)]);
    swapped.labels.reverse();
    let req = WriteRequest {
        timeseries: vec![swapped],
        metadata: vec![],
    };
    assert_eq!(send(&s, encode_write_request(&req), Some("a")).0, 204);
    assert_eq!(points(&s, "a"), [0.0, 1.0, 2.0, 3.0]);
    assert_eq!(points(&s, "b"), [9.0], "tenants do not share series");
    assert_eq!(s.stop(), Some(0));
    let s = Server::start(dir.path());
    assert_eq!(send(&s, one(t0 + 60_000, 4.0), Some("a")).0, 400);
    assert_eq!(points(&s, "a"), [0.0, 1.0, 2.0, 3.0, 4.0]);
}
