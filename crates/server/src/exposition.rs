//! Grouping of stored series into [`Family`]s, and the export formats over them: the
//! Prometheus text format 0.0.4 (written by `metricsd_ingest::write_prometheus`), OpenMetrics
//! 1.0 text and our JSON export. Pure functions, no I/O. Sample values are formatted like
//! Go's `strconv.FormatFloat(v, 'g', -1, 64)` (`metricsd_ingest::format_go_g`) in both text
//! formats.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use metricsd_ingest::{FamilyKind, FamilySample, MetricFamily, format_go_g};
use metricsd_model::{Labels, METRIC_NAME};

use crate::collector::Meta;

/// A metric family: one `# TYPE` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// Family name (for counters in Prometheus text, the full `_total` name).
    pub name: String,
    /// counter, gauge, histogram, summary or untyped.
    pub kind: String,
    /// `# HELP` text.
    pub help: Option<String>,
    /// Samples: full labels (`__name__` included) and value, in exposition order.
    pub samples: Vec<(Labels, f64, i64)>,
}

/// Escapes a label value: backslash, double quote and newline.
pub fn escape_label_value(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Groups series (labels, value, timestamp ms) into families using the metric metadata:
/// `x_bucket`/`x_sum`/`x_count` join the family `x` when `x` is a histogram or summary.
pub fn group(series: Vec<(Labels, f64, i64)>, meta: &HashMap<String, Meta>) -> Vec<Family> {
    let mut fams: BTreeMap<String, Family> = BTreeMap::new();
    for (labels, v, t) in series {
        let Some(name) = labels.metric_name() else {
            continue;
        };
        let (fam, kind, help) = match meta.get(name) {
            Some(m) => (name.to_owned(), m.kind.clone(), m.help.clone()),
            None => {
                let parent = ["_bucket", "_sum", "_count"].iter().find_map(|suf| {
                    let base = name.strip_suffix(suf)?;
                    let m = meta.get(base)?;
                    (m.kind == "histogram" || (m.kind == "summary" && *suf != "_bucket")).then_some(m)
                });
                match parent {
                    Some(m) => (m.name.clone(), m.kind.clone(), m.help.clone()),
                    None => (name.to_owned(), "untyped".to_owned(), None),
                }
            }
        };
        fams.entry(fam.clone())
            .or_insert_with(|| Family {
                name: fam,
                kind,
                help,
                samples: Vec::new(),
            })
            .samples
            .push((labels, v, t));
    }
    let mut out: Vec<Family> = fams.into_values().collect();
    for f in &mut out {
        let fname = f.name.clone();
        f.samples.sort_by(|a, b| {
            sort_key(&a.0, &fname)
                .partial_cmp(&sort_key(&b.0, &fname))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
    }
    out
}

/// Order within a family: by the labels that identify the metric (not `__name__`, `le`,
/// `quantile`), then buckets by bound, quantiles, `_sum`, `_count`.
fn sort_key(l: &Labels, fam: &str) -> (Vec<(String, String)>, u8, f64) {
    let ident: Vec<(String, String)> = l
        .iter()
        .filter(|x| !matches!(&*x.name, METRIC_NAME | "le" | "quantile"))
        .map(|x| (x.name.to_string(), x.value.to_string()))
        .collect();
    let name = l.metric_name().unwrap_or_default();
    let suffix = name.strip_prefix(fam).unwrap_or("");
    let le = |k: &str| {
        l.get(k)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::INFINITY)
    };
    let (rank, pos) = match suffix {
        "_bucket" => (1, le("le")),
        "_sum" => (3, 0.0),
        "_count" => (4, 0.0),
        _ if l.get("quantile").is_some() => (2, le("quantile")),
        _ => (0, 0.0),
    };
    (ident, rank, pos)
}

fn write_sample(out: &mut String, labels: &Labels, v: f64) {
    let name = labels.metric_name().unwrap_or_default();
    out.push_str(name);
    let mut first = true;
    for l in labels.iter().filter(|l| &*l.name != METRIC_NAME) {
        out.push(if first { '{' } else { ',' });
        first = false;
        let _ = write!(out, "{}=\"{}\"", l.name, escape_label_value(&l.value));
    }
    if !first {
        out.push('}');
    }
    out.push(' ');
    format_go_g(v, out);
    out.push('\n');
}

fn family_kind(kind: &str) -> FamilyKind {
    match kind {
        "counter" => FamilyKind::Counter,
        "gauge" => FamilyKind::Gauge,
        "histogram" => FamilyKind::Histogram,
        "summary" => FamilyKind::Summary,
        _ => FamilyKind::Unknown,
    }
}

/// `ingest`'s form of a family: samples are named by their suffix of the family name.
/// [`group`] and `aggregate` only put `<family>`, `<family>_bucket`, `_sum` and `_count`
/// series in a family; a series named otherwise becomes an untyped family of its own.
fn to_metric_families(fams: Vec<Family>) -> Vec<MetricFamily> {
    let mut out = Vec::with_capacity(fams.len());
    for f in fams {
        let mut strays = Vec::new();
        let mut samples = Vec::with_capacity(f.samples.len());
        for (labels, value, _) in f.samples {
            let suffix = match labels.metric_name().and_then(|n| n.strip_prefix(f.name.as_str())) {
                Some("") => Some(""),
                Some("_bucket") => Some("_bucket"),
                Some("_sum") => Some("_sum"),
                Some("_count") => Some("_count"),
                _ => None,
            };
            match suffix {
                Some(suffix) => samples.push(FamilySample {
                    suffix,
                    labels,
                    value,
                    timestamp_ms: None,
                }),
                None => strays.push(MetricFamily {
                    name: labels.metric_name().unwrap_or_default().to_owned(),
                    help: None,
                    kind: FamilyKind::Unknown,
                    unit: None,
                    samples: vec![FamilySample {
                        suffix: "",
                        labels,
                        value,
                        timestamp_ms: None,
                    }],
                }),
            }
        }
        out.push(MetricFamily {
            kind: family_kind(&f.kind),
            name: f.name,
            help: f.help,
            unit: None,
            samples,
        });
        out.extend(strays);
    }
    out
}

/// The Prometheus text format 0.0.4, without timestamps.
pub fn write_prometheus(out: &mut String, fams: Vec<Family>) {
    metricsd_ingest::write_prometheus(&to_metric_families(fams), out);
}

/// OpenMetrics 1.0 text, without the final `# EOF` (the caller appends self-metrics first).
/// Counter families are named without `_total`; a counter whose name lacks `_total`
/// is exposed as `unknown`, since OpenMetrics requires the suffix on counter samples.
///
/// Not `metricsd_ingest::write_openmetrics`: that one follows Go's `expfmt` and writes
/// integral values as `2.0` where this API answers `2` (pinned by the API tests), puts
/// `# HELP` before `# TYPE`, and always ends with `# EOF`.
pub fn write_openmetrics(out: &mut String, fams: &[Family]) {
    for f in fams {
        let (name, kind) = match f.kind.as_str() {
            "counter" => match f.name.strip_suffix("_total") {
                Some(base) => (base, "counter"),
                None => (f.name.as_str(), "unknown"),
            },
            "untyped" => (f.name.as_str(), "unknown"),
            k => (f.name.as_str(), k),
        };
        let _ = writeln!(out, "# TYPE {name} {kind}");
        if let Some(h) = &f.help {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(h).replace('"', "\\\""));
        }
        for (l, v, _) in &f.samples {
            write_sample(out, l, *v);
        }
    }
}

/// Converts Prometheus text (our self-metrics) to OpenMetrics: counter `# TYPE` lines drop
/// the `_total` suffix.
pub fn prometheus_to_openmetrics(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            let _ = writeln!(
                out,
                "# TYPE {} counter",
                name.strip_suffix("_total").unwrap_or(name)
            );
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let _ = writeln!(
                out,
                "# HELP {} {help}",
                name.strip_suffix("_total").unwrap_or(name)
            );
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Our JSON export: one object per sample.
pub fn to_json(fams: &[Family]) -> Vec<serde_json::Value> {
    let mut v = Vec::new();
    for f in fams {
        for (l, val, t) in &f.samples {
            let labels: serde_json::Map<String, serde_json::Value> = l
                .iter()
                .filter(|x| &*x.name != METRIC_NAME)
                .map(|x| (x.name.to_string(), serde_json::Value::String(x.value.to_string())))
                .collect();
            v.push(serde_json::json!({
                "name": l.metric_name().unwrap_or_default(),
                "family": f.name,
                "type": f.kind,
                "help": f.help,
                "labels": labels,
                "value": crate::api::num(*val),
                "timestamp": crate::api::rfc3339(*t),
            }));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_family_in_order_with_escaping() {
        let mut meta = HashMap::new();
        meta.insert(
            "rt_seconds".to_owned(),
            Meta {
                name: "rt_seconds".into(),
                kind: "histogram".into(),
                help: Some("Response \\ time\nx".into()),
            },
        );
        let l = |n: &str, le: Option<&str>| {
            let mut p = vec![("__name__", n), ("path", "a\"b")];
            if let Some(le) = le {
                p.push(("le", le));
            }
            Labels::from_pairs(p)
        };
        let series = vec![
            (l("rt_seconds_count", None), 2.0, 0),
            (l("rt_seconds_bucket", Some("+Inf")), 2.0, 0),
            (l("rt_seconds_bucket", Some("10")), 1.0, 0),
            (l("rt_seconds_bucket", Some("2.5")), 1.0, 0),
            (l("rt_seconds_sum", None), 4.5, 0),
            (l("other", None), 1.0, 0),
        ];
        let fams = group(series, &meta);
        let mut s = String::new();
        write_prometheus(&mut s, fams);
        let want = "# TYPE other untyped\nother{path=\"a\\\"b\"} 1\n\
# HELP rt_seconds Response \\\\ time\\nx\n# TYPE rt_seconds histogram\n\
rt_seconds_bucket{le=\"2.5\",path=\"a\\\"b\"} 1\nrt_seconds_bucket{le=\"10\",path=\"a\\\"b\"} 1\n\
rt_seconds_bucket{le=\"+Inf\",path=\"a\\\"b\"} 2\nrt_seconds_sum{path=\"a\\\"b\"} 4.5\nrt_seconds_count{path=\"a\\\"b\"} 2\n";
        assert_eq!(s, want);
    }

    #[test]
    fn values_formatted_like_go() {
        let fam = |kind: &str, name: &str, v: f64| Family {
            name: name.into(),
            kind: kind.into(),
            help: None,
            samples: vec![(Labels::from_pairs([("__name__", name)]), v, 0)],
        };
        let fams = vec![
            fam("counter", "c_total", 2.0),
            fam("gauge", "g", 1e6),
            fam("untyped", "u", 1.5e-7),
        ];
        let mut p = String::new();
        write_prometheus(&mut p, fams.clone());
        assert_eq!(
            p,
            "# TYPE c_total counter\nc_total 2\n# TYPE g gauge\ng 1e+06\n# TYPE u untyped\nu 1.5e-07\n"
        );
        let mut o = String::new();
        write_openmetrics(&mut o, &fams);
        assert_eq!(
            o,
            "# TYPE c counter\nc_total 2\n# TYPE g gauge\ng 1e+06\n# TYPE u unknown\nu 1.5e-07\n"
        );
    }
}
