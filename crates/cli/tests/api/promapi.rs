//! The Prometheus HTTP API, seed 001's query aliases, `/federate` and the `query` /
//! `query-range` commands, against data pushed with remote_write at known timestamps.

use std::process::Command;

use metricsd_ingest::TimeSeries;
use serde_json::{Value, json};

use crate::util::{Server, form, time_series, write_body};

fn answer(r: reqwest::blocking::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = r.text().unwrap();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(ct.as_deref(), Some("application/json"), "{text}");
    (status, v)
}

/// GET `path?pairs` with headers.
fn get(s: &Server, path: &str, pairs: &[(&str, &str)], headers: &[(&str, &str)]) -> (u16, Value) {
    let mut rq = s.client.get(format!("{}?{}", s.url(path), form(pairs)));
    for (k, v) in headers {
        rq = rq.header(*k, *v);
    }
    answer(rq.send().unwrap())
}

/// POST `pairs` as a form body.
fn post(s: &Server, path: &str, pairs: &[(&str, &str)], headers: &[(&str, &str)]) -> (u16, Value) {
    let mut rq = s
        .client
        .post(s.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(pairs));
    for (k, v) in headers {
        rq = rq.header(*k, *v);
    }
    answer(rq.send().unwrap())
}

fn ok(r: (u16, Value)) -> Value {
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["status"], "success", "{}", r.1);
    assert!(r.1.get("warnings").is_none(), "{}", r.1);
    r.1["data"].clone()
}

fn err(r: (u16, Value), status: u16, kind: &str, contains: &str) {
    assert_eq!(r.0, status, "{}", r.1);
    assert_eq!(r.1["status"], "error", "{}", r.1);
    assert_eq!(r.1["errorType"], kind, "{}", r.1);
    let msg = r.1["error"].as_str().unwrap();
    assert!(msg.contains(contains), "{msg:?} lacks {contains:?}");
}

fn series(labels: &[(&str, &str)], samples: Vec<(i64, f64)>) -> TimeSeries {
    time_series(labels, &samples)
}

fn push(s: &Server, tenant: Option<&str>, ts: Vec<TimeSeries>) {
    let h: Vec<(&str, &str)> = tenant.map(|t| ("X-Scope-OrgID", t)).into_iter().collect();
    let (status, text) = s.remote_write(write_body(ts), &h);
    assert_eq!(status, 204, "{text}");
}

/// Whole seconds, 4 minutes ago: the data runs from there to now in 15s steps, so its
/// newest samples are within `/federate`'s 5m lookback.
fn base_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 240
}

/// up{instance=a|b, job=node} (1 and 0) and http_requests_total{code=200, job=api}
/// (10 per 15s) at t0, t0+15s, ..., t0+240s; up{job=acme} = 5 in tenant `acme`.
fn load(s: &Server, t0: i64) {
    let pts = |f: &dyn Fn(i64) -> f64| -> Vec<(i64, f64)> {
        (0..=16).map(|i| ((t0 + i * 15) * 1000, f(i))).collect()
    };
    push(
        s,
        None,
        vec![
            series(
                &[("__name__", "up"), ("job", "node"), ("instance", "a")],
                pts(&|_| 1.0),
            ),
            series(
                &[("__name__", "up"), ("job", "node"), ("instance", "b")],
                pts(&|_| 0.0),
            ),
            series(
                &[
                    ("__name__", "http_requests_total"),
                    ("job", "api"),
                    ("code", "200"),
                ],
                pts(&|i| i as f64 * 10.0),
            ),
        ],
    );
    push(
        s,
        Some("acme"),
        vec![series(&[("__name__", "up"), ("job", "acme")], pts(&|_| 5.0))],
    );
}

/// The result of a vector query as (labels, value) sorted.
fn vector(data: &Value, t: f64) -> Vec<(Value, String)> {
    assert_eq!(data["resultType"], "vector", "{data}");
    let mut out: Vec<(Value, String)> = data["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r.as_object().unwrap().len(), 2, "metric and value only: {r}");
            assert_eq!(r["value"][0].as_f64(), Some(t), "{r}");
            (r["metric"].clone(), r["value"][1].as_str().unwrap().to_owned())
        })
        .collect();
    out.sort_by_key(|(m, _)| m.to_string());
    out
}

#[test]
fn instant_and_range_queries() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let t0 = base_secs();
    load(&s, t0);
    let at = (t0 + 240).to_string();
    let atf = (t0 + 240) as f64;

    // Instant vector, GET and form POST alike.
    let want = vec![
        (
            json!({"__name__": "up", "instance": "a", "job": "node"}),
            "1".to_owned(),
        ),
        (
            json!({"__name__": "up", "instance": "b", "job": "node"}),
            "0".to_owned(),
        ),
    ];
    let q = [("query", "up"), ("time", at.as_str())];
    assert_eq!(vector(&ok(get(&s, "/api/v1/query", &q, &[])), atf), want);
    assert_eq!(vector(&ok(post(&s, "/api/v1/query", &q, &[])), atf), want);
    // A body value wins over the URL's, as with Go's ParseForm.
    let r = s
        .client
        .post(s.url("/api/v1/query?query=nonexistent"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&q))
        .send()
        .unwrap();
    assert_eq!(vector(&ok(answer(r)), atf), want);
    // The envelope exactly.
    let r = get(
        &s,
        "/api/v1/query",
        &[("query", r#"up{instance="a"}"#), ("time", &at)],
        &[],
    );
    assert_eq!(
        r.1,
        json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"__name__": "up", "instance": "a", "job": "node"}, "value": [t0 + 240, "1"]}
        ]}})
    );
    // RFC 3339 time; milliseconds in the timestamp.
    let rfc = jiff::Timestamp::from_second(t0 + 240).unwrap().to_string();
    assert_eq!(
        vector(
            &ok(get(&s, "/api/v1/query", &[("query", "up"), ("time", &rfc)], &[])),
            atf
        ),
        want
    );
    let half = format!("{}.5", t0 + 240);
    let text = s
        .client
        .get(format!(
            "{}?{}",
            s.url("/api/v1/query"),
            form(&[("query", "sum(up)"), ("time", &half)])
        ))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(text.contains(&format!("[{}.500,\"1\"]", t0 + 240)), "{text}");
    // Aggregation, rate, scalar and string results.
    assert_eq!(
        vector(
            &ok(get(
                &s,
                "/api/v1/query",
                &[("query", "sum by (job) (up)"), ("time", &at)],
                &[]
            )),
            atf
        ),
        vec![(json!({"job": "node"}), "1".to_owned())]
    );
    let v = vector(
        &ok(get(
            &s,
            "/api/v1/query",
            &[("query", "rate(http_requests_total[1m])"), ("time", &at)],
            &[],
        )),
        atf,
    );
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].0, json!({"code": "200", "job": "api"}));
    let rate: f64 = v[0].1.parse().unwrap();
    assert!((rate - 10.0 / 15.0).abs() < 1e-9, "{rate}");
    assert_eq!(
        ok(get(
            &s,
            "/api/v1/query",
            &[("query", "1 + 1.5"), ("time", &at)],
            &[]
        )),
        json!({"resultType": "scalar", "result": [t0 + 240, "2.5"]})
    );
    assert_eq!(
        ok(get(&s, "/api/v1/query", &[("query", "1/0"), ("time", &at)], &[])),
        json!({"resultType": "scalar", "result": [t0 + 240, "+Inf"]})
    );
    assert_eq!(
        ok(get(
            &s,
            "/api/v1/query",
            &[("query", "\"hi\""), ("time", &at)],
            &[]
        )),
        json!({"resultType": "string", "result": [t0 + 240, "hi"]})
    );
    assert_eq!(
        ok(get(
            &s,
            "/api/v1/query",
            &[("query", "nonexistent_metric"), ("time", &at)],
            &[]
        )),
        json!({"resultType": "vector", "result": []})
    );
    // Default time is now: the newest samples are within the lookback.
    let d = ok(get(&s, "/api/v1/query", &[("query", "up")], &[]));
    assert_eq!(d["result"].as_array().unwrap().len(), 2, "{d}");
    // An instant query of a range selector is a matrix (2.x: both ends of the range included).
    let m = ok(get(
        &s,
        "/api/v1/query",
        &[("query", r#"up{instance="a"}[30s]"#), ("time", &at)],
        &[],
    ));
    assert_eq!(m["resultType"], "matrix");
    assert_eq!(
        m["result"][0]["values"],
        json!([[t0 + 210, "1"], [t0 + 225, "1"], [t0 + 240, "1"]])
    );
    // stats=1 adds Prometheus' stats object.
    let d = ok(get(
        &s,
        "/api/v1/query",
        &[("query", "up"), ("time", &at), ("stats", "1")],
        &[],
    ));
    assert!(d["stats"]["samples"]["totalQueryableSamples"].is_u64(), "{d}");

    // Range queries, GET and POST; step as seconds or a duration.
    let start = t0.to_string();
    let end = (t0 + 60).to_string();
    for step in ["15", "15s"] {
        let q = [
            ("query", r#"up{instance="a"}"#),
            ("start", start.as_str()),
            ("end", end.as_str()),
            ("step", step),
        ];
        for r in [
            get(&s, "/api/v1/query_range", &q, &[]),
            post(&s, "/api/v1/query_range", &q, &[]),
        ] {
            let points: Vec<Value> = (0..=4).map(|i| json!([t0 + i * 15, "1"])).collect();
            assert_eq!(
                ok(r),
                json!({"resultType": "matrix", "result": [
                    {"metric": {"__name__": "up", "instance": "a", "job": "node"}, "values": points}
                ]})
            );
        }
    }
    let d = ok(get(
        &s,
        "/api/v1/query_range",
        &[
            ("query", "sum(up) * 2"),
            ("start", &start),
            ("end", &end),
            ("step", "30s"),
        ],
        &[],
    ));
    assert_eq!(
        d["result"],
        json!([{"metric": {}, "values": [[t0, "2"], [t0 + 30, "2"], [t0 + 60, "2"]]}])
    );

    // Errors: status, errorType and Prometheus' message.
    let q = |pairs: &[(&str, &str)]| get(&s, "/api/v1/query", pairs, &[]);
    let qr = |pairs: &[(&str, &str)]| get(&s, "/api/v1/query_range", pairs, &[]);
    err(
        q(&[("query", "sum(")]),
        400,
        "bad_data",
        "invalid parameter \"query\": ",
    );
    err(
        q(&[("query", "")]),
        400,
        "bad_data",
        "invalid parameter \"query\"",
    );
    err(
        q(&[("query", "up"), ("time", "yesterday")]),
        400,
        "bad_data",
        "invalid parameter \"time\": ",
    );
    err(
        q(&[("query", "up"), ("timeout", "soon")]),
        400,
        "bad_data",
        "invalid parameter \"timeout\"",
    );
    err(
        q(&[("query", "up + on(job) up"), ("time", &at)]),
        422,
        "execution",
        "many-to-many matching not allowed",
    );
    err(
        q(&[("query", "up"), ("timeout", "-1")]),
        503,
        "timeout",
        "query timed out",
    );
    err(
        qr(&[("query", "up"), ("start", &end), ("end", &start), ("step", "15")]),
        400,
        "bad_data",
        "invalid parameter \"end\": end timestamp must not be before start time",
    );
    err(
        qr(&[("query", "up"), ("start", "0"), ("end", "100000"), ("step", "1")]),
        400,
        "bad_data",
        "exceeded maximum resolution of 11,000 points per timeseries",
    );
    err(
        qr(&[("query", "up"), ("start", &start), ("end", &end), ("step", "0")]),
        400,
        "bad_data",
        "invalid parameter \"step\": zero or negative query resolution step widths are not accepted",
    );
    err(
        qr(&[
            ("query", "up"),
            ("start", &start),
            ("end", &end),
            ("step", "fast"),
        ]),
        400,
        "bad_data",
        "invalid parameter \"step\": cannot parse \"fast\" to a valid duration",
    );
    err(
        qr(&[("query", "up"), ("end", &end), ("step", "15")]),
        400,
        "bad_data",
        "invalid parameter \"start\": cannot parse \"\" to a valid timestamp",
    );
    err(
        qr(&[
            ("query", "up"),
            ("start", "2024-13-45T00:00:00Z"),
            ("end", &end),
            ("step", "15"),
        ]),
        400,
        "bad_data",
        "invalid parameter \"start\"",
    );
    err(
        qr(&[
            ("query", "up[5m]"),
            ("start", &start),
            ("end", &end),
            ("step", "15"),
        ]),
        400,
        "bad_data",
        "invalid parameter \"query\"",
    );

    // Seed 001's aliases answer exactly what the Prometheus routes answer.
    let q = [("query", "up"), ("time", at.as_str())];
    for path in ["/metrics/query", "/metrics/instant"] {
        assert_eq!(
            get(&s, path, &q, &[]),
            get(&s, "/api/v1/query", &q, &[]),
            "{path}"
        );
    }
    let q = [
        ("query", "up"),
        ("start", start.as_str()),
        ("end", end.as_str()),
        ("step", "15"),
    ];
    assert_eq!(
        get(&s, "/metrics/range", &q, &[]),
        get(&s, "/api/v1/query_range", &q, &[])
    );
    assert_eq!(
        get(&s, "/metrics/labels", &[], &[]),
        get(&s, "/api/v1/labels", &[], &[])
    );
    err(
        get(&s, "/metrics/query", &[("query", "sum(")], &[]),
        400,
        "bad_data",
        "parse error",
    );
    // ... and take the tenant like the other /metrics reads: tenant_id or the header.
    let acme = vector(
        &ok(get(
            &s,
            "/metrics/query",
            &[("query", "up"), ("time", &at), ("tenant_id", "acme")],
            &[],
        )),
        atf,
    );
    assert_eq!(
        acme,
        vec![(json!({"__name__": "up", "job": "acme"}), "5".to_owned())]
    );
    err(
        get(
            &s,
            "/metrics/query",
            &[("query", "up"), ("tenant_id", "acme")],
            &[("X-Scope-OrgID", "other")],
        ),
        400,
        "bad_data",
        "tenant_id",
    );
}

#[test]
fn metadata_endpoints_tenants_and_federation() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let t0 = base_secs();
    load(&s, t0);

    // Series: match[] repeated, GET and POST, time bounds, errors.
    let a = json!({"__name__": "up", "instance": "a", "job": "node"});
    let b = json!({"__name__": "up", "instance": "b", "job": "node"});
    let h = json!({"__name__": "http_requests_total", "code": "200", "job": "api"});
    assert_eq!(
        ok(get(&s, "/api/v1/series", &[("match[]", "up")], &[])),
        json!([a, b])
    );
    let both = [("match[]", "up"), ("match[]", r#"{job=~"api|node"}"#)];
    assert_eq!(ok(get(&s, "/api/v1/series", &both, &[])), json!([h, a, b]));
    assert_eq!(ok(post(&s, "/api/v1/series", &both, &[])), json!([h, a, b]));
    let before = (t0 - 3600).to_string();
    let long_before = (t0 - 7200).to_string();
    assert_eq!(
        ok(get(
            &s,
            "/api/v1/series",
            &[("match[]", "up"), ("start", &long_before), ("end", &before)],
            &[]
        )),
        json!([])
    );
    let rfc = jiff::Timestamp::from_second(t0).unwrap().to_string();
    assert_eq!(
        ok(get(
            &s,
            "/api/v1/series",
            &[("match[]", "up"), ("start", &rfc)],
            &[]
        )),
        json!([a, b])
    );
    // Prometheus' own spelling of open bounds, as its client library sends them.
    assert_eq!(
        ok(get(
            &s,
            "/api/v1/series",
            &[
                ("match[]", "up"),
                ("start", "-292273086-05-16T16:47:06Z"),
                ("end", "292277025-08-18T07:12:54.999999999Z")
            ],
            &[]
        )),
        json!([a, b])
    );
    err(
        get(&s, "/api/v1/series", &[], &[]),
        400,
        "bad_data",
        "no match[] parameter provided",
    );
    err(
        get(&s, "/api/v1/series", &[("match[]", "sum(up)")], &[]),
        400,
        "bad_data",
        "invalid parameter \"match[]\"",
    );
    err(
        get(&s, "/api/v1/series", &[("match[]", "{}")], &[]),
        400,
        "bad_data",
        "invalid parameter \"match[]\"",
    );
    err(
        get(&s, "/api/v1/series", &[("match[]", "up"), ("start", "x")], &[]),
        400,
        "bad_data",
        "invalid parameter \"start\": Invalid time value for 'start'",
    );

    // Label names and values.
    assert_eq!(
        ok(get(&s, "/api/v1/labels", &[], &[])),
        json!(["__name__", "code", "instance", "job"])
    );
    assert_eq!(
        ok(post(&s, "/api/v1/labels", &[("match[]", "up")], &[])),
        json!(["__name__", "instance", "job"])
    );
    assert_eq!(
        ok(get(&s, "/api/v1/label/job/values", &[], &[])),
        json!(["api", "node"])
    );
    assert_eq!(
        ok(get(&s, "/api/v1/label/__name__/values", &[], &[])),
        json!(["http_requests_total", "up"])
    );
    assert_eq!(
        ok(get(&s, "/api/v1/label/job/values", &[("match[]", "up")], &[])),
        json!(["node"])
    );
    assert_eq!(ok(get(&s, "/api/v1/label/nope/values", &[], &[])), json!([]));
    err(
        get(&s, "/api/v1/label/1x/values", &[], &[]),
        400,
        "bad_data",
        "invalid label name: \"1x\"",
    );

    // Tenants: X-Scope-OrgID; an unknown tenant is empty, not an error, and is not created.
    let acme = [("X-Scope-OrgID", "acme")];
    assert_eq!(
        ok(get(&s, "/api/v1/series", &[("match[]", "up")], &acme)),
        json!([{"__name__": "up", "job": "acme"}])
    );
    assert_eq!(
        ok(get(&s, "/api/v1/label/job/values", &[], &acme)),
        json!(["acme"])
    );
    let at = (t0 + 240).to_string();
    assert_eq!(
        vector(
            &ok(get(&s, "/api/v1/query", &[("query", "up"), ("time", &at)], &acme)),
            (t0 + 240) as f64
        ),
        vec![(json!({"__name__": "up", "job": "acme"}), "5".to_owned())]
    );
    let nobody = [("X-Scope-OrgID", "nobody")];
    assert_eq!(
        ok(get(&s, "/api/v1/query", &[("query", "up")], &nobody)),
        json!({"resultType": "vector", "result": []})
    );
    assert_eq!(
        ok(get(&s, "/api/v1/series", &[("match[]", "up")], &nobody)),
        json!([])
    );
    assert_eq!(ok(get(&s, "/api/v1/labels", &[], &nobody)), json!([]));
    assert_eq!(ok(get(&s, "/api/v1/label/job/values", &[], &nobody)), json!([]));
    assert!(!dir.path().join("tenants").join("nobody").exists());
    err(
        get(
            &s,
            "/api/v1/query",
            &[("query", "up")],
            &[("X-Scope-OrgID", "no/such")],
        ),
        400,
        "bad_data",
        "X-Scope-OrgID",
    );

    // Metadata from the track API's types and help texts, per tenant.
    let tr = |body: Value| assert_eq!(s.track(&body).0, 200);
    tr(
        json!({"name": "jobs_done_total", "value": 1, "type": "counter", "help": "Jobs done.", "tenant_id": "meta"}),
    );
    tr(json!({"name": "temp_celsius", "value": 20.5, "type": "gauge", "tenant_id": "meta"}));
    let meta = [("X-Scope-OrgID", "meta")];
    assert_eq!(
        ok(get(&s, "/api/v1/metadata", &[], &meta)),
        json!({
            "jobs_done_total": [{"type": "counter", "help": "Jobs done.", "unit": ""}],
            "temp_celsius": [{"type": "gauge", "help": "", "unit": ""}],
        })
    );
    assert_eq!(
        ok(get(&s, "/api/v1/metadata", &[("limit", "1")], &meta))
            .as_object()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        ok(get(&s, "/api/v1/metadata", &[("metric", "temp_celsius")], &meta)),
        json!({"temp_celsius": [{"type": "gauge", "help": "", "unit": ""}]})
    );
    assert_eq!(ok(get(&s, "/api/v1/metadata", &[], &[])), json!({}));
    err(
        get(&s, "/api/v1/metadata", &[("limit", "many")], &meta),
        400,
        "bad_data",
        "limit must be a number",
    );

    // Exemplars: none stored, the query is still checked.
    assert_eq!(
        ok(get(&s, "/api/v1/query_exemplars", &[("query", "up")], &[])),
        json!([])
    );
    assert_eq!(
        ok(post(&s, "/api/v1/query_exemplars", &[("query", "up")], &[])),
        json!([])
    );
    err(
        get(&s, "/api/v1/query_exemplars", &[("query", "up{")], &[]),
        400,
        "bad_data",
        "parse error",
    );

    // Status endpoints.
    let d = ok(get(&s, "/api/v1/status/buildinfo", &[], &[]));
    for k in [
        "version",
        "revision",
        "branch",
        "buildUser",
        "buildDate",
        "goVersion",
    ] {
        assert!(d[k].is_string(), "{k}: {d}");
    }
    let d = ok(get(&s, "/api/v1/status/runtimeinfo", &[], &[]));
    assert_eq!(d["storageRetention"], "15d");
    assert_eq!(d["reloadConfigSuccess"], true);
    assert!(d["startTime"].as_str().unwrap().ends_with('Z'), "{d}");
    assert!(d["GOMAXPROCS"].as_u64().unwrap() >= 1);
    let d = ok(get(&s, "/api/v1/status/flags", &[], &[]));
    assert_eq!(d["query.lookback-delta"], "5m");
    assert_eq!(d["query.timeout"], "2m");
    assert_eq!(d["web.enable-admin-api"], "false");
    assert_eq!(d["max_metric_series"], "10000");
    assert!(d.as_object().unwrap().values().all(Value::is_string), "{d}");
    let d = ok(get(&s, "/api/v1/status/config", &[], &[]));
    let yaml = d["yaml"].as_str().unwrap();
    assert!(yaml.contains("query_lookback_delta: 5m"), "{yaml}");
    assert!(yaml.contains("enable_admin_api: false"), "{yaml}");
    let d = ok(get(&s, "/api/v1/status/tsdb", &[], &[]));
    assert_eq!(d["headStats"]["numSeries"], 3);
    assert_eq!(d["headStats"]["minTime"], t0 * 1000);
    assert_eq!(d["headStats"]["maxTime"], (t0 + 240) * 1000);
    assert!(d["headStats"]["chunkCount"].as_u64().unwrap() >= 3);
    assert_eq!(d["headStats"]["numLabelPairs"], 7);
    assert_eq!(d["seriesCountByMetricName"][0], json!({"name": "up", "value": 2}));
    assert_eq!(d["labelValueCountByLabelName"][0]["value"], 2);
    assert_eq!(
        d["seriesCountByLabelValuePair"][0],
        json!({"name": "__name__=up", "value": 2})
    );
    // __name__: "up" × 2 + "http_requests_total" × 1 = 23 bytes, the largest.
    assert_eq!(
        d["memoryInBytesByLabelName"][0],
        json!({"name": "__name__", "value": 23})
    );
    let d = ok(get(&s, "/api/v1/status/tsdb", &[("limit", "1")], &acme));
    assert_eq!(d["seriesCountByMetricName"], json!([{"name": "up", "value": 1}]));
    assert_eq!(d["labelValueCountByLabelName"].as_array().unwrap().len(), 1);
    let d = ok(get(&s, "/api/v1/status/tsdb", &[], &nobody));
    assert_eq!(d["headStats"]["numSeries"], 0);

    // Federation: newest sample in the lookback, untyped families sorted by name.
    let fed = |pairs: &[(&str, &str)], headers: &[(&str, &str)]| {
        let mut rq = s.client.get(format!("{}?{}", s.url("/federate"), form(pairs)));
        for (k, v) in headers {
            rq = rq.header(*k, *v);
        }
        let r = rq.send().unwrap();
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        (r.status().as_u16(), ct, r.text().unwrap())
    };
    let last = (t0 + 240) * 1000;
    let (st, ct, text) = fed(&[("match[]", "up")], &[]);
    assert_eq!(
        (st, ct.as_str()),
        (200, "text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(
        text,
        format!(
            "# TYPE up untyped\nup{{instance=\"a\",job=\"node\"}} 1 {last}\nup{{instance=\"b\",job=\"node\"}} 0 {last}\n"
        )
    );
    let (_, _, text) = fed(
        &[("match[]", r#"{job="node"}"#), ("match[]", "http_requests_total")],
        &[],
    );
    assert_eq!(
        text,
        format!(
            "# TYPE http_requests_total untyped\nhttp_requests_total{{code=\"200\",job=\"api\"}} 160 {last}\n\
             # TYPE up untyped\nup{{instance=\"a\",job=\"node\"}} 1 {last}\nup{{instance=\"b\",job=\"node\"}} 0 {last}\n"
        )
    );
    let (_, _, text) = fed(&[("match[]", "up")], &acme);
    assert_eq!(text, format!("# TYPE up untyped\nup{{job=\"acme\"}} 5 {last}\n"));
    assert_eq!(fed(&[], &[]).2, "");
    let (st, _, text) = fed(&[("match[]", "up{")], &[]);
    assert_eq!(st, 400, "{text}");
    assert!(text.contains("parse error"), "{text}");
}

#[test]
fn admin_api_is_off_unless_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = base_secs();
    {
        let s = Server::start(&dir.path().join("off"));
        load(&s, t0);
        let r = post(&s, "/api/v1/admin/tsdb/delete_series", &[("match[]", "up")], &[]);
        assert_eq!(
            r,
            (
                500,
                json!({"status": "error", "errorType": "unavailable", "error": "admin APIs disabled"})
            )
        );
        assert_eq!(
            ok(get(&s, "/api/v1/series", &[("match[]", "up")], &[]))
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }
    let s = Server::start_with(&dir.path().join("on"), &[], &["--enable-admin-api"]);
    load(&s, t0);
    let del = |method: reqwest::Method, pairs: &[(&str, &str)], headers: &[(&str, &str)]| {
        let mut rq = s
            .client
            .request(method, s.url("/api/v1/admin/tsdb/delete_series"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(pairs));
        for (k, v) in headers {
            rq = rq.header(*k, *v);
        }
        let r = rq.send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    assert_eq!(
        del(reqwest::Method::POST, &[("match[]", r#"up{instance="b"}"#)], &[]),
        (204, String::new())
    );
    assert_eq!(
        ok(get(&s, "/api/v1/series", &[("match[]", "up")], &[])),
        json!([{"__name__": "up", "instance": "a", "job": "node"}])
    );
    // PUT works too; a time range deletes only within it.
    let cut = (t0 + 120).to_string();
    assert_eq!(
        del(
            reqwest::Method::PUT,
            &[("match[]", "http_requests_total"), ("start", &cut)],
            &[]
        )
        .0,
        204
    );
    let d = ok(get(
        &s,
        "/api/v1/query",
        &[
            ("query", "count_over_time(http_requests_total[10m])"),
            ("time", &(t0 + 240).to_string()),
        ],
        &[],
    ));
    assert_eq!(d["result"][0]["value"][1], "8", "{d}");
    // The tenant's own data only.
    assert_eq!(
        del(
            reqwest::Method::POST,
            &[("match[]", "up")],
            &[("X-Scope-OrgID", "acme")]
        )
        .0,
        204
    );
    assert_eq!(
        ok(get(&s, "/api/v1/series", &[("match[]", "up")], &[]))
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        ok(get(
            &s,
            "/api/v1/series",
            &[("match[]", "up")],
            &[("X-Scope-OrgID", "acme")]
        )),
        json!([])
    );
    let (st, body) = del(reqwest::Method::POST, &[], &[]);
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("no match[] parameter provided"), "{body}");
    let d = ok(get(&s, "/api/v1/status/flags", &[], &[]));
    assert_eq!(d["web.enable-admin-api"], "true");
}

/// Runs the binary with `args`; returns (exit code, stdout, stderr).
fn cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_metricsd"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn query_commands_print_tables_json_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let t0 = base_secs();
    load(&s, t0);
    let at = (t0 + 240).to_string();
    let when = jiff::Timestamp::from_second(t0 + 240).unwrap().to_string();

    let (code, out, errs) = cli(&["query", "up", "--server", &s.base, "--time", &at]);
    assert_eq!(code, Some(0), "{errs}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let cols = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(cols(lines[0]), ["SERIES", "VALUE", "TIMESTAMP"]);
    let mut rows = vec![cols(lines[1]), cols(lines[2])];
    rows.sort();
    assert_eq!(
        rows,
        [
            vec![
                r#"up{instance="a",job="node"}"#.to_owned(),
                "1".into(),
                when.clone()
            ],
            vec![
                r#"up{instance="b",job="node"}"#.to_owned(),
                "0".into(),
                when.clone()
            ],
        ]
    );

    let (code, out, _) = cli(&[
        "query", "up", "--server", &s.base, "--time", &at, "--tenant", "acme",
    ]);
    assert_eq!(code, Some(0));
    assert!(out.contains(r#"up{job="acme"}"#) && out.contains(" 5 "), "{out}");

    let (code, out, _) = cli(&[
        "query", "sum(up)", "--server", &s.base, "--time", &at, "--output", "json",
    ]);
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["data"]["result"][0]["value"], json!([t0 + 240, "1"]));

    let (code, out, errs) = cli(&[
        "query-range",
        r#"up{instance="a"}"#,
        "--server",
        &s.base,
        "--start",
        &t0.to_string(),
        "--end",
        &(t0 + 60).to_string(),
        "--step",
        "15s",
    ]);
    assert_eq!(code, Some(0), "{errs}");
    assert_eq!(out.lines().count(), 6, "{out}");
    assert!(
        out.lines()
            .skip(1)
            .all(|l| l.starts_with(r#"up{instance="a",job="node"}  1 "#)),
        "{out}"
    );

    let (code, out, _) = cli(&["query", "nothing_here", "--server", &s.base]);
    assert_eq!((code, out.as_str()), (Some(0), ""));

    // Errors: the server's message, exit code 1.
    let (code, out, errs) = cli(&["query", "sum(", "--server", &s.base]);
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert!(
        errs.starts_with("metricsd: bad_data: invalid parameter \"query\""),
        "{errs}"
    );
    let (code, _, errs) = cli(&[
        "query-range",
        "up",
        "--server",
        &s.base,
        "--start",
        "200",
        "--end",
        "100",
    ]);
    assert_eq!(code, Some(1));
    assert!(
        errs.contains("end timestamp must not be before start time"),
        "{errs}"
    );
    let (code, _, errs) = cli(&["query", "up", "--server", "http://127.0.0.1:1"]);
    assert_eq!(code, Some(1));
    assert!(
        errs.starts_with("metricsd: cannot query http://127.0.0.1:1/api/v1/query"),
        "{errs}"
    );
    let (code, _, _) = cli(&["query-range", "up", "--server", &s.base]);
    assert_eq!(code, Some(2), "missing --start/--end is a usage error");
}
