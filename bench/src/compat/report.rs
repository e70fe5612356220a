//! The outcome of a conformance run: per case, per query, per category; printed, as JSON
//! and as markdown.
//!
//! A *query* (one line of the query file) fails when any of its cases (evaluation times,
//! ranges) disagrees. A failing query listed in the allowlist (a documented deliberate
//! difference) is reported as *allowed* and does not fail the run; an allowlisted query that
//! agrees is reported as a stale allowlist entry.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::client::{Answer, QueryValue};
use super::queries::{Case, Template};

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case.
    pub case: Case,
    /// Differences (empty: agreement).
    pub diff: Vec<String>,
    /// The reference's answer, summarised (kept for failures only).
    pub expected: String,
    /// The target's answer, summarised (kept for failures only).
    pub got: String,
    /// The GET URL of the target's request, to reproduce it.
    pub url: String,
    /// What kind of answer the reference gave.
    pub reference_answer: AnswerClass,
}

/// What kind of answer the reference gave (to see what the query set exercises).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AnswerClass {
    /// A scalar, string, or a vector or matrix with at least one sample.
    Data,
    /// An empty vector or matrix.
    Empty,
    /// An error.
    Error,
    /// No valid answer.
    Broken,
}

impl AnswerClass {
    /// Classifies an answer.
    pub fn of(a: &Answer) -> AnswerClass {
        match a {
            Answer::Ok(QueryValue::Vector(v)) if v.is_empty() => AnswerClass::Empty,
            Answer::Ok(QueryValue::Matrix(m)) if m.is_empty() => AnswerClass::Empty,
            Answer::Ok(_) => AnswerClass::Data,
            Answer::Err { .. } => AnswerClass::Error,
            Answer::Broken(_) => AnswerClass::Broken,
        }
    }
}

/// A one-line summary of an answer.
pub fn summarize(a: &Answer) -> String {
    match a {
        Answer::Ok(QueryValue::Scalar { t, v }) => format!("scalar {} @{t}", super::compare::fmt_value(*v)),
        Answer::Ok(QueryValue::String { t, s }) => format!("string {s:?} @{t}"),
        Answer::Ok(QueryValue::Vector(v)) => format!("vector of {} samples", v.len()),
        Answer::Ok(QueryValue::Matrix(m)) => format!(
            "matrix of {} series, {} points",
            m.len(),
            m.iter().map(|s| s.points.len()).sum::<usize>()
        ),
        Answer::Err {
            error_type,
            error,
            status,
        } => format!("error {error_type} (HTTP {status}): {error}"),
        Answer::Broken(e) => format!("no valid answer: {e}"),
    }
}

/// Counts for one category (or all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Queries.
    pub queries: usize,
    /// Queries with a disagreeing case, not allowlisted.
    pub queries_failed: usize,
    /// Queries with a disagreeing case, allowlisted.
    pub queries_allowed: usize,
    /// Cases.
    pub cases: usize,
    /// Disagreeing cases (allowlisted or not).
    pub cases_failed: usize,
}

/// A whole run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Name of the reference (e.g. `Prometheus 2.42 (http://…)`).
    pub reference: String,
    /// Name of the target.
    pub target: String,
    /// The data set's start, ms (cases are described relative to it).
    pub origin: i64,
    /// The parsed query file.
    pub templates: Vec<Template>,
    /// The allowlisted query texts.
    pub allowlist: BTreeSet<String>,
    /// Every case run, in order.
    pub results: Vec<CaseResult>,
    /// Wall time of the queries, s.
    pub elapsed_s: f64,
}

impl Report {
    /// Indexes of the templates that ran, and whether each failed.
    fn query_status(&self) -> BTreeMap<usize, bool> {
        let mut m = BTreeMap::new();
        for r in &self.results {
            *m.entry(r.case.template).or_insert(false) |= !r.diff.is_empty();
        }
        m
    }

    fn allowed(&self, template: usize) -> bool {
        self.allowlist.contains(&self.templates[template].text)
    }

    /// Totals and per-category counts.
    pub fn counts(&self) -> (Counts, BTreeMap<String, Counts>) {
        let mut total = Counts::default();
        let mut by: BTreeMap<String, Counts> = BTreeMap::new();
        for (&t, &failed) in &self.query_status() {
            let c = by.entry(self.templates[t].category.clone()).or_default();
            for c in [&mut total, c] {
                c.queries += 1;
                if failed && self.allowed(t) {
                    c.queries_allowed += 1;
                } else if failed {
                    c.queries_failed += 1;
                }
            }
        }
        for r in &self.results {
            let c = by
                .entry(self.templates[r.case.template].category.clone())
                .or_default();
            for c in [&mut total, c] {
                c.cases += 1;
                c.cases_failed += usize::from(!r.diff.is_empty());
            }
        }
        (total, by)
    }

    /// How many cases the reference answered with data, empty, with an error, not at all.
    pub fn reference_answers(&self) -> [usize; 4] {
        let mut n = [0; 4];
        for r in &self.results {
            n[r.reference_answer as usize] += 1;
        }
        n
    }

    /// Whether every query agreed or is allowlisted.
    pub fn passed(&self) -> bool {
        self.counts().0.queries_failed == 0
    }

    /// Allowlisted queries that ran and agreed everywhere.
    pub fn stale_allowlist(&self) -> Vec<&str> {
        self.query_status()
            .iter()
            .filter(|&(&t, &failed)| !failed && self.allowed(t))
            .map(|(&t, _)| self.templates[t].text.as_str())
            .collect()
    }

    /// The failing cases grouped by query: `(template index, allowed, cases)`.
    pub fn failures(&self) -> Vec<(usize, bool, Vec<&CaseResult>)> {
        let mut m: BTreeMap<usize, Vec<&CaseResult>> = BTreeMap::new();
        for r in self.results.iter().filter(|r| !r.diff.is_empty()) {
            m.entry(r.case.template).or_default().push(r);
        }
        m.into_iter().map(|(t, v)| (t, self.allowed(t), v)).collect()
    }

    /// The human-readable diff of the first `max_queries` failing queries (all cases of each,
    /// up to `max_cases`), then the per-category table and the totals.
    pub fn text(&self, max_queries: usize, max_cases: usize) -> String {
        let mut s = String::new();
        let failures = self.failures();
        for (t, allowed, cases) in failures.iter().take(max_queries) {
            let tpl = &self.templates[*t];
            let _ = writeln!(
                s,
                "FAIL{} [{}] line {}: {}",
                if *allowed { " (allowlisted)" } else { "" },
                tpl.category,
                tpl.line,
                tpl.text
            );
            for r in cases.iter().take(max_cases) {
                let _ = writeln!(s, "  {}", r.case.params.describe(self.origin));
                let _ = writeln!(s, "    expected: {}", r.expected);
                let _ = writeln!(s, "    got:      {}", r.got);
                for d in &r.diff {
                    let _ = writeln!(s, "    - {d}");
                }
                let _ = writeln!(s, "    repro: curl -s '{}'", r.url);
            }
            if cases.len() > max_cases {
                let _ = writeln!(
                    s,
                    "  … and {} more failing cases of this query",
                    cases.len() - max_cases
                );
            }
        }
        if failures.len() > max_queries {
            let _ = writeln!(
                s,
                "… and {} more failing queries (see the report)",
                failures.len() - max_queries
            );
        }
        let (total, by) = self.counts();
        let _ = writeln!(s, "\n{} vs {} (reference)", self.target, self.reference);
        let _ = writeln!(
            s,
            "{:<28} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "category", "queries", "failed", "allowed", "cases", "failed"
        );
        for (cat, c) in by.iter().chain(std::iter::once((&"TOTAL".to_string(), &total))) {
            let _ = writeln!(
                s,
                "{:<28} {:>8} {:>8} {:>8} {:>8} {:>8}",
                cat, c.queries, c.queries_failed, c.queries_allowed, c.cases, c.cases_failed
            );
        }
        let _ = writeln!(
            s,
            "queries: {} passed, {} failed, {} allowlisted; cases: {} of {} agree ({:.2}%); {:.1} s",
            total.queries - total.queries_failed - total.queries_allowed,
            total.queries_failed,
            total.queries_allowed,
            total.cases - total.cases_failed,
            total.cases,
            100.0 * (total.cases - total.cases_failed) as f64 / total.cases.max(1) as f64,
            self.elapsed_s
        );
        let [data, empty, err, broken] = self.reference_answers();
        let _ = writeln!(
            s,
            "reference answers: {data} with data, {empty} empty, {err} errors, {broken} invalid"
        );
        for q in self.stale_allowlist() {
            let _ = writeln!(s, "note: allowlisted but agrees now: {q}");
        }
        s
    }

    /// The report as JSON: totals, categories, and every failing case.
    pub fn to_json(&self) -> Value {
        let (total, by) = self.counts();
        let counts = |c: &Counts| {
            json!({
                "queries": c.queries,
                "queries_failed": c.queries_failed,
                "queries_allowed": c.queries_allowed,
                "cases": c.cases,
                "cases_failed": c.cases_failed,
            })
        };
        json!({
            "reference": self.reference,
            "target": self.target,
            "data_start_ms": self.origin,
            "elapsed_s": self.elapsed_s,
            "passed": self.passed(),
            "total": counts(&total),
            "categories": by.iter().map(|(k, c)| (k.clone(), counts(c))).collect::<serde_json::Map<_, _>>(),
            "stale_allowlist": self.stale_allowlist(),
            "reference_answers": {
                "data": self.reference_answers()[0],
                "empty": self.reference_answers()[1],
                "error": self.reference_answers()[2],
                "invalid": self.reference_answers()[3],
            },
            "failures": self.failures().iter().map(|(t, allowed, cases)| {
                let tpl = &self.templates[*t];
                json!({
                    "query": tpl.text,
                    "line": tpl.line,
                    "category": tpl.category,
                    "allowlisted": allowed,
                    "cases": cases.iter().map(|r| json!({
                        "params": r.case.params.describe(self.origin),
                        "query": r.case.query,
                        "expected": r.expected,
                        "got": r.got,
                        "diff": r.diff,
                        "url": r.url,
                    })).collect::<Vec<_>>(),
                })
            }).collect::<Vec<_>>(),
        })
    }

    /// The report as markdown: totals, a category table, the failing queries.
    pub fn to_markdown(&self) -> String {
        let (total, by) = self.counts();
        let mut s = String::new();
        let _ = writeln!(s, "# PromQL conformance: {} vs {}\n", self.target, self.reference);
        let _ = writeln!(
            s,
            "{} queries, {} failed, {} allowlisted; {} of {} cases agree. Data start `S` = {} ms.\n",
            total.queries,
            total.queries_failed,
            total.queries_allowed,
            total.cases - total.cases_failed,
            total.cases,
            self.origin
        );
        let _ = writeln!(
            s,
            "| category | queries | failed | allowlisted | cases | failed cases |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
        for (cat, c) in &by {
            let _ = writeln!(
                s,
                "| {cat} | {} | {} | {} | {} | {} |",
                c.queries, c.queries_failed, c.queries_allowed, c.cases, c.cases_failed
            );
        }
        let failures = self.failures();
        if !failures.is_empty() {
            let _ = writeln!(s, "\n## Failing queries\n");
        }
        for (t, allowed, cases) in &failures {
            let tpl = &self.templates[*t];
            let _ = writeln!(
                s,
                "### `{}`{}\n\n[{}] line {}, {} failing cases\n",
                tpl.text.replace('`', "\\`"),
                if *allowed { " (allowlisted)" } else { "" },
                tpl.category,
                tpl.line,
                cases.len()
            );
            for r in cases.iter().take(3) {
                let _ = writeln!(
                    s,
                    "- {}: expected {}; got {}",
                    r.case.params.describe(self.origin),
                    r.expected,
                    r.got
                );
                for d in &r.diff {
                    let _ = writeln!(s, "  - {d}");
                }
            }
            s.push('\n');
        }
        s
    }
}
