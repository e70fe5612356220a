//! A real Prometheus (Debian's package) scrapes metricsd's `/metrics` and forwards the samples
//! back with remote_write: proves both our exposition and our receiver against the reference.
//! Skipped when no `prometheus` binary is installed, except under `CI=true` (`.ci/run` installs it).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Server, find_on_path};

struct Prom(Child);

impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn prometheus_scrapes_and_forwards_over_remote_write() {
    let Some(bin) = find_on_path("prometheus") else {
        // In CI the peer is installed by .ci/run: its absence is a failure, not a skip.
        assert!(
            std::env::var("CI").is_err(),
            "CI=true but no prometheus binary: .ci/run must install it"
        );
        eprintln!("skipped: no prometheus binary");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("metricsd"));
    let addr = s.base.trim_start_matches("http://").to_owned();
    let cfg = [
        "global:",
        "  scrape_interval: 1s",
        "  scrape_timeout: 1s",
        "scrape_configs:",
        "  - job_name: metricsd",
        "    params:",
        "      tenant_id: [src]",
        "    static_configs:",
        &format!("      - targets: ['{addr}']"),
        "remote_write:",
        &format!("  - url: http://{addr}/api/v1/write"),
        "    queue_config:",
        "      batch_send_deadline: 1s",
        "      min_backoff: 100ms",
        "      max_backoff: 1s",
    ]
    .join("\n");
    let cfg_path = dir.path().join("prometheus.yml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let _prom = Prom(
        Command::new(bin)
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("prom").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    // Prometheus scrapes tenant `src` (a tracked histogram plus our self-metrics) and writes
    // to the default tenant: scraping and writing the same tenant would feed back forever.
    // (Debian's Prometheus 2.42 does not send remote_write `headers`, so no X-Scope-OrgID.)
    let (st, _) = s.track(&serde_json::json!({"name": "rt_seconds", "value": 0.3, "type": "histogram", "labels": {"path": "a\"b"}, "tenant_id": "src"}));
    assert_eq!(st, 200);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let v = s.get_json("/metrics/series?name=up");
        let up = v["series"][0]["points"]
            .as_array()
            .and_then(|p| p.last())
            .and_then(|p| p["value"].as_f64());
        if up == Some(1.0) {
            assert_eq!(v["series"][0]["labels"]["job"], "metricsd");
            break;
        }
        assert!(up != Some(0.0), "Prometheus could not scrape our /metrics: {v}");
        assert!(
            Instant::now() < deadline,
            "no `up` sample arrived over remote_write: {v}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Our own families and the tracked histogram came back through Prometheus.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let b = s.get_json("/metrics/series?name=rt_seconds_bucket&limit=100");
        let m = s.get_json("/metrics/series?name=metrics_points_total");
        if b["total"].as_u64() == Some(12) && m["total"].as_u64() == Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "missing forwarded series: {b} {m}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(s.healthy());
}
