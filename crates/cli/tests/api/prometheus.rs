//! A real Prometheus (Debian's package) scrapes metricsd's `/metrics` and forwards the samples
//! back with remote_write: proves both our exposition and our receiver against the reference.
//! Skipped when no `prometheus` binary is installed, except under `CI=true` (`.ci/run` installs it).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Server, prometheus_or_skip};

struct Prom(Child);

impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn prometheus_scrapes_and_forwards_over_remote_write() {
    let Some(bin) = prometheus_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("metricsd"));
    let addr = s.base.trim_start_matches("http://").to_owned();
    let _prom = start_prometheus(&bin, dir.path(), &scrape_and_forward(&addr, &addr, &[]));
    // Prometheus scrapes tenant `src` (a tracked histogram plus our self-metrics) and writes
    // to the default tenant: scraping and writing the same tenant would feed back forever.
    let (st, _) = s.track(&serde_json::json!({"name": "rt_seconds", "value": 0.3, "type": "histogram", "labels": {"path": "a\"b"}, "tenant_id": "src"}));
    assert_eq!(st, 200);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let v = s.get_json("/metrics/series?name=up");
        let up = newest_value(&v);
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
    // So did the families' metadata (sent every second here): `/api/v1/metadata` of the
    // default tenant, which tracked nothing through the JSON API itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = s.get_json("/api/v1/metadata");
        let points = &v["data"]["metrics_points_total"];
        let hist = &v["data"]["rt_seconds"];
        if points.is_array() && hist.is_array() {
            assert_eq!(
                points[0],
                serde_json::json!({"type": "counter", "help": "Samples stored, all ingest paths.", "unit": ""}),
                "{v}"
            );
            assert_eq!(hist[0]["type"], "histogram", "{v}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no metadata arrived over remote_write: {v}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(s.healthy());
}

/// A Prometheus configuration: scrape tenant `src` of metricsd at `addr` every second and
/// forward over remote_write to `http://{write_to}/api/v1/write`, with `extra` lines in
/// that remote_write entry.
fn scrape_and_forward(addr: &str, write_to: &str, extra: &[&str]) -> Vec<String> {
    let mut cfg: Vec<String> = [
        "global:",
        "  scrape_interval: 1s",
        "  scrape_timeout: 1s",
        "scrape_configs:",
        "  - job_name: metricsd",
        "    params:",
        "      tenant_id: [src]",
        "    static_configs:",
    ]
    .map(String::from)
    .to_vec();
    cfg.push(format!("      - targets: ['{addr}']"));
    cfg.push("remote_write:".into());
    cfg.push(format!("  - url: http://{write_to}/api/v1/write"));
    cfg.extend(extra.iter().map(|l| l.to_string()));
    cfg.extend(
        [
            "    metadata_config:",
            "      send_interval: 1s",
            "    queue_config:",
            "      batch_send_deadline: 1s",
            "      min_backoff: 100ms",
            "      max_backoff: 1s",
        ]
        .map(String::from),
    );
    cfg
}

/// The newest point's value of the first series in a `/metrics/series` answer.
fn newest_value(v: &serde_json::Value) -> Option<f64> {
    v["series"][0]["points"]
        .as_array()
        .and_then(|p| p.last())
        .and_then(|p| p["value"].as_f64())
}

/// Starts `prometheus` on `cfg` (YAML lines) with its data under `dir`.
fn start_prometheus(bin: &std::path::Path, dir: &std::path::Path, cfg: &[String]) -> Prom {
    let cfg_path = dir.join("prometheus.yml");
    std::fs::write(&cfg_path, cfg.join("\n")).unwrap();
    Prom(
        Command::new(bin)
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("prom").display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    )
}

/// A reverse proxy in front of metricsd that sets `X-Scope-OrgID: <tenant>` on every
/// request, the way an authenticating gateway assigns tenants. HTTP/1.1 with
/// `Content-Length` bodies, one request per upstream connection: enough for remote_write.
fn tenant_proxy(upstream: String, tenant: &'static str) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().unwrap());
                let mut client = client;
                loop {
                    let mut head = Vec::new();
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        if lower.starts_with("x-scope-orgid:") || lower.starts_with("connection:") {
                            continue;
                        }
                        if line == "\r\n" {
                            head.extend_from_slice(
                                format!("X-Scope-OrgID: {tenant}\r\nConnection: close\r\n\r\n").as_bytes(),
                            );
                            break;
                        }
                        head.extend_from_slice(line.as_bytes());
                    }
                    let mut body = vec![0u8; len];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let Ok(mut up) = std::net::TcpStream::connect(&upstream) else {
                        return;
                    };
                    let _ = up.write_all(&head);
                    let _ = up.write_all(&body);
                    let mut resp = Vec::new();
                    let _ = up.read_to_end(&mut resp);
                    if client.write_all(&resp).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Tenants chosen in front of metricsd reach the store: Prometheus' remote_write through a
/// gateway that sets `X-Scope-OrgID: team-a` lands in `team-a`, not in `default`.
///
/// Prometheus' own remote_write `headers` would be the direct way, but Debian's
/// Prometheus 2.42 accepts `headers: {X-Scope-OrgID: team-a}` in its configuration and
/// silently sends no such header (checked against a capturing listener: only Host,
/// User-Agent, Content-Length, Content-Encoding, Content-Type and
/// X-Prometheus-Remote-Write-Version arrive). The gateway is the closest equivalent, and
/// the configuration keeps `headers` so a Prometheus that does send them is tested too.
#[test]
fn prometheus_remote_write_header_selects_the_tenant() {
    let Some(bin) = prometheus_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("metricsd"));
    let addr = s.base.trim_start_matches("http://").to_owned();
    let gateway = tenant_proxy(addr.clone(), "team-a");
    let cfg = scrape_and_forward(&addr, &gateway, &["    headers:", "      X-Scope-OrgID: team-a"]);
    let _prom = start_prometheus(&bin, dir.path(), &cfg);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let v = s.get_json("/metrics/series?name=up&tenant_id=team-a");
        let up = newest_value(&v);
        if up == Some(1.0) {
            assert_eq!(v["series"][0]["tenant_id"], "team-a", "{v}");
            assert_eq!(v["series"][0]["labels"]["job"], "metricsd", "{v}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no `up` sample arrived in tenant team-a: {v}; default has {}",
            s.get_json("/metrics/series?name=up")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Nothing went to the default tenant (nor back to the scraped one).
    for t in ["default", "src"] {
        let v = s.get_json(&format!("/metrics/series?name=up&tenant_id={t}"));
        assert_eq!(v["total"], 0, "tenant {t}: {v}");
    }
    assert!(s.healthy());
}
