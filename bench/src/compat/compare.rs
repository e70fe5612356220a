//! Comparing two answers to the same query.
//!
//! The rules (an empty list of differences means the answers agree):
//! - Errors against errors: both must fail, with the same `errorType`; messages may differ.
//! - Results: the same `resultType`; label sets exactly; timestamps exactly; values within
//!   a relative tolerance of 1e-9 ([`values_match`]: NaN equals NaN, infinities equal by sign).
//! - Vectors and matrices are compared as sets keyed by label set: the order of series is not
//!   part of the answer, except for an instant vector whose outermost function is `sort` or
//!   `sort_desc`: there the sequence of values must match too (series with equal values may
//!   come in either order, since Prometheus' sort does not order ties).
//! - A label set twice in one answer is a difference (a correct answer never has one).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::client::{Answer, LabelSet, MatrixSeries, QueryValue, VectorSample};

/// Relative tolerance for values.
pub const TOLERANCE: f64 = 1e-9;

/// Whether two sample values agree: both NaN, equal (infinities by sign), or within
/// [`TOLERANCE`] of the larger magnitude. As Prometheus' `promqltest` (`almostEqual`), a
/// value compared with exactly zero must be within the tolerance of the smallest normal
/// float.
pub fn values_match(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    if a.is_infinite() || b.is_infinite() {
        return false;
    }
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 {
        return diff < TOLERANCE * f64::MIN_POSITIVE;
    }
    diff <= TOLERANCE * a.abs().max(b.abs())
}

/// Formats a value for diffs: `NaN`, `+Inf`, `-Inf`, else the shortest round-trip digits
/// (exponent notation for very large or small magnitudes).
pub fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else if v == 0.0 || (1e-4..1e15).contains(&v.abs()) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// `{__name__="x", a="b"}` → `x{a="b"}`, values escaped as PromQL strings.
pub fn fmt_labels(l: &LabelSet) -> String {
    let mut out = l.get("__name__").cloned().unwrap_or_default();
    out.push('{');
    let mut first = true;
    for (k, v) in l.iter().filter(|(k, _)| k.as_str() != "__name__") {
        if !first {
            out.push_str(", ");
        }
        first = false;
        let _ = write!(out, "{k}={v:?}");
    }
    out.push('}');
    out
}

/// How many differing points or series a diff lists before summarising the rest.
const MAX_LINES: usize = 8;

/// The differences between `expected` (the reference) and `got`; empty when they agree.
/// `ordered`: the query is a `sort`/`sort_desc` (see the module docs).
pub fn compare(expected: &Answer, got: &Answer, ordered: bool) -> Vec<String> {
    match (expected, got) {
        (Answer::Broken(e), _) => vec![format!("the reference gave no valid answer: {e}")],
        (_, Answer::Broken(g)) => vec![format!("no valid answer: {g}")],
        (Answer::Err { error_type: a, .. }, Answer::Err { error_type: b, .. }) => {
            if a == b {
                Vec::new()
            } else {
                vec![format!("errorType {b:?}, want {a:?}")]
            }
        }
        (
            Answer::Err {
                error_type, error, ..
            },
            Answer::Ok(v),
        ) => vec![format!(
            "succeeded with a {}, want error {error_type:?} ({error})",
            v.type_name()
        )],
        (
            Answer::Ok(v),
            Answer::Err {
                error_type, error, ..
            },
        ) => vec![format!(
            "failed with {error_type:?} ({error}), want a {}",
            v.type_name()
        )],
        (Answer::Ok(a), Answer::Ok(b)) => compare_values(a, b, ordered),
    }
}

fn compare_values(a: &QueryValue, b: &QueryValue, ordered: bool) -> Vec<String> {
    match (a, b) {
        (QueryValue::Scalar { t: ta, v: va }, QueryValue::Scalar { t: tb, v: vb }) => {
            let mut d = Vec::new();
            if ta != tb {
                d.push(format!("scalar timestamp {tb}, want {ta}"));
            }
            if !values_match(*va, *vb) {
                d.push(format!("scalar {}, want {}", fmt_value(*vb), fmt_value(*va)));
            }
            d
        }
        (QueryValue::String { t: ta, s: sa }, QueryValue::String { t: tb, s: sb }) => {
            let mut d = Vec::new();
            if ta != tb {
                d.push(format!("string timestamp {tb}, want {ta}"));
            }
            if sa != sb {
                d.push(format!("string {sb:?}, want {sa:?}"));
            }
            d
        }
        (QueryValue::Vector(a), QueryValue::Vector(b)) => compare_vectors(a, b, ordered),
        (QueryValue::Matrix(a), QueryValue::Matrix(b)) => compare_matrices(a, b),
        _ => vec![format!("resultType {}, want {}", b.type_name(), a.type_name())],
    }
}

/// Keys both sides by label set; a label set seen twice on one side is reported in `out`.
fn by_labels<'a, T>(
    a: &'a [T],
    b: &'a [T],
    labels: impl Fn(&T) -> &LabelSet,
    out: &mut Vec<String>,
) -> (BTreeMap<&'a LabelSet, &'a T>, BTreeMap<&'a LabelSet, &'a T>) {
    let mut index = |items: &'a [T], who: &str| {
        let mut m = BTreeMap::new();
        for it in items {
            if m.insert(labels(it), it).is_some() {
                out.push(format!("{who}{} twice", fmt_labels(labels(it))));
            }
        }
        m
    };
    let ma = index(a, "the reference has ");
    let mb = index(b, "has ");
    (ma, mb)
}

/// Lists at most [`MAX_LINES`] of `lines` into `out`, then how many more there were.
fn push_capped(out: &mut Vec<String>, lines: Vec<String>) {
    let n = lines.len();
    out.extend(lines.into_iter().take(MAX_LINES));
    if n > MAX_LINES {
        out.push(format!("… and {} more", n - MAX_LINES));
    }
}

fn compare_vectors(a: &[VectorSample], b: &[VectorSample], ordered: bool) -> Vec<String> {
    let mut out = Vec::new();
    let (ma, mb) = by_labels(a, b, |s| &s.labels, &mut out);
    let mut lines = Vec::new();
    for (l, sa) in &ma {
        match mb.get(l) {
            None => lines.push(format!("missing {} {} @{}", fmt_labels(l), fmt_value(sa.v), sa.t)),
            Some(sb) => {
                if sa.t != sb.t {
                    lines.push(format!("{}: timestamp {}, want {}", fmt_labels(l), sb.t, sa.t));
                }
                if !values_match(sa.v, sb.v) {
                    lines.push(format!(
                        "{}: {}, want {}",
                        fmt_labels(l),
                        fmt_value(sb.v),
                        fmt_value(sa.v)
                    ));
                }
            }
        }
    }
    for (l, sb) in &mb {
        if !ma.contains_key(l) {
            lines.push(format!("extra {} {} @{}", fmt_labels(l), fmt_value(sb.v), sb.t));
        }
    }
    if !lines.is_empty() {
        out.push(format!("{} series, want {}", b.len(), a.len()));
    }
    push_capped(&mut out, lines);
    if ordered && out.is_empty() {
        let pos = a.iter().zip(b).position(|(x, y)| !values_match(x.v, y.v));
        if let Some(i) = pos {
            out.push(format!(
                "sort order differs at position {i}: {} {}, want {} {}",
                fmt_labels(&b[i].labels),
                fmt_value(b[i].v),
                fmt_labels(&a[i].labels),
                fmt_value(a[i].v)
            ));
        }
    }
    out
}

fn compare_matrices(a: &[MatrixSeries], b: &[MatrixSeries]) -> Vec<String> {
    let mut out = Vec::new();
    let (ma, mb) = by_labels(a, b, |s| &s.labels, &mut out);
    let mut lines = Vec::new();
    for (l, sa) in &ma {
        let Some(sb) = mb.get(l) else {
            lines.push(format!(
                "missing series {} ({} points)",
                fmt_labels(l),
                sa.points.len()
            ));
            continue;
        };
        let diffs = compare_points(&sa.points, &sb.points);
        if !diffs.is_empty() {
            lines.push(format!("{}: {}", fmt_labels(l), diffs));
        }
    }
    for (l, sb) in &mb {
        if !ma.contains_key(l) {
            lines.push(format!(
                "extra series {} ({} points)",
                fmt_labels(l),
                sb.points.len()
            ));
        }
    }
    if !lines.is_empty() {
        out.push(format!("{} series, want {}", b.len(), a.len()));
    }
    push_capped(&mut out, lines);
    out
}

/// One line describing how two series' points differ ("" if they agree).
fn compare_points(a: &[(i64, f64)], b: &[(i64, f64)]) -> String {
    let mut first = None;
    let mut n = 0;
    let mut i = 0;
    let mut j = 0;
    while i < a.len() || j < b.len() {
        let (pa, pb) = (a.get(i), b.get(j));
        let d = match (pa, pb) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                i += 1;
                j += 1;
                (!values_match(x.1, y.1))
                    .then(|| format!("@{} {}, want {}", x.0, fmt_value(y.1), fmt_value(x.1)))
            }
            (Some(x), Some(y)) if x.0 < y.0 => {
                i += 1;
                Some(format!("missing @{} {}", x.0, fmt_value(x.1)))
            }
            (Some(x), None) => {
                i += 1;
                Some(format!("missing @{} {}", x.0, fmt_value(x.1)))
            }
            (_, Some(y)) => {
                j += 1;
                Some(format!("extra @{} {}", y.0, fmt_value(y.1)))
            }
            (None, None) => None,
        };
        if let Some(d) = d {
            n += 1;
            first.get_or_insert(d);
        }
    }
    match (first, n) {
        (None, _) => String::new(),
        (Some(f), 1) => f,
        (Some(f), n) => format!("{n} of {} points differ, first {f}", a.len().max(b.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::super::client::parse_answer;
    use super::*;

    fn vector(items: &[(&str, f64)]) -> Answer {
        let r: Vec<String> = items
            .iter()
            .map(|(l, v)| format!(r#"{{"metric":{{"a":"{l}"}},"value":[1,"{}"]}}"#, fmt_value(*v)))
            .collect();
        parse_answer(
            200,
            &format!(
                r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
                r.join(",")
            ),
        )
    }

    #[test]
    fn values() {
        let ok = [
            (1.0, 1.0 + 1e-10),
            (f64::NAN, f64::NAN),
            (f64::INFINITY, f64::INFINITY),
            (0.0, -0.0),
            (1e300, 1e300 * (1.0 + 5e-10)),
        ];
        let bad = [
            (1.0, 1.0 + 1e-8),
            (f64::NAN, 1.0),
            (f64::INFINITY, f64::NEG_INFINITY),
            (0.0, 1e-20),
            (f64::INFINITY, f64::MAX),
        ];
        for (a, b) in ok {
            assert!(values_match(a, b) && values_match(b, a), "{a} {b}");
        }
        for (a, b) in bad {
            assert!(!values_match(a, b) && !values_match(b, a), "{a} {b}");
        }
    }

    #[test]
    fn vectors_are_sets_unless_sorted() {
        let a = vector(&[("x", 1.0), ("y", 2.0)]);
        let b = vector(&[("y", 2.0), ("x", 1.0)]);
        assert!(compare(&a, &b, false).is_empty());
        assert!(!compare(&a, &b, true).is_empty());
        // Ties may come in any order.
        let c = vector(&[("x", 1.0), ("y", 1.0)]);
        let d = vector(&[("y", 1.0), ("x", 1.0)]);
        assert!(compare(&c, &d, true).is_empty());
        let e = vector(&[("x", 1.0), ("z", 2.0)]);
        let diff = compare(&a, &e, false);
        assert_eq!(diff[0], "2 series, want 2");
        assert!(
            diff.iter().any(|l| l.starts_with("missing {a=\"y\"}")),
            "{diff:?}"
        );
        assert!(diff.iter().any(|l| l.starts_with("extra {a=\"z\"}")), "{diff:?}");
        let dup = vector(&[("x", 1.0), ("x", 1.0)]);
        assert!(compare(&vector(&[("x", 1.0)]), &dup, false)[0].contains("twice"));
    }

    #[test]
    fn errors_compare_by_type() {
        let e = |t: &str| {
            parse_answer(
                422,
                &format!(r#"{{"status":"error","errorType":"{t}","error":"m"}}"#),
            )
        };
        assert!(compare(&e("execution"), &e("execution"), false).is_empty());
        assert_eq!(
            compare(&e("execution"), &e("bad_data"), false),
            vec![r#"errorType "bad_data", want "execution""#]
        );
        assert!(!compare(&e("bad_data"), &vector(&[]), false).is_empty());
        assert!(!compare(&vector(&[]), &e("bad_data"), false).is_empty());
        assert!(!compare(&vector(&[]), &Answer::Broken("x".into()), false).is_empty());
    }

    #[test]
    fn matrices_point_by_point() {
        let m = |pts: &str| {
            parse_answer(
                200,
                &format!(
                    r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{}},"values":[{pts}]}}]}}}}"#
                ),
            )
        };
        let a = m(r#"[1,"1"],[2,"2"],[3,"NaN"]"#);
        assert!(compare(&a, &m(r#"[1,"1"],[2,"2.0000000000001"],[3,"NaN"]"#), false).is_empty());
        let d = compare(&a, &m(r#"[1,"1"],[3,"NaN"],[4,"1"]"#), false);
        assert!(
            d[1].contains("2 of 3 points differ, first missing @2000 2"),
            "{d:?}"
        );
        let d = compare(
            &a,
            &parse_answer(
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
            ),
            false,
        );
        assert_eq!(d, vec!["resultType vector, want matrix"]);
    }
}
