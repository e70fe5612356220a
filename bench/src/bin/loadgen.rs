//! loadgen: ingest load from a node_exporter-like data set, over Prometheus remote_write or
//! metricsd's JSON batch API (`--protocol json`).
//!
//! Pre-encodes every request first (step-major: each request carries one timestamp's samples
//! of `--samples-per-request` series), then sends them to `--url` with `--concurrency`
//! keep-alive HTTP/1.1 workers until all are sent or `--duration` has passed. Prints samples/s,
//! latency percentiles and errors by status, and with `--pid` the server's CPU per sample
//! and RSS; `--json` writes the same as JSON.
//!
//! Examples:
//! `loadgen --url http://127.0.0.1:8428/api/v1/write --series 100000 --steps 20`
//! `loadgen --protocol json --samples-per-request 100 --url http://127.0.0.1:8012/metrics/track/batch --pid $(pgrep -n metricsd)`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use clap::Parser;
use metricsd_bench::datagen;
use metricsd_bench::rwload::{self, DataArgs, LoadConfig, Protocol};
use metricsd_bench::servers::{clk_tck, cpu_ticks, status_kb};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "Send pre-encoded Prometheus remote_write requests to a server")]
struct Args {
    /// The endpoint (loopback), e.g. http://127.0.0.1:8428/api/v1/write
    #[arg(long)]
    url: String,
    /// What to send.
    #[arg(long, value_enum, default_value = "remote-write")]
    protocol: Protocol,
    /// The server's pid: report its CPU time per sample and its RSS (from /proc).
    #[arg(long)]
    pid: Option<u32>,
    /// Concurrent workers, one keep-alive connection each.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Stop handing out requests after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    #[command(flatten)]
    data: DataArgs,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> Result<()> {
    let a = Args::parse();
    ensure!(
        a.data.samples_per_request > 0,
        "--samples-per-request must be positive"
    );
    ensure!(
        a.duration > 0.0 && a.timeout > 0.0,
        "--duration and --timeout must be positive"
    );
    let cfg = a.data.gen_config();
    let t0 = Instant::now();
    let ds = datagen::generate(&cfg);
    let reqs = a.protocol.encode(&ds, a.data.samples_per_request);
    let bytes: usize = reqs.iter().map(|r| r.body.len()).sum();
    println!(
        "pre-encoded {} {:?} requests ({} series × {} steps = {} samples, {:.1} MB, {:.0} B/sample) in {:.1} s",
        reqs.len(),
        a.protocol,
        ds.num_series(),
        cfg.samples_per_series,
        ds.num_samples(),
        bytes as f64 / 1e6,
        bytes as f64 / ds.num_samples() as f64,
        t0.elapsed().as_secs_f64()
    );
    let lc = LoadConfig {
        url: a.url.clone(),
        protocol: a.protocol,
        concurrency: a.concurrency,
        duration: Some(Duration::from_secs_f64(a.duration)),
        requests_per_step: rwload::requests_per_step(ds.num_series(), a.data.samples_per_request),
        timeout: Duration::from_secs_f64(a.timeout),
    };
    let cpu0 = a.pid.map(cpu_ticks).transpose()?;
    let rep = rwload::run_load(&reqs, &lc);
    let server = match (a.pid, cpu0) {
        (Some(pid), Some(c0)) => {
            let cpu_s = (cpu_ticks(pid)? - c0) as f64 / clk_tck();
            let rss_mb = status_kb(pid, "VmRSS")? as f64 / 1024.0;
            println!(
                "server: {cpu_s:.2} s CPU, {:.3} µs CPU/sample, RSS {rss_mb:.0} MB",
                cpu_s * 1e6 / rep.samples_ok.max(1) as f64
            );
            Some(
                json!({"cpu_s": cpu_s, "cpu_us_per_sample": cpu_s * 1e6 / rep.samples_ok.max(1) as f64, "rss_mb": rss_mb}),
            )
        }
        _ => None,
    };
    println!(
        "sent {}/{} requests in {:.2} s{}: {} samples accepted, {:.0} samples/s; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        rep.requests,
        reqs.len(),
        rep.elapsed.as_secs_f64(),
        if rep.truncated {
            " (stopped at --duration)"
        } else {
            ""
        },
        rep.samples_ok,
        rep.samples_per_sec(),
        rep.latency_pct(50.0) as f64 / 1e3,
        rep.latency_pct(90.0) as f64 / 1e3,
        rep.latency_pct(99.0) as f64 / 1e3,
        rep.latency_pct(100.0) as f64 / 1e3,
    );
    if rep.errors.is_empty() {
        println!("errors: none");
    } else {
        println!(
            "errors: {:?}; first: {}",
            rep.errors,
            rep.first_error.as_deref().unwrap_or("")
        );
    }
    if let Some(path) = &a.json {
        let v = json!({
            "url": a.url,
            "series": ds.num_series(),
            "hosts": ds.num_hosts(),
            "steps": cfg.samples_per_series,
            "start_ms": cfg.start_ms,
            "interval_ms": cfg.interval_ms,
            "samples_per_request": a.data.samples_per_request,
            "concurrency": a.concurrency,
            "requests_total": reqs.len(),
            "bytes_total": bytes,
            "protocol": format!("{:?}", a.protocol),
            "report": rep.to_json(),
            "server": server,
        });
        std::fs::write(path, serde_json::to_string_pretty(&v)? + "\n")?;
    }
    ensure!(rep.error_count() == 0, "{} requests failed", rep.error_count());
    Ok(())
}
