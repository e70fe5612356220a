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
    pub kind: String,
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

    fn meta_path(&self, tenant: &str) -> PathBuf {
        self.opts.meta_dir.join(format!("{tenant}.jsonl"))
    }

    fn load_meta(&self, tenant: &str) -> Vec<Meta> {
        let Ok(text) = std::fs::read_to_string(self.meta_path(tenant)) else {
            return Vec::new();
        };
        // A torn last line (crash while appending) is skipped; later lines win.
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn save_meta(&self, tenant: &str, metas: &[Meta]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.opts.meta_dir)?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.meta_path(tenant))?;
        let mut buf = Vec::new();
        for m in metas {
            serde_json::to_writer(&mut buf, m).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        f.write_all(&buf)
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

    /// Metadata of every metric name of `tenant`. A read: it creates no per-tenant state
    /// (a tenant not tracked since start is read from its metadata file, if any).
    pub fn metadata(&self, tenant: &str) -> HashMap<String, Meta> {
        let state = self.tenants.lock().get(tenant).cloned();
        match state {
            Some(s) => s
                .lock()
                .meta
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            None => self
                .load_meta(tenant)
                .into_iter()
                .map(|m| (m.name.clone(), m))
                .collect(),
        }
    }

    /// Stores `items` (already decoded), grouped by tenant; one commit per tenant. Returns
    /// one result per item, in the order given.
    pub fn track(&self, items: Vec<Resolved<'_>>) -> Outcome {
        let n = items.len();
        let mut results: Vec<Result<(), ApiError>> = (0..n).map(|_| Ok(())).collect();
        if items.windows(2).all(|w| w[0].tenant == w[1].tenant) {
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
                    results[pos] = Err(err.clone());
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
                            results[pos] = Err(ApiError::from_store(&e));
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
                    results[pos] = Err(ApiError {
                        field: Some("timestamp".into()),
                        ..ApiError::from_store(&e)
                    });
                    continue;
                }
                Ok(t) => t,
                Err(e) => {
                    results[pos] = Err(e);
                    dropped += derived_count(&item);
                    continue;
                }
            };
            let slot = match (slot, new) {
                (Some(slot), _) => slot,
                (None, Some((labels, state))) => match new_slot(db, &item, labels, state, now) {
                    Ok(slot) => st.series.entry(h).insert_entry(Box::new(slot)).into_mut(),
                    Err(e) => {
                        results[pos] = Err(e);
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
                    kind: item.kind.as_str().into(),
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
            slot.state = observe(cur, &item, t, &self.opts, |i, v| app.append_ref(&refs[i], t, v));
            ranges.push((start, app.len(), pos, h));
        }
        let report = match app.commit() {
            Ok(r) => r,
            Err(e) => {
                let err = ApiError::from_store(&e);
                for (start, end, pos, h) in &ranges {
                    results[*pos] = Err(err.clone());
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
                if results[*pos].is_ok() {
                    let mut err = ApiError::from_store(e);
                    err.field = Some("labels".into());
                    results[*pos] = Err(err);
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

impl Collector {
    /// Every check of an item against its series' state (type, naming policy, timestamp
    /// order, label limits of every series it writes); returns the sample timestamp.
    fn check(
        &self,
        item: &TrackItem<'_>,
        key: &Labels,
        cur: Option<&State>,
        known: Option<&Meta>,
        now: i64,
    ) -> Result<i64, ApiError> {
        // A name keeps the type it was first tracked with (and a series the type of its
        // state, should the metadata ever disagree).
        let was = [known.map(|m| m.kind.as_str()), cur.map(State::kind)]
            .into_iter()
            .flatten()
            .find(|k| *k != item.kind.as_str());
        if let Some(was) = was {
            return Err(ApiError::field(
                "type",
                format!("metric {:?} is a {was}, not a {}", item.name, item.kind.as_str()),
            ));
        }
        check_naming(self.opts.naming, item, &self.metrics)?;
        let t = match (item.timestamp_ms, cur) {
            (Some(t), Some(s)) if item.kind != MetricKind::Gauge && t <= s.last_t() => {
                return Err(ApiError::field(
                    "timestamp",
                    format!(
                        "timestamp {t} ms is not after the newest sample of this {} ({} ms); cumulative types need increasing timestamps",
                        item.kind.as_str(),
                        s.last_t()
                    ),
                ));
            }
            (Some(t), _) => t,
            // Strictly increasing per series, so two updates in one millisecond do not
            // collide as duplicate samples.
            (None, Some(s)) => now.max(s.last_t() + 1),
            (None, None) => now,
        };
        if cur.is_some() {
            // A known series was validated when it was created.
            return Ok(t);
        }
        // The widest series the item writes: the longest name plus the extra label.
        let widest = match item.kind {
            MetricKind::Counter | MetricKind::Gauge => key.clone(),
            MetricKind::Histogram => {
                with_name(key, &format!("{}_bucket", item.name), Some(("le", "+Inf".into())))
            }
            MetricKind::Summary => with_name(
                key,
                &format!("{}_count", item.name),
                Some(("quantile", "0.99".into())),
            ),
        };
        metricsd_model::validate_labels(&widest, &self.opts.limits).map_err(|e| {
            let code = match e.kind() {
                metricsd_model::ErrorKind::LimitExceeded => "limit_exceeded",
                metricsd_model::ErrorKind::InvalidInput => "invalid_field",
            };
            ApiError {
                code,
                ..ApiError::field("labels", e.to_string())
            }
        })?;
        Ok(t)
    }
}

/// The item's series as sorted (name, value) pairs with the semantics of
/// [`Labels::from_pairs`] (last value wins, empty values dropped), and a 128-bit hash of
/// them: the collector's key for the series.
fn series_key<'i>(item: &'i TrackItem<'_>) -> (u128, smallvec::SmallVec<[(&'i str, &'i str); 8]>) {
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

fn same_labels(l: &Labels, pairs: &[(&str, &str)]) -> bool {
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

fn with_name(base: &Labels, name: &str, extra: Option<(&str, String)>) -> Labels {
    let mut b = base.builder();
    b.set(METRIC_NAME, name);
    if let Some((k, v)) = extra {
        b.set(k, v);
    }
    b.build()
}

/// Labels of a histogram's series: one `_bucket` per bound, `+Inf`, `_sum`, `_count`.
fn hist_series(base: &Labels, name: &str, bounds: &[f64]) -> Vec<Labels> {
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
fn summary_series(base: &Labels, name: &str) -> Vec<Labels> {
    let mut v: Vec<Labels> = QUANTILES
        .iter()
        .map(|q| with_name(base, name, Some(("quantile", go_float(*q)))))
        .collect();
    v.push(with_name(base, &format!("{name}_sum"), None));
    v.push(with_name(base, &format!("{name}_count"), None));
    v
}

/// How many series an item writes (for the series limit).
fn derived_count(item: &TrackItem<'_>) -> usize {
    match item.kind {
        MetricKind::Counter | MetricKind::Gauge => 1,
        MetricKind::Histogram => item.buckets.as_ref().map_or(DEFAULT_BUCKETS.len(), Vec::len) + 3,
        MetricKind::Summary => QUANTILES.len() + 2,
    }
}

/// The state of a series nothing is known of yet.
fn initial_state(item: &TrackItem<'_>) -> State {
    match item.kind {
        MetricKind::Counter => State::Counter {
            value: 0.0,
            last_t: i64::MIN,
        },
        MetricKind::Gauge => State::Gauge { last_t: i64::MIN },
        MetricKind::Histogram => {
            let bounds: Arc<[f64]> = item
                .buckets
                .clone()
                .unwrap_or_else(|| DEFAULT_BUCKETS.to_vec())
                .into();
            State::Histogram {
                counts: vec![0.0; bounds.len()],
                bounds,
                sum: 0.0,
                count: 0.0,
                last_t: i64::MIN,
            }
        }
        MetricKind::Summary => State::Summary {
            window: VecDeque::new(),
            sum: 0.0,
            count: 0.0,
            last_t: i64::MIN,
        },
    }
}

/// A slot for a series new to the collector (`state` restored from the store, or none):
/// finds or creates the store series it writes. Called only for an item that passed every
/// check, so no series is created for a rejected item.
fn new_slot(
    db: &Db,
    item: &TrackItem<'_>,
    labels: Labels,
    state: Option<State>,
    now: i64,
) -> Result<Slot, ApiError> {
    let state = state.unwrap_or_else(|| initial_state(item));
    let (series, base) = match &state {
        State::Counter { .. } | State::Gauge { .. } => (vec![labels], None),
        State::Histogram { bounds, .. } => (hist_series(&labels, &item.name, bounds), Some(labels)),
        State::Summary { .. } => (summary_series(&labels, &item.name), Some(labels)),
    };
    let refs = series
        .iter()
        .map(|l| db.series_ref(l))
        .collect::<metricsd_tsdb::Result<Box<[SeriesRef]>>>()
        .map_err(|e| {
            let mut err = ApiError::from_store(&e);
            err.field = Some("labels".into());
            err
        })?;
    Ok(Slot {
        refs,
        base,
        state,
        touched_ms: now,
    })
}

/// Applies one observation to a series' state, emitting the samples to write through
/// `emit(i, value)`, `i` indexing [`Slot::refs`] (all at the item's timestamp). Cannot
/// fail: every check is done before, so an item is applied whole or not at all.
fn observe(
    cur: State,
    item: &TrackItem<'_>,
    t: i64,
    o: &CollectorOptions,
    mut emit: impl FnMut(usize, f64),
) -> State {
    let v = item.value;
    match cur {
        State::Counter { value, .. } => {
            emit(0, value + v);
            State::Counter {
                value: value + v,
                last_t: t,
            }
        }
        State::Gauge { .. } => {
            emit(0, v);
            State::Gauge { last_t: t }
        }
        State::Histogram {
            bounds,
            mut counts,
            mut sum,
            mut count,
            ..
        } => {
            for (i, b) in bounds.iter().enumerate() {
                if v <= *b {
                    counts[i] += 1.0;
                }
            }
            sum += v;
            count += 1.0;
            let n = bounds.len();
            for (i, c) in counts.iter().enumerate() {
                emit(i, *c);
            }
            emit(n, count);
            emit(n + 1, sum);
            emit(n + 2, count);
            State::Histogram {
                bounds,
                counts,
                sum,
                count,
                last_t: t,
            }
        }
        State::Summary {
            mut window,
            mut sum,
            mut count,
            ..
        } => {
            window.push_back((t, v));
            while window.len() > o.summary_max
                || window
                    .front()
                    .is_some_and(|(wt, _)| *wt <= t - o.summary_window_ms)
            {
                window.pop_front();
            }
            sum += v;
            count += 1.0;
            let mut sorted: Vec<f64> = window.iter().map(|(_, v)| *v).collect();
            sorted.sort_by(f64::total_cmp);
            let n = QUANTILES.len();
            for (i, q) in QUANTILES.iter().enumerate() {
                emit(i, quantile(&sorted, *q));
            }
            emit(n, sum);
            emit(n + 1, count);
            State::Summary {
                window,
                sum,
                count,
                last_t: t,
            }
        }
    }
}

/// Nearest-rank quantile of sorted values (NaN when empty).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The newest sample of each series matching `matchers` (all time).
fn newest(db: &Db, matchers: &[Matcher]) -> metricsd_tsdb::Result<Vec<(Labels, i64, f64)>> {
    let q = db.querier(i64::MIN, i64::MAX)?;
    let mut out = Vec::new();
    for s in q.select(matchers)? {
        let mut last = None;
        for smp in s.iter() {
            if !metricsd_model::is_stale_nan(smp.v) {
                last = Some(smp);
            }
        }
        if let Some(smp) = last {
            out.push((s.labels().clone(), smp.t, smp.v));
        }
    }
    Ok(out)
}

fn exact_matchers(base: &Labels, name: &str) -> Vec<Matcher> {
    base.iter()
        .map(|l| {
            if &*l.name == METRIC_NAME {
                Matcher::equal(METRIC_NAME, name)
            } else {
                Matcher::equal(&*l.name, &*l.value)
            }
        })
        .collect()
}

/// Whether `l` is `base` renamed to `name` plus at most the label `extra`.
fn same_series(l: &Labels, base: &Labels, name: &str, extra: Option<&str>) -> bool {
    let mut b = l.builder();
    if let Some(e) = extra {
        b.del(e);
    }
    b.set(METRIC_NAME, name);
    let mut want = base.builder();
    want.set(METRIC_NAME, name);
    b.build() == want.build()
}

/// Rebuilds a series' state from the store (after a restart, or after a rejection).
fn restore(db: &Db, base: &Labels, kind: MetricKind) -> metricsd_tsdb::Result<Option<State>> {
    let name = base.metric_name().unwrap_or_default().to_owned();
    let one = |n: &str| -> metricsd_tsdb::Result<Option<(i64, f64)>> {
        Ok(newest(db, &exact_matchers(base, n))?
            .into_iter()
            .find(|(l, _, _)| same_series(l, base, n, None))
            .map(|(_, t, v)| (t, v)))
    };
    Ok(match kind {
        MetricKind::Counter => one(&name)?.map(|(t, v)| State::Counter { value: v, last_t: t }),
        MetricKind::Gauge => one(&name)?.map(|(t, _)| State::Gauge { last_t: t }),
        MetricKind::Histogram => {
            let (Some((t, count)), Some((_, sum))) =
                (one(&format!("{name}_count"))?, one(&format!("{name}_sum"))?)
            else {
                return Ok(None);
            };
            let bucket = format!("{name}_bucket");
            let mut bs: Vec<(f64, f64)> = newest(db, &exact_matchers(base, &bucket))?
                .into_iter()
                .filter(|(l, _, _)| same_series(l, base, &bucket, Some("le")))
                .filter_map(|(l, _, v)| {
                    l.get("le")
                        .and_then(|le| le.parse::<f64>().ok())
                        .map(|le| (le, v))
                })
                .filter(|(le, _)| le.is_finite())
                .collect();
            bs.sort_by(|a, b| a.0.total_cmp(&b.0));
            if bs.is_empty() {
                bs = DEFAULT_BUCKETS.iter().map(|b| (*b, 0.0)).collect();
            }
            let bounds: Arc<[f64]> = bs.iter().map(|b| b.0).collect::<Vec<_>>().into();
            let counts = bs.iter().map(|b| b.1).collect();
            Some(State::Histogram {
                bounds,
                counts,
                sum,
                count,
                last_t: t,
            })
        }
        MetricKind::Summary => {
            let (Some((t, count)), Some((_, sum))) =
                (one(&format!("{name}_count"))?, one(&format!("{name}_sum"))?)
            else {
                return Ok(None);
            };
            // The window's observations are not stored; quantiles restart from the next one.
            Some(State::Summary {
                window: VecDeque::new(),
                sum,
                count,
                last_t: t,
            })
        }
    })
}

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

fn check_naming(policy: NamingPolicy, item: &TrackItem<'_>, metrics: &SelfMetrics) -> Result<(), ApiError> {
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

pub use crate::time::now_ms;

#[cfg(test)]
mod tests {
    use super::*;

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
