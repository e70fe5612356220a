//! The collector turns track items into samples: counters accumulate, histograms count
//! into buckets, summaries keep a sliding window. It keeps, per tenant, the state of each
//! series it has seen and the metadata (type, help) of each metric name.
//!
//! Invariants:
//! - The in-memory state of a series always equals what the store holds for it: state is
//!   staged while a batch is built, and applied only for series whose samples were all
//!   accepted by the commit. A series with a rejected sample is forgotten and reloaded from
//!   the store (its newest samples) on next use, so a restart and a rejection look the same.
//! - One lock per tenant serializes staging and commit, so two requests cannot both add
//!   their increment to the same old value.
//! - State is a cache of the store, never the only copy: [`Collector::evict_idle`] drops
//!   series not tracked for `idle_timeout_ms`, and the next item of such a series reloads
//!   it from the store exactly as after a restart (a counter resumes from its newest stored
//!   total). So memory holds only the series active within the idle timeout; the price of
//!   a return after eviction is one store lookup. An evicted summary's quantile window
//!   restarts empty, as after a restart; with the default idle timeout (1 h) longer than
//!   the summary window (10 min) its observations had all left the window anyway.

use std::collections::{HashMap, VecDeque};

/// Maps keyed by labels, hashed with foldhash (keys are hashed per item on the hot path).
mod check;
mod metadata;
mod naming;
mod restore;
mod series;
mod state;

pub use naming::naming_violation;
pub use series::base_labels;
pub use state::quantile;
use {naming::*, restore::*, series::*, state::*};

use crate::time::now_ms;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use metricsd_model::{Labels, Limits, METRIC_NAME, Matcher, go_float};
use metricsd_tsdb::{Db, Queryable, SeriesRef, Storage};
use parking_lot::Mutex;

use crate::config::NamingPolicy;
use crate::error::ApiError;
use crate::selfmetrics::SelfMetrics;
use metricsd_ingest::{MetricKind, SERVICE_LABEL, TrackItem};

/// The seed's default histogram buckets (upper bounds; `+Inf` is implicit).
pub const DEFAULT_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Summary quantiles.
pub const QUANTILES: &[f64] = &[0.5, 0.9, 0.99];

/// Type and help of a metric name in one tenant.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    /// The metric name.
    pub name: String,
    /// Its type (`counter`, ...).
    #[serde(rename = "type")]
    pub kind: MetricKind,
    /// Its help text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

/// What the collector remembers of a series (keyed by its base labels).
#[derive(Debug, Clone)]
enum State {
    Counter {
        value: f64,
        last_t: i64,
    },
    Gauge {
        last_t: i64,
    },
    Histogram {
        bounds: Arc<[f64]>,
        counts: Vec<f64>,
        sum: f64,
        count: f64,
        last_t: i64,
    },
    Summary {
        window: VecDeque<(i64, f64)>,
        sum: f64,
        count: f64,
        last_t: i64,
    },
}

impl State {
    /// The metric type it is the state of.
    fn kind(&self) -> &'static str {
        match self {
            State::Counter { .. } => MetricKind::Counter.as_str(),
            State::Gauge { .. } => MetricKind::Gauge.as_str(),
            State::Histogram { .. } => MetricKind::Histogram.as_str(),
            State::Summary { .. } => MetricKind::Summary.as_str(),
        }
    }

    fn last_t(&self) -> i64 {
        match self {
            State::Counter { last_t, .. }
            | State::Gauge { last_t }
            | State::Histogram { last_t, .. }
            | State::Summary { last_t, .. } => *last_t,
        }
    }
}

/// A series the collector knows: its labels, the store series it writes, and its state.
struct Slot {
    /// The store series the item writes, in the order [`observe`] emits them: the series
    /// itself for a counter or gauge; `_bucket` per bound, `_bucket{le="+Inf"}`, `_sum`,
    /// `_count` for a histogram; each quantile, `_sum`, `_count` for a summary. Refs, so a
    /// commit finds them without hashing and comparing labels.
    refs: Box<[SeriesRef]>,
    /// The item's labels, for a histogram or summary (a counter's or gauge's are its one
    /// series' labels, not stored twice).
    base: Option<Labels>,
    state: State,
    /// Wall-clock ms of the last item that used the slot (for [`Collector::evict_idle`]).
    touched_ms: i64,
}

impl Slot {
    /// The item's labels: the collector's key of the slot.
    #[allow(
        clippy::indexing_slicing,
        reason = "a slot without `base` is a counter's or gauge's, whose `refs` is its one series (`new_slot`)"
    )]
    fn labels(&self) -> &Labels {
        match &self.base {
            Some(b) => b,
            None => self.refs[0].labels(),
        }
    }
}

#[derive(Default)]
struct TenantState {
    /// Keyed by [`series_key`]'s 128-bit hash, which alone identifies the series: two of
    /// ten million series collide by accident with a probability near 1e-25, and a
    /// deliberate collision could only send a tenant's write to another series of the same
    /// tenant, which it may write anyway. (Comparing the labels on every item would cost
    /// a cache miss per label string.) Slots are boxed so the table stays small enough
    /// for the cache: the probe compares keys without touching the slots.
    series: FastMap<u128, Box<Slot>>,
    meta: FastMap<String, Meta>,
}

/// Options of the collector (from the configuration).
#[derive(Debug, Clone)]
pub struct CollectorOptions {
    /// Label limits, checked before anything is appended.
    pub limits: Limits,
    /// Most series per tenant (0 = unlimited).
    pub max_series: usize,
    /// Naming policy.
    pub naming: NamingPolicy,
    /// Summary window in ms.
    pub summary_window_ms: i64,
    /// Most observations in a summary window.
    pub summary_max: usize,
    /// Where metadata files live (`<data_dir>/server/metadata`).
    pub meta_dir: PathBuf,
    /// Series not tracked for this long are dropped from memory by [`Collector::evict_idle`].
    pub idle_timeout_ms: i64,
}

/// What happened to each item of a batch.
#[derive(Debug)]
pub struct Outcome {
    /// Per item: `Ok(())` when stored, else why not.
    pub results: Vec<Result<(), ApiError>>,
}

/// Applies track items to the store. See the module docs.
pub struct Collector {
    storage: Arc<Storage>,
    opts: CollectorOptions,
    tenants: Mutex<HashMap<String, Arc<Mutex<TenantState>>>>,
    metrics: Arc<SelfMetrics>,
}

/// A track item with its tenant resolved.
pub struct Resolved<'a> {
    /// Index in the request.
    pub index: usize,
    /// The tenant.
    pub tenant: std::borrow::Cow<'a, str>,
    /// The item.
    pub item: TrackItem<'a>,
}

impl Collector {
    /// A collector over `storage`.
    pub fn new(storage: Arc<Storage>, opts: CollectorOptions, metrics: Arc<SelfMetrics>) -> Self {
        Collector {
            storage,
            opts,
            tenants: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    fn tenant_state(&self, tenant: &str) -> Arc<Mutex<TenantState>> {
        let mut m = self.tenants.lock();
        if let Some(s) = m.get(tenant) {
            return s.clone();
        }
        let mut st = TenantState::default();
        for meta in self.load_meta(tenant) {
            st.meta.insert(meta.name.clone(), meta);
        }
        let s = Arc::new(Mutex::new(st));
        m.insert(tenant.to_owned(), s.clone());
        s
    }

    /// Drops the state of every series not tracked since `now_ms - idle_timeout_ms` (see
    /// the module docs: it is reloaded from the store on next use). Returns how many were
    /// dropped; updates `metricsd_collector_series` and `_evictions_total`.
    pub fn evict_idle(&self, now_ms: i64) -> usize {
        let cutoff = now_ms.saturating_sub(self.opts.idle_timeout_ms);
        let tenants: Vec<Arc<Mutex<TenantState>>> = self.tenants.lock().values().cloned().collect();
        let (mut evicted, mut kept) = (0usize, 0usize);
        for t in tenants {
            // One tenant lock at a time: tracking in other tenants goes on meanwhile.
            let mut st = t.lock();
            let before = st.series.len();
            st.series.retain(|_, slot| slot.touched_ms > cutoff);
            evicted += before - st.series.len();
            kept += st.series.len();
            if st.series.capacity() > 2 * st.series.len().max(64) {
                st.series.shrink_to_fit();
            }
        }
        // A tenant whose series were all evicted gives its state back: its metadata is in its
        // file, reloaded on next use. Only if no request holds it (holding it, or its lock,
        // takes a clone of the Arc, and cloning takes the map's lock, held here).
        self.tenants
            .lock()
            .retain(|_, s| Arc::strong_count(s) > 1 || !s.lock().series.is_empty());
        self.metrics.collector_evictions.add(evicted as u64);
        self.metrics
            .collector_series
            .store(kept as u64, std::sync::atomic::Ordering::Relaxed);
        evicted
    }

    /// Stores `items` (already decoded), grouped by tenant; one commit per tenant. Returns
    /// one result per item, in the order given.
    pub fn track(&self, items: Vec<Resolved<'_>>) -> Outcome {
        let n = items.len();
        let mut results: Vec<Result<(), ApiError>> = (0..n).map(|_| Ok(())).collect();
        if items
            .windows(2)
            .all(|w| matches!(w, [a, b] if a.tenant == b.tenant))
        {
            // One tenant (the usual batch): no grouping, items go through as they are.
            if let Some(first) = items.first() {
                let tenant = first.tenant.to_string();
                let group = items.into_iter().enumerate().map(|(pos, r)| (pos, r.item));
                self.track_group(&tenant, group, &mut results);
            }
        } else {
            let mut by_tenant: HashMap<String, Vec<(usize, TrackItem<'_>)>> = HashMap::new();
            for (pos, r) in items.into_iter().enumerate() {
                by_tenant
                    .entry(r.tenant.into_owned())
                    .or_default()
                    .push((pos, r.item));
            }
            for (tenant, group) in by_tenant {
                self.track_group(&tenant, group, &mut results);
            }
        }
        for r in &results {
            match r {
                Ok(()) => self.metrics.items_collected.inc(),
                Err(_) => self.metrics.errors.inc(),
            }
        }
        Outcome { results }
    }

    /// Stores the items of one tenant with one commit.
    fn track_group<'i>(
        &self,
        tenant: &str,
        group: impl IntoIterator<Item = (usize, TrackItem<'i>)>,
        results: &mut [Result<(), ApiError>],
    ) {
        match self.storage.tenant_for_write(tenant) {
            Ok((db, created)) => {
                self.track_tenant(tenant, &db, group, results);
                // A tenant created for items that were all refused is not left behind.
                if created && db.head().num_series() == 0 {
                    drop(db);
                    if self.storage.forget_unused(tenant) {
                        self.tenants.lock().remove(tenant);
                        // Its refused samples stay in the process-wide count only.
                        self.metrics.forget_tenant(tenant);
                    }
                }
            }
            Err(e) => {
                let err = ApiError::from_store(&e);
                let mut dropped = 0;
                for (pos, item) in group {
                    fail(results, pos, err.clone());
                    dropped += derived_count(&item);
                }
                self.metrics.points_dropped.add(dropped as u64);
            }
        }
    }

    fn track_tenant<'i>(
        &self,
        tenant: &str,
        db: &Db,
        group: impl IntoIterator<Item = (usize, TrackItem<'i>)>,
        results: &mut [Result<(), ApiError>],
    ) {
        let state = self.tenant_state(tenant);
        let mut guard = state.lock();
        // Split borrows: series and metadata are used side by side below.
        let st = &mut *guard;
        let mut new_meta: Vec<Meta> = Vec::new();
        let mut staged_meta: FastMap<String, Meta> = FastMap::default();
        let mut app = db.appender();
        // (first sample number, end, position in results, series key)
        let mut ranges: Vec<(usize, usize, usize, u128)> = Vec::new();
        let mut new_series = 0usize;
        // Samples of items refused before they were appended (series limit, label limits,
        // type, timestamp order, naming policy): `dropped_points`, as the store's rejections.
        let mut dropped = 0usize;
        let head_series = db.head().num_series();
        let now = now_ms();
        // The store's future bound, checked here too so that a refused item makes no slot
        // and no store series (the store's check stays the backstop).
        let store_now = db.options().clock.now_ms();
        let max_t = store_now.saturating_add(db.options().max_future_ms.max(0));
        for (pos, item) in group {
            // The series is found by a hash of the item's borrowed fields: no label set is
            // built for a series the collector already knows.
            let (h, pairs) = series_key(&item);
            // A series new to the collector: its labels and its state in the store, if any.
            // It becomes a slot only once the item passed every check.
            let mut new: Option<(Labels, Option<State>)> = None;
            match st.series.get(&h) {
                Some(slot) => debug_assert!(same_labels(slot.labels(), &pairs), "series key collision"),
                None => {
                    let labels = Labels::from_pairs(pairs.iter().copied());
                    match restore(db, &labels, item.kind) {
                        Ok(state) => new = Some((labels, state)),
                        Err(e) => {
                            fail(results, pos, ApiError::from_store(&e));
                            dropped += derived_count(&item);
                            continue;
                        }
                    }
                }
            }
            let slot = st.series.get_mut(&h);
            let (key, cur) = match (&slot, &new) {
                (Some(slot), _) => (slot.labels(), Some(&slot.state)),
                (None, Some((labels, state))) => (labels, state.as_ref()),
                (None, None) => continue,
            };
            let known = staged_meta.get(&*item.name).or_else(|| st.meta.get(&*item.name));
            let fresh = new.as_ref().is_some_and(|(_, state)| state.is_none());
            let checked = self.check(&item, key, cur, known, now).and_then(|t| {
                if fresh && self.opts.max_series > 0 {
                    // Checked before appending so a histogram is stored whole or not at all;
                    // the store's own check stays the backstop under concurrency.
                    let n = derived_count(&item);
                    if head_series + new_series + n > self.opts.max_series {
                        return Err(ApiError {
                            code: "limit_exceeded",
                            ..ApiError::field(
                                "name",
                                format!(
                                    "series limit of {} reached for tenant {tenant:?} (ACCESS_MAX_METRIC_SERIES); new series {key} rejected",
                                    self.opts.max_series
                                ),
                            )
                        });
                    }
                    new_series += n;
                }
                Ok(t)
            });
            let t = match checked {
                Ok(t) if t > max_t => {
                    let e = metricsd_tsdb::Error::TooFarInFuture {
                        series: key.to_string(),
                        t,
                        now: store_now,
                        max_future_ms: db.options().max_future_ms,
                    };
                    fail(
                        results,
                        pos,
                        ApiError {
                            field: Some("timestamp".into()),
                            ..ApiError::from_store(&e)
                        },
                    );
                    continue;
                }
                Ok(t) => t,
                Err(e) => {
                    fail(results, pos, e);
                    dropped += derived_count(&item);
                    continue;
                }
            };
            let slot = match (slot, new) {
                (Some(slot), _) => slot,
                (None, Some((labels, state))) => match new_slot(db, &item, labels, state, now) {
                    Ok(slot) => st.series.entry(h).insert_entry(Box::new(slot)).into_mut(),
                    Err(e) => {
                        fail(results, pos, e);
                        dropped += derived_count(&item);
                        continue;
                    }
                },
                (None, None) => continue,
            };
            if known.is_none()
                || (item.help.is_some() && known.and_then(|m| m.help.as_deref()) != item.help.as_deref())
            {
                let m = Meta {
                    name: item.name.to_string(),
                    kind: item.kind,
                    help: item.help.as_deref().map(str::to_owned),
                };
                staged_meta.insert(item.name.to_string(), m.clone());
                new_meta.push(m);
            }
            let start = app.len();
            // Updated in place; a rejected commit drops the slot (see below).
            let cur = std::mem::replace(&mut slot.state, State::Gauge { last_t: 0 });
            slot.touched_ms = now;
            let refs = &slot.refs;
            slot.state = observe(cur, &item, t, &self.opts, |i, v| {
                append_to(&mut app, refs, i, t, v)
            });
            ranges.push((start, app.len(), pos, h));
        }
        let report = match app.commit() {
            Ok(r) => r,
            Err(e) => {
                let err = ApiError::from_store(&e);
                for (start, end, pos, h) in &ranges {
                    fail(results, *pos, err.clone());
                    dropped += end - start;
                    // The state ran ahead of the store: forget it, reload on next use.
                    st.series.remove(h);
                }
                self.metrics.points_dropped.add(dropped as u64);
                self.metrics.add_tenant_points(tenant, 0, dropped as u64);
                return;
            }
        };
        for (sample_no, e) in &report.rejected {
            let i = ranges.partition_point(|r| r.1 <= *sample_no);
            if let Some((_, _, pos, h)) = ranges.get(i) {
                if let Some(r) = results.get_mut(*pos)
                    && r.is_ok()
                {
                    let mut err = ApiError::from_store(e);
                    err.field = Some("labels".into());
                    *r = Err(err);
                }
                st.series.remove(h);
            }
        }
        self.metrics.points_stored.add(report.accepted as u64);
        let dropped = (report.rejected.len() + dropped) as u64;
        self.metrics.points_dropped.add(dropped);
        self.metrics
            .add_tenant_points(tenant, report.accepted as u64, dropped);
        if !new_meta.is_empty() {
            if let Err(e) = self.save_meta(tenant, &new_meta) {
                tracing::error!(tenant, error = %e, "cannot save metric metadata");
            }
            for m in new_meta {
                st.meta.insert(m.name.clone(), m);
            }
        }
    }
}

/// Records that the item at `pos` of the batch failed (`results` holds one per item).
fn fail(results: &mut [Result<(), ApiError>], pos: usize, e: ApiError) {
    if let Some(r) = results.get_mut(pos) {
        *r = Err(e);
    }
}

/// Appends `(t, v)` to the `i`-th series a slot writes.
#[allow(
    clippy::indexing_slicing,
    reason = "`observe` emits indices of the slot's `refs`, which `new_slot` made from the same state: one per series it writes"
)]
#[inline]
fn append_to(app: &mut metricsd_tsdb::Appender<'_>, refs: &[SeriesRef], i: usize, t: i64, v: f64) {
    app.append_ref(&refs[i], t, v);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metadata file keeps its format: kinds as the JSON API's names.
    #[test]
    fn metadata_kinds_serialize_as_their_json_names() {
        let m = Meta {
            name: "jobs_total".into(),
            kind: MetricKind::Counter,
            help: None,
        };
        let text = serde_json::to_string(&m).unwrap();
        assert!(text.contains(r#""type":"counter""#), "{text}");
        let back: Meta = serde_json::from_str(r#"{"name":"h","type":"histogram","help":"x"}"#).unwrap();
        assert_eq!(back.kind, MetricKind::Histogram);
    }

    #[test]
    fn quantiles_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.9), 90.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&[3.0], 0.5), 3.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn naming() {
        let item = |name: &str, kind| TrackItem {
            name: name.to_owned().into(),
            value: 1.0,
            kind,
            labels: vec![],
            service: None,
            tenant_id: None,
            timestamp_ms: None,
            help: None,
            buckets: None,
        };
        assert!(naming_violation(&item("requests", MetricKind::Counter)).is_some());
        assert!(naming_violation(&item("requests_total", MetricKind::Counter)).is_none());
        assert!(naming_violation(&item("latency_ms", MetricKind::Histogram)).is_some());
        assert!(naming_violation(&item("latency_seconds", MetricKind::Histogram)).is_none());
        assert!(naming_violation(&item("size_total", MetricKind::Gauge)).is_some());
    }

    #[test]
    fn series_key_matches_the_label_set() {
        let item = |labels: &[(&str, &str)], service: Option<&str>| -> TrackItem<'static> {
            TrackItem {
                name: "m".into(),
                value: 1.0,
                kind: MetricKind::Gauge,
                labels: labels
                    .iter()
                    .map(|(a, b)| (a.to_string().into(), b.to_string().into()))
                    .collect(),
                service: service.map(|s| s.to_owned().into()),
                tenant_id: None,
                timestamp_ms: None,
                help: None,
                buckets: None,
            }
        };
        let a = item(&[("b", "2"), ("a", "1"), ("e", "")], Some("svc"));
        let b = item(&[("a", "1"), ("b", "2"), ("service_name", "svc")], Some("svc"));
        let (ha, pa) = series_key(&a);
        let (hb, _) = series_key(&b);
        assert_eq!(ha, hb);
        assert!(same_labels(&base_labels(&a), &pa));
        assert_ne!(
            series_key(&item(&[("a", "1")], None)).0,
            series_key(&item(&[("a", "2")], None)).0
        );
        assert_ne!(
            series_key(&item(&[("ab", "")], None)).0,
            series_key(&item(&[("a", "b")], None)).0
        );
    }

    #[test]
    fn summary_window_slides() {
        let o = CollectorOptions {
            limits: Limits::default(),
            max_series: 0,
            naming: NamingPolicy::Off,
            summary_window_ms: 10_000,
            summary_max: 3,
            meta_dir: PathBuf::new(),
            idle_timeout_ms: 3_600_000,
        };
        let mut state = None;
        let mut last = Vec::new();
        for (t, v) in [
            (0, 100.0),
            (1_000, 1.0),
            (2_000, 2.0),
            (3_000, 3.0),
            (20_000, 7.0),
        ] {
            let item = TrackItem {
                name: "s".into(),
                value: v,
                kind: MetricKind::Summary,
                labels: vec![],
                service: None,
                tenant_id: None,
                timestamp_ms: Some(t),
                help: None,
                buckets: None,
            };
            last.clear();
            let cur = state.take().unwrap_or_else(|| initial_state(&item));
            state = Some(observe(cur, &item, t, &o, |_, v| last.push(v)));
            if t == 3_000 {
                // At most 3 observations: 100 fell out.
                assert_eq!(&last[..3], &[2.0, 3.0, 3.0]);
            }
        }
        // Only the observation at 20 s is inside the 10 s window; sum and count keep everything.
        assert_eq!(last, vec![7.0, 7.0, 7.0, 113.0, 5.0]);
    }

    /// A collector over a fresh store in `dir`.
    fn test_collector(
        dir: &std::path::Path,
        db: metricsd_tsdb::DbOptions,
        idle_timeout_ms: i64,
    ) -> (Collector, Arc<SelfMetrics>) {
        let (storage, _) = metricsd_tsdb::Storage::open(&dir.join("data"), db).unwrap();
        let metrics = Arc::new(SelfMetrics::default());
        let opts = CollectorOptions {
            limits: Limits::default(),
            max_series: 0,
            naming: NamingPolicy::Off,
            summary_window_ms: 600_000,
            summary_max: 1000,
            meta_dir: dir.join("meta"),
            idle_timeout_ms,
        };
        (Collector::new(Arc::new(storage), opts, metrics.clone()), metrics)
    }

    /// The collector keeps refs to the store's series; when compaction moves a series out
    /// of the head (and gc removes it) while the collector still holds its slot, the next
    /// item still lands in that series and the histogram keeps counting.
    #[test]
    fn slots_outlive_their_head_series() {
        let dir = tempfile::tempdir().unwrap();
        let opts = metricsd_tsdb::DbOptions {
            block_range_ms: 1000,
            retention_ms: 0,
            ..metricsd_tsdb::DbOptions::default()
        };
        let (c, _) = test_collector(dir.path(), opts, 3_600_000);
        let track = |name: &str, kind: MetricKind, v: f64, t: i64| {
            let item = TrackItem {
                name: name.to_owned().into(),
                value: v,
                kind,
                labels: vec![],
                service: None,
                tenant_id: None,
                timestamp_ms: Some(t),
                help: None,
                buckets: Some(vec![1.0]),
            };
            let out = c.track(vec![Resolved {
                index: 0,
                tenant: "t1".into(),
                item,
            }]);
            assert!(out.results.iter().all(Result::is_ok), "{:?}", out.results);
        };
        let db = c.storage.tenant("t1").unwrap();
        track("lat", MetricKind::Histogram, 0.5, 1_000);
        track("other", MetricKind::Gauge, 1.0, 10_000);
        db.compact().unwrap();
        assert_eq!(db.head().num_series(), 1, "the histogram's series left the head");
        track("lat", MetricKind::Histogram, 2.0, 10_001);
        let v = |name: &str| newest(&db, &[Matcher::equal(METRIC_NAME, name)]).unwrap();
        let mut buckets: Vec<(String, f64)> = v("lat_bucket")
            .into_iter()
            .map(|(l, _, v)| (l.get("le").unwrap().to_owned(), v))
            .collect();
        buckets.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(buckets, vec![("+Inf".into(), 2.0), ("1".into(), 1.0)]);
        assert_eq!(v("lat_count")[0].1, 10_001);
        assert_eq!((v("lat_count")[0].2, v("lat_sum")[0].2), (2.0, 2.5));
    }

    /// Eviction forgets a series; the next increment reloads the stored total and the
    /// cumulative value continues (it would restart at the increment if the reload failed).
    #[test]
    fn counter_resumes_after_eviction() {
        let dir = tempfile::tempdir().unwrap();
        let (c, metrics) = test_collector(dir.path(), metricsd_tsdb::DbOptions::default(), 1_000);
        let track = |v: f64| {
            let item = TrackItem {
                name: "jobs_total".into(),
                value: v,
                kind: MetricKind::Counter,
                labels: vec![("queue".into(), "a".into())],
                service: None,
                tenant_id: None,
                timestamp_ms: None,
                help: None,
                buckets: None,
            };
            let out = c.track(vec![Resolved {
                index: 0,
                tenant: "t1".into(),
                item,
            }]);
            assert!(out.results.iter().all(Result::is_ok), "{:?}", out.results);
        };
        let stored = || {
            let db = c.storage.existing_tenant("t1").unwrap();
            newest(&db, &[Matcher::equal(METRIC_NAME, "jobs_total")]).unwrap()[0].2
        };
        track(5.0);
        track(2.0);
        assert_eq!(stored(), 7.0);
        // Not idle yet: nothing evicted.
        assert_eq!(c.evict_idle(now_ms()), 0);
        assert_eq!(c.evict_idle(now_ms() + 2_000), 1);
        // The tenant's state went with its last series.
        assert!(c.tenants.lock().is_empty());
        assert_eq!(c.tenant_state("t1").lock().series.len(), 0);
        assert_eq!(metrics.collector_evictions.get(), 1);
        track(3.0);
        assert_eq!(stored(), 10.0);
        assert_eq!(c.tenant_state("t1").lock().series.len(), 1);
    }
}
