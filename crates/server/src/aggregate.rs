//! The aggregated export (`/metrics?aggregated=true`): per tracked series, gauges named
//! `<family>_avg`, `_sum`, `_min` and `_max` over the aggregation window (those of the
//! configured `aggregation_types`). Pure functions over samples read by the API; no I/O.
//!
//! What is aggregated, per type of the tracked family:
//! - counters: the increments within the window: `avg` is their total per minute (seed 000:
//!   "Average API requests per minute"), `sum` their total, `min`/`max` the smallest and
//!   largest single increment;
//! - gauges: the samples in the window (mean, sum, min, max);
//! - histograms and summaries: the observations within the window, from the increments of
//!   `_sum` and `_count`: `avg` is the mean observation, `sum` their total, `min`/`max` the
//!   smallest and largest (exact for JSON-tracked series, where each stored sample is one
//!   observation; a sample that adds several counts as their mean).
//!
//! An increment is measured from the previous sample, the first one in the window from the
//! newest sample before the window (its *baseline*). A series without one began inside the
//! window, so its first sample counts whole, from zero: observations 0.1 and 0.3 of a new
//! histogram average 0.2. A value lower than the previous one is a counter reset and counts
//! whole too.

use std::collections::BTreeMap;

use metricsd_model::{Labels, METRIC_NAME, Sample};
use serde::{Deserialize, Serialize};

use metricsd_ingest::{FamilyKind, MetricKind};

use crate::collector::Meta;
use crate::exposition::Family;

/// An aggregation of the aggregated export (seed 000's `aggregation_types`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AggregationType {
    /// `<family>_avg`.
    Avg,
    /// `<family>_sum`.
    Sum,
    /// `<family>_min`.
    Min,
    /// `<family>_max`.
    Max,
}

impl AggregationType {
    /// All of them, in export order (the seed's default).
    pub const ALL: [AggregationType; 4] = [
        AggregationType::Avg,
        AggregationType::Sum,
        AggregationType::Min,
        AggregationType::Max,
    ];

    /// The suffix of its families, without the underscore.
    pub fn as_str(self) -> &'static str {
        match self {
            AggregationType::Avg => "avg",
            AggregationType::Sum => "sum",
            AggregationType::Min => "min",
            AggregationType::Max => "max",
        }
    }
}

impl std::str::FromStr for AggregationType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "avg" => Ok(AggregationType::Avg),
            "sum" => Ok(AggregationType::Sum),
            "min" => Ok(AggregationType::Min),
            "max" => Ok(AggregationType::Max),
            _ => Err(format!("{s:?} is not one of avg, sum, min, max")),
        }
    }
}

/// How a stored series takes part in the aggregation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A tracked counter.
    Counter,
    /// A tracked gauge.
    Gauge,
    /// The `_sum` of a tracked histogram or summary.
    ObservationSum,
    /// The `_count` of a tracked histogram or summary.
    ObservationCount,
}

impl Role {
    /// Whether its increments are aggregated (so it needs a baseline).
    pub fn cumulative(&self) -> bool {
        !matches!(self, Role::Gauge)
    }
}

/// The tracked family a series named `name` belongs to, and its role; `None` for series
/// not aggregated (not tracked through the JSON API, histogram buckets, quantiles).
pub fn role(name: &str, meta: &std::collections::HashMap<String, Meta>) -> Option<(String, Role)> {
    if let Some(m) = meta.get(name) {
        return match m.kind {
            MetricKind::Counter => Some((name.to_owned(), Role::Counter)),
            MetricKind::Gauge => Some((name.to_owned(), Role::Gauge)),
            MetricKind::Histogram | MetricKind::Summary => None,
        };
    }
    [("_sum", Role::ObservationSum), ("_count", Role::ObservationCount)]
        .into_iter()
        .find_map(|(suffix, role)| {
            let base = name.strip_suffix(suffix)?;
            let m = meta.get(base)?;
            matches!(m.kind, MetricKind::Histogram | MetricKind::Summary).then(|| (base.to_owned(), role))
        })
}

/// A series read for aggregation.
#[derive(Debug, Clone)]
pub struct WindowSeries {
    /// Its labels (`__name__` included).
    pub labels: Labels,
    /// For a cumulative series, the newest sample before the window; `None` when it has
    /// none (it began inside the window).
    pub baseline: Option<f64>,
    /// Its samples in the window, oldest first (at least one).
    pub samples: Vec<Sample>,
}

/// The increments of a cumulative series over its samples (see the module docs).
fn increments(baseline: Option<f64>, samples: &[Sample]) -> impl Iterator<Item = (i64, f64)> + '_ {
    let mut prev = baseline.unwrap_or(0.0);
    samples.iter().map(move |s| {
        let d = if s.v >= prev { s.v - prev } else { s.v };
        prev = s.v;
        (s.t, d)
    })
}

/// Running sum, count, minimum and maximum of a set of values.
#[derive(Debug, Clone, Copy)]
struct Acc {
    sum: f64,
    n: f64,
    min: f64,
    max: f64,
}

impl Default for Acc {
    fn default() -> Self {
        Acc {
            sum: 0.0,
            n: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Acc {
    fn add(&mut self, v: f64) {
        self.add_weighted(v, 1.0, v);
    }

    /// Adds `total` made of `n` values whose mean is `each` (min and max see the mean).
    fn add_weighted(&mut self, total: f64, n: f64, each: f64) {
        self.sum += total;
        self.n += n;
        self.min = self.min.min(each);
        self.max = self.max.max(each);
    }
}

/// The kinds of aggregated family, for their help texts.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Observations,
}

fn help(kind: Kind, ty: AggregationType, fam: &str) -> String {
    use AggregationType::*;
    match (kind, ty) {
        (Kind::Counter, Avg) => format!("Average increase per minute of {fam} over the aggregation window"),
        (Kind::Counter, Sum) => format!("Increase of {fam} over the aggregation window"),
        (Kind::Counter, Min) => format!("Smallest increment of {fam} in the aggregation window"),
        (Kind::Counter, Max) => format!("Largest increment of {fam} in the aggregation window"),
        (Kind::Gauge, Avg) => format!("Average of {fam} over the aggregation window"),
        (Kind::Gauge, Sum) => format!("Sum of the samples of {fam} in the aggregation window"),
        (Kind::Gauge, Min) => format!("Minimum of {fam} over the aggregation window"),
        (Kind::Gauge, Max) => format!("Maximum of {fam} over the aggregation window"),
        (Kind::Observations, Avg) => format!("Average observation of {fam} over the aggregation window"),
        (Kind::Observations, Sum) => format!("Sum of the observations of {fam} in the aggregation window"),
        (Kind::Observations, Min) => format!("Smallest observation of {fam} in the aggregation window"),
        (Kind::Observations, Max) => format!("Largest observation of {fam} in the aggregation window"),
    }
}

/// The aggregated families of `series` over a window of `window_ms`, for each of `types`,
/// sorted by name. Values are never `-0` (a zero prints as `0`).
pub fn aggregate(
    series: Vec<WindowSeries>,
    meta: &std::collections::HashMap<String, Meta>,
    window_ms: i64,
    types: &[AggregationType],
) -> Vec<Family> {
    let minutes = window_ms as f64 / 60_000.0;
    let mut types = types.to_vec();
    types.sort();
    types.dedup();
    // Per family and identifying labels (`__name__` set to the family): what to aggregate,
    // and the newest timestamp.
    let mut plain: BTreeMap<(String, Labels), (Kind, Acc, i64)> = BTreeMap::new();
    // Histograms and summaries: per timestamp, the increments of `_sum` and `_count`.
    let mut obs: BTreeMap<(String, Labels), BTreeMap<i64, (f64, f64)>> = BTreeMap::new();
    for s in series {
        let Some((fam, role)) = s.labels.metric_name().and_then(|n| role(n, meta)) else {
            continue;
        };
        let Some(last_t) = s.samples.last().map(|x| x.t) else {
            continue;
        };
        let mut id = s.labels.builder();
        id.set(METRIC_NAME, fam.as_str());
        let key = (fam, id.build());
        match role {
            Role::Gauge => {
                let mut acc = Acc::default();
                s.samples.iter().for_each(|x| acc.add(x.v));
                plain.insert(key, (Kind::Gauge, acc, last_t));
            }
            Role::Counter => {
                let mut acc = Acc::default();
                increments(s.baseline, &s.samples).for_each(|(_, d)| acc.add(d));
                plain.insert(key, (Kind::Counter, acc, last_t));
            }
            Role::ObservationSum | Role::ObservationCount => {
                let steps = obs.entry(key).or_default();
                for (t, d) in increments(s.baseline, &s.samples) {
                    let e = steps.entry(t).or_default();
                    if role == Role::ObservationSum {
                        e.0 += d;
                    } else {
                        e.1 += d;
                    }
                }
            }
        }
    }
    for (key, steps) in obs {
        let mut acc = Acc::default();
        for (sum, count) in steps.values() {
            if *count > 0.0 {
                acc.add_weighted(*sum, *count, sum / count);
            }
        }
        if acc.n > 0.0 {
            let last_t = steps.keys().next_back().copied().unwrap_or(0);
            plain.insert(key, (Kind::Observations, acc, last_t));
        }
    }
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for ((fam, id), (kind, acc, t)) in plain {
        for ty in &types {
            let value = match (ty, kind) {
                (AggregationType::Avg, Kind::Counter) => acc.sum / minutes,
                (AggregationType::Avg, _) => acc.sum / acc.n,
                (AggregationType::Sum, _) => acc.sum,
                (AggregationType::Min, _) => acc.min,
                (AggregationType::Max, _) => acc.max,
            };
            let name = format!("{fam}_{}", ty.as_str());
            let mut l = id.builder();
            l.set(METRIC_NAME, name.as_str());
            out.entry(name.clone())
                .or_insert_with(|| Family {
                    name,
                    kind: FamilyKind::Gauge,
                    help: Some(help(kind, *ty, &fam)),
                    samples: Vec::new(),
                })
                .samples
                // `+ 0.0` turns a negative zero into zero.
                .push((l.build(), value + 0.0, t));
        }
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn meta(kinds: &[(&str, &str)]) -> HashMap<String, Meta> {
        kinds
            .iter()
            .map(|(n, k)| {
                (
                    n.to_string(),
                    Meta {
                        name: n.to_string(),
                        kind: MetricKind::parse(k).expect("a test kind"),
                        help: None,
                    },
                )
            })
            .collect()
    }

    fn ws(name: &str, baseline: Option<f64>, samples: &[(i64, f64)]) -> WindowSeries {
        WindowSeries {
            labels: Labels::from_pairs([(METRIC_NAME, name), ("svc", "a")]),
            baseline,
            samples: samples.iter().map(|(t, v)| Sample { t: *t, v: *v }).collect(),
        }
    }

    fn value(fams: &[Family], name: &str) -> Option<f64> {
        fams.iter().find(|f| f.name == name).map(|f| f.samples[0].1)
    }

    const W: i64 = 300_000;

    /// A histogram born in the window: both observations count (0.1 and 0.3 average 0.2,
    /// not 0.30000000000000004 as when the first was lost).
    #[test]
    fn observations_of_a_new_histogram() {
        let m = meta(&[("rt_seconds", "histogram")]);
        let series = vec![
            ws("rt_seconds_sum", None, &[(1, 0.1), (2, 0.1 + 0.3)]),
            ws("rt_seconds_count", None, &[(1, 1.0), (2, 2.0)]),
        ];
        let f = aggregate(series, &m, W, &AggregationType::ALL);
        assert_eq!(value(&f, "rt_seconds_avg"), Some(0.2));
        assert_eq!(value(&f, "rt_seconds_sum"), Some(0.4));
        assert_eq!(value(&f, "rt_seconds_min"), Some(0.1));
        let max = value(&f, "rt_seconds_max").unwrap();
        assert!((max - 0.3).abs() < 1e-12, "{max}");
        let one = vec![
            ws("rt_seconds_sum", None, &[(1, 0.042)]),
            ws("rt_seconds_count", None, &[(1, 1.0)]),
        ];
        let f = aggregate(one, &m, W, &[AggregationType::Avg]);
        assert_eq!(value(&f, "rt_seconds_avg"), Some(0.042));
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].samples[0].0,
            Labels::from_pairs([(METRIC_NAME, "rt_seconds_avg"), ("svc", "a")])
        );
    }

    /// A summary older than the window: only the increments since the baseline count.
    #[test]
    fn observations_since_the_baseline() {
        let m = meta(&[("rpc_seconds", "summary")]);
        let series = vec![
            ws("rpc_seconds_sum", Some(10.0), &[(1, 10.5), (2, 12.0)]),
            ws("rpc_seconds_count", Some(7.0), &[(1, 8.0), (2, 9.0)]),
            // Quantiles are not aggregated.
            ws("rpc_seconds", None, &[(1, 3.0)]),
        ];
        let f = aggregate(series, &m, W, &AggregationType::ALL);
        assert_eq!(value(&f, "rpc_seconds_avg"), Some(1.0));
        assert_eq!(value(&f, "rpc_seconds_sum"), Some(2.0));
        assert_eq!(value(&f, "rpc_seconds_min"), Some(0.5));
        assert_eq!(value(&f, "rpc_seconds_max"), Some(1.5));
        assert_eq!(f.len(), 4);
    }

    /// Counters: per minute, reset-aware, never `-0`; gauges: plain statistics.
    #[test]
    fn counters_and_gauges() {
        let m = meta(&[("jobs_total", "counter"), ("depth", "gauge")]);
        let series = vec![
            ws("jobs_total", Some(5.0), &[(1, 5.0)]),
            ws("depth", None, &[(1, 2.0), (2, -4.0), (3, 5.0)]),
        ];
        let f = aggregate(series, &m, W, &AggregationType::ALL);
        let avg = value(&f, "jobs_total_avg").unwrap();
        assert!(avg == 0.0 && avg.is_sign_positive(), "{avg}");
        assert_eq!(value(&f, "depth_avg"), Some(1.0));
        assert_eq!(value(&f, "depth_sum"), Some(3.0));
        assert_eq!(value(&f, "depth_min"), Some(-4.0));
        assert_eq!(value(&f, "depth_max"), Some(5.0));
        // Born in the window: 10 increments of 1 (the first from zero), 2 per minute.
        let s: Vec<(i64, f64)> = (1..=10).map(|i| (i, i as f64)).collect();
        let f = aggregate(vec![ws("jobs_total", None, &s)], &m, W, &AggregationType::ALL);
        assert_eq!(value(&f, "jobs_total_avg"), Some(2.0));
        assert_eq!(value(&f, "jobs_total_sum"), Some(10.0));
        assert_eq!(value(&f, "jobs_total_max"), Some(1.0));
        // A reset counts the value after it whole.
        let f = aggregate(
            vec![ws("jobs_total", Some(8.0), &[(1, 10.0), (2, 3.0)])],
            &m,
            W,
            &[AggregationType::Sum, AggregationType::Min],
        );
        assert_eq!(value(&f, "jobs_total_sum"), Some(5.0));
        assert_eq!(value(&f, "jobs_total_min"), Some(2.0));
        assert_eq!(value(&f, "jobs_total_avg"), None);
    }

    #[test]
    fn roles() {
        let m = meta(&[("h", "histogram"), ("s", "summary"), ("c_total", "counter")]);
        assert_eq!(role("h_sum", &m), Some(("h".into(), Role::ObservationSum)));
        assert_eq!(role("s_count", &m), Some(("s".into(), Role::ObservationCount)));
        assert_eq!(role("h_bucket", &m), None);
        assert_eq!(role("h", &m), None);
        assert_eq!(role("c_total", &m), Some(("c_total".into(), Role::Counter)));
        assert_eq!(role("other", &m), None);
    }
}
