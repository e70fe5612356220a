//! Every acknowledged point survives SIGKILL; block files truncated underneath the running
//! server cost their samples (with a warning), never the process.

use serde_json::{Value, json};

use crate::util::Server;

#[test]
fn acknowledged_points_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let mut acked = 0u64;
    for b in 0..20 {
        let items: Vec<_> = (0..50).map(|i| json!({"name": "hits_total", "value": 1, "type": "counter", "labels": {"shard": format!("{}", i % 5)}, "tenant_id": format!("t{}", b % 2)})).collect();
        let (st, v) = s.post("/metrics/track/batch", json!(items).to_string(), &[]);
        assert_eq!(st, 200, "{v}");
        acked += v["successful"].as_u64().unwrap();
    }
    assert_eq!(acked, 1000);
    s.kill();
    let s = Server::start(dir.path());
    let mut points = 0;
    let mut total = 0.0;
    for t in ["t0", "t1"] {
        let v = s.get_json(&format!("/metrics/series?tenant_id={t}&name=hits_total"));
        for se in v["series"].as_array().unwrap() {
            let p = se["points"].as_array().unwrap();
            points += p.len();
            total += p.last().unwrap()["value"].as_f64().unwrap();
        }
    }
    assert_eq!(points, 1000, "every acknowledged point is stored");
    assert_eq!(
        total, 1000.0,
        "the counters add up to every acknowledged increment"
    );
    // And they keep counting from there.
    s.track(&json!({"name": "hits_total", "value": 1, "type": "counter", "labels": {"shard": "0"}, "tenant_id": "t0"}));
    let v = s.get_json("/metrics/series?tenant_id=t0&name=hits_total");
    let p = v["series"][0]["points"].as_array().unwrap();
    assert_eq!(p.last().unwrap()["value"], 101);
}

/// Issue 11: a block's chunk file (and index) truncated by another process while the server
/// has the block open, then queried. The block files are not memory-mapped, so the query
/// answers what is left with a warning naming the corruption (no SIGBUS), and the process
/// stays up and keeps answering `/health`.
#[test]
fn block_files_truncated_underneath_cost_samples_not_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // The previous whole 2h block range: one block, well inside the retention.
    let start_ms = (now_ms / 7_200_000 - 1) * 7_200_000;
    // A block written as the server would (Storage's layout, Db::import: backfill), before
    // the server opens it: the server has no route that forces a head cut.
    let blocks = {
        let (storage, _) =
            metricsd_tsdb::Storage::open(dir.path(), metricsd_tsdb::DbOptions::default()).unwrap();
        let db = storage.tenant(metricsd_tsdb::DEFAULT_TENANT).unwrap();
        let series = (0..20)
            .map(|i| {
                let l = metricsd_model::Labels::from_pairs([
                    ("__name__", "truncated_total".to_string()),
                    ("i", format!("{i:02}")),
                ]);
                // 20 minutes at 15 s.
                let samples = (0..80)
                    .map(|k| metricsd_model::Sample::new(start_ms + k * 15_000, (k * i) as f64))
                    .collect();
                (l, samples)
            })
            .collect();
        let ulids = db.import(series).unwrap();
        db.close().unwrap();
        ulids
            .iter()
            .map(|u| {
                dir.path()
                    .join("tenants")
                    .join(metricsd_tsdb::DEFAULT_TENANT)
                    .join(u)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(blocks.len(), 1);
    let s = Server::start(dir.path());
    let t = (start_ms + 79 * 15_000) as f64 / 1000.0;
    let query = |q: &str| -> Value {
        let (st, body) = s.get(&format!("/api/v1/query?query={q}&time={t}"));
        assert_eq!(st, 200, "{q}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    let v = query("count(truncated_total)");
    assert_eq!(v["data"]["result"][0]["value"][1], "20", "{v}");
    assert!(v.get("warnings").is_none(), "{v}");

    for b in &blocks {
        for f in std::fs::read_dir(b.join("chunks")).unwrap() {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(f.unwrap().path())
                .unwrap();
            f.set_len(0).unwrap();
        }
        std::fs::OpenOptions::new()
            .write(true)
            .open(b.join("index"))
            .unwrap()
            .set_len(0)
            .unwrap();
    }

    for q in [
        "truncated_total",
        "sum(rate(truncated_total[5m]))",
        "count(truncated_total)",
    ] {
        let v = query(q);
        assert_eq!(v["status"], "success", "{v}");
        let warnings = v["warnings"]
            .as_array()
            .unwrap_or_else(|| panic!("{q}: no warning: {v}"));
        assert!(
            warnings
                .iter()
                .any(|w| w.as_str().is_some_and(|w| w.contains("corrupt"))),
            "{q}: {v}"
        );
    }
    // A range query over the block too.
    let (st, body) = s.get(&format!(
        "/api/v1/query_range?query=truncated_total&start={}&end={t}&step=60",
        t - 1200.0
    ));
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("corrupt"), "{body}");
    // The warning names the file, not where the data directory is.
    let root = dir.path().to_string_lossy().into_owned();
    assert!(!body.contains(&root), "the data dir's path in {body}");
    assert!(s.healthy(), "the process is alive and /health answers");
    // Still serving writes and reads.
    let (st, v) = s.track(&json!({"name": "after_truncation", "value": 1, "type": "gauge"}));
    assert_eq!(st, 200, "{v}");
    assert!(s.healthy());
    assert_eq!(s.stop(), Some(0), "clean shutdown after the truncation");
}
