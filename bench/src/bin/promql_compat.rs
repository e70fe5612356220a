//! promql_compat: PromQL conformance of a Prometheus-API server against Prometheus.
//!
//! By default starts a Prometheus (the reference) and `metricsd serve` on free loopback
//! ports with temporary data directories, loads the same synthetic data set into both over
//! remote_write, runs every query of the query set as instant and range queries on both,
//! and compares the answers (rules in `metricsd_bench::compat::compare`). Prints a diff for
//! each failing query and a per-category summary; writes JSON and markdown reports; exits
//! with 1 if any query disagrees that is not in the allowlist.
//!
//! ```sh
//! promql_compat                                   # Prometheus vs target/release/metricsd
//! promql_compat --target prometheus               # vs a second Prometheus: must agree 100%
//! promql_compat --target vm                       # vs VictoriaMetrics: differences expected
//! promql_compat --filter 'histogram' --keep       # a subset; leave the servers running
//! promql_compat --prometheus-url http://127.0.0.1:9090 --metricsd-url http://127.0.0.1:8012 \
//!     --no-load --start-ms 1700000000000          # servers kept from an earlier run
//! ```

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use metricsd_bench::compat::{self, Options, Setup, Side};
use metricsd_bench::servers::{Bins, Kind, Spec};
use regex::Regex;

#[derive(Debug, Parser)]
#[command(about = "Compare PromQL answers of a Prometheus-API server (metricsd) with Prometheus'")]
struct Args {
    /// The reference: a running Prometheus at this base URL (default: start one).
    #[arg(long)]
    prometheus_url: Option<String>,
    /// The server under test at this base URL (default: start `--target`).
    #[arg(long)]
    metricsd_url: Option<String>,
    /// What to start as the server under test when `--metricsd-url` is not given:
    /// metricsd, a second Prometheus (checks the harness: must agree 100%) or
    /// VictoriaMetrics (vm).
    #[arg(long, value_enum, default_value = "metricsd")]
    target: Kind,
    #[command(flatten)]
    bins: Bins,
    /// Extra argument for the started target (repeatable), e.g. `--target-arg=--log-level=warn`.
    #[arg(long, allow_hyphen_values = true)]
    target_arg: Vec<String>,
    /// Only queries whose text or category matches this regex.
    #[arg(long)]
    filter: Option<String>,
    /// Query file (default: the built-in bench/compat/queries.txt).
    #[arg(long)]
    queries: Option<PathBuf>,
    /// Allowlist of deliberate differences (default: the built-in bench/compat/allowlist.txt).
    #[arg(long)]
    allowlist: Option<PathBuf>,
    /// Leave the started servers running (and their data directories) when done.
    #[arg(long)]
    keep: bool,
    /// Do not load the data set (the servers hold it already; give --start-ms).
    #[arg(long)]
    no_load: bool,
    /// The data set's start, ms since the epoch (default: 2h25m–2h30m ago, 5-minute aligned).
    #[arg(long)]
    start_ms: Option<i64>,
    /// Queries in flight at once.
    #[arg(long, default_value_t = 2)]
    parallel: usize,
    /// Failing queries printed in full (all are in the reports).
    #[arg(long, default_value_t = 30)]
    max_failures: usize,
    /// Write the JSON report here.
    #[arg(long, default_value = "promql-compat.json")]
    json: PathBuf,
    /// Write the markdown report here.
    #[arg(long, default_value = "promql-compat.md")]
    markdown: PathBuf,
    /// Where the temporary data directories go.
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("promql_compat: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(a: Args) -> Result<bool> {
    let reference = match &a.prometheus_url {
        Some(u) => Side::Url(u.clone()),
        None => Side::Spawn(Spec {
            kind: Kind::Prometheus,
            bin: a.bins.prometheus_bin.clone(),
            args: Vec::new(),
        }),
    };
    let target = match &a.metricsd_url {
        Some(u) => Side::Url(u.clone()),
        None => Side::Spawn(Spec {
            kind: a.target,
            bin: a.bins.of(a.target),
            args: a
                .target_arg
                .iter()
                .cloned()
                // Repeated range queries must not be answered from VictoriaMetrics' cache of
                // earlier ones (which also aligns them to the step).
                .chain((a.target == Kind::VictoriaMetrics).then(|| "-search.disableCache".to_string()))
                .collect(),
        }),
    };
    let mut setup = Setup::new(reference, target);
    setup.load = !a.no_load;
    setup.start_ms = a.start_ms;
    setup.work_dir = a.work_dir.clone();
    setup.keep_dirs = a.keep;
    let read = |p: &Option<PathBuf>, builtin: &str| -> Result<String> {
        match p {
            Some(p) => fs::read_to_string(p).with_context(|| format!("reading {}", p.display())),
            None => Ok(builtin.to_string()),
        }
    };
    let opts = Options {
        queries: read(&a.queries, compat::QUERIES)?,
        allowlist: read(&a.allowlist, compat::ALLOWLIST)?,
        filter: a
            .filter
            .as_deref()
            .map(Regex::new)
            .transpose()
            .context("--filter")?,
        parallel: a.parallel,
        progress: true,
    };
    eprintln!("starting servers and loading the data set…");
    let prepared = compat::prepare(&setup)?;
    eprintln!(
        "reference {}, target {}; data set: {} series, {} samples from {} (S) to {} ms",
        prepared.reference_name,
        prepared.target_name,
        prepared.data.series.len(),
        prepared.data.num_samples(),
        prepared.data.start_ms,
        prepared.data.end_ms
    );
    let report = compat::run(&prepared, &opts)?;
    print!("{}", report.text(a.max_failures, 4));
    fs::write(&a.json, serde_json::to_string_pretty(&report.to_json())? + "\n")
        .with_context(|| format!("writing {}", a.json.display()))?;
    fs::write(&a.markdown, report.to_markdown())
        .with_context(|| format!("writing {}", a.markdown.display()))?;
    println!("reports: {} {}", a.json.display(), a.markdown.display());
    if a.keep {
        let compat::Prepared { servers, dirs, .. } = prepared;
        for s in servers {
            let (kind, url, log) = (s.kind, s.base_url(), s.log.clone());
            let pid = s.detach();
            println!("kept {} at {url} (pid {pid}, log {})", kind.name(), log.display());
        }
        for d in dirs {
            println!("kept data in {}", d.path().display());
        }
        println!(
            "rerun against them: promql_compat --prometheus-url URL --metricsd-url URL --no-load --start-ms {}",
            report.origin
        );
    }
    Ok(report.passed())
}
