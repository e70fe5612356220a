//! Time is the clock's: samples far in the future are refused on every write path, and
//! one that is already stored (from a version without the bound) moves nothing: after
//! compactions and a restart nothing acknowledged is lost and later writes are accepted.

use std::time::{Duration, Instant};

use metricsd_ingest::TimeSeries;
use serde_json::{Value, json};

use crate::util::{Server, now_ms, time_series, write_body};

const H: i64 = 3_600_000;

fn ts(name: &str, samples: &[(i64, f64)]) -> TimeSeries {
    time_series(&[("__name__", name)], samples)
}

fn remote_write(s: &Server, series: Vec<TimeSeries>) -> (u16, String) {
    s.remote_write(write_body(series), &[])
}

/// Samples of `name` stored in `[from, to]` (ms).
fn stored(s: &Server, name: &str, from: i64, to: i64) -> usize {
    let raw = s.get_json(&format!(
        "/api/v1/query?query={name}[{}s]&time={}",
        (to - from) / 1000 + 2,
        to / 1000 + 1
    ));
    raw["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["values"].as_array().unwrap().len())
        .sum()
}

#[test]
fn far_future_and_ancient_samples_are_refused_on_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let now = now_ms();
    for t in [i64::MAX, 32_472_144_000_000, now + 11 * 60 * 1000] {
        let (st, body) = remote_write(&s, vec![ts("rw_future", &[(t, 1.0)])]);
        assert_eq!(st, 400, "{body}");
        assert!(body.contains("creation_grace_period_seconds"), "{body}");
    }
    // Near i64::MIN: a 400 that says the sample is too old, no sentinel confusion.
    for t in [i64::MIN, i64::MIN + 1] {
        let (st, body) = remote_write(&s, vec![ts("rw_ancient", &[(t, 5.0)])]);
        assert_eq!(st, 400, "{body}");
        assert!(body.contains("too old") && !body.contains("duplicate"), "{body}");
    }
    // The JSON API: a gauge stamped in the year 2999.
    let (st, v) = s.track(
        &json!({"name": "json_future", "value": 1, "type": "gauge", "timestamp": "2999-01-01T00:00:00Z"}),
    );
    assert_eq!(st, 400, "{v}");
    assert!(v.to_string().contains("creation_grace_period_seconds"), "{v}");
    let (st, v) = s.post(
        "/metrics/track/batch",
        json!([
            {"name": "json_future", "value": 1, "type": "gauge", "timestamp": "2999-01-01T00:00:00Z"},
            {"name": "json_now", "value": 1, "type": "gauge"},
        ])
        .to_string(),
        &[],
    );
    assert!(st == 200 || st == 207 || st == 400, "{st} {v}");
    assert_eq!(v["successful"], 1, "{v}");
    assert!(v.to_string().contains("creation_grace_period_seconds"), "{v}");
    // Nothing of the refused samples created a series.
    let names = s.get_json("/api/v1/label/__name__/values");
    assert_eq!(names["data"], json!(["json_now"]), "{names}");
    // Within the bound is fine.
    let (st, body) = remote_write(&s, vec![ts("rw_soon", &[(now + 5 * 60 * 1000, 1.0)])]);
    assert_eq!(st, 204, "{body}");
}

/// A store that took samples far in the future (here: a server started with a bound of a
/// year, standing in for a version without one) keeps everything through compactions and
/// restarts, and accepts later writes.
#[test]
fn a_stored_far_future_sample_deletes_nothing_and_blocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lax = [
        ("ACCESS_CREATION_GRACE_PERIOD_SECONDS", "31622400"),
        ("ACCESS_COMPACTION_INTERVAL_SECONDS", "1"),
    ];
    let s = Server::start_with(dir.path(), &lax, &[]);
    let now = now_ms();
    let future = now + 300 * 24 * H;
    // Six hours of data up to now, and one sample 300 days ahead, on both paths.
    let past: Vec<(i64, f64)> = (0..36)
        .map(|i| (now - 6 * H + i * 10 * 60 * 1000, i as f64))
        .collect();
    let (st, body) = remote_write(&s, vec![ts("rw_m", &past), ts("rw_future", &[(future, 1.0)])]);
    assert_eq!(st, 204, "{body}");
    let items: Vec<Value> = past
        .iter()
        .map(|&(t, v)| json!({"name": "json_m", "value": v, "type": "gauge", "timestamp": t}))
        .chain([json!({"name": "json_future", "value": 1, "type": "gauge", "timestamp": future})])
        .collect();
    let (st, v) = s.post("/metrics/track/batch", json!(items).to_string(), &[]);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["successful"], 37, "{v}");
    let check = |s: &Server, round: &str| {
        for name in ["rw_m", "json_m"] {
            assert_eq!(stored(s, name, now - 7 * H, now), 36, "{round}: {name}");
        }
        for name in ["rw_future", "json_future"] {
            assert_eq!(stored(s, name, future - 1000, future), 1, "{round}: {name}");
        }
    };
    // Compaction runs every second: the head (6 h + 300 days) is cut.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dir.path().join("tenants/default").read_dir().unwrap().any(|e| {
        let n = e.unwrap().file_name();
        n.len() == 26
    }) {
        assert!(Instant::now() < deadline, "no block was cut");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    check(&s, "after compaction");
    assert_eq!(s.stop(), Some(0));
    // Restarted with the default bound: the stored future samples stay, nothing goes.
    for round in 0..2 {
        let s = Server::start_with(dir.path(), &[("ACCESS_COMPACTION_INTERVAL_SECONDS", "1")], &[]);
        std::thread::sleep(Duration::from_secs(3));
        check(&s, &format!("restart {round}"));
        let t = now_ms();
        let (st, body) = remote_write(
            &s,
            vec![ts(&format!("later{round}"), &[(t, 1.0)]), ts("rw_m", &[(t, 1.0)])],
        );
        assert_eq!(st, 204, "restart {round}: {body}");
        let (st, v) = s.track(&json!({"name": "json_m", "value": 2, "type": "gauge"}));
        assert_eq!(st, 200, "restart {round}: {v}");
        assert_eq!(s.stop(), Some(0));
    }
}
