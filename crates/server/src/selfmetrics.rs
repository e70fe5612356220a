//! The service's own metrics, exposed on `/metrics` after the tracked series: seed 000's
//! list, HTTP request metrics by route and status, and process metrics from `/proc`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

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
        for (i, b) in DURATION_BUCKETS.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in DURATION_BUCKETS.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
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
    collection: Mutex<Histogram>,
    http: Mutex<BTreeMap<(String, String, u16), u64>>,
    http_duration: Mutex<BTreeMap<String, Histogram>>,
}

impl SelfMetrics {
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

    /// Writes the self-metrics in the Prometheus text format. `series` is the number of
    /// series in the store; names in `skip` (tracked by users) are left out.
    pub fn write(&self, out: &mut String, series: u64, skip: &dyn Fn(&str) -> bool) {
        let mut fam = |name: &str, kind: &str, help: &str, body: &dyn Fn(&mut String)| {
            if skip(name) {
                return;
            }
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            body(out);
        };
        fam(
            "metrics_collected_total",
            "counter",
            "Track items stored.",
            &|o| {
                let _ = writeln!(o, "metrics_collected_total {}", self.items_collected.get());
            },
        );
        fam(
            "metrics_collection_duration_seconds",
            "histogram",
            "Duration of track requests.",
            &|o| {
                self.collection
                    .lock()
                    .write(o, "metrics_collection_duration_seconds", "");
            },
        );
        fam(
            "metrics_series_total",
            "gauge",
            "Series in the store's head, all tenants.",
            &|o| {
                let _ = writeln!(o, "metrics_series_total {series}");
            },
        );
        fam(
            "metrics_points_total",
            "counter",
            "Samples stored, all ingest paths.",
            &|o| {
                let _ = writeln!(o, "metrics_points_total {}", self.points_stored.get());
            },
        );
        fam(
            "metrics_points_dropped_total",
            "counter",
            "Samples rejected, all ingest paths.",
            &|o| {
                let _ = writeln!(o, "metrics_points_dropped_total {}", self.points_dropped.get());
            },
        );
        fam(
            "metrics_naming_violations_total",
            "counter",
            "Track items that broke the naming policy.",
            &|o| {
                let _ = writeln!(
                    o,
                    "metrics_naming_violations_total {}",
                    self.naming_violations.get()
                );
            },
        );
        fam(
            "metrics_exported_total",
            "counter",
            "Exports served on /metrics.",
            &|o| {
                let _ = writeln!(o, "metrics_exported_total {}", self.exports.get());
            },
        );
        fam(
            "metrics_errors_total",
            "counter",
            "Rejected track items and remote_write requests.",
            &|o| {
                let _ = writeln!(o, "metrics_errors_total {}", self.errors.get());
            },
        );
        fam(
            "metricsd_http_requests_total",
            "counter",
            "HTTP requests by route, method and status.",
            &|o| {
                for ((route, method, status), n) in self.http.lock().iter() {
                    let _ = writeln!(
                        o,
                        "metricsd_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                        crate::exposition::escape_label_value(route)
                    );
                }
            },
        );
        fam(
            "metricsd_http_request_duration_seconds",
            "histogram",
            "HTTP request durations by route.",
            &|o| {
                for (route, h) in self.http_duration.lock().iter() {
                    let labels = format!("route=\"{}\"", crate::exposition::escape_label_value(route));
                    h.write(o, "metricsd_http_request_duration_seconds", &labels);
                }
            },
        );
        let p = process_stats();
        if let Some(cpu) = p.cpu_seconds {
            fam(
                "process_cpu_seconds_total",
                "counter",
                "User and system CPU time in seconds.",
                &|o| {
                    let _ = writeln!(o, "process_cpu_seconds_total {cpu}");
                },
            );
        }
        if let Some(rss) = p.rss_bytes {
            fam(
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory in bytes.",
                &|o| {
                    let _ = writeln!(o, "process_resident_memory_bytes {rss}");
                },
            );
        }
        if let Some(fds) = p.open_fds {
            fam("process_open_fds", "gauge", "Open file descriptors.", &|o| {
                let _ = writeln!(o, "process_open_fds {fds}");
            });
        }
    }
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
