//! Metric metadata (type, help, unit) that remote_write senders deliver, for
//! `/api/v1/metadata`.
//!
//! Prometheus sends its targets' metadata over remote_write about once a minute
//! (`metadata_config.send_interval`). Grafana's query editor reads `/api/v1/metadata` for
//! type and help hints, so a metricsd fed by Prometheus would show none without this.
//!
//! # Decisions
//! - **In memory, not persisted.** Senders resend all of it every minute, so after a restart
//!   it is whole again within one interval. Persisting it would add a write on every
//!   request for a value that is already on its way again.
//! - **The newest entry per family wins.** Entries are kept per tenant and family name, so
//!   two targets that disagree on a family show the one that was sent last.
//! - **Separate from the JSON API's metadata.** The JSON API's types decide what a metric
//!   name may be tracked as; remote_write's do not. A family named by both APIs is
//!   listed with both entries, as Prometheus lists a family's distinct entries.
//! - **Only for tenants that exist.** The server records a request's metadata only once the
//!   tenant exists in the store (a write with samples created it), so the tenants kept here
//!   are bounded by `max_tenants`, and reads (`of`) create nothing. Metadata sent for a
//!   tenant before its first samples is dropped; senders resend it every minute.
//! - **Bounded.** A tenant keeps at most [`MAX_FAMILIES`] families. Beyond that, new names
//!   are dropped (and counted), and names it already holds are still updated. An entry whose
//!   family name is not a valid metric name is dropped. Help longer than
//!   [`metricsd_ingest::MAX_HELP_LENGTH`] bytes is cut at a character boundary, and so is
//!   a unit longer than [`MAX_UNIT_LENGTH`].

use std::collections::HashMap;

use metricsd_ingest::{MAX_HELP_LENGTH, MetricMetadata, metric_metadata::MetricType};
use parking_lot::Mutex;

/// Most metric families remembered per tenant.
pub const MAX_FAMILIES: usize = 100_000;
/// Longest unit kept, in bytes.
pub const MAX_UNIT_LENGTH: usize = 64;

/// One family's metadata as `/api/v1/metadata` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `counter`, `gauge`, `histogram`, `gaugehistogram`, `summary`, `info`, `stateset`
    /// or `unknown`.
    pub kind: &'static str,
    /// Help text.
    pub help: String,
    /// Unit, e.g. `seconds`.
    pub unit: String,
}

/// Metadata received over remote_write, per tenant and family name.
#[derive(Debug, Default)]
pub struct RemoteMetadata {
    tenants: Mutex<HashMap<String, HashMap<String, Entry>>>,
}

impl RemoteMetadata {
    /// Records a request's metadata for `tenant`; returns how many entries were dropped
    /// (invalid name, or the tenant is at [`MAX_FAMILIES`]).
    pub fn record(&self, tenant: &str, metadata: &[MetricMetadata]) -> usize {
        if metadata.is_empty() {
            return 0;
        }
        let mut tenants = self.tenants.lock();
        let families = tenants.entry(tenant.to_owned()).or_default();
        let mut dropped = 0;
        for m in metadata {
            let name = m.metric_family_name.as_str();
            if !metricsd_model::is_valid_metric_name(name) {
                dropped += 1;
                continue;
            }
            let entry = Entry {
                kind: kind_name(m.r#type),
                help: truncated(&m.help, MAX_HELP_LENGTH),
                unit: truncated(&m.unit, MAX_UNIT_LENGTH),
            };
            let full = families.len() >= MAX_FAMILIES;
            match families.get_mut(name) {
                Some(e) => *e = entry,
                None if full => dropped += 1,
                None => {
                    families.insert(name.to_owned(), entry);
                }
            }
        }
        dropped
    }

    /// Forgets the metadata of tenants for which `keep` is false: the eviction pass keeps
    /// only the open tenants', so a tenant closed for idleness releases it too (a sender
    /// resends its metadata every minute while it writes).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) -> usize {
        let mut m = self.tenants.lock();
        let before = m.len();
        m.retain(|t, _| keep(t));
        before - m.len()
    }

    /// The families of `tenant`.
    pub fn of(&self, tenant: &str) -> HashMap<String, Entry> {
        self.tenants.lock().get(tenant).cloned().unwrap_or_default()
    }
}

/// Prometheus' name for a metadata type (its `textparse.MetricType` strings).
fn kind_name(t: i32) -> &'static str {
    match MetricType::try_from(t).unwrap_or(MetricType::Unknown) {
        MetricType::Unknown => "unknown",
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
        MetricType::Gaugehistogram => "gaugehistogram",
        MetricType::Summary => "summary",
        MetricType::Info => "info",
        MetricType::Stateset => "stateset",
    }
}

/// `s`, or its longest prefix of at most `max` bytes that ends at a character boundary.
fn truncated(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(name: &str, t: i32, help: &str) -> MetricMetadata {
        MetricMetadata {
            r#type: t,
            metric_family_name: name.into(),
            help: help.into(),
            unit: String::new(),
        }
    }

    #[test]
    fn retain_forgets_closed_tenants() {
        let m = RemoteMetadata::default();
        m.record("a", &[md("x_total", 1, "")]);
        m.record("b", &[md("y_total", 1, "")]);
        assert_eq!(m.retain(|t| t == "a"), 1);
        assert_eq!(m.of("a").len(), 1);
        assert!(m.of("b").is_empty());
    }

    #[test]
    fn newest_wins_per_tenant_and_family() {
        let m = RemoteMetadata::default();
        assert_eq!(
            m.record("a", &[md("x_total", 1, "old"), md("bad name", 1, "")]),
            1
        );
        assert_eq!(m.record("a", &[md("x_total", 1, "new"), md("g", 99, "?")]), 0);
        let a = m.of("a");
        assert_eq!(a.len(), 2);
        assert_eq!(
            a["x_total"],
            Entry {
                kind: "counter",
                help: "new".into(),
                unit: String::new()
            }
        );
        assert_eq!(a["g"].kind, "unknown", "an unknown type number");
        assert!(m.of("b").is_empty(), "tenants do not share metadata");
    }

    #[test]
    fn bounded_and_truncated() {
        let m = RemoteMetadata::default();
        let many: Vec<_> = (0..MAX_FAMILIES + 10)
            .map(|i| md(&format!("m{i}"), 2, ""))
            .collect();
        assert_eq!(m.record("t", &many), 10);
        assert_eq!(m.record("t", &[md("m0", 3, "kept updating")]), 0);
        assert_eq!(m.of("t")["m0"].kind, "histogram");
        let long = "é".repeat(MAX_HELP_LENGTH);
        m.record("t", &[md("m1", 2, &long)]);
        let help = &m.of("t")["m1"].help;
        assert!(help.len() <= MAX_HELP_LENGTH && help.len() >= MAX_HELP_LENGTH - 1);
    }
}
