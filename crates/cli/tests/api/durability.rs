//! Every acknowledged point survives SIGKILL.

use serde_json::json;

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
