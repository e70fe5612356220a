//! query_compare: PromQL query latency and memory of metricsd, Prometheus and VictoriaMetrics
//! on the same data, in one run (issue 5's benchmark section).
//!
//! Generates the node_exporter-like data set of `datagen` (`--series`, `--hours` at
//! `--interval-ms`, the last sample about a minute ago) plus a classic histogram per host
//! (`node_http_request_duration_seconds_bucket{handler,le}`, 2 handlers × 12 buckets: the
//! node_exporter families have none), pre-encodes it as remote_write requests, starts every
//! target on a free loopback port with a fresh data directory, loads the same requests into
//! each (one server at a time), then runs each query `--reps` times per server (after
//! `--warmup` runs), the servers taking turns query by query, and reports:
//! - median and p90 latency per query and server (request sent → whole body read), with the
//!   ratios metricsd/Prometheus and metricsd/VictoriaMetrics;
//! - the size of each answer (series, points): they must be equal across servers, a check
//!   that the queries are equivalent (VictoriaMetrics' extrapolation differs, so its values
//!   do, but not its sizes);
//! - each server's RSS before the queries and its peak during them (VmHWM after resetting it
//!   through `/proc/PID/clear_refs`, and the maximum of VmRSS sampled every 50 ms).
//!
//! ```sh
//! query_compare --series 2000 --reps 5          # a one-minute check
//! query_compare --series 100000 --reps 10 --json query-100k.json
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use metricsd_bench::compat::client::{Answer, Client, QueryValue, parse_answer};
use metricsd_bench::compat::queries::Params;
use metricsd_bench::datagen::{self, GenConfig, Rng, mix};
use metricsd_bench::rwload::{self, LoadConfig};
use metricsd_bench::servers::{
    Bins, Kind, Server, Spec, disk_bytes, free_port, loadavg, metricsd_usable, reset_hwm, status_kb,
};
use metricsd_ingest::Label as PbLabel;
use metricsd_model::Sample;
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "Compare PromQL query latency and memory of metricsd, Prometheus and VictoriaMetrics")]
struct Args {
    /// Series: the smallest number of node_exporter-like hosts giving at least this many
    /// (plus 24 histogram bucket series per host).
    #[arg(long, default_value_t = 100_000)]
    series: usize,
    /// Hours of data.
    #[arg(long, default_value_t = 2.0)]
    hours: f64,
    /// Scrape interval (and range query step), ms.
    #[arg(long, default_value_t = 15_000)]
    interval_ms: i64,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Timed runs of each query per server.
    #[arg(long, default_value_t = 10)]
    reps: usize,
    /// Untimed runs of each query per server first.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Only the queries whose name contains this.
    #[arg(long)]
    only: Option<String>,
    /// Targets, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "metricsd,prometheus,vm"
    )]
    targets: Vec<Kind>,
    #[command(flatten)]
    bins: Bins,
    /// Arguments for `metricsd serve` (repeatable; replaces the default, which lifts the
    /// per-tenant series limit).
    #[arg(long, allow_hyphen_values = true, default_value = "--max-metric-series=0")]
    metricsd_arg: Vec<String>,
    /// Concurrent remote_write senders while loading.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Series per remote_write request.
    #[arg(long, default_value_t = 500)]
    series_per_request: usize,
    /// Samples per series per remote_write request.
    #[arg(long, default_value_t = 40)]
    block: usize,
    /// Per-query timeout, s.
    #[arg(long, default_value_t = 300.0)]
    timeout: f64,
    /// Seconds to wait after the last load before measuring memory and disk (background
    /// work after a load: head chunk moves, part merges).
    #[arg(long, default_value_t = 5)]
    settle_secs: u64,
    /// Where the temporary data directories go.
    #[arg(long, default_value = "/tmp")]
    work_dir: PathBuf,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The histogram's bucket bounds.
const LES: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];
const HANDLERS: [&str; 2] = ["/api/v1/query", "/metrics"];

/// Samples of `node_http_request_duration_seconds_bucket{instance=host, handler, le}`:
/// per scrape, 10–49 requests whose latencies follow a log-logistic distribution with a
/// per-series median (`P(latency ≤ le) = le / (le + median)`), cumulated. Every bucket of a
/// histogram is computed from the same draws, so buckets are monotonic in `le`.
fn histogram_samples(cfg: &GenConfig, host: usize, handler: usize, le: usize, out: &mut Vec<Sample>) {
    out.clear();
    let seed = mix(cfg.seed ^ mix((host * HANDLERS.len() + handler) as u64 ^ 0x6869_7374));
    let median = 0.02 + Rng::new(seed).f64() * 0.3;
    let bound: f64 = LES[le].parse().unwrap_or(f64::INFINITY);
    let share = if bound.is_infinite() {
        1.0
    } else {
        bound / (bound + median)
    };
    let mut rng = Rng::new(seed ^ 1);
    let mut cum = 0.0;
    for i in 0..cfg.samples_per_series {
        let n = 10 + rng.below(40);
        cum += (n as f64 * share).floor();
        out.push(Sample::new(cfg.start_ms + i as i64 * cfg.interval_ms, cum));
    }
}

struct QueryDef {
    name: &'static str,
    query: String,
    params: Params,
}

fn queries(first_ts: i64, last_ts: i64, step: i64) -> Vec<QueryDef> {
    let range = Params::Range {
        start_ms: first_ts,
        end_ms: last_ts,
        step_ms: step,
    };
    let instant = Params::Instant { time_ms: last_ts };
    let q = |name, query: &str, params| QueryDef {
        name,
        query: query.to_string(),
        params,
    };
    vec![
        q(
            "sum_rate_by_job",
            "sum by (job) (rate(node_cpu_seconds_total[5m]))",
            range,
        ),
        q(
            "sum_rate_by_mode",
            "sum by (mode) (rate(node_cpu_seconds_total[5m]))",
            range,
        ),
        q(
            "histogram_quantile",
            "histogram_quantile(0.99, sum by (le) (rate(node_http_request_duration_seconds_bucket[5m])))",
            range,
        ),
        q("regex_selector", r#"{instance=~"host-0*[0-9]*1:9100"}"#, instant),
        q(
            "topk_instant",
            "topk(10, rate(node_network_receive_bytes_total[5m]))",
            instant,
        ),
        q(
            "topk_range",
            "topk(10, rate(node_network_receive_bytes_total[5m]))",
            range,
        ),
        q(
            "one_series_range",
            r#"rate(node_cpu_seconds_total{instance="host-00001:9100",cpu="0",mode="user"}[5m])"#,
            range,
        ),
    ]
}

/// Series and points of an answer, or the error.
fn size(a: &Answer) -> String {
    match a {
        Answer::Ok(QueryValue::Vector(v)) => format!("{} series", v.len()),
        Answer::Ok(QueryValue::Matrix(m)) => format!(
            "{} series, {} points",
            m.len(),
            m.iter().map(|s| s.points.len()).sum::<usize>()
        ),
        Answer::Ok(v) => v.type_name().to_string(),
        Answer::Err {
            error_type, error, ..
        } => format!("error {error_type}: {error}"),
        Answer::Broken(e) => format!("invalid: {e}"),
    }
}

struct Target {
    kind: Kind,
    server: Server,
    client: Client,
    _dir: tempfile::TempDir,
    load_s: f64,
    rss_before_mb: f64,
    /// Bytes of its data directory on disk after the load and the settling pause.
    disk_bytes: u64,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((p / 100.0) * (sorted.len() - 1) as f64).round() as usize]
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

fn main() -> Result<()> {
    let a = Args::parse();
    ensure!(
        a.reps > 0 && a.hours > 0.0 && a.interval_ms > 0,
        "--reps, --hours and --interval-ms must be positive"
    );
    let steps = GenConfig::samples_for(a.hours, a.interval_ms);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    // The last sample a minute ago, timestamps on multiples of the interval.
    let last = (now - 60_000) / a.interval_ms * a.interval_ms;
    let mut cfg = GenConfig {
        start_ms: last - (steps as i64 - 1) * a.interval_ms,
        interval_ms: a.interval_ms,
        samples_per_series: steps,
        seed: a.seed,
        ..Default::default()
    };
    cfg.hosts = datagen::hosts_for_series(&cfg, a.series);
    let t0 = Instant::now();
    let ds = datagen::generate(&cfg);
    let pb = PbLabel::from_labels;
    let mut labels: Vec<Vec<PbLabel>> = ds.series.iter().map(pb).collect();
    let node = ds.num_series();
    for h in 0..cfg.hosts {
        for handler in HANDLERS {
            for le in LES {
                labels.push(pb(&metricsd_model::Labels::from_pairs([
                    ("__name__", "node_http_request_duration_seconds_bucket"),
                    ("handler", handler),
                    (
                        "instance",
                        format!("host-{:05}:9100", cfg.first_host + h).as_str(),
                    ),
                    ("job", "node"),
                    ("le", le),
                ])));
            }
        }
    }
    let per_host = HANDLERS.len() * LES.len();
    let reqs = rwload::encode_blocks(
        &labels,
        |i, buf| {
            if i < node {
                ds.samples_into(i, buf)
            } else {
                let j = i - node;
                histogram_samples(&cfg, j / per_host, j % per_host / LES.len(), j % LES.len(), buf)
            }
        },
        steps,
        a.series_per_request,
        a.block,
    );
    let per_step = rwload::requests_per_step(labels.len(), a.series_per_request);
    let total: usize = reqs.iter().map(|r| r.samples).sum();
    let bytes: usize = reqs.iter().map(|r| r.body.len()).sum();
    println!(
        "== {} series ({} hosts: {} node_exporter + {} histogram buckets) × {} samples = {} samples; {} requests, {:.0} MB snappy; generated and encoded in {:.1} s",
        labels.len(),
        cfg.hosts,
        node,
        labels.len() - node,
        steps,
        total,
        reqs.len(),
        bytes as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );

    let mut targets: Vec<Target> = Vec::new();
    for &kind in &a.targets {
        if kind == Kind::Metricsd
            && let Err(why) = metricsd_usable(&a.bins.metricsd_bin)
        {
            println!("  metricsd: skipped ({why})");
            continue;
        }
        let spec = Spec {
            kind,
            bin: a.bins.of(kind),
            args: match kind {
                Kind::Metricsd => a.metricsd_arg.clone(),
                // Each repetition must be computed, not served from the rollup cache.
                Kind::VictoriaMetrics => vec!["-search.disableCache".into()],
                Kind::Prometheus => Vec::new(),
            },
        };
        let dir = tempfile::Builder::new()
            .prefix(&format!("query-{}-", kind.name().to_lowercase()))
            .tempdir_in(&a.work_dir)?;
        let server = Server::start(&spec, free_port(0)?, dir.path(), Duration::from_secs(120))?;
        print!("  {}: loading… ", kind.name());
        let t = Instant::now();
        let rep = rwload::run_load(
            &reqs,
            &LoadConfig {
                url: server.url("/api/v1/write"),
                protocol: rwload::Protocol::RemoteWrite,
                concurrency: a.concurrency,
                duration: None,
                requests_per_step: per_step,
                timeout: Duration::from_secs(120),
            },
        );
        let load_s = t.elapsed().as_secs_f64();
        if rep.error_count() > 0 {
            bail!(
                "{}: {} of {} requests failed {:?}; first: {}\n{}",
                kind.name(),
                rep.error_count(),
                rep.requests,
                rep.errors,
                rep.first_error.as_deref().unwrap_or(""),
                server.log_tail()
            );
        }
        if kind == Kind::VictoriaMetrics {
            // Make the just-written samples searchable.
            let _ = metricsd_bench::http_agent(Duration::from_secs(300))
                .get(server.url("/internal/force_flush"))
                .call();
        }
        println!(
            "{:.0} samples/s ({:.1} s), RSS {:.0} MB",
            rep.samples_per_sec(),
            load_s,
            status_kb(server.pid(), "VmRSS")? as f64 / 1024.0
        );
        let client = Client::new(&server.base_url(), Duration::from_secs_f64(a.timeout));
        // Until metricsd serves the query API, it is loaded (the figures above) but not queried.
        match client.query_raw("1", &Params::Instant { time_ms: last }) {
            Ok((200, _)) => {}
            Ok((status, body)) => {
                println!(
                    "  {}: not queried: /api/v1/query answers {status}: {}",
                    kind.name(),
                    body.chars().take(100).collect::<String>()
                );
                server.stop();
                continue;
            }
            Err(e) => bail!("{}: {e}", kind.name()),
        }
        targets.push(Target {
            kind,
            server,
            client,
            _dir: dir,
            load_s,
            rss_before_mb: 0.0,
            disk_bytes: 0,
        });
    }
    ensure!(!targets.is_empty(), "no target to query");

    let defs: Vec<QueryDef> = queries(cfg.start_ms, last, a.interval_ms)
        .into_iter()
        .filter(|d| a.only.as_deref().is_none_or(|o| d.name.contains(o)))
        .collect();
    // Let background work after the load (head chunk moves, merges) settle a little.
    std::thread::sleep(Duration::from_secs(a.settle_secs));
    let mut hwm_reset = BTreeMap::new();
    for t in &mut targets {
        t.rss_before_mb = status_kb(t.server.pid(), "VmRSS")? as f64 / 1024.0;
        t.disk_bytes = disk_bytes(t._dir.path())?;
        if t.kind == Kind::Metricsd {
            // metricsd's own view of its head, for the memory breakdown.
            let text = metricsd_bench::http_agent(Duration::from_secs(30))
                .get(t.server.url("/metrics"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .unwrap_or_default();
            let figure = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
                    .unwrap_or(f64::NAN)
            };
            println!(
                "metricsd: RSS {:.0} MB, head estimate {:.0} MB ({:.0} B/series), head chunks on disk {:.0} MB, WAL {:.0} MB",
                t.rss_before_mb,
                figure("metricsd_tsdb_head_memory_bytes") / 1048576.0,
                figure("metricsd_tsdb_head_memory_bytes") / figure("metricsd_tsdb_head_series"),
                figure("metricsd_tsdb_head_chunk_file_bytes") / 1048576.0,
                figure("metricsd_tsdb_wal_bytes") / 1048576.0,
            );
        }
        hwm_reset.insert(t.kind, reset_hwm(t.server.pid()).is_ok());
    }
    println!("load average before the queries: {}", loadavg());
    let pids: Vec<(Kind, u32)> = targets.iter().map(|t| (t.kind, t.server.pid())).collect();
    let stop = AtomicBool::new(false);
    let mut lat: BTreeMap<(usize, Kind), Vec<f64>> = BTreeMap::new();
    let mut sizes: BTreeMap<(usize, Kind), String> = BTreeMap::new();
    let peak_sampled: BTreeMap<Kind, f64> = std::thread::scope(|sc| -> Result<BTreeMap<Kind, f64>> {
        let sampler = sc.spawn(|| {
            let mut peak: BTreeMap<Kind, u64> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                for &(k, pid) in &pids {
                    if let Ok(kb) = status_kb(pid, "VmRSS") {
                        let e = peak.entry(k).or_default();
                        *e = (*e).max(kb);
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            peak.into_iter().map(|(k, v)| (k, v as f64 / 1024.0)).collect()
        });
        let res = (|| -> Result<()> {
            for (qi, d) in defs.iter().enumerate() {
                print!("  {}: ", d.name);
                for rep in 0..a.warmup + a.reps {
                    for t in &targets {
                        let t0 = Instant::now();
                        let (status, body) = t
                            .client
                            .query_raw(&d.query, &d.params)
                            .map_err(anyhow::Error::msg)
                            .with_context(|| format!("{} on {}", d.name, t.kind.name()))?;
                        let ms = t0.elapsed().as_secs_f64() * 1e3;
                        if rep >= a.warmup {
                            lat.entry((qi, t.kind)).or_default().push(ms);
                        }
                        if rep == 0 {
                            sizes.insert((qi, t.kind), size(&parse_answer(status, &body)));
                        }
                    }
                }
                println!("done");
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        let peak = sampler.join().unwrap_or_default();
        res.map(|_| peak)
    })?;

    // The table.
    let has = |k| targets.iter().any(|t| t.kind == k);
    println!(
        "\n{:<20} {:<16} {:>10} {:>10} {:>8} {:>8}  answer",
        "query", "server", "median ms", "p90 ms", "×Prom", "×VM"
    );
    let mut rows = Vec::new();
    let mut mismatched = Vec::new();
    for (qi, d) in defs.iter().enumerate() {
        let stats = |k: Kind| {
            let mut v = lat.get(&(qi, k)).cloned().unwrap_or_default();
            v.sort_by(f64::total_cmp);
            (pct(&v, 50.0), pct(&v, 90.0), v)
        };
        let (pm, _, _) = stats(Kind::Prometheus);
        let (vm, _, _) = stats(Kind::VictoriaMetrics);
        let first = sizes.get(&(qi, targets[0].kind)).cloned().unwrap_or_default();
        for t in &targets {
            let (med, p90, all) = stats(t.kind);
            let sz = sizes.get(&(qi, t.kind)).cloned().unwrap_or_default();
            if sz != first {
                mismatched.push(format!(
                    "{}: {} {} vs {} {}",
                    d.name,
                    t.kind.name(),
                    sz,
                    targets[0].kind.name(),
                    first
                ));
            }
            let (rp, rv) = if t.kind == Kind::Metricsd {
                (ratio(med, pm), ratio(med, vm))
            } else {
                (String::new(), String::new())
            };
            println!(
                "{:<20} {:<16} {:>10.1} {:>10.1} {:>8} {:>8}  {}",
                d.name,
                t.kind.name(),
                med,
                p90,
                rp,
                rv,
                sz
            );
            rows.push(json!({
                "query": d.name,
                "expr": d.query,
                "params": d.params.describe(cfg.start_ms),
                "server": t.kind.name(),
                "median_ms": med,
                "p90_ms": p90,
                "latencies_ms": all,
                "answer": sz,
            }));
        }
    }
    println!(
        "(×Prom, ×VM: metricsd's median / Prometheus' / VictoriaMetrics'{}{})",
        if has(Kind::Prometheus) {
            ""
        } else {
            "; no Prometheus"
        },
        if has(Kind::VictoriaMetrics) {
            ""
        } else {
            "; no VictoriaMetrics"
        }
    );
    println!(
        "\n{:<16} {:>10} {:>14} {:>14} {:>14} {:>12} {:>8} {:>8} {:>8}",
        "server",
        "load s",
        "RSS before MB",
        "peak HWM MB",
        "peak RSS MB",
        "disk B/smpl",
        "×RSS",
        "×peak",
        "×disk"
    );
    let vm = targets.iter().find(|t| t.kind == Kind::VictoriaMetrics);
    let vm_peak = vm.and_then(|t| peak_sampled.get(&t.kind).copied());
    let mut mem = Vec::new();
    for t in &targets {
        let hwm = if hwm_reset.get(&t.kind).copied().unwrap_or(false) {
            status_kb(t.server.pid(), "VmHWM")
                .map(|k| k as f64 / 1024.0)
                .unwrap_or(f64::NAN)
        } else {
            f64::NAN
        };
        let sampled = peak_sampled.get(&t.kind).copied().unwrap_or(f64::NAN);
        let per_sample = t.disk_bytes as f64 / total as f64;
        let (x_rss, x_peak, x_disk) = match vm {
            Some(v) => (
                t.rss_before_mb / v.rss_before_mb,
                sampled / vm_peak.unwrap_or(f64::NAN),
                t.disk_bytes as f64 / v.disk_bytes as f64,
            ),
            None => (f64::NAN, f64::NAN, f64::NAN),
        };
        println!(
            "{:<16} {:>10.1} {:>14.0} {:>14.0} {:>14.0} {:>12.2} {:>8.2} {:>8.2} {:>8.2}",
            t.kind.name(),
            t.load_s,
            t.rss_before_mb,
            hwm,
            sampled,
            per_sample,
            x_rss,
            x_peak,
            x_disk
        );
        mem.push(json!({
            "server": t.kind.name(),
            "load_s": t.load_s,
            "rss_before_queries_mb": t.rss_before_mb,
            "peak_hwm_during_queries_mb": hwm,
            "peak_rss_sampled_mb": sampled,
            "disk_bytes_after_load": t.disk_bytes,
            "disk_bytes_per_sample": per_sample,
        }));
    }
    println!(
        "(peak HWM: VmHWM after resetting it before the queries; peak RSS: VmRSS sampled every 50 ms; disk: \
         allocated bytes of the data directory 5 s after the load, per sample loaded; × columns: against VictoriaMetrics)"
    );
    if mismatched.is_empty() {
        println!("answer sizes: equal on every server ✓");
    } else {
        println!("answer sizes DIFFER:");
        for m in &mismatched {
            println!("  {m}");
        }
    }
    if let Some(path) = &a.json {
        let v = json!({
            "config": {
                "series": labels.len(),
                "node_series": node,
                "hosts": cfg.hosts,
                "samples_per_series": steps,
                "interval_ms": a.interval_ms,
                "reps": a.reps,
                "warmup": a.warmup,
                "seed": a.seed,
                "start_ms": cfg.start_ms,
                "loadavg_before_queries": loadavg(),
            },
            "queries": rows,
            "memory": mem,
            "answer_size_mismatches": mismatched,
        });
        fs::write(path, serde_json::to_string_pretty(&v)? + "\n")?;
    }
    for t in targets {
        t.server.stop();
    }
    Ok(())
}
