//! ingest_compare: remote_write ingestion of metricsd vs VictoriaMetrics vs Prometheus.
//!
//! For each data set size (`--sizes`), pre-encodes the remote_write requests once
//! ([`metricsd_bench::rwload`]), then for each target: starts the server on 127.0.0.1 with a
//! fresh temporary data directory, waits until it is ready, sends the SAME requests, reads the
//! server's CPU time (`/proc/<pid>/stat` utime+stime, before and after) and memory
//! (`/proc/<pid>/status` VmRSS after the load, VmHWM), checks that the data was stored (a
//! `count({__name__=~".+"})` query at the last timestamp; after a complete remote_write load
//! also every series' sample count and value sum over the whole range, against the data
//! set's), and stops it. Prints a table with ratios against VictoriaMetrics and optionally
//! writes JSON (`--json`).
//!
//! metricsd is started the same way from `--metricsd-bin` (`serve --listen ADDR --data-dir
//! DIR`) and skipped, with a note, if the binary is absent or has no `serve` subcommand. Its
//! stored-data check is skipped if it has no `/api/v1/query`.
//!
//! Example (the figures in docs/benchmarks.md):
//! `ingest_compare --sizes 100000,10000 --steps 20 --json ingest.json`

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use metricsd_bench::datagen;
use metricsd_bench::rwload::{self, DataArgs, EncodedRequest, LoadConfig, LoadReport, Protocol};
use metricsd_bench::servers::{
    Bins, Kind, Server, Spec, clk_tck, cpu_ticks, free_port, loadavg, metricsd_usable, status_kb,
};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(about = "Compare remote_write ingestion (throughput, server CPU per sample, RSS) across servers")]
struct Args {
    /// Data set sizes (series), run one after the other.
    #[arg(long, value_delimiter = ',', default_value = "100000,10000")]
    sizes: Vec<usize>,
    /// Steps (scrapes) per series; keep each run under a minute.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Scrape interval, ms.
    #[arg(long, default_value_t = 15_000)]
    interval_ms: i64,
    /// Series (one sample each) per request (the JSON API's batches: items per request).
    #[arg(long, default_value_t = 2000)]
    samples_per_request: usize,
    /// The protocol: remote_write (every target), or metricsd's JSON batch API (`json`: the
    /// other targets have no such API and are skipped).
    #[arg(long, value_enum, default_value = "remote-write")]
    protocol: Protocol,
    /// Smooth values instead of noisy ones.
    #[arg(long)]
    smooth: bool,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Concurrent sender workers.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Maximal load duration per run, seconds.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Targets, in order (VictoriaMetrics is the reference for the ratios).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "vm,prometheus,metricsd"
    )]
    targets: Vec<Kind>,
    #[command(flatten)]
    bins: Bins,
    /// Extra argument for `metricsd serve` (repeatable), e.g. to raise its series limit:
    /// `--metricsd-arg=--max-metric-series=0` (the flag name is metricsd's).
    #[arg(long, allow_hyphen_values = true)]
    metricsd_arg: Vec<String>,
    /// First loopback port to use (targets use the next free ones).
    #[arg(long, default_value_t = 18600)]
    base_port: u16,
    /// Where the temporary data directories go.
    #[arg(long, default_value = "/tmp")]
    work_dir: PathBuf,
    /// Seconds the server idles after becoming ready, before the load (start-up work settles).
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn get(url: &str) -> Result<(u16, String)> {
    let mut r = metricsd_bench::http_agent(Duration::from_secs(30))
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let code = r.status().as_u16();
    let body = r.body_mut().read_to_string().unwrap_or_default();
    Ok((code, body))
}

fn start(kind: Kind, a: &Args, port: u16, dir: &Path) -> Result<Server> {
    let spec = Spec {
        kind,
        bin: a.bins.of(kind),
        args: if kind == Kind::Metricsd {
            a.metricsd_arg.clone()
        } else {
            Vec::new()
        },
    };
    Server::start(&spec, port, dir, Duration::from_secs(60))
}

/// `count({__name__=~".+"})` at `time_ms`: `Ok(Some(n))`, `Ok(None)` if the server has no
/// query API (404), or an error.
fn query_count(srv: &Server, time_ms: i64) -> Result<Option<f64>> {
    query_scalar(srv, r#"count({__name__=~".+"})"#, time_ms)
}

/// The value of a PromQL query that answers one element (0 when it answers none); `None`
/// when the server has no query API.
fn query_scalar(srv: &Server, query: &str, time_ms: i64) -> Result<Option<f64>> {
    Ok(query_vector(srv, query, time_ms)?.map(|v| v.first().map_or(0.0, |(_, x)| *x)))
}

/// The elements of a PromQL query's instant vector: (labels as `name=value` pairs sorted
/// and joined with `,`, value); `None` when the server has no query API.
fn query_vector(srv: &Server, query: &str, time_ms: i64) -> Result<Option<Vec<(String, f64)>>> {
    let url = srv.url(&format!(
        "/api/v1/query?query={}&time={:.3}",
        urlencode(query),
        time_ms as f64 / 1000.0
    ));
    let (code, body) = get(&url)?;
    if code == 404 {
        return Ok(None);
    }
    ensure!(code == 200, "query answered {code}: {body}");
    let v: Value = serde_json::from_str(&body).with_context(|| format!("query answer {body}"))?;
    let mut out = Vec::new();
    for e in v["data"]["result"].as_array().into_iter().flatten() {
        let mut labels: Vec<String> = e["metric"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        labels.sort();
        let x = e["value"][1]
            .as_str()
            .context("no value in the query answer")?
            .parse()?;
        out.push((labels.join(","), x));
    }
    Ok(Some(out))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What the whole data set adds up to: the stored-samples check compares the server's
/// sample count and value sum over the run's time range with these, so a sample stored in
/// the wrong series or lost shows even when every series has its newest sample.
/// What each series of the data set adds up to. After a complete load the check compares
/// every stored series' sample count and value sum over the run's range with these, so a
/// sample that is lost, doubled or stored in another series shows.
#[derive(Debug, Clone)]
struct Totals {
    first_ms: i64,
    /// Metric name → series (labels without the name, as [`query_vector`] writes them) →
    /// (samples, value sum). Queried name by name: `count_over_time` drops the name, so
    /// series of two families could collide.
    by_name: BTreeMap<String, HashMap<String, (u64, f64)>>,
}

impl Totals {
    fn of(ds: &datagen::DataSet, first_ms: i64) -> Totals {
        let mut by_name: BTreeMap<String, HashMap<String, (u64, f64)>> = BTreeMap::new();
        let mut buf = Vec::new();
        for (i, labels) in ds.series.iter().enumerate() {
            ds.samples_into(i, &mut buf);
            let mut key: Vec<String> = labels
                .iter()
                .filter(|l| &*l.name != "__name__")
                .map(|l| format!("{}={}", l.name, l.value))
                .collect();
            key.sort();
            by_name
                .entry(labels.metric_name().unwrap_or_default().to_owned())
                .or_default()
                .insert(key.join(","), (buf.len() as u64, buf.iter().map(|s| s.v).sum()));
        }
        Totals { first_ms, by_name }
    }

    /// "ok", or the first difference. Only meaningful after a load that sent everything
    /// and had every request accepted.
    fn check(&self, srv: &Server, last_ms: i64) -> Result<String> {
        // The window reaches half an interval before the first sample.
        let range = format!("{}ms", last_ms - self.first_ms + 7_500);
        for (name, want) in &self.by_name {
            let sel = format!(r#"{{__name__="{name}"}}[{range}]"#);
            let (Some(counts), Some(sums)) = (
                query_vector(srv, &format!("count_over_time({sel})"), last_ms)?,
                query_vector(srv, &format!("sum_over_time({sel})"), last_ms)?,
            ) else {
                return Ok("skipped".into());
            };
            if counts.len() != want.len() || sums.len() != want.len() {
                return Ok(format!(
                    "MISMATCH: {name}: {} series stored, want {}",
                    counts.len(),
                    want.len()
                ));
            }
            let sums: HashMap<&str, f64> = sums.iter().map(|(l, x)| (l.as_str(), *x)).collect();
            for (labels, n) in &counts {
                let (Some(&(wn, wsum)), Some(&sum)) = (want.get(labels), sums.get(labels.as_str())) else {
                    return Ok(format!("MISMATCH: {name}{{{labels}}} is not in the data set"));
                };
                if *n as u64 != wn {
                    return Ok(format!("MISMATCH: {name}{{{labels}}}: {n} samples, want {wn}"));
                }
                // Summed in another order: equal up to rounding.
                if wsum.is_finite() && (sum - wsum).abs() > 1e-9 * wsum.abs().max(1.0) {
                    return Ok(format!(
                        "MISMATCH: {name}{{{labels}}}: values sum to {sum}, want {wsum}"
                    ));
                }
            }
        }
        Ok("ok".into())
    }
}

#[derive(Debug)]
struct Row {
    size: usize,
    target: Kind,
    skipped: Option<String>,
    report: Option<LoadReport>,
    cpu_s: f64,
    rss_mb: f64,
    hwm_mb: f64,
    stored: Option<f64>,
    expected: usize,
    check: String,
    loadavg: String,
}

impl Row {
    fn skipped(size: usize, target: Kind, why: String) -> Self {
        Row {
            size,
            target,
            skipped: Some(why),
            report: None,
            cpu_s: 0.0,
            rss_mb: 0.0,
            hwm_mb: 0.0,
            stored: None,
            expected: 0,
            check: String::new(),
            loadavg: loadavg(),
        }
    }

    fn cpu_us_per_sample(&self) -> f64 {
        match &self.report {
            Some(r) if r.samples_ok > 0 => self.cpu_s * 1e6 / r.samples_ok as f64,
            _ => f64::NAN,
        }
    }

    fn rate(&self) -> f64 {
        self.report
            .as_ref()
            .map(|r| r.samples_per_sec())
            .unwrap_or(f64::NAN)
    }
}

fn run_one(
    a: &Args,
    kind: Kind,
    reqs: &[EncodedRequest],
    per_step: usize,
    series: usize,
    last_ts: i64,
    totals: Option<&Totals>,
) -> Result<Row> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("ingest-{}-", kind.name().to_lowercase()))
        .tempdir_in(&a.work_dir)?;
    let port = free_port(a.base_port)?;
    let srv = start(kind, a, port, dir.path())?;
    let pid = srv.pid();
    std::thread::sleep(Duration::from_secs_f64(a.settle));
    let la = loadavg();
    let tck = clk_tck();
    let cpu0 = cpu_ticks(pid)?;
    let lc = LoadConfig {
        url: srv.url(a.protocol.path()),
        protocol: a.protocol,
        concurrency: a.concurrency,
        duration: Some(Duration::from_secs_f64(a.duration)),
        requests_per_step: per_step,
        timeout: Duration::from_secs(30),
    };
    let rep = rwload::run_load(reqs, &lc);
    let cpu1 = cpu_ticks(pid)?;
    let rss = status_kb(pid, "VmRSS")?;
    let hwm = status_kb(pid, "VmHWM")?;
    // Stored-data check: all series have a sample at the last fully accepted step.
    let expected = if rep.last_full_step.is_some() { series } else { 0 };
    let check_ts = rep
        .last_full_step
        .map(|s| last_ts - (reqs.last().map(|r| r.step).unwrap_or(0) - s) as i64 * a.interval_ms)
        .unwrap_or(last_ts);
    let (stored, check) = {
        if kind == Kind::VictoriaMetrics {
            let _ = get(&srv.url("/internal/force_flush"));
            std::thread::sleep(Duration::from_secs(2));
        }
        let complete = !rep.truncated && rep.error_count() == 0;
        match query_count(&srv, check_ts) {
            Ok(Some(n)) if n as usize == expected => match totals.filter(|_| complete) {
                Some(t) => (
                    Some(n),
                    t.check(&srv, last_ts)
                        .unwrap_or_else(|e| format!("FAILED: {e:#}")),
                ),
                None => (Some(n), "ok (series only)".to_string()),
            },
            Ok(Some(n)) => (Some(n), format!("MISMATCH: {n} series, want {expected}")),
            Ok(None) => (None, "skipped: no /api/v1/query".to_string()),
            Err(e) if kind == Kind::Metricsd => (None, format!("skipped: query failed ({e:#})")),
            Err(e) => (None, format!("FAILED: {e:#}")),
        }
    };
    if rep.error_count() > 0 {
        eprintln!(
            "  {}: {} failed requests {:?}; first: {}",
            kind.name(),
            rep.error_count(),
            rep.errors,
            rep.first_error.as_deref().unwrap_or("")
        );
    }
    srv.stop();
    Ok(Row {
        size: series,
        target: kind,
        skipped: None,
        cpu_s: (cpu1 - cpu0) as f64 / tck,
        rss_mb: rss as f64 / 1024.0,
        hwm_mb: hwm as f64 / 1024.0,
        report: Some(rep),
        stored,
        expected,
        check,
        loadavg: la,
    })
}

fn ratio(x: f64, base: f64) -> String {
    if x.is_finite() && base.is_finite() && base > 0.0 {
        format!("{:.2}", x / base)
    } else {
        "-".into()
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "\n{:>7} {:<16} {:>11} {:>9} {:>8} {:>8} {:>8} {:>8} {:>6} {:>7} {:>7} {:>7}  stored",
        "series",
        "target",
        "samples/s",
        "µsCPU/smp",
        "RSS MB",
        "HWM MB",
        "p50 ms",
        "p99 ms",
        "errors",
        "×rate",
        "×cpu",
        "×RSS"
    );
    for r in rows {
        if let Some(why) = &r.skipped {
            println!("{:>7} {:<16} skipped: {why}", r.size, r.target.name());
            continue;
        }
        let rep = r.report.as_ref().expect("run rows have a report");
        let base = rows
            .iter()
            .find(|b| b.size == r.size && b.target == Kind::VictoriaMetrics && b.report.is_some());
        let (br, bc, bm) = base
            .map(|b| (b.rate(), b.cpu_us_per_sample(), b.rss_mb))
            .unwrap_or((f64::NAN, f64::NAN, f64::NAN));
        println!(
            "{:>7} {:<16} {:>11.0} {:>9.3} {:>8.0} {:>8.0} {:>8.2} {:>8.2} {:>6} {:>7} {:>7} {:>7}  {}",
            r.size,
            r.target.name(),
            r.rate(),
            r.cpu_us_per_sample(),
            r.rss_mb,
            r.hwm_mb,
            rep.latency_pct(50.0) as f64 / 1e3,
            rep.latency_pct(99.0) as f64 / 1e3,
            rep.error_count(),
            ratio(r.rate(), br),
            ratio(r.cpu_us_per_sample(), bc),
            ratio(r.rss_mb, bm),
            r.check
        );
    }
    println!("(µsCPU/smp = server CPU µs per accepted sample; ×: ratio to VictoriaMetrics, same size)");
}

fn main() -> Result<()> {
    let a = Args::parse();
    ensure!(
        a.samples_per_request > 0 && a.steps > 0,
        "--steps and --samples-per-request must be positive"
    );
    ensure!(
        a.duration > 0.0 && a.duration <= 600.0,
        "--duration must be in (0, 600] s"
    );
    let mut rows = Vec::new();
    let mut sets = Vec::new();
    for &size in &a.sizes {
        let da = DataArgs {
            series: size,
            steps: a.steps,
            interval_ms: a.interval_ms,
            jitter_ms: 0,
            smooth: a.smooth,
            seed: a.seed,
            start_ms: None,
            samples_per_request: a.samples_per_request,
        };
        let cfg = da.gen_config();
        let t0 = Instant::now();
        let ds = datagen::generate(&cfg);
        let reqs = a.protocol.encode(&ds, a.samples_per_request);
        let bytes: usize = reqs.iter().map(|r| r.body.len()).sum();
        let per_step = rwload::requests_per_step(ds.num_series(), a.samples_per_request);
        let last_ts = cfg.start_ms + (cfg.samples_per_series as i64 - 1) * cfg.interval_ms;
        // The JSON API stores counters as running totals of the increments sent: other
        // values than the data set's, so only the series are checked there.
        let totals = (a.protocol != Protocol::Json).then(|| Totals::of(&ds, cfg.start_ms));
        println!(
            "== {} series ({} hosts) × {} steps = {} samples; {} {:?} requests of ≤{} samples, {:.1} MB; encoded in {:.1} s",
            ds.num_series(),
            ds.num_hosts(),
            cfg.samples_per_series,
            ds.num_samples(),
            reqs.len(),
            a.protocol,
            a.samples_per_request,
            bytes as f64 / 1e6,
            t0.elapsed().as_secs_f64()
        );
        for &kind in &a.targets {
            if a.protocol == Protocol::Json && kind != Kind::Metricsd {
                continue;
            }
            if kind == Kind::Metricsd
                && let Err(why) = metricsd_usable(&a.bins.metricsd_bin)
            {
                println!("  {}: skipped ({why})", kind.name());
                rows.push(Row::skipped(ds.num_series(), kind, why));
                continue;
            }
            print!("  {}: ", kind.name());
            match run_one(
                &a,
                kind,
                &reqs,
                per_step,
                ds.num_series(),
                last_ts,
                totals.as_ref(),
            ) {
                Ok(r) => {
                    println!(
                        "{:.0} samples/s, {:.2} s CPU, {:.3} µs CPU/sample, RSS {:.0} MB, stored check {}",
                        r.rate(),
                        r.cpu_s,
                        r.cpu_us_per_sample(),
                        r.rss_mb,
                        r.check
                    );
                    rows.push(r);
                }
                Err(e) => {
                    println!("FAILED: {e:#}");
                    rows.push(Row::skipped(ds.num_series(), kind, format!("failed: {e:#}")));
                }
            }
        }
        sets.push(json!({
            "series": ds.num_series(),
            "hosts": ds.num_hosts(),
            "steps": cfg.samples_per_series,
            "samples": ds.num_samples(),
            "requests": reqs.len(),
            "bytes": bytes,
            "start_ms": cfg.start_ms,
        }));
    }
    print_table(&rows);
    if let Some(path) = &a.json {
        let v = json!({
            "config": {
                "steps": a.steps,
                "interval_ms": a.interval_ms,
                "samples_per_request": a.samples_per_request,
                "protocol": format!("{:?}", a.protocol),
                "concurrency": a.concurrency,
                "profile": if a.smooth { "smooth" } else { "noisy" },
                "seed": a.seed,
            },
            "data_sets": sets,
            "results": rows.iter().map(|r| json!({
                "series": r.size,
                "target": r.target.name(),
                "skipped": r.skipped,
                "load": r.report.as_ref().map(|x| x.to_json()),
                "server_cpu_s": r.cpu_s,
                "cpu_us_per_sample": r.report.as_ref().map(|_| r.cpu_us_per_sample()),
                "rss_mb": r.rss_mb,
                "hwm_mb": r.hwm_mb,
                "stored_series": r.stored,
                "expected_series": r.expected,
                "stored_check": r.check,
                "loadavg_before": r.loadavg,
            })).collect::<Vec<_>>(),
        });
        fs::write(path, serde_json::to_string_pretty(&v)? + "\n")?;
    }
    let failed = rows.iter().any(|r| {
        r.target != Kind::Metricsd
            && (r.skipped.is_some() || r.check.starts_with("MISMATCH") || r.check.starts_with("FAILED"))
    });
    ensure!(!failed, "a reference target failed or did not store the data");
    Ok(())
}
