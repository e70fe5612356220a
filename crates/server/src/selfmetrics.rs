//! The service's own metrics, exposed on `/metrics` after the tracked series: seed 000's
//! list, HTTP request metrics by route and status, and process metrics from `/proc`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use metricsd_ingest::{FamilyKind, FamilySample, MetricFamily, format_go_g};
use metricsd_model::Labels;
use parking_lot::Mutex;

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Bucket bounds of request/collection durations, in seconds.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A fixed-bucket histogram of durations.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; DURATION_BUCKETS.len()];
        }
        for (c, b) in self.counts.iter_mut().zip(DURATION_BUCKETS) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    /// The `_bucket` (cumulative), `_sum` and `_count` samples, with `labels` plus `le`.
    fn samples(&self, labels: &[(&str, &str)], out: &mut Vec<FamilySample>) {
        let with = |extra: Option<(&str, &str)>| {
            let mut p: Vec<(&str, &str)> = labels.to_vec();
            p.extend(extra);
            Labels::from_pairs(p)
        };
        let mut le = String::new();
        for (i, b) in DURATION_BUCKETS.iter().enumerate() {
            le.clear();
            format_go_g(*b, &mut le);
            out.push(sample(
                "_bucket",
                with(Some(("le", &le))),
                self.counts.get(i).copied().unwrap_or(0) as f64,
            ));
        }
        out.push(sample("_bucket", with(Some(("le", "+Inf"))), self.count as f64));
        out.push(sample("_sum", with(None), self.sum));
        out.push(sample("_count", with(None), self.count as f64));
    }
}

fn sample(suffix: &'static str, labels: Labels, value: f64) -> FamilySample {
    FamilySample {
        suffix,
        labels,
        value,
        timestamp_ms: None,
    }
}

/// All self-metrics.
#[derive(Debug, Default)]
pub struct SelfMetrics {
    /// Track items stored.
    pub items_collected: Counter,
    /// Track items rejected, remote_write requests rejected.
    pub errors: Counter,
    /// Samples stored (all ingest paths).
    pub points_stored: Counter,
    /// Samples rejected (all ingest paths): `dropped_points`.
    pub points_dropped: Counter,
    /// Track items that broke the naming policy (warn or enforce).
    pub naming_violations: Counter,
    /// `/metrics` exports served.
    pub exports: Counter,
    /// Aggregated exports computed (`aggregator.total_windows`).
    pub windows: Counter,
    /// Series in the last aggregated export.
    pub aggregated_series: AtomicU64,
    /// Unix ms of the last export (0 = none).
    pub last_export_ms: AtomicU64,
    /// Requests refused with 503 because `max_concurrent_requests` were in flight.
    pub requests_shed: Counter,
    /// Requests answered 503 after `request_timeout_seconds` (`query_timeout_seconds` for
    /// PromQL queries, when longer).
    pub requests_timed_out: Counter,
    /// remote_write metadata entries dropped (invalid family name, or a tenant's family
    /// limit reached).
    pub metadata_dropped: Counter,
    /// Series held by the collector (set by its eviction pass).
    pub collector_series: AtomicU64,
    /// Series states evicted by the collector.
    pub collector_evictions: Counter,
    /// Samples stored and rejected per tenant, for `/metrics/stats` (a tenant is shown its
    /// own figures). Only tenants that exist in the store are counted, so it is bounded by
    /// `max_tenants`.
    tenant_points: Mutex<std::collections::HashMap<String, [u64; 2]>>,
    collection: Mutex<Histogram>,
    http: Mutex<BTreeMap<(String, String, u16), u64>>,
    http_duration: Mutex<BTreeMap<String, Histogram>>,
}

impl SelfMetrics {
    /// Counts `stored` and `dropped` samples of `tenant`, which must exist in the store.
    pub fn add_tenant_points(&self, tenant: &str, stored: u64, dropped: u64) {
        if stored == 0 && dropped == 0 {
            return;
        }
        let mut m = self.tenant_points.lock();
        match m.get_mut(tenant) {
            Some(c) => {
                c[0] += stored;
                c[1] += dropped;
            }
            None => {
                m.insert(tenant.to_owned(), [stored, dropped]);
            }
        }
    }

    /// Drops the counts of a tenant the store forgot (created for a write it refused whole),
    /// so refused writes to ever new tenant ids cannot grow this table.
    pub fn forget_tenant(&self, tenant: &str) {
        self.tenant_points.lock().remove(tenant);
    }

    /// Samples of `tenant` stored and rejected since start.
    pub fn tenant_points(&self, tenant: &str) -> (u64, u64) {
        self.tenant_points
            .lock()
            .get(tenant)
            .map_or((0, 0), |c| (c[0], c[1]))
    }

    /// Records the duration of one collection (track) request.
    pub fn observe_collection(&self, secs: f64) {
        self.collection.lock().observe(secs);
    }

    /// Records one HTTP request.
    pub fn observe_http(&self, route: &str, method: &str, status: u16, secs: f64) {
        *self
            .http
            .lock()
            .entry((route.to_owned(), method.to_owned(), status))
            .or_default() += 1;
        self.http_duration
            .lock()
            .entry(route.to_owned())
            .or_default()
            .observe(secs);
    }

    /// The self-metrics as families for the one text writer (`metricsd_ingest`), so they are
    /// formatted and escaped exactly like tracked series. `series` is the number of series
    /// in the store; names in `skip` (tracked by users) are left out.
    pub fn families(
        &self,
        series: u64,
        tsdb: Option<&metricsd_tsdb::Gauges>,
        open_tenants: usize,
        skip: &dyn Fn(&str) -> bool,
    ) -> Vec<MetricFamily> {
        let mut out = Vec::new();
        let mut fam = |name: &str, kind: FamilyKind, help: &str, samples: Vec<FamilySample>| {
            if !skip(name) {
                out.push(MetricFamily {
                    name: name.to_owned(),
                    help: Some(help.to_owned()),
                    kind,
                    unit: None,
                    samples,
                });
            }
        };
        let one = |v: f64| vec![sample("", Labels::empty(), v)];
        let mut collection = Vec::new();
        self.collection.lock().samples(&[], &mut collection);
        fam(
            "metrics_collected_total",
            FamilyKind::Counter,
            "Track items stored.",
            one(self.items_collected.get() as f64),
        );
        fam(
            "metrics_collection_duration_seconds",
            FamilyKind::Histogram,
            "Duration of track requests.",
            collection,
        );
        fam(
            "metrics_series_total",
            FamilyKind::Gauge,
            "Series in the store's head, all tenants.",
            one(series as f64),
        );
        fam(
            "metrics_points_total",
            FamilyKind::Counter,
            "Samples stored, all ingest paths.",
            one(self.points_stored.get() as f64),
        );
        fam(
            "metrics_points_dropped_total",
            FamilyKind::Counter,
            "Samples rejected, all ingest paths.",
            one(self.points_dropped.get() as f64),
        );
        fam(
            "metrics_naming_violations_total",
            FamilyKind::Counter,
            "Track items that broke the naming policy.",
            one(self.naming_violations.get() as f64),
        );
        fam(
            "metrics_exported_total",
            FamilyKind::Counter,
            "Exports served on /metrics.",
            one(self.exports.get() as f64),
        );
        fam(
            "metrics_errors_total",
            FamilyKind::Counter,
            "Rejected track items and remote_write requests.",
            one(self.errors.get() as f64),
        );
        let requests = self
            .http
            .lock()
            .iter()
            .map(|((route, method, status), n)| {
                let status = status.to_string();
                let l = Labels::from_pairs([
                    ("route", route.as_str()),
                    ("method", method.as_str()),
                    ("status", status.as_str()),
                ]);
                sample("", l, *n as f64)
            })
            .collect();
        fam(
            "metricsd_http_requests_total",
            FamilyKind::Counter,
            "HTTP requests by route, method and status.",
            requests,
        );
        let mut durations = Vec::new();
        for (route, h) in self.http_duration.lock().iter() {
            h.samples(&[("route", route)], &mut durations);
        }
        fam(
            "metricsd_http_request_duration_seconds",
            FamilyKind::Histogram,
            "HTTP request durations by route.",
            durations,
        );
        fam(
            "metricsd_http_requests_shed_total",
            FamilyKind::Counter,
            "Requests refused because max_concurrent_requests were in flight.",
            one(self.requests_shed.get() as f64),
        );
        fam(
            "metricsd_http_requests_timed_out_total",
            FamilyKind::Counter,
            "Requests answered 503 after request_timeout_seconds (query_timeout_seconds for PromQL queries, when longer).",
            one(self.requests_timed_out.get() as f64),
        );
        fam(
            "metricsd_remote_write_metadata_dropped_total",
            FamilyKind::Counter,
            "remote_write metadata entries dropped: invalid family name, or the tenant's family limit reached.",
            one(self.metadata_dropped.get() as f64),
        );
        fam(
            "metricsd_collector_series",
            FamilyKind::Gauge,
            "Series whose state the track-API collector holds in memory.",
            one(self.collector_series.load(Ordering::Relaxed) as f64),
        );
        fam(
            "metricsd_collector_evictions_total",
            FamilyKind::Counter,
            "Series state dropped after series_idle_timeout_seconds without updates.",
            one(self.collector_evictions.get() as f64),
        );
        tsdb_families(tsdb, open_tenants, &mut fam);
        let p = process_stats();
        if let Some(cpu) = p.cpu_seconds {
            fam(
                "process_cpu_seconds_total",
                FamilyKind::Counter,
                "User and system CPU time in seconds.",
                one(cpu),
            );
        }
        if let Some(rss) = p.rss_bytes {
            fam(
                "process_resident_memory_bytes",
                FamilyKind::Gauge,
                "Resident memory in bytes.",
                one(rss as f64),
            );
        }
        if let Some(fds) = p.open_fds {
            fam(
                "process_open_fds",
                FamilyKind::Gauge,
                "Open file descriptors.",
                one(fds as f64),
            );
        }
        out
    }
}

/// The asking tenant's store figures (no tenant label, as `metrics_series_total`: one
/// tenant's export names no other tenant), and how many tenants' stores are open. A tenant
/// without a store yet has none of the `metricsd_tsdb_*` samples but the count.
fn tsdb_families(
    tsdb: Option<&metricsd_tsdb::Gauges>,
    open_tenants: usize,
    fam: &mut impl FnMut(&str, FamilyKind, &str, Vec<FamilySample>),
) {
    use metricsd_tsdb::Gauges;
    type Get = fn(&Gauges) -> f64;
    let rows: [(&str, FamilyKind, &str, Get); 15] = [
        (
            "metricsd_tsdb_head_series",
            FamilyKind::Gauge,
            "Series in the head.",
            |g| g.head_series as f64,
        ),
        (
            "metricsd_tsdb_head_chunks",
            FamilyKind::Gauge,
            "Chunks in the head (in memory and in chunks_head files).",
            |g| g.head_chunks as f64,
        ),
        (
            "metricsd_tsdb_head_memory_bytes",
            FamilyKind::Gauge,
            "Estimated bytes of memory the head holds.",
            |g| g.head_bytes as f64,
        ),
        (
            "metricsd_tsdb_head_chunk_file_bytes",
            FamilyKind::Gauge,
            "Bytes of closed head chunks moved to chunks_head files.",
            |g| g.head_chunk_file_bytes as f64,
        ),
        (
            "metricsd_tsdb_head_samples_appended_total",
            FamilyKind::Counter,
            "Samples appended to the head since the tenant's store opened.",
            |g| g.head_samples_appended as f64,
        ),
        (
            "metricsd_tsdb_out_of_order_samples_appended_total",
            FamilyKind::Counter,
            "Out-of-order samples appended since the store opened.",
            |g| g.head_ooo_samples_appended as f64,
        ),
        (
            "metricsd_tsdb_head_series_created_total",
            FamilyKind::Counter,
            "Head series created since the store opened.",
            |g| g.head_series_created as f64,
        ),
        (
            "metricsd_tsdb_head_series_removed_total",
            FamilyKind::Counter,
            "Head series garbage-collected since the store opened.",
            |g| g.head_series_removed as f64,
        ),
        (
            "metricsd_tsdb_samples_rejected_total",
            FamilyKind::Counter,
            "Samples the store rejected since it opened.",
            |g| g.samples_rejected as f64,
        ),
        (
            "metricsd_tsdb_wal_bytes",
            FamilyKind::Gauge,
            "Bytes of the WAL (segments and checkpoint) on disk.",
            |g| g.wal_bytes as f64,
        ),
        (
            "metricsd_tsdb_wal_fsyncs_total",
            FamilyKind::Counter,
            "WAL fsyncs since the store opened.",
            |g| g.wal_fsyncs as f64,
        ),
        (
            "metricsd_tsdb_wal_fsync_duration_seconds_total",
            FamilyKind::Counter,
            "Time spent in WAL fsyncs since the store opened.",
            |g| g.wal_fsync_seconds,
        ),
        (
            "metricsd_tsdb_compactions_total",
            FamilyKind::Counter,
            "Compactions that cut the head, merged or deleted blocks, since the store opened.",
            |g| g.compactions as f64,
        ),
        (
            "metricsd_tsdb_blocks",
            FamilyKind::Gauge,
            "Persisted blocks.",
            |g| g.blocks as f64,
        ),
        (
            "metricsd_tsdb_block_bytes",
            FamilyKind::Gauge,
            "Bytes of persisted blocks on disk.",
            |g| g.block_bytes as f64,
        ),
    ];
    if let Some(g) = tsdb {
        for (name, kind, help, get) in rows {
            fam(name, kind, help, vec![sample("", Labels::empty(), get(g))]);
        }
    }
    fam(
        "metricsd_tsdb_open_tenants",
        FamilyKind::Gauge,
        "Tenants whose store is open (idle ones are closed), all tenants.",
        vec![sample("", Labels::empty(), open_tenants as f64)],
    );
}

/// Process figures from `/proc/self` (None where unavailable).
#[derive(Debug, Default)]
pub struct ProcessStats {
    /// utime + stime in seconds.
    pub cpu_seconds: Option<f64>,
    /// VmRSS in bytes.
    pub rss_bytes: Option<u64>,
    /// Entries of `/proc/self/fd`.
    pub open_fds: Option<u64>,
}

/// Reads [`ProcessStats`].
pub fn process_stats() -> ProcessStats {
    let mut p = ProcessStats::default();
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the parenthesised command name; utime and stime are the 14th and
        // 15th fields overall, in clock ticks (100 per second on Linux).
        if let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            if let (Some(u), Some(s)) = (
                f.get(11).and_then(|x| x.parse::<u64>().ok()),
                f.get(12).and_then(|x| x.parse::<u64>().ok()),
            ) {
                p.cpu_seconds = Some((u + s) as f64 / 100.0);
            }
        }
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        p.rss_bytes = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024);
    }
    if let Ok(rd) = std::fs::read_dir("/proc/self/fd") {
        p.open_fds = Some(rd.count() as u64);
    }
    p
}
