//! PromQL conformance (issue 5): the harness of `bench/src/compat.rs` (`promql_compat`)
//! against a real Prometheus, loaded with the same data over remote_write.
//! Skipped when no `prometheus` binary is installed, except under `CI=true` (`.ci/run`
//! installs it). Reports go to `CARGO_TARGET_TMPDIR/promql-compat-*.{json,md}`.

use std::path::PathBuf;

use metricsd_bench::compat::{self, Options, Setup, Side};
use metricsd_bench::servers::{Kind, Spec};

use crate::util::prometheus_or_skip;

/// Runs the whole query set with Prometheus as the reference; panics with the report's
/// diffs if any query disagrees (and is not allowlisted).
fn conformance(name: &str, prometheus: PathBuf, target: Spec) {
    let reference = Spec {
        kind: Kind::Prometheus,
        bin: prometheus,
        args: Vec::new(),
    };
    let setup = Setup::new(Side::Spawn(reference), Side::Spawn(target));
    let prepared = compat::prepare(&setup).expect("start both servers and load the data set");
    let report = compat::run(&prepared, &Options::default()).expect("run the query set");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let json = dir.join(format!("promql-compat-{name}.json"));
    let md = dir.join(format!("promql-compat-{name}.md"));
    std::fs::write(&json, report.to_json().to_string()).unwrap();
    std::fs::write(&md, report.to_markdown()).unwrap();
    eprintln!(
        "{}reports: {} {}",
        report.text(20, 3),
        json.display(),
        md.display()
    );
    let c = report.counts().0;
    assert!(
        report.passed(),
        "{} of {} queries answer differently from Prometheus (diffs above, reports in {})",
        c.queries_failed,
        c.queries,
        dir.display()
    );
}

/// The harness' own check: a second Prometheus with the same data must agree on every
/// case. A failure here is a harness bug (a query or evaluation time that is not
/// deterministic), not a metricsd bug.
#[test]
fn prometheus_agrees_with_itself() {
    let Some(bin) = prometheus_or_skip() else { return };
    let target = Spec {
        kind: Kind::Prometheus,
        bin: bin.clone(),
        args: Vec::new(),
    };
    conformance("prometheus", bin, target);
}

/// metricsd against Prometheus 2.42: the target is 100% agreement, any deliberate
/// difference listed in `bench/compat/allowlist.txt`.
/// Run alone: `cargo test -p metricsd --test api promql_compat::metricsd_agrees_with_prometheus`
#[test]
fn metricsd_agrees_with_prometheus() {
    let Some(bin) = prometheus_or_skip() else { return };
    let target = Spec {
        kind: Kind::Metricsd,
        bin: PathBuf::from(env!("CARGO_BIN_EXE_metricsd")),
        args: Vec::new(),
    };
    conformance("metricsd", bin, target);
}
