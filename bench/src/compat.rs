//! PromQL conformance: the same data and queries against a reference Prometheus and a
//! target that speaks the Prometheus HTTP API (metricsd), answers compared.
//!
//! - [`data`]: the synthetic data set (counter resets, staleness, gaps, NaN/±Inf, classic
//!   histograms, name collisions, label values needing escapes) and its remote_write loader.
//! - [`queries`]: the query file format and its expansion into instant and range cases.
//! - [`client`]: `/api/v1/query` and `/api/v1/query_range`, answers parsed.
//! - [`compare`]: when two answers agree.
//! - [`report`]: per-query and per-category results, as text, JSON and markdown.
//!
//! [`prepare`] starts (or connects to) both servers and loads the data into them;
//! [`run`] runs the cases on both and compares. The `promql_compat` binary and the
//! `metricsd` crate's conformance test drive both. The query set and the allowlist of
//! deliberate differences are `bench/compat/queries.txt` and `bench/compat/allowlist.txt`,
//! built in as [`QUERIES`] and [`ALLOWLIST`].
//!
//! ```no_run
//! use metricsd_bench::compat::{self, Setup, Side};
//! use metricsd_bench::servers::{Kind, Spec};
//! let spec = |kind, bin: &str| Side::Spawn(Spec { kind, bin: bin.into(), args: vec![] });
//! let setup = Setup::new(spec(Kind::Prometheus, "/usr/bin/prometheus"), spec(Kind::Metricsd, "target/release/metricsd"));
//! let prepared = compat::prepare(&setup)?;
//! let report = compat::run(&prepared, &compat::Options::default())?;
//! println!("{}", report.text(20, 3));
//! # anyhow::Ok(())
//! ```

pub mod client;
pub mod compare;
pub mod data;
pub mod queries;
pub mod report;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use regex::Regex;

use crate::servers::{Kind, Server, Spec, free_port};
use client::Client;
use report::{CaseResult, Report};

/// The query set, `bench/compat/queries.txt`.
pub const QUERIES: &str = include_str!("../compat/queries.txt");

/// The allowlist of deliberate differences, `bench/compat/allowlist.txt`.
pub const ALLOWLIST: &str = include_str!("../compat/allowlist.txt");

/// Parses an allowlist: one query per line, exactly as in the query file (without an
/// `instant:`/`range:` prefix); `#` comments (the reason for each entry) and blank lines
/// are skipped.
pub fn parse_allowlist(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            l.strip_prefix("instant:")
                .or_else(|| l.strip_prefix("range:"))
                .unwrap_or(l)
                .trim()
                .to_string()
        })
        .collect()
}

/// One side of the comparison: a running server's URL, or a server to start.
#[derive(Debug, Clone)]
pub enum Side {
    /// An already running Prometheus-API server at this base URL.
    Url(String),
    /// Start this server (ephemeral loopback port, temporary data directory).
    Spawn(Spec),
}

impl Side {
    fn describe(&self) -> String {
        match self {
            Side::Url(u) => u.clone(),
            Side::Spawn(s) => s.kind.name().to_string(),
        }
    }
}

/// How to set up a run.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The reference (Prometheus).
    pub reference: Side,
    /// The server under test.
    pub target: Side,
    /// Load the data set into both (false: they hold it from an earlier run with the same
    /// `start_ms`).
    pub load: bool,
    /// The data set's start, ms (default: [`data::default_start`] of now).
    pub start_ms: Option<i64>,
    /// Where temporary data directories go (default: the system's temp dir).
    pub work_dir: Option<PathBuf>,
    /// Leave the servers' data directories on disk.
    pub keep_dirs: bool,
}

impl Setup {
    /// Both servers, data loaded now.
    pub fn new(reference: Side, target: Side) -> Setup {
        Setup {
            reference,
            target,
            load: true,
            start_ms: None,
            work_dir: None,
            keep_dirs: false,
        }
    }
}

/// Both servers ready, the data in them.
#[derive(Debug)]
pub struct Prepared {
    /// The reference.
    pub reference: Client,
    /// Its name.
    pub reference_name: String,
    /// The target.
    pub target: Client,
    /// Its name.
    pub target_name: String,
    /// The data set (its start and end are the queries' `${start}` and `${end}`).
    pub data: data::Data,
    /// The servers this process started (killed on drop unless detached).
    pub servers: Vec<Server>,
    /// Their data directories (removed on drop unless kept).
    pub dirs: Vec<tempfile::TempDir>,
}

/// Starts (or connects to) both sides and loads the data set into them.
pub fn prepare(setup: &Setup) -> Result<Prepared> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let data = data::generate(setup.start_ms.unwrap_or_else(|| data::default_start(now)));
    let mut servers = Vec::new();
    let mut dirs = Vec::new();
    let mut bases = Vec::new();
    for (role, side) in [("reference", &setup.reference), ("target", &setup.target)] {
        let (base, kind) = match side {
            Side::Url(u) => (u.trim_end_matches('/').to_string(), None),
            Side::Spawn(spec) => {
                let prefix = format!("compat-{role}-{}-", spec.kind.name().to_lowercase());
                let mut b = tempfile::Builder::new();
                b.prefix(&prefix);
                let mut dir = match &setup.work_dir {
                    Some(w) => b.tempdir_in(w)?,
                    None => b.tempdir()?,
                };
                dir.disable_cleanup(setup.keep_dirs);
                let srv = Server::start(spec, free_port(0)?, dir.path(), Duration::from_secs(60))
                    .with_context(|| format!("starting the {role}"))?;
                let base = srv.base_url();
                servers.push(srv);
                dirs.push(dir);
                (base, Some(spec.kind))
            }
        };
        if setup.load {
            data::load(&data, &format!("{base}/api/v1/write"))
                .with_context(|| format!("loading the data into the {role} ({base})"))?;
            if kind == Some(Kind::VictoriaMetrics) {
                // Make the just-written samples searchable.
                let _ = crate::http_agent(Duration::from_secs(60))
                    .get(format!("{base}/internal/force_flush"))
                    .call();
            }
        }
        bases.push(base);
    }
    let timeout = Duration::from_secs(120);
    Ok(Prepared {
        reference: Client::new(&bases[0], timeout),
        reference_name: format!("{} ({})", setup.reference.describe(), bases[0]),
        target: Client::new(&bases[1], timeout),
        target_name: format!("{} ({})", setup.target.describe(), bases[1]),
        data,
        servers,
        dirs,
    })
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The query file's text.
    pub queries: String,
    /// The allowlist's text.
    pub allowlist: String,
    /// Only queries whose text or category matches.
    pub filter: Option<Regex>,
    /// Cases in flight at once.
    pub parallel: usize,
    /// Print progress to stderr.
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            queries: QUERIES.to_string(),
            allowlist: ALLOWLIST.to_string(),
            filter: None,
            parallel: 2,
            progress: false,
        }
    }
}

/// Runs every case on both sides and compares the answers.
pub fn run(p: &Prepared, opts: &Options) -> Result<Report> {
    let templates = queries::parse(&opts.queries).context("parsing the query file")?;
    let cases = queries::expand(&templates, p.data.start_ms, p.data.end_ms, opts.filter.as_ref())?;
    anyhow::ensure!(!cases.is_empty(), "no query matches the filter");
    let t0 = Instant::now();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<CaseResult>>> = Mutex::new(vec![None; cases.len()]);
    std::thread::scope(|sc| {
        for _ in 0..opts.parallel.max(1) {
            sc.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(case) = cases.get(i) else { break };
                    let expected = p.reference.query(&case.query, &case.params);
                    let got = p.target.query(&case.query, &case.params);
                    let ordered = matches!(case.params, queries::Params::Instant { .. })
                        && queries::is_sort_query(&case.query);
                    let diff = compare::compare(&expected, &got, ordered);
                    let (e, g) = if diff.is_empty() {
                        (String::new(), String::new())
                    } else {
                        (report::summarize(&expected), report::summarize(&got))
                    };
                    let r = CaseResult {
                        case: case.clone(),
                        diff,
                        expected: e,
                        got: g,
                        url: p.target.url(&case.query, &case.params),
                        reference_answer: report::AnswerClass::of(&expected),
                    };
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if opts.progress && (n.is_multiple_of(500) || n == cases.len()) {
                        eprintln!(
                            "  {n}/{} cases ({:.0} s)",
                            cases.len(),
                            t0.elapsed().as_secs_f64()
                        );
                    }
                }
            });
        }
    });
    let results = results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.expect("every case ran"))
        .collect();
    Ok(Report {
        reference: p.reference_name.clone(),
        target: p.target_name.clone(),
        origin: p.data.start_ms,
        templates,
        allowlist: parse_allowlist(&opts.allowlist),
        results,
        elapsed_s: t0.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_query_set_is_large_and_valid() {
        let t = queries::parse(QUERIES).unwrap();
        assert!(t.len() >= 500, "{} queries", t.len());
        let mut seen = BTreeSet::new();
        for q in &t {
            assert!(
                seen.insert(&q.text),
                "line {}: duplicate query {}",
                q.line,
                q.text
            );
        }
        let allow = parse_allowlist(ALLOWLIST);
        for a in &allow {
            assert!(seen.contains(a), "allowlisted query not in the query file: {a}");
        }
    }

    #[test]
    fn allowlist_format() {
        let a = parse_allowlist("# why\nrate(x[5m])\n\ninstant: y\n");
        assert_eq!(a.into_iter().collect::<Vec<_>>(), vec!["rate(x[5m])", "y"]);
    }
}
