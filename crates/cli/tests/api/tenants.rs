//! Tenants are bounded: `max_tenants` (429), one fsync thread for every tenant's WAL, idle
//! tenants closed and reopened on use, reads of unknown tenants create nothing, figures
//! shown to a tenant are its own and no route shows the server's paths.

use std::time::{Duration, Instant};

use metricsd_ingest::{
    Label, MetricMetadata, Sample, TimeSeries, WriteRequest, encode_write_request, metric_metadata,
};
use serde_json::json;

use crate::util::{Server, now_ms};

fn body(name: &str, n: usize) -> Vec<u8> {
    encode_write_request(&request(name, n))
}

fn request(name: &str, n: usize) -> WriteRequest {
    let t = now_ms();
    WriteRequest {
        timeseries: (0..n)
            .map(|i| TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: name.into(),
                    },
                    Label {
                        name: "i".into(),
                        value: i.to_string(),
                    },
                ],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: t,
                }],
                exemplars: vec![],
                histograms: vec![],
            })
            .collect(),
        metadata: vec![],
    }
}

fn write(s: &Server, tenant: &str, b: Vec<u8>) -> (u16, String) {
    s.remote_write(b, &[("X-Scope-OrgID", tenant)])
}

fn get_as(s: &Server, tenant: &str, path: &str) -> (u16, String) {
    let r = s
        .client
        .get(s.url(path))
        .header("X-Scope-OrgID", tenant)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap_or_default())
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count()
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

#[test]
fn three_hundred_tenants_cost_no_thread_each() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let pid = s.pid();
    assert_eq!(write(&s, "warmup", body("m", 1)).0, 204);
    let before = threads(pid);
    let started = Instant::now();
    for i in 0..300 {
        let (st, b) = write(&s, &format!("t{i}"), body("m", 1));
        assert_eq!(st, 204, "{b}");
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    let after = threads(pid);
    assert!(
        after <= before + 8,
        "300 tenants made {} threads ({before} -> {after})",
        after - before
    );
    assert!(s.healthy());
}

#[test]
fn max_tenants_and_reads_that_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &[("ACCESS_MAX_TENANTS", "3")], &[]);
    // Writes whose every sample is refused leave no tenant behind.
    let far = encode_write_request(&WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![Label {
                name: "__name__".into(),
                value: "m".into(),
            }],
            samples: vec![Sample {
                value: 1.0,
                timestamp: i64::MAX,
            }],
            exemplars: vec![],
            histograms: vec![],
        }],
        metadata: vec![],
    });
    assert_eq!(write(&s, "z", far).0, 400);
    let (st, v) = s.track(&json!({"name": "g", "value": 1, "type": "gauge", "tenant_id": "y", "timestamp": "2999-01-01T00:00:00Z"}));
    assert_eq!(st, 400, "{v}");
    assert!(!dir.path().join("tenants/z").exists());
    assert!(!dir.path().join("tenants/y").exists());
    for t in ["a", "b", "c"] {
        assert_eq!(write(&s, t, body("m", 2)).0, 204);
    }
    // The fourth tenant: 429 naming the limit, by remote_write and by the JSON API.
    let (st, b) = write(&s, "d", body("m", 1));
    assert_eq!(st, 429, "{b}");
    assert!(b.contains("max_tenants"), "{b}");
    let (st, v) = s.track(&json!({"name": "g", "value": 1, "type": "gauge", "tenant_id": "d"}));
    assert_eq!(st, 429, "{v}");
    assert!(v.to_string().contains("max_tenants"), "{v}");
    // Existing tenants keep working.
    assert_eq!(write(&s, "a", body("m", 3)).0, 204);
    let (st, v) = s.track(&json!({"name": "g", "value": 1, "type": "gauge", "tenant_id": "b"}));
    assert_eq!(st, 200, "{v}");
    // Reads of unknown tenants, on every read route, create nothing.
    for path in [
        "/api/v1/query?query=up",
        "/api/v1/query_range?query=up&start=0&end=60&step=15",
        "/api/v1/series?match[]=up",
        "/api/v1/labels",
        "/api/v1/label/__name__/values",
        "/api/v1/metadata",
        "/api/v1/status/tsdb",
        "/federate?match[]=up",
        "/metrics",
        "/metrics/stats",
        "/metrics/series?name=m",
        "/metrics/trends/m",
    ] {
        for i in 0..5 {
            let (st, b) = get_as(&s, &format!("ghost{i}"), path);
            assert!(st < 500, "{path}: {st} {b}");
        }
    }
    // A remote_write without samples (metadata only) creates no tenant either.
    let meta_only = encode_write_request(&WriteRequest {
        timeseries: vec![],
        metadata: vec![],
    });
    assert_eq!(write(&s, "ghost9", meta_only).0, 204);
    let mut on_disk: Vec<String> = std::fs::read_dir(dir.path().join("tenants"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, ["a", "b", "c"]);
    assert!(
        !std::fs::read_dir(dir.path().join("server/metadata"))
            .map(|d| d
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("ghost")))
            .unwrap_or(false)
    );
    // Still three tenants: the fourth is still refused.
    assert_eq!(write(&s, "d", body("m", 1)).0, 429);

    // Figures shown to a tenant are its own.
    let stats = |t: &str| {
        let (st, b) = get_as(&s, t, "/metrics/stats");
        assert_eq!(st, 200, "{b}");
        serde_json::from_str::<serde_json::Value>(&b).unwrap()
    };
    assert_eq!(stats("a")["collector"]["total_series"], 3);
    assert_eq!(stats("c")["collector"]["total_series"], 2);
    assert_eq!(
        stats("b")["collector"]["total_series"],
        3,
        "2 by remote_write, g by the JSON API"
    );
    assert_eq!(stats("ghost0")["collector"]["total_series"], 0);
    // a: 2 + 3 samples by remote_write; b: 2 and one gauge; nothing for the refused "d".
    assert_eq!(stats("a")["collector"]["total_points"], 5);
    assert_eq!(stats("b")["collector"]["total_points"], 3);
    assert_eq!(stats("d")["collector"]["total_points"], 0);
    assert_eq!(stats("ghost0")["collector"]["total_points"], 0);
    let series_total = |t: &str| {
        let (_, text) = get_as(&s, t, "/metrics");
        crate::util::sample(&text, "metrics_series_total")
    };
    assert_eq!(series_total("a"), Some(3.0));
    assert_eq!(series_total("c"), Some(2.0));

    // No route shows the server's paths.
    let data_dir = dir.path().to_str().unwrap().to_owned();
    let cwd = std::env::current_dir().unwrap().to_str().unwrap().to_owned();
    for path in [
        "/api/v1/status/config",
        "/api/v1/status/runtimeinfo",
        "/api/v1/status/flags",
        "/api/v1/status/buildinfo",
    ] {
        let (st, b) = get_as(&s, "a", path);
        assert_eq!(st, 200, "{path}: {b}");
        assert!(!b.contains(&data_dir), "{path} shows the data dir: {b}");
        assert!(
            !b.contains(&format!("\"{cwd}\"")),
            "{path} shows the working directory: {b}"
        );
    }
}

#[test]
fn idle_tenants_are_closed_and_reopened_on_use() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("ACCESS_TENANT_IDLE_CLOSE_SECONDS", "1"),
        ("ACCESS_COMPACTION_INTERVAL_SECONDS", "1"),
        // The collector's eviction pass, which also drops closed tenants' metadata, every 1 s.
        ("ACCESS_SERIES_IDLE_TIMEOUT_SECONDS", "4"),
    ];
    let s = Server::start_with(dir.path(), &env, &[]);
    let pid = s.pid();
    let before = fds(pid);
    for i in 0..50 {
        assert_eq!(write(&s, &format!("t{i}"), body("m", 2)).0, 204);
    }
    // remote_write metadata is kept while the tenant is open.
    let mut with_meta = request("m", 1);
    with_meta.metadata = vec![MetricMetadata {
        r#type: metric_metadata::MetricType::Gauge as i32,
        metric_family_name: "m".into(),
        help: "h".into(),
        unit: String::new(),
    }];
    assert_eq!(write(&s, "t0", encode_write_request(&with_meta)).0, 204);
    let (_, b) = get_as(&s, "t0", "/api/v1/metadata");
    assert!(b.contains("\"m\""), "{b}");
    let open = fds(pid);
    assert!(open >= before + 50, "{before} -> {open}");
    // Within a few maintenance passes every tenant is idle and closed.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = fds(pid);
        if n <= before + 5 {
            break;
        }
        assert!(Instant::now() < deadline, "fds still open: {before} -> {n}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        s.logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("closing idle tenant"))
    );
    // ... and released with it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get_as(&s, "t0", "/api/v1/metadata").1.contains("\"m\"") {
        assert!(Instant::now() < deadline, "metadata of a closed tenant kept");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Reads and writes reopen them, with everything acknowledged.
    let (st, b) = get_as(&s, "t7", "/api/v1/query?query=count(m)");
    assert_eq!(st, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "2", "{v}");
    assert_eq!(write(&s, "t8", body("m", 3)).0, 204);
    let (_, b) = get_as(&s, "t8", "/api/v1/query?query=count(m)");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "3", "{v}");
    assert!(s.healthy());
}
