//! Seed 000's naming policy for track items.

use super::*;

/// Checks seed 002's conventions: counters end in `_total`; histograms and summaries do
/// not; base units (`_seconds`, `_bytes`, `_ratio`) instead of scaled ones.
pub fn naming_violation(item: &TrackItem<'_>) -> Option<String> {
    let n: &str = &item.name;
    if item.kind == MetricKind::Counter && !n.ends_with("_total") {
        return Some(format!("counter {n:?} should end in _total"));
    }
    if item.kind != MetricKind::Counter && n.ends_with("_total") {
        return Some(format!(
            "{} {n:?} should not end in _total (reserved for counters)",
            item.kind.as_str()
        ));
    }
    const SCALED: &[(&str, &str)] = &[
        ("_milliseconds", "_seconds"),
        ("_millis", "_seconds"),
        ("_ms", "_seconds"),
        ("_microseconds", "_seconds"),
        ("_minutes", "_seconds"),
        ("_hours", "_seconds"),
        ("_kilobytes", "_bytes"),
        ("_megabytes", "_bytes"),
        ("_gigabytes", "_bytes"),
        ("_kb", "_bytes"),
        ("_mb", "_bytes"),
        ("_percent", "_ratio"),
    ];
    let stem = n.strip_suffix("_total").unwrap_or(n);
    for (bad, good) in SCALED {
        if stem.ends_with(bad) || stem.contains(&format!("{bad}_")) {
            return Some(format!(
                "{n:?} uses the unit suffix {bad}; use base units ({good})"
            ));
        }
    }
    None
}

pub(super) fn check_naming(
    policy: NamingPolicy,
    item: &TrackItem<'_>,
    metrics: &SelfMetrics,
) -> Result<(), ApiError> {
    if policy == NamingPolicy::Off {
        return Ok(());
    }
    if let Some(msg) = naming_violation(item) {
        metrics.naming_violations.inc();
        if policy == NamingPolicy::Enforce {
            return Err(ApiError {
                code: "naming_policy",
                ..ApiError::field("name", msg)
            });
        }
        tracing::warn!(metric_name = %item.name, violation = %msg, "naming policy violation");
    }
    Ok(())
}
