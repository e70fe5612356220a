//! The query set: a text file of PromQL queries, expanded into instant and range cases.
//!
//! File format (`bench/compat/queries.txt`):
//! - `## name` starts a category (reported separately); `#` starts a comment line; blank
//!   lines are ignored.
//! - Every other line is one query. A leading `instant: ` or `range: ` runs it only as an
//!   instant or only as a range query (default: both).
//! - `${start}`, `${end}`, `${start+30m}`, `${end-1h30m}` are replaced by the data set's
//!   start or end (plus or minus a duration) in Unix seconds, for `@` modifiers.
//!
//! Each query runs as an instant query at every time of [`instant_times`] and as a range
//! query over every window of [`ranges`]; all are placed relative to the data set's events
//! (see [`super::data`]).

use anyhow::{Context, Result, bail};
use regex::Regex;

const SEC: i64 = 1000;
const MIN: i64 = 60 * SEC;

/// Which kinds of case a query runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Only {
    /// Instant and range.
    Both,
    /// Only instant queries.
    Instant,
    /// Only range queries.
    Range,
}

/// One line of the query file.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// Line number in the file, from 1.
    pub line: usize,
    /// The category (last `## ` heading).
    pub category: String,
    /// The query as written (variables not substituted), without the `instant:`/`range:` prefix.
    pub text: String,
    /// Which cases it runs as.
    pub only: Only,
}

/// The evaluation parameters of one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Params {
    /// `/api/v1/query?time=`.
    Instant {
        /// Evaluation time, ms.
        time_ms: i64,
    },
    /// `/api/v1/query_range?start=&end=&step=`.
    Range {
        /// Start, ms.
        start_ms: i64,
        /// End, ms.
        end_ms: i64,
        /// Step, ms.
        step_ms: i64,
    },
}

/// Formats ms since the epoch as the API's decimal seconds (`1700000000.5` → `"1700000000.500"`).
pub fn api_time(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// `ms` relative to `origin` as `S+1h2m3.5s` (for reports).
pub fn rel_time(ms: i64, origin: i64) -> String {
    let d = ms - origin;
    let sign = if d < 0 { '-' } else { '+' };
    format!("S{sign}{}", fmt_duration(d.abs()))
}

/// `90_500` → `1m30.5s`.
pub fn fmt_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let (h, m, s, r) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    if r > 0 {
        out += format!("{s}.{r:03}").trim_end_matches('0');
        out.push('s');
    } else if s > 0 {
        out += &format!("{s}s");
    }
    out
}

impl Params {
    /// The API's form parameters besides `query`.
    pub fn form(&self) -> Vec<(&'static str, String)> {
        match *self {
            Params::Instant { time_ms } => vec![("time", api_time(time_ms))],
            Params::Range {
                start_ms,
                end_ms,
                step_ms,
            } => vec![
                ("start", api_time(start_ms)),
                ("end", api_time(end_ms)),
                ("step", format!("{}", step_ms as f64 / 1000.0)),
            ],
        }
    }

    /// The API path.
    pub fn path(&self) -> &'static str {
        match self {
            Params::Instant { .. } => "/api/v1/query",
            Params::Range { .. } => "/api/v1/query_range",
        }
    }

    /// A short description relative to the data set's start `S`.
    pub fn describe(&self, origin: i64) -> String {
        match *self {
            Params::Instant { time_ms } => format!("instant at {}", rel_time(time_ms, origin)),
            Params::Range {
                start_ms,
                end_ms,
                step_ms,
            } => format!(
                "range {} .. {} step {}",
                rel_time(start_ms, origin),
                rel_time(end_ms, origin),
                fmt_duration(step_ms)
            ),
        }
    }
}

/// One query at one set of evaluation parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Index of its template in the parsed file.
    pub template: usize,
    /// The query, variables substituted.
    pub query: String,
    /// Where it is evaluated.
    pub params: Params,
}

/// Parses a query file (see the module docs).
pub fn parse(text: &str) -> Result<Vec<Template>> {
    let mut out = Vec::new();
    let mut category = String::from("uncategorised");
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(c) = line.strip_prefix("## ") {
            category = c.trim().to_string();
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (only, q) = if let Some(q) = line.strip_prefix("instant:") {
            (Only::Instant, q.trim())
        } else if let Some(q) = line.strip_prefix("range:") {
            (Only::Range, q.trim())
        } else {
            (Only::Both, line)
        };
        if q.is_empty() {
            bail!("line {}: empty query", i + 1);
        }
        // Catch typos in variables now rather than at expansion.
        substitute(q, 0, 0).with_context(|| format!("line {}", i + 1))?;
        out.push(Template {
            line: i + 1,
            category: category.clone(),
            text: q.to_string(),
            only,
        });
    }
    Ok(out)
}

/// Parses a PromQL-style duration (`1h30m`, `90s`, `500ms`), ms.
pub fn parse_duration(s: &str) -> Result<i64> {
    let re = Regex::new(r"^(?:(\d+)(ms|s|m|h|d))+$").expect("static regex");
    if !re.is_match(s) {
        bail!("bad duration {s:?}");
    }
    let part = Regex::new(r"(\d+)(ms|s|m|h|d)").expect("static regex");
    let mut ms = 0i64;
    for c in part.captures_iter(s) {
        let n: i64 = c[1].parse()?;
        ms += n * match &c[2] {
            "ms" => 1,
            "s" => SEC,
            "m" => MIN,
            "h" => 60 * MIN,
            _ => 24 * 60 * MIN,
        };
    }
    Ok(ms)
}

/// Replaces `${start}`, `${end}`, `${start+DUR}`, `${end-DUR}` with Unix seconds. Other
/// `${…}` (label_replace's `${1}`) stay as they are.
pub fn substitute(q: &str, start_ms: i64, end_ms: i64) -> Result<String> {
    let re = Regex::new(r"\$\{([^}]*)\}").expect("static regex");
    let var = Regex::new(r"^(start|end)(?:([+-])(.+))?$").expect("static regex");
    let mut out = String::with_capacity(q.len());
    let mut last = 0;
    for c in re.captures_iter(q) {
        let m = c.get(0).expect("group 0");
        out.push_str(&q[last..m.start()]);
        let body: String = c[1].chars().filter(|c| !c.is_whitespace()).collect();
        if body.starts_with(|c: char| c.is_ascii_digit()) {
            // Not ours: `${1}` in a label_replace replacement.
            out.push_str(m.as_str());
            last = m.end();
            continue;
        }
        let Some(v) = var.captures(&body) else {
            bail!("unknown variable ${{{body}}}: use start, end, start+DUR or end-DUR");
        };
        let mut t = if &v[1] == "start" { start_ms } else { end_ms };
        if let (Some(sign), Some(d)) = (v.get(2), v.get(3)) {
            let d = parse_duration(d.as_str())?;
            t += if sign.as_str() == "+" { d } else { -d };
        }
        out.push_str(&api_time(t));
        last = m.end();
    }
    out.push_str(&q[last..]);
    Ok(out)
}

/// Instant evaluation times for a data set spanning `[start, end]`, with what each probes.
pub fn instant_times(start: i64, end: i64) -> Vec<(i64, &'static str)> {
    vec![
        (start, "the first sample: ranges hold one sample"),
        (start + 5 * MIN, "a [5m] range starts exactly at the first sample"),
        (
            start + 30 * MIN,
            "exactly at a sample of the 15 s and 30 s series",
        ),
        (
            start + 40 * MIN + 7_500,
            "between samples, just after a counter reset",
        ),
        (start + 50 * MIN + 1, "1 ms after a staleness marker's timestamp"),
        (start + 70 * MIN + 1, "1 ms after a sample, a histogram reset"),
        (end, "the last sample"),
        (end + 4 * MIN + 59_999, "lookback almost out"),
        (end + 6 * MIN, "beyond the data: lookback ran out"),
    ]
}

/// Range query windows for a data set spanning `[start, end]`.
pub fn ranges(start: i64, end: i64) -> Vec<Params> {
    let r = |a: i64, b: i64, step: i64| Params::Range {
        start_ms: a,
        end_ms: b,
        step_ms: step,
    };
    vec![
        // Resets at 35m, 37m, 40m, staleness at 50m, histogram reset at 70m.
        r(start + 25 * MIN, start + 55 * MIN, 15 * SEC),
        // All of it, from before the first to after the last sample.
        r(start - 5 * MIN, end + 10 * MIN, 60 * SEC),
        // An irregular step starting between samples.
        r(start + 29 * MIN + 59 * SEC + 500, start + 52 * MIN, 7 * SEC),
        // Coarse, over everything.
        r(start - 10 * MIN, end + 15 * MIN, 5 * MIN),
        // The 12-minute gap (80m–92m), the histogram reset and the +Inf spike.
        r(start + 58 * MIN, start + 100 * MIN, 30 * SEC),
    ]
}

/// Expands `templates` into cases for a data set spanning `[start, end]`; only templates
/// whose text or category matches `filter`, if given.
pub fn expand(templates: &[Template], start: i64, end: i64, filter: Option<&Regex>) -> Result<Vec<Case>> {
    let instants = instant_times(start, end);
    let windows = ranges(start, end);
    let mut out = Vec::new();
    for (ti, t) in templates.iter().enumerate() {
        if let Some(f) = filter
            && !f.is_match(&t.text)
            && !f.is_match(&t.category)
        {
            continue;
        }
        let query = substitute(&t.text, start, end).with_context(|| format!("line {}", t.line))?;
        if t.only != Only::Range {
            for &(time_ms, _) in &instants {
                out.push(Case {
                    template: ti,
                    query: query.clone(),
                    params: Params::Instant { time_ms },
                });
            }
        }
        if t.only != Only::Instant {
            for &params in &windows {
                out.push(Case {
                    template: ti,
                    query: query.clone(),
                    params,
                });
            }
        }
    }
    Ok(out)
}

/// Whether the query's outermost call is `sort` or `sort_desc` (so the order of its instant
/// vector result is part of the answer). Parentheses around the whole query are looked
/// through; string literals are skipped when matching parentheses.
pub fn is_sort_query(q: &str) -> bool {
    let mut q = q.trim();
    loop {
        if q.starts_with('(') && closing_paren(q, 0) == Some(q.len() - 1) {
            q = q[1..q.len() - 1].trim();
            continue;
        }
        break;
    }
    let Some(open) = q.find('(') else {
        return false;
    };
    let name = q[..open].trim();
    (name == "sort" || name == "sort_desc") && closing_paren(q, open) == Some(q.len() - 1)
}

/// The byte index of the parenthesis closing the one at `open`.
fn closing_paren(q: &str, open: usize) -> Option<usize> {
    let b = q.as_bytes();
    let mut depth = 0usize;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'(' => depth += 1,
            b')' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            quote @ (b'"' | b'\'' | b'`') => {
                i += 1;
                while i < b.len() && b[i] != quote {
                    if b[i] == b'\\' && quote != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_categories_prefixes_and_comments() {
        let t = parse("# c\n## agg\nsum(x)\n\ninstant: x @ ${end}\n## fn\nrange:  rate(x[5m])\n").unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(
            (t[0].line, t[0].category.as_str(), t[0].only),
            (3, "agg", Only::Both)
        );
        assert_eq!((t[1].text.as_str(), t[1].only), ("x @ ${end}", Only::Instant));
        assert_eq!(
            (t[2].category.as_str(), t[2].text.as_str(), t[2].only),
            ("fn", "rate(x[5m])", Only::Range)
        );
        assert!(parse("x @ ${stat}").is_err());
    }

    #[test]
    fn substitutes_variables() {
        let s = 1_700_000_000_000;
        let e = s + 3_600_000;
        let c = |q: &str| substitute(q, s, e).unwrap();
        assert_eq!(c("x @ ${start}"), "x @ 1700000000.000");
        assert_eq!(c("x @ ${ end - 1m30s }"), "x @ 1700003510.000");
        assert_eq!(c("x @ ${start+500ms} offset 1m"), "x @ 1700000000.500 offset 1m");
        assert_eq!(c("no vars"), "no vars");
        assert_eq!(
            c(r#"label_replace(up, "a", "${1}x", "b", "(.*)") @ ${end}"#),
            r#"label_replace(up, "a", "${1}x", "b", "(.*)") @ 1700003600.000"#
        );
        assert!(substitute("${starts}", s, e).is_err());
        assert!(substitute("${start+1x}", s, e).is_err());
    }

    #[test]
    fn formats_times() {
        assert_eq!(api_time(1_700_000_000_500), "1700000000.500");
        assert_eq!(api_time(-1), "-1.999");
        assert_eq!(fmt_duration(90_500), "1m30.5s");
        assert_eq!(fmt_duration(3_600_000 + 7_000), "1h7s");
        assert_eq!(rel_time(1000, 61_000), "S-1m");
        let f = Params::Range {
            start_ms: 0,
            end_ms: 60_000,
            step_ms: 7_000,
        }
        .form();
        assert_eq!(f[2], ("step", "7".to_string()));
    }

    #[test]
    fn expands_every_template_at_every_time() {
        let t = parse("a\ninstant: b\nrange: c\n").unwrap();
        let n_i = instant_times(0, 1).len();
        let n_r = ranges(0, 1).len();
        assert_eq!(expand(&t, 0, 1, None).unwrap().len(), 2 * n_i + 2 * n_r);
        let f = Regex::new("^b$").unwrap();
        assert_eq!(expand(&t, 0, 1, Some(&f)).unwrap().len(), n_i);
    }

    #[test]
    fn recognises_sort_queries() {
        let yes = [
            "sort(x)",
            " sort_desc (sum by (a) (x)) ",
            "((sort(x)))",
            "sort(label_replace(x, \"a\", \")\", \"b\", \"(.*)\"))",
        ];
        let no = [
            "sort(x) + 1",
            "sum(sort(x))",
            "sorted(x)",
            "x",
            "sort(x) or sort(y)",
            "(sort(x)) * 2",
        ];
        for q in yes {
            assert!(is_sort_query(q), "{q}");
        }
        for q in no {
            assert!(!is_sort_query(q), "{q}");
        }
    }
}
