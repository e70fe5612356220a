//! The series a track item writes: its key, base labels, and the derived series of histograms and summaries.

use super::*;

/// The item's series as sorted (name, value) pairs with the semantics of
/// [`Labels::from_pairs`] (last value wins, empty values dropped), and a 128-bit hash of
/// them: the collector's key for the series.
pub(super) fn series_key<'i>(item: &'i TrackItem<'_>) -> (u128, smallvec::SmallVec<[(&'i str, &'i str); 8]>) {
    let mut pairs: smallvec::SmallVec<[(&'i str, &'i str); 8]> = smallvec::SmallVec::new();
    pairs.push((METRIC_NAME, &item.name));
    for (k, v) in &item.labels {
        pairs.push((k, v));
    }
    if let Some(s) = &item.service {
        pairs.push((SERVICE_LABEL, s));
    }
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut out: smallvec::SmallVec<[(&'i str, &'i str); 8]> = smallvec::SmallVec::new();
    for p in pairs {
        match out.last_mut() {
            Some(last) if last.0 == p.0 => *last = p,
            _ => out.push(p),
        }
    }
    out.retain(|p| !p.1.is_empty());
    let h = metricsd_model::with_pair_bytes(out.iter().copied(), xxhash_rust::xxh3::xxh3_128);
    (h, out)
}

pub(super) fn same_labels(l: &Labels, pairs: &[(&str, &str)]) -> bool {
    l.len() == pairs.len()
        && l.iter()
            .zip(pairs)
            .all(|(a, b)| &*a.name == b.0 && &*a.value == b.1)
}

/// The labels of the item's series: `__name__`, its labels, and `service_name` from the
/// `service` field.
pub fn base_labels(item: &TrackItem<'_>) -> Labels {
    let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(item.labels.len() + 2);
    pairs.push((METRIC_NAME, &item.name));
    for (k, v) in &item.labels {
        pairs.push((k, v));
    }
    if let Some(s) = &item.service {
        pairs.push((SERVICE_LABEL, s));
    }
    Labels::from_pairs(pairs)
}

pub(super) fn with_name(base: &Labels, name: &str, extra: Option<(&str, String)>) -> Labels {
    let mut b = base.builder();
    b.set(METRIC_NAME, name);
    if let Some((k, v)) = extra {
        b.set(k, v);
    }
    b.build()
}

/// Labels of a histogram's series: one `_bucket` per bound, `+Inf`, `_sum`, `_count`.
pub(super) fn hist_series(base: &Labels, name: &str, bounds: &[f64]) -> Vec<Labels> {
    let bucket = format!("{name}_bucket");
    let mut v: Vec<Labels> = bounds
        .iter()
        .map(|b| with_name(base, &bucket, Some(("le", go_float(*b)))))
        .collect();
    v.push(with_name(base, &bucket, Some(("le", "+Inf".into()))));
    v.push(with_name(base, &format!("{name}_sum"), None));
    v.push(with_name(base, &format!("{name}_count"), None));
    v
}

/// Labels of a summary's series: one per quantile, `_sum`, `_count`.
pub(super) fn summary_series(base: &Labels, name: &str) -> Vec<Labels> {
    let mut v: Vec<Labels> = QUANTILES
        .iter()
        .map(|q| with_name(base, name, Some(("quantile", go_float(*q)))))
        .collect();
    v.push(with_name(base, &format!("{name}_sum"), None));
    v.push(with_name(base, &format!("{name}_count"), None));
    v
}

/// How many series an item writes (for the series limit).
pub(super) fn derived_count(item: &TrackItem<'_>) -> usize {
    match item.kind {
        MetricKind::Counter | MetricKind::Gauge => 1,
        MetricKind::Histogram => item.buckets.as_ref().map_or(DEFAULT_BUCKETS.len(), Vec::len) + 3,
        MetricKind::Summary => QUANTILES.len() + 2,
    }
}
