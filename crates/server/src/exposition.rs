//! Grouping of stored series into [`Family`]s, their conversion to the one text writer's
//! families ([`to_metric_families`]: `metricsd_ingest::write_prometheus` and
//! `write_openmetrics` write both text formats, for tracked series and self-metrics alike,
//! as Go's `expfmt` does), and our JSON export. Pure functions, no I/O.

use std::collections::{BTreeMap, HashMap};

use metricsd_ingest::{FamilyKind, FamilySample, MetricFamily, MetricKind};
use metricsd_model::{Labels, METRIC_NAME};

use crate::collector::Meta;

/// A metric family: one `# TYPE` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// Family name (for counters in Prometheus text, the full `_total` name).
    pub name: String,
    /// Its type (`Unknown` for series not tracked through the JSON API).
    pub kind: FamilyKind,
    /// `# HELP` text.
    pub help: Option<String>,
    /// Samples: full labels (`__name__` included) and value, in exposition order.
    pub samples: Vec<(Labels, f64, i64)>,
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
            Some(m) => (name.to_owned(), FamilyKind::from(m.kind), m.help.clone()),
            None => {
                let parent = ["_bucket", "_sum", "_count"].iter().find_map(|suf| {
                    let base = name.strip_suffix(suf)?;
                    let m = meta.get(base)?;
                    (m.kind == MetricKind::Histogram || (m.kind == MetricKind::Summary && *suf != "_bucket"))
                        .then_some(m)
                });
                match parent {
                    Some(m) => (m.name.clone(), FamilyKind::from(m.kind), m.help.clone()),
                    None => (name.to_owned(), FamilyKind::Unknown, None),
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
            let (a, b) = (sort_key(&a.0, &fname), sort_key(&b.0, &fname));
            // A NaN position (`le="NaN"`, `quantile="+NaN"`) sorts last: `partial_cmp`
            // alone orders no NaN, and a sort given a comparison that is not an order may
            // panic.
            a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then_with(|| {
                a.2.partial_cmp(&b.2)
                    .unwrap_or_else(|| a.2.is_nan().cmp(&b.2.is_nan()))
            })
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

/// The `# HELP` text of a family tracked without one: `<name> (<type>)`, so that every
/// family of the text exports has a `# HELP` line (seed 000's exports always show one).
pub fn generated_help(name: &str, kind: &str) -> String {
    format!("{name} ({kind})")
}

/// `ingest`'s form of a family: samples are named by their suffix of the family name.
/// [`group`] and `aggregate` only put `<family>`, `<family>_bucket`, `_sum` and `_count`
/// series in a family; a series named otherwise becomes an untyped family of its own.
/// Every family gets a help text: the tracked one, else [`generated_help`].
pub fn to_metric_families(fams: Vec<Family>) -> Vec<MetricFamily> {
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
                    help: Some(generated_help(
                        labels.metric_name().unwrap_or_default(),
                        "untyped",
                    )),
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
        let help = f.help.unwrap_or_else(|| generated_help(&f.name, f.kind.name()));
        out.push(MetricFamily {
            kind: f.kind,
            name: f.name,
            help: Some(help),
            unit: None,
            samples,
        });
        out.extend(strays);
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
                "type": f.kind.name(),
                "help": f.help,
                "labels": labels,
                "value": crate::json::num(*val),
                "timestamp": crate::time::rfc3339(*t),
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
                kind: MetricKind::Histogram,
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
        metricsd_ingest::write_prometheus(&to_metric_families(fams), &mut s);
        let want = "# HELP other other (untyped)\n# TYPE other untyped\nother{path=\"a\\\"b\"} 1\n\
# HELP rt_seconds Response \\\\ time\\nx\n# TYPE rt_seconds histogram\n\
rt_seconds_bucket{le=\"2.5\",path=\"a\\\"b\"} 1\nrt_seconds_bucket{le=\"10\",path=\"a\\\"b\"} 1\n\
rt_seconds_bucket{le=\"+Inf\",path=\"a\\\"b\"} 2\nrt_seconds_sum{path=\"a\\\"b\"} 4.5\nrt_seconds_count{path=\"a\\\"b\"} 2\n";
        assert_eq!(s, want);
    }

    /// A family with a NaN among its samples' positions (22 gauges tracked with a `quantile`
    /// label, one of them `"+NaN"`), in the store's order: the sort compared positions with
    /// `partial_cmp` alone, which orders no NaN, and panicked on it ("user-provided
    /// comparison function does not correctly implement a total order"), failing the
    /// tenant's `GET /metrics`. A NaN position sorts last.
    #[test]
    fn a_nan_position_sorts_last_without_a_panic() {
        let mut meta = HashMap::new();
        meta.insert(
            "lat".to_owned(),
            Meta {
                name: "lat".into(),
                kind: MetricKind::Gauge,
                help: None,
            },
        );
        let mut series: Vec<(Labels, f64, i64)> = (1..=20)
            .map(|i| (i * 5).to_string())
            .chain(["+Inf".to_owned(), "+NaN".to_owned()])
            .map(|q| {
                (
                    Labels::from_pairs([("__name__", "lat"), ("quantile", q.as_str())]),
                    1.0,
                    0,
                )
            })
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        let fams = group(series, &meta);
        let qs: Vec<&str> = fams[0]
            .samples
            .iter()
            .map(|s| s.0.get("quantile").unwrap())
            .collect();
        let want: Vec<String> = (1..=20)
            .map(|i| (i * 5).to_string())
            .chain(["+Inf".to_owned(), "+NaN".to_owned()])
            .collect();
        assert_eq!(qs, want);
    }

    /// Floats as Prometheus' `expfmt` writes them: Go's shortest `%g` in the text format
    /// (`2`, `1e+06`), `.0` on integral values in OpenMetrics except counts, and counters
    /// without `_total` as `unknown` in OpenMetrics.
    #[test]
    fn values_formatted_like_expfmt() {
        let fam = |kind: &str, name: &str, v: f64| Family {
            name: name.into(),
            kind: MetricKind::parse(kind).map_or(FamilyKind::Unknown, FamilyKind::from),
            help: None,
            samples: vec![(Labels::from_pairs([("__name__", name)]), v, 0)],
        };
        let fams = vec![
            fam("counter", "c_total", 2.0),
            fam("counter", "c2", 3.0),
            fam("gauge", "g", 1e6),
            fam("untyped", "u", 1.5e-7),
            fam("histogram", "h", 1.0),
        ];
        let fams = to_metric_families(fams);
        let mut p = String::new();
        metricsd_ingest::write_prometheus(&fams, &mut p);
        assert_eq!(
            p,
            "# HELP c_total c_total (counter)\n# TYPE c_total counter\nc_total 2\n\
# HELP c2 c2 (counter)\n# TYPE c2 counter\nc2 3\n# HELP g g (gauge)\n# TYPE g gauge\ng 1e+06\n\
# HELP u u (untyped)\n# TYPE u untyped\nu 1.5e-07\n# HELP h h (histogram)\n# TYPE h histogram\nh 1\n"
        );
        let mut o = String::new();
        metricsd_ingest::write_openmetrics(&fams, &mut o);
        assert_eq!(
            o,
            "# HELP c c_total (counter)\n# TYPE c counter\nc_total 2.0\n\
# HELP c2 c2 (counter)\n# TYPE c2 unknown\nc2 3.0\n# HELP g g (gauge)\n# TYPE g gauge\ng 1e+06\n\
# HELP u u (untyped)\n# TYPE u unknown\nu 1.5e-07\n# HELP h h (histogram)\n# TYPE h histogram\nh 1.0\n# EOF\n"
        );
    }
}
