//! Runs PromQL test scripts in Prometheus' `promqltest` format against our evaluator over a
//! real metricsd-tsdb store.
//!
//! The format:
//! ```text
//! # comment
//! load 5m
//!   http_requests{job="api", instance="0"}  0+10x10 _ stale 1 _x3 Inf
//! clear
//! eval instant at 50m sum by (job) (http_requests)
//!   {job="api"} 100
//! eval_ordered instant at 50m sort(x)
//! eval_fail instant at 50m x + on() group_left y
//! ```
//! `load <step>` writes samples at 0, step, 2*step, ... (Unix epoch). `a+bxN` expands to
//! N+1 values a, a+b, ...; `axN` to N+1 copies; `_` skips a step, `_xN` N steps; `stale`
//! writes a staleness marker. Every `eval instant` also runs as a range query from t-1m to
//! t+1m at a 1m step and its middle step must give the same result, as Prometheus' runner
//! does. Every script runs twice: with the data in the head (appended) and in blocks
//! (imported).
//!
//! Scripts: `testdata/prometheus/*.test` (Prometheus 2.42's own) and `testdata/*.test`
//! (ours). An optional `testdata/skip.txt` would list `file:line` of cases not to run, each
//! with its reason; there is none today: every case runs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use metricsd_model::{Labels, Sample};
use metricsd_promql::promql_parser::parser::{self, Expr};
use metricsd_promql::{Engine, EngineOptions, QueryContext, Value};
use metricsd_tsdb::{Db, DbOptions};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Head,
    Blocks,
}

struct Expect {
    labels: Option<Labels>, // None: a scalar
    value: f64,
}

enum Cmd {
    Clear,
    Load(Vec<(Labels, Vec<Sample>)>),
    Eval {
        line: usize,
        expr: String,
        at: i64,
        ordered: bool,
        fail: bool,
        expect: Vec<Expect>,
    },
}

fn parse_duration_ms(s: &str) -> i64 {
    if s.trim()
        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
        .chars()
        .all(|c| c == '0')
    {
        return 0;
    }
    metricsd_promql::promql_parser::util::parse_duration(s.trim())
        .map(|d| d.as_millis() as i64)
        .unwrap_or_else(|e| panic!("bad duration {s:?}: {e}"))
}

fn parse_num(s: &str) -> Option<f64> {
    let t = s.trim();
    match t.to_ascii_lowercase().as_str() {
        "inf" | "+inf" => return Some(f64::INFINITY),
        "-inf" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    t.parse::<f64>().ok()
}

/// Splits `metric{a="b"} rest` into the metric part and the rest.
fn split_series(line: &str) -> (&str, &str) {
    let b = line.as_bytes();
    let mut i = 0;
    let mut in_q = false;
    let mut depth = 0;
    while i < b.len() {
        let c = b[i];
        if in_q {
            if c == b'\\' {
                i += 1;
            } else if c == b'"' {
                in_q = false;
            }
        } else if c == b'"' {
            in_q = true;
        } else if c == b'{' {
            depth += 1;
        } else if c == b'}' {
            depth -= 1;
            if depth == 0 {
                return (&line[..=i], &line[i + 1..]);
            }
        } else if (c == b' ' || c == b'\t') && depth == 0 {
            return (&line[..i], &line[i..]);
        }
        i += 1;
    }
    (line, "")
}

fn parse_labels(metric: &str) -> Labels {
    let m = metric.trim();
    if m == "{}" {
        return Labels::empty();
    }
    let e = parser::parse(m).unwrap_or_else(|e| panic!("bad series {m:?}: {e}"));
    let Expr::VectorSelector(vs) = e else {
        panic!("not a series: {m}")
    };
    let mut pairs: Vec<(String, String)> = vs
        .matchers
        .matchers
        .iter()
        .map(|m| (m.name.clone(), m.value.clone()))
        .collect();
    if let Some(n) = vs.name {
        pairs.push(("__name__".into(), n));
    }
    Labels::from_pairs(pairs)
}

/// Expands a values string into (step index, value) pairs.
fn parse_values(s: &str) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for tok in s.split_whitespace() {
        if tok == "_" {
            out.push(None);
            continue;
        }
        if tok == "stale" {
            out.push(Some(f64::from_bits(metricsd_model::STALE_NAN)));
            continue;
        }
        if let Some(n) = tok.strip_prefix("_x") {
            let n: usize = n.parse().expect("blank count");
            out.extend(std::iter::repeat_n(None, n));
            continue;
        }
        if let Some(v) = parse_num(tok) {
            out.push(Some(v));
            continue;
        }
        let xi = tok.rfind('x').unwrap_or_else(|| panic!("bad value {tok:?}"));
        let n: usize = tok[xi + 1..].parse().expect("repeat count");
        let head = &tok[..xi];
        // Split "a+b" / "a-b" at the first sign that is not a leading sign or an exponent's.
        let hb = head.as_bytes();
        let mut split = None;
        for i in 1..hb.len() {
            if (hb[i] == b'+' || hb[i] == b'-') && !matches!(hb[i - 1], b'e' | b'E') {
                split = Some(i);
                break;
            }
        }
        let (a, d) = match split {
            Some(i) => (
                parse_num(&head[..i]).expect("start value"),
                parse_num(&head[i..]).expect("increment"),
            ),
            None => (parse_num(head).expect("value"), 0.0),
        };
        let mut v = a;
        for _ in 0..=n {
            out.push(Some(v));
            v += d;
        }
    }
    out
}

fn parse_script(text: &str) -> Vec<Cmd> {
    let lines: Vec<&str> = text.lines().collect();
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim();
        i += 1;
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let word = l.split_whitespace().next().unwrap().to_ascii_lowercase();
        if word == "clear" {
            cmds.push(Cmd::Clear);
        } else if word == "load" {
            let step = parse_duration_ms(&l[4..]);
            let mut series = Vec::new();
            while i < lines.len() && !lines[i].trim().is_empty() {
                let def = lines[i].trim();
                i += 1;
                if def.starts_with('#') {
                    continue;
                }
                let (m, vals) = split_series(def);
                let labels = parse_labels(m);
                let samples: Vec<Sample> = parse_values(vals)
                    .into_iter()
                    .enumerate()
                    .filter_map(|(k, v)| v.map(|v| Sample::new(k as i64 * step, v)))
                    .collect();
                // A series defined twice in one load keeps the later definition.
                series.retain(|(l, _): &(Labels, Vec<Sample>)| *l != labels);
                series.push((labels, samples));
            }
            cmds.push(Cmd::Load(series));
        } else if word.starts_with("eval") {
            let line = i;
            let (ordered, fail) = match word.as_str() {
                "eval" => (false, false),
                "eval_ordered" => (true, false),
                "eval_fail" => (false, true),
                w => panic!("line {line}: unknown command {w}"),
            };
            let rest = l[word.len()..].trim_start();
            let rest = rest
                .strip_prefix("instant")
                .unwrap_or_else(|| panic!("line {line}: only instant evals are supported"))
                .trim_start();
            let rest = rest.strip_prefix("at").expect("at").trim_start();
            let (dur, expr) = rest.split_once(char::is_whitespace).expect("eval expr");
            let at = parse_duration_ms(dur);
            let mut expect = Vec::new();
            while i < lines.len() && !lines[i].trim().is_empty() {
                let def = lines[i].trim();
                i += 1;
                if let Some(v) = parse_num(def) {
                    expect.push(Expect {
                        labels: None,
                        value: v,
                    });
                    break;
                }
                let (m, vals) = split_series(def);
                let v = parse_values(vals);
                assert_eq!(v.len(), 1, "line {i}: one value per expected series");
                expect.push(Expect {
                    labels: Some(parse_labels(m)),
                    value: v[0].expect("expected value"),
                });
            }
            cmds.push(Cmd::Eval {
                line,
                expr: expr.trim().to_owned(),
                at,
                ordered,
                fail,
                expect,
            });
        } else {
            panic!("line {i}: invalid command {l:?}");
        }
    }
    cmds
}

fn almost_equal(a: f64, b: f64) -> bool {
    const EPS: f64 = 1e-6;
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || diff < MIN_NORMAL {
        return diff < EPS * MIN_NORMAL;
    }
    diff / (a.abs() + b.abs()) < EPS
}

/// Compares a result (labels, value) list with the expectation.
fn compare(got: &[(Labels, f64)], scalar: Option<f64>, exp: &[Expect], ordered: bool) -> Result<(), String> {
    if let Some(s) = scalar {
        return match exp.first() {
            Some(Expect { labels: None, value }) if almost_equal(*value, s) => Ok(()),
            _ => Err(format!("got scalar {s}, expected {}", describe(exp))),
        };
    }
    if exp.iter().any(|e| e.labels.is_none()) {
        return Err(format!("got a vector {got:?}, expected a scalar"));
    }
    let mut seen = HashSet::new();
    for (pos, (l, v)) in got.iter().enumerate() {
        let Some((epos, e)) = exp.iter().enumerate().find(|(_, e)| e.labels.as_ref() == Some(l)) else {
            return Err(format!("unexpected series {l} = {v}; expected {}", describe(exp)));
        };
        if ordered && epos != pos {
            return Err(format!("series {l} at position {pos}, expected {epos}"));
        }
        if !almost_equal(e.value, *v) {
            return Err(format!("{l}: got {v}, expected {}", e.value));
        }
        if !seen.insert(l.clone()) {
            return Err(format!("series {l} twice in the result"));
        }
    }
    if seen.len() != exp.len() {
        return Err(format!("got {got:?}, expected {}", describe(exp)));
    }
    Ok(())
}

fn describe(exp: &[Expect]) -> String {
    exp.iter()
        .map(|e| match &e.labels {
            Some(l) => format!("{l} {}", e.value),
            None => format!("scalar {}", e.value),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

struct Store {
    _dir: tempfile::TempDir,
    db: Db,
}

fn new_store() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let opts = DbOptions {
        ooo_window_ms: i64::MAX / 4,
        retention_ms: 0,
        ..DbOptions::default()
    };
    let (db, _) = Db::open(dir.path(), "test", opts).unwrap();
    Store { _dir: dir, db }
}

fn run_script(path: &Path, mode: Mode, skip: &HashSet<String>) -> (usize, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let engine = Engine::new(EngineOptions {
        max_samples: 10_000,
        ..EngineOptions::default()
    });
    let ctx = QueryContext::default();
    let mut store = new_store();
    let mut failures = Vec::new();
    let mut ran = 0;
    for cmd in parse_script(&text) {
        match cmd {
            Cmd::Clear => store = new_store(),
            Cmd::Load(series) => match mode {
                Mode::Head => {
                    let mut app = store.db.appender();
                    for (l, s) in &series {
                        for smp in s {
                            app.append(l.clone(), smp.t, smp.v);
                        }
                    }
                    let rep = app.commit().unwrap();
                    assert!(
                        rep.rejected.is_empty(),
                        "{name}: load rejected {:?}",
                        rep.rejected
                    );
                }
                Mode::Blocks => {
                    store.db.import(series).unwrap();
                }
            },
            Cmd::Eval {
                line,
                expr,
                at,
                ordered,
                fail,
                expect,
            } => {
                let key = format!("{name}:{line}");
                if skip.contains(&key) {
                    continue;
                }
                ran += 1;
                let tag = format!("{key} [{mode:?}] `{expr}`");
                let res = engine.instant_query(&store.db, &expr, at, &ctx);
                match (res, fail) {
                    (Err(_), true) => continue,
                    (Ok(r), true) => {
                        failures.push(format!("{tag}: expected an error, got {:?}", r.value));
                        continue;
                    }
                    (Err(e), false) => {
                        failures.push(format!("{tag}: {e}"));
                        continue;
                    }
                    (Ok(r), false) => {
                        let (got, scalar) = match r.value {
                            Value::Vector(v) => (v.into_iter().map(|s| (s.labels, s.v)).collect(), None),
                            Value::Scalar { v, .. } => (Vec::new(), Some(v)),
                            other => {
                                failures.push(format!("{tag}: unexpected result {other:?}"));
                                continue;
                            }
                        };
                        if let Err(e) = compare(&got, scalar, &expect, ordered) {
                            failures.push(format!("{tag}: {e}"));
                            continue;
                        }
                    }
                }
                if ordered {
                    continue; // Order is undefined for range queries.
                }
                // The same through a range query, middle step.
                match engine.range_query(&store.db, &expr, at - 60_000, at + 60_000, 60_000, &ctx) {
                    Err(e) => failures.push(format!("{tag} (range): {e}")),
                    Ok(r) => {
                        let Value::Matrix(m) = r.value else {
                            failures.push(format!("{tag} (range): not a matrix"));
                            continue;
                        };
                        let is_scalar = expect.first().is_some_and(|e| e.labels.is_none());
                        let mut got = Vec::new();
                        for s in m {
                            if let Some(p) = s.points.iter().find(|p| p.t == at) {
                                got.push((s.labels, p.v));
                            }
                        }
                        let res = if is_scalar {
                            compare(&[], got.first().map(|g| g.1), &expect, false)
                        } else {
                            compare(&got, None, &expect, false)
                        };
                        if let Err(e) = res {
                            failures.push(format!("{tag} (range): {e}"));
                        }
                    }
                }
            }
        }
    }
    (ran, failures)
}

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn skips() -> HashSet<String> {
    let text = std::fs::read_to_string(testdata().join("skip.txt")).unwrap_or_default();
    text.lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn run_dir(dir: &Path) {
    let skip = skips();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scripts in {}", dir.display());
    let filter = std::env::var("PROMQL_SCRIPT").ok();
    let mut all = Vec::new();
    let mut total = 0;
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy();
        if filter.as_deref().is_some_and(|x| !name.contains(x)) {
            continue;
        }
        for mode in [Mode::Head, Mode::Blocks] {
            let (ran, failures) = run_script(f, mode, &skip);
            total += ran;
            all.extend(failures);
        }
    }
    for f in &all {
        eprintln!("FAIL {f}");
    }
    assert!(all.is_empty(), "{} of {total} evaluations failed", all.len());
    eprintln!("{total} evaluations passed");
}

#[test]
fn prometheus_scripts() {
    run_dir(&testdata().join("prometheus"));
}

#[test]
fn metricsd_scripts() {
    run_dir(&testdata());
}
