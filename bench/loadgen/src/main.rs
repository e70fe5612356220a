//! Drives a running metricsd over loopback and reports throughput, latency, and the server's
//! CPU time per sample and RSS (read from `/proc/<pid>` when `--pid` is given).
//!
//! ```sh
//! loadgen --url http://127.0.0.1:8012 --mode json --series 10000 --seconds 20 --pid $(pgrep -n metricsd)
//! loadgen --url http://127.0.0.1:8012 --mode remote-write --series 100000 --batch 2000 --seconds 20
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use metricsd_ingest::{Label, Sample, TimeSeries, WriteRequest, encode_write_request};

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    /// `POST /metrics/track/batch`, gauges and counters.
    Json,
    /// `POST /api/v1/write`, node_exporter-like series.
    RemoteWrite,
}

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8012")]
    url: String,
    #[arg(long, value_enum, default_value = "json")]
    mode: Mode,
    /// Distinct series written round-robin.
    #[arg(long, default_value_t = 10_000)]
    series: usize,
    /// Items (json) or samples (remote-write) per request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Concurrent senders.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// The server's pid, for CPU and RSS figures.
    #[arg(long)]
    pid: Option<u32>,
}

fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?) as f64 / 100.0)
}

fn proc_rss_mib(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    let points = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let cpu0 = a.pid.and_then(proc_cpu_secs);
    let start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..a.concurrency {
        let (stop, points, errors) = (stop.clone(), points.clone(), errors.clone());
        let (url, mode, series, batch) = (a.url.clone(), a.mode, a.series, a.batch);
        let conc = a.concurrency;
        handles.push(std::thread::spawn(move || -> Vec<f64> {
            let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
            let mut lat = Vec::new();
            let mut next = w;
            let mut ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let r = match mode {
                    Mode::Json => {
                        let items: Vec<serde_json::Value> = (0..batch)
                            .map(|_| {
                                let i = next % series;
                                next += conc;
                                serde_json::json!({
                                    "name": if i % 2 == 0 { "app_requests_total" } else { "app_queue_depth" },
                                    "type": if i % 2 == 0 { "counter" } else { "gauge" },
                                    "value": (i % 7) as f64,
                                    "labels": {"instance": format!("host-{}", i / 100), "path": format!("/api/{}", i % 100)},
                                    "service": "loadgen",
                                })
                            })
                            .collect();
                        client.post(format!("{url}/metrics/track/batch")).body(serde_json::to_vec(&items).unwrap()).send()
                    }
                    Mode::RemoteWrite => {
                        ts += 1000;
                        let timeseries = (0..batch)
                            .map(|_| {
                                let i = next % series;
                                next += conc;
                                TimeSeries {
                                    labels: vec![
                                        Label { name: "__name__".into(), value: format!("node_metric_{}", i % 200) },
                                        Label { name: "cpu".into(), value: format!("{}", (i / 200) % 8) },
                                        Label { name: "instance".into(), value: format!("host-{}:9100", i / 1600) },
                                        Label { name: "job".into(), value: "node".into() },
                                    ],
                                    samples: vec![Sample { value: (i % 1000) as f64, timestamp: ts }],
                                    exemplars: vec![],
                                    histograms: vec![],
                                }
                            })
                            .collect();
                        let body = encode_write_request(&WriteRequest { timeseries, metadata: vec![] });
                        client
                            .post(format!("{url}/api/v1/write"))
                            .header("content-encoding", "snappy")
                            .header("content-type", "application/x-protobuf")
                            .body(body)
                            .send()
                    }
                };
                match r {
                    Ok(resp) if resp.status().is_success() => {
                        points.fetch_add(batch as u64, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lat.push(t0.elapsed().as_secs_f64());
            }
            lat
        }));
    }
    std::thread::sleep(Duration::from_secs(a.seconds));
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<f64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap_or_default())
        .collect();
    let secs = start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
            * 1000.0
    };
    let n = points.load(Ordering::Relaxed);
    println!(
        "points={n} seconds={secs:.1} points_per_s={:.0} requests={} errors={} p50_ms={:.2} p99_ms={:.2}",
        n as f64 / secs,
        lat.len(),
        errors.load(Ordering::Relaxed),
        q(0.5),
        q(0.99)
    );
    if let (Some(pid), Some(c0)) = (a.pid, cpu0)
        && let Some(c1) = proc_cpu_secs(pid)
    {
        println!(
            "server_cpu_s={:.2} cpu_us_per_point={:.2} rss_mib={:.1}",
            c1 - c0,
            (c1 - c0) * 1e6 / n.max(1) as f64,
            proc_rss_mib(pid).unwrap_or(0.0)
        );
    }
    Ok(())
}
