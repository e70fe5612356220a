//! metricsd-datagen: the one deterministic generator of node_exporter-like data sets.
//!
//! Every test, bench and harness that wants realistic metrics data takes it from here: the
//! harnesses in `bench/`, the chunk codec tests and bench in `metricsd-tsdb`, the decode bench
//! in `metricsd-ingest`. (`bench/src/compat/data.rs`, the PromQL edge-case data set, uses only
//! its [`Rng`].)
//!
//! [`generate`] builds the *shape* of a data set (hosts, metric families, series labels and a
//! per-series behaviour); the samples themselves are produced on demand, one series at a time,
//! by [`DataSet::samples_into`] or [`DataSet::iter`]. Nothing holds all samples at once:
//! 100k series × 480 samples is 48M samples (768 MB as raw `(t, v)`). [`scrape`] gives one
//! scrape of `n` series as label sets and samples, what one remote_write request carries.
//!
//! # Determinism
//! Every series has its own seed, derived from [`GenConfig::seed`] and the stable hash of its
//! labels, and every host has its own seed derived from the config seed and the host number.
//! A series' samples therefore depend only on the config, its labels and its host, never on
//! the order in which series are generated or on how many hosts the data set has.
//!
//! # Shape
//! Each host (`instance="host-00042:9100"`, `job="node"`) exposes the usual node_exporter
//! families with their real label shapes (CPU seconds per `cpu`×`mode`, memory, filesystems
//! per `device`/`fstype`/`mountpoint`, network and disk counters per `device`, hwmon
//! temperatures per `chip`/`sensor`, netstat/sockstat/vmstat, timex, pressure, collector
//! durations, the exporter's own `go_*`/`process_*` metrics) plus the series Prometheus adds
//! per target (`up`, `scrape_*`). A host has roughly 450 to over 1000 series depending on its CPU count
//! (2–32) and devices; on average ≈ 670, so 100k series ≈ 150 hosts.
//!
//! # Value behaviour ([`Profile::Noisy`])
//! - CPU seconds: counters in hundredths (2 decimals, like `/proc/stat`), increments varying
//!   around a per-cpu, per-mode rate (≈0.01–15 s per 15 s); `nice`/`steal`/`irq` often flat.
//! - byte/packet counters: integers with log-normally varying increments; error counters
//!   mostly flat with rare increments; disk bytes are multiples of 512.
//! - memory gauges: multiples of 4096 wandering around a base; filesystem sizes constant,
//!   free/avail slowly moving multiples of 4096; load averages with 2 decimals; temperatures
//!   with 1 decimal; durations with nanosecond resolution (9 decimals); `up` constant 1.
//! - a few hosts (2% by default) reboot inside the window: all their counters reset to ~0 and
//!   `node_boot_time_seconds` changes at that sample.
//!
//! [`Profile::Smooth`] keeps the same series but makes the values easy: integer counters with
//! constant increments, constant gauges and slowly moving integer gauges, no reboots.
//!
//! # Timestamps
//! Every `interval_ms` from `start_ms` (aligned to 2h by default). With `jitter_ms = 0` the
//! timestamps are exact; otherwise each host gets a constant offset in
//! `[jitter, interval - jitter)` (Prometheus spreads targets over the interval) and each scrape
//! `± jitter_ms` of jitter, shared by all series of the host (one scrape, one timestamp).
//! Timestamps stay strictly increasing and inside `[start, start + n × interval)`.
#![warn(clippy::unwrap_used, clippy::panic)]
// Every index is checked (`get`, patterns, iterators) or allowed with the reason its bound
// holds: a series index is the caller's contract, documented under `# Panics` as a slice's.
#![warn(clippy::indexing_slicing)]
#![warn(missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;

use metricsd_model::{Labels, Sample};

/// How the values behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// Realistic: varying counter increments, wandering gauges, decimals, rare resets.
    #[default]
    Noisy,
    /// Easy: integer counters with constant increments, constant or slowly moving integer
    /// gauges.
    Smooth,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// Number of hosts (node_exporter targets).
    pub hosts: usize,
    /// Number of the first host (`host-{first_host:05}`), so shards of a larger set can be made.
    pub first_host: usize,
    /// Timestamp of the first scrape, ms since the epoch.
    pub start_ms: i64,
    /// Scrape interval, ms.
    pub interval_ms: i64,
    /// Samples per series.
    pub samples_per_series: usize,
    /// Maximal scrape jitter, ms (0 = exact timestamps). Must be `< interval_ms / 2`.
    pub jitter_ms: i64,
    /// Value behaviour.
    pub profile: Profile,
    /// Seed of everything.
    pub seed: u64,
    /// Probability that a host reboots (counter resets) inside the window (noisy only).
    pub reboot_prob: f64,
}

/// 2023-11-15T00:00:00Z, a multiple of 2h.
pub const DEFAULT_START_MS: i64 = 1_700_006_400_000;

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            hosts: 1,
            first_host: 0,
            start_ms: DEFAULT_START_MS,
            interval_ms: 15_000,
            samples_per_series: 480,
            jitter_ms: 0,
            profile: Profile::Noisy,
            seed: 42,
            reboot_prob: 0.02,
        }
    }
}

impl GenConfig {
    /// Samples per series for `hours` of scrapes every `interval_ms`.
    pub fn samples_for(hours: f64, interval_ms: i64) -> usize {
        ((hours * 3_600_000.0) / interval_ms as f64).round() as usize
    }
}

/// The OpenMetrics type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Monotonic counter; series names end in `_total`, the family name does not.
    Counter,
    /// Gauge.
    Gauge,
    /// Summary (`name{quantile}`, `name_sum`, `name_count`).
    Summary,
    /// Untyped (node_exporter exposes netstat/vmstat this way).
    Unknown,
}

impl MetricType {
    /// The OpenMetrics spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Summary => "summary",
            MetricType::Unknown => "unknown",
        }
    }
}

/// A metric family: the unit of `# TYPE` in OpenMetrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// Family name (for counters, without `_total`).
    pub name: String,
    /// Type.
    pub mtype: MetricType,
}

/// How one series' values evolve. Values are kept as integer "units" and rendered as
/// `units * mult / div`, so they have exactly the decimals real exporters produce.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// A constant.
    Const(f64),
    /// A constant that changes at the host's reboot (node_boot_time_seconds).
    BootTime { before: f64, after: f64 },
    /// A monotonic counter. `rate` is in units per second; each step adds
    /// `rate × dt × lognormal(cv)` units (0 with probability `idle`); resets at reboot.
    /// `step` > 0 (smooth profile) adds exactly `step` units per sample instead.
    Counter {
        start: f64,
        rate: f64,
        cv: f64,
        idle: f64,
        mult: f64,
        div: f64,
        step: f64,
    },
    /// A mean-reverting random walk in units, clamped to `[lo, hi]`; moves with
    /// probability `p` per step by `N(0, sd)` (or by ±1 unit if `sd == 0`).
    Gauge {
        base: f64,
        sd: f64,
        p: f64,
        revert: f64,
        lo: f64,
        hi: f64,
        mult: f64,
        div: f64,
    },
    /// A fresh positive random value each scrape (durations), units of `1/div`.
    Fresh { median: f64, cv: f64, div: f64 },
    /// `node_time_seconds`: the scrape time in seconds with nanosecond noise.
    UnixTime,
}

impl Behaviour {
    /// The smooth-profile version of this behaviour.
    fn smooth(self, interval_s: f64, rng: &mut Rng) -> Behaviour {
        match self {
            Behaviour::Const(_) | Behaviour::BootTime { .. } => match self {
                Behaviour::BootTime { before, .. } => Behaviour::Const(before),
                b => b,
            },
            Behaviour::Counter {
                start,
                rate,
                mult,
                div,
                ..
            } => {
                // Integer counter, constant increment.
                let per_step = (rate * interval_s * mult / div).round().max(0.0);
                Behaviour::Counter {
                    start: (start * mult / div).round(),
                    rate: 0.0,
                    cv: 0.0,
                    idle: 0.0,
                    mult: 1.0,
                    div: 1.0,
                    step: per_step,
                }
            }
            Behaviour::Gauge {
                base,
                lo,
                hi,
                mult,
                div,
                ..
            } => {
                if mult > 1.0 || rng.f64() < 0.3 {
                    // Slowly moving integer gauge: ±1 unit (a page for memory) now and then.
                    let (m, d) = if mult > 1.0 { (mult, 1.0) } else { (1.0, div) };
                    Behaviour::Gauge {
                        base: (base / d).round(),
                        sd: 0.0,
                        p: 0.05,
                        revert: 0.0,
                        lo: (lo / d).floor(),
                        hi: (hi / d).ceil(),
                        mult: m,
                        div: 1.0,
                    }
                } else {
                    Behaviour::Const((base * mult / div).round())
                }
            }
            Behaviour::Fresh { median, div, .. } => {
                Behaviour::Const((median / div * 1000.0).round() / 1000.0)
            }
            Behaviour::UnixTime => Behaviour::Counter {
                start: 0.0,
                rate: 0.0,
                cv: 0.0,
                idle: 0.0,
                mult: 1.0,
                div: 1.0,
                step: -1.0, // marker: whole seconds of the timestamp, see `next`
            },
        }
    }
}

/// One host's fixed properties.
#[derive(Debug, Clone)]
struct Host {
    seed: u64,
    ncpu: usize,
    offset_ms: i64,
    reboot_at: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
struct Spec {
    host: u32,
    family: u32,
    seed: u64,
    beh: Behaviour,
}

/// A generated data set: series labels and families; samples on demand.
#[derive(Debug, Clone)]
pub struct DataSet {
    /// The series, grouped by family (all series of a family are contiguous, in
    /// [`DataSet::families`] order), hosts in order within a family.
    pub series: Vec<Labels>,
    /// The metric families.
    pub families: Vec<Family>,
    /// The configuration it was generated from.
    pub cfg: GenConfig,
    hosts: Vec<Host>,
    specs: Vec<Spec>,
}

/// Builds the data set described by `cfg` (labels and behaviours; no samples yet).
pub fn generate(cfg: &GenConfig) -> DataSet {
    assert!(cfg.interval_ms > 0, "interval must be positive");
    assert!(
        cfg.jitter_ms >= 0 && cfg.jitter_ms * 2 < cfg.interval_ms,
        "jitter must be in [0, interval/2)"
    );
    let mut cat = Catalogue::default();
    let mut rows: Vec<(u32, u32, usize, Labels, Spec)> = Vec::new();
    let mut hosts = Vec::with_capacity(cfg.hosts);
    for h in 0..cfg.hosts {
        let num = cfg.first_host + h;
        let hseed = mix(cfg.seed ^ mix(num as u64 ^ 0x686f_7374));
        let mut hr = Rng::new(hseed);
        let ncpu = *hr.pick(&[2, 4, 4, 4, 8, 8, 8, 8, 16, 16, 32]);
        // Drawn whether used or not, so that jitter does not change the later draws.
        let r = hr.next_u64();
        let offset_ms = if cfg.jitter_ms > 0 {
            cfg.jitter_ms + (r % (cfg.interval_ms - 2 * cfg.jitter_ms) as u64) as i64
        } else {
            0
        };
        let reboot_at =
            (cfg.profile == Profile::Noisy && cfg.samples_per_series > 1 && hr.f64() < cfg.reboot_prob)
                .then(|| 1 + hr.below(cfg.samples_per_series as u64 - 1) as usize);
        let host = Host {
            seed: hseed,
            ncpu,
            offset_ms,
            reboot_at,
        };
        let mut hb = HostBuilder::new(&mut cat, cfg, num, &host);
        hb.build();
        let out = std::mem::take(&mut hb.out);
        hosts.push(host);
        for (k, (fam, labels, beh)) in out.into_iter().enumerate() {
            let seed = mix(cfg.seed ^ labels.stable_hash());
            let spec = Spec {
                host: h as u32,
                family: fam,
                seed,
                beh,
            };
            rows.push((fam, h as u32, k, labels, spec));
        }
    }
    rows.sort_by_key(|r| (r.0, r.1, r.2));
    let mut series = Vec::with_capacity(rows.len());
    let mut specs = Vec::with_capacity(rows.len());
    for (_, _, _, l, s) in rows {
        series.push(l);
        specs.push(s);
    }
    DataSet {
        series,
        families: cat.families,
        cfg: cfg.clone(),
        hosts,
        specs,
    }
}

impl DataSet {
    /// Number of series.
    pub fn num_series(&self) -> usize {
        self.series.len()
    }

    /// Number of hosts.
    pub fn num_hosts(&self) -> usize {
        self.hosts.len()
    }

    /// Total number of samples.
    pub fn num_samples(&self) -> u64 {
        self.series.len() as u64 * self.cfg.samples_per_series as u64
    }

    /// Series `idx`'s spec and host. Panics if `idx >= self.num_series()`, as indexing a
    /// slice does: the methods taking a series index say so under `# Panics`.
    #[allow(
        clippy::indexing_slicing,
        reason = "`idx < num_series()` is the caller's contract, as for a slice index; a spec's `host` is the index `generate` gave it into `hosts`"
    )]
    fn spec(&self, idx: usize) -> (&Spec, &Host) {
        let spec = &self.specs[idx];
        (spec, &self.hosts[spec.host as usize])
    }

    /// The family (index into [`DataSet::families`]) of series `idx`.
    ///
    /// # Panics
    /// If `idx >= self.num_series()`.
    pub fn family_of(&self, idx: usize) -> usize {
        self.spec(idx).0.family as usize
    }

    /// Whether series `idx` is a counter (its samples never decrease except at resets).
    ///
    /// # Panics
    /// If `idx >= self.num_series()`.
    pub fn is_counter(&self, idx: usize) -> bool {
        matches!(self.spec(idx).0.beh, Behaviour::Counter { .. })
    }

    /// The sample index at which series `idx`'s host reboots (counters reset), if it does.
    ///
    /// # Panics
    /// If `idx >= self.num_series()`.
    pub fn reset_at(&self, idx: usize) -> Option<usize> {
        self.spec(idx).1.reboot_at
    }

    /// Timestamp of scrape `i` of host `h` (index within this data set).
    fn timestamp(&self, h: &Host, i: usize) -> i64 {
        let base = self.cfg.start_ms + h.offset_ms + i as i64 * self.cfg.interval_ms;
        if self.cfg.jitter_ms == 0 {
            return base;
        }
        let j = self.cfg.jitter_ms;
        let r = mix(h.seed ^ mix(i as u64 ^ 0x6a69_7474_6572));
        base + (r % (2 * j as u64 + 1)) as i64 - j
    }

    /// The samples of series `idx`, as a new vector.
    ///
    /// # Panics
    /// If `idx >= self.num_series()`.
    pub fn samples(&self, idx: usize) -> Vec<Sample> {
        let mut v = Vec::with_capacity(self.cfg.samples_per_series);
        self.samples_into(idx, &mut v);
        v
    }

    /// Replaces the contents of `out` with the samples of series `idx`.
    ///
    /// # Panics
    /// If `idx >= self.num_series()`.
    pub fn samples_into(&self, idx: usize, out: &mut Vec<Sample>) {
        out.clear();
        let (spec, host) = self.spec(idx);
        let mut rng = Rng::new(spec.seed);
        let mut st = State::new(&spec.beh);
        let mut prev_t = self.timestamp(host, 0) - self.cfg.interval_ms;
        for i in 0..self.cfg.samples_per_series {
            let t = self.timestamp(host, i);
            let dt = (t - prev_t) as f64 / 1000.0;
            prev_t = t;
            let reboot = host.reboot_at.map(|r| (r == i, i >= r)).unwrap_or((false, false));
            let v = st.next(&spec.beh, &mut rng, t, dt, reboot.0, reboot.1);
            out.push(Sample::new(t, v));
        }
    }

    /// Iterates over `(series index, samples)` in series order, one series at a time.
    pub fn iter(&self) -> impl Iterator<Item = (usize, Vec<Sample>)> + '_ {
        (0..self.series.len()).map(move |i| (i, self.samples(i)))
    }
}

/// Mutable per-series state while generating.
struct State {
    units: f64,
}

impl State {
    fn new(b: &Behaviour) -> Self {
        let units = match *b {
            Behaviour::Counter { start, .. } => start,
            Behaviour::Gauge { base, .. } => base,
            _ => 0.0,
        };
        State { units }
    }

    fn next(&mut self, b: &Behaviour, rng: &mut Rng, t: i64, dt: f64, reboot: bool, rebooted: bool) -> f64 {
        match *b {
            Behaviour::Const(v) => v,
            Behaviour::BootTime { before, after } => {
                if rebooted {
                    after
                } else {
                    before
                }
            }
            Behaviour::Counter {
                rate,
                cv,
                idle,
                mult,
                div,
                step,
                ..
            } => {
                if step < 0.0 {
                    return (t.div_euclid(1000)) as f64;
                }
                if reboot {
                    self.units = 0.0;
                }
                let inc = if step > 0.0 {
                    step
                } else if rate <= 0.0 || rng.f64() < idle {
                    0.0
                } else {
                    let x = rate * dt * (cv * rng.gauss() - cv * cv / 2.0).exp();
                    // Stochastic rounding keeps the mean rate for small increments.
                    (x + rng.f64()).floor()
                };
                self.units += inc;
                self.units * mult / div
            }
            Behaviour::Gauge {
                base,
                sd,
                p,
                revert,
                lo,
                hi,
                mult,
                div,
            } => {
                if rng.f64() < p {
                    let d = if sd == 0.0 {
                        if rng.f64() < 0.5 { -1.0 } else { 1.0 }
                    } else {
                        (sd * rng.gauss()).round()
                    };
                    self.units += d + (revert * (base - self.units)).round();
                    self.units = self.units.clamp(lo, hi);
                }
                self.units * mult / div
            }
            Behaviour::Fresh { median, cv, div } => {
                let x = (median * (cv * rng.gauss()).exp()).round().max(1.0);
                x / div
            }
            Behaviour::UnixTime => {
                // Seconds with nanoseconds: scrape time plus 0–3 ms of processing.
                let ns = t as f64 * 1e6 + rng.below(3_000_000) as f64;
                ns / 1e9
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Randomness: splitmix64, no dependency.

/// splitmix64's finaliser.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A splitmix64 generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform in `[0, n)` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }
    /// Standard normal (Box–Muller).
    pub fn gauss(&mut self) -> f64 {
        let u1 = 1.0 - self.f64();
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    /// One element of `xs`.
    ///
    /// # Panics
    /// If `xs` is empty.
    #[allow(
        clippy::indexing_slicing,
        reason = "`below(n)` is less than `n`: in bounds for any non-empty `xs`"
    )]
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------------------
// The catalogue of node_exporter series.

#[derive(Default)]
struct Catalogue {
    families: Vec<Family>,
    by_name: HashMap<String, u32>,
}

impl Catalogue {
    fn family(&mut self, name: &str, mtype: MetricType) -> u32 {
        if let Some(&i) = self.by_name.get(name) {
            return i;
        }
        let i = self.families.len() as u32;
        self.families.push(Family {
            name: name.to_string(),
            mtype,
        });
        self.by_name.insert(name.to_string(), i);
        i
    }
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

struct HostBuilder<'a> {
    cat: &'a mut Catalogue,
    profile: Profile,
    interval_s: f64,
    start_s: f64,
    instance: Arc<str>,
    job: Arc<str>,
    host: &'a Host,
    rng: Rng,
    uptime_s: f64,
    busy: f64,
    out: Vec<(u32, Labels, Behaviour)>,
}

/// Shorthands for behaviours.
fn konst(v: f64) -> Behaviour {
    Behaviour::Const(v)
}

impl<'a> HostBuilder<'a> {
    fn new(cat: &'a mut Catalogue, cfg: &GenConfig, num: usize, host: &'a Host) -> Self {
        let mut rng = Rng::new(mix(host.seed ^ 0x6361_7461));
        let uptime_s = rng.range(3_600.0, 200.0 * 86_400.0).round();
        let busy = rng.range(0.02, 0.6);
        HostBuilder {
            cat,
            profile: cfg.profile,
            interval_s: cfg.interval_ms as f64 / 1000.0,
            start_s: (cfg.start_ms / 1000) as f64,
            instance: Arc::from(format!("host-{num:05}:9100")),
            job: Arc::from("node"),
            host,
            rng,
            uptime_s,
            busy,
            out: Vec::new(),
        }
    }

    fn push(&mut self, mtype: MetricType, family: &str, name: &str, labels: &[(&str, &str)], beh: Behaviour) {
        let fam = self.cat.family(family, mtype);
        let mut pairs: Vec<(Arc<str>, Arc<str>)> = Vec::with_capacity(labels.len() + 3);
        pairs.push((Arc::from("__name__"), Arc::from(name)));
        pairs.push((Arc::from("instance"), self.instance.clone()));
        pairs.push((Arc::from("job"), self.job.clone()));
        for (n, v) in labels {
            pairs.push((Arc::from(*n), Arc::from(*v)));
        }
        let labels = Labels::from_pairs(pairs);
        let beh = if self.profile == Profile::Smooth {
            // A generator of its own: the host's generator must draw the same numbers in both
            // profiles, or the smooth data set would get other devices and mounts.
            beh.smooth(
                self.interval_s,
                &mut Rng::new(mix(labels.stable_hash() ^ 0x736d_6f6f_7468)),
            )
        } else {
            beh
        };
        self.out.push((fam, labels, beh));
    }

    /// A counter `name` (ending in `_total`).
    fn counter(&mut self, name: &str, labels: &[(&str, &str)], beh: Behaviour) {
        let fam = name.strip_suffix("_total").unwrap_or(name).to_string();
        self.push(MetricType::Counter, &fam, name, labels, beh);
    }
    fn gauge(&mut self, name: &str, labels: &[(&str, &str)], beh: Behaviour) {
        self.push(MetricType::Gauge, name, name, labels, beh);
    }
    fn untyped(&mut self, name: &str, labels: &[(&str, &str)], beh: Behaviour) {
        self.push(MetricType::Unknown, name, name, labels, beh);
    }

    /// An integer-ish counter: `per_s` units per second, `mult` bytes per unit.
    fn cnt(&mut self, per_s: f64, cv: f64, idle: f64, mult: f64) -> Behaviour {
        let rate = per_s * self.rng.range(0.3, 3.0);
        Behaviour::Counter {
            start: (rate * self.uptime_s * self.rng.range(0.5, 1.5)).round(),
            rate,
            cv,
            idle,
            mult,
            div: 1.0,
            step: 0.0,
        }
    }
    /// A counter of seconds with `decimals` decimals, `per_s` seconds per second.
    fn secs(&mut self, per_s: f64, decimals: i32, cv: f64, idle: f64) -> Behaviour {
        let div = 10f64.powi(decimals);
        let rate = per_s * div;
        Behaviour::Counter {
            start: (rate * self.uptime_s).round(),
            rate,
            cv,
            idle,
            mult: 1.0,
            div,
            step: 0.0,
        }
    }
    /// A wandering gauge in units of `mult / div`.
    #[allow(clippy::too_many_arguments)]
    fn wander(&mut self, base: f64, sd: f64, p: f64, lo: f64, hi: f64, mult: f64, div: f64) -> Behaviour {
        Behaviour::Gauge {
            base: base.round(),
            sd,
            p,
            revert: 0.05,
            lo,
            hi,
            mult,
            div,
        }
    }
    /// A gauge of bytes in pages around `bytes`, moving by ~`rel` of itself per step.
    fn mem(&mut self, bytes: f64, rel: f64, p: f64) -> Behaviour {
        let pages = (bytes / 4096.0).round().max(0.0);
        self.wander(
            pages,
            (pages * rel).max(1.0),
            p,
            0.0,
            pages * 4.0 + 16.0,
            4096.0,
            1.0,
        )
    }
    fn dur(&mut self, median_s: f64, cv: f64) -> Behaviour {
        Behaviour::Fresh {
            median: median_s * 1e9,
            cv,
            div: 1e9,
        }
    }

    fn build(&mut self) {
        self.cpu();
        self.memory();
        self.filesystems();
        self.network();
        self.disks();
        self.hwmon();
        self.system();
        self.netstat();
        self.exporter();
        self.scrape();
    }

    fn cpu(&mut self) {
        let ncpu = self.host.ncpu;
        let busy = self.busy;
        let freq_max = *self.rng.pick(&[2.4e9, 3.0e9, 3.5e9, 4.2e9]);
        for c in 0..ncpu {
            let cpu = c.to_string();
            let f = self.rng.range(0.5, 1.5);
            let user = busy * 0.7 * f;
            let system = busy * 0.22 * f;
            let iowait = 0.01 * f * self.rng.f64();
            let softirq = busy * 0.02 * f;
            let steal = 0.003 * self.rng.f64();
            let idle = (1.0 - user - system - iowait - softirq - steal).max(0.01);
            let modes: [(&str, f64, f64, f64); 8] = [
                ("idle", idle, 0.05, 0.0),
                ("iowait", iowait, 1.0, 0.3),
                ("irq", 0.0005, 1.0, 0.7),
                ("nice", 0.0004, 1.0, 0.9),
                ("softirq", softirq, 0.6, 0.05),
                ("steal", steal, 1.0, 0.5),
                ("system", system, 0.5, 0.0),
                ("user", user, 0.6, 0.0),
            ];
            for (mode, rate, cv, idle_p) in modes {
                let b = self.secs(rate, 2, cv, idle_p);
                self.counter("node_cpu_seconds_total", &[("cpu", &cpu), ("mode", mode)], b);
            }
            for mode in ["nice", "user"] {
                let b = self.secs(0.0, 2, 0.0, 1.0);
                self.counter(
                    "node_cpu_guest_seconds_total",
                    &[("cpu", &cpu), ("mode", mode)],
                    b,
                );
            }
            let fb = (freq_max * self.rng.range(0.4, 1.0) / 1000.0).round();
            let b = self.wander(
                fb,
                freq_max / 1000.0 * 0.15,
                0.8,
                400_000.0,
                freq_max / 1000.0,
                1000.0,
                1.0,
            );
            self.gauge("node_cpu_scaling_frequency_hertz", &[("cpu", &cpu)], b);
            self.gauge(
                "node_cpu_scaling_frequency_max_hertz",
                &[("cpu", &cpu)],
                konst(freq_max),
            );
            self.gauge(
                "node_cpu_scaling_frequency_min_hertz",
                &[("cpu", &cpu)],
                konst(4.0e8),
            );
            // schedstat: nanosecond resolution seconds.
            let b = self.secs(busy * f, 9, 0.5, 0.0);
            self.counter("node_schedstat_running_seconds_total", &[("cpu", &cpu)], b);
            let b = self.secs(busy * f * 0.05, 9, 0.8, 0.0);
            self.counter("node_schedstat_waiting_seconds_total", &[("cpu", &cpu)], b);
            let b = self.cnt(200.0 * busy, 0.5, 0.0, 1.0);
            self.counter("node_schedstat_timeslices_total", &[("cpu", &cpu)], b);
            let b = self.cnt(300.0 * busy, 0.7, 0.0, 1.0);
            self.counter("node_softnet_processed_total", &[("cpu", &cpu)], b);
            let b = self.cnt(0.0001, 1.0, 0.999, 1.0);
            self.counter("node_softnet_dropped_total", &[("cpu", &cpu)], b);
            let b = self.cnt(0.01, 1.0, 0.95, 1.0);
            self.counter("node_softnet_times_squeezed_total", &[("cpu", &cpu)], b);
        }
    }

    fn memory(&mut self) {
        let total = *self.rng.pick(&[4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]) * GIB * 0.97;
        let total = (total / 4096.0).round() * 4096.0;
        let used = self.rng.range(0.2, 0.85);
        let swap = *self.rng.pick(&[0.0, 0.0, 2.0 * GIB, 4.0 * GIB]);
        let m = |n: &str| format!("node_memory_{n}_bytes");
        self.gauge(&m("MemTotal"), &[], konst(total));
        let dynamic: [(&str, f64, f64); 27] = [
            ("MemFree", total * (1.0 - used) * 0.3, 0.01),
            ("MemAvailable", total * (1.0 - used), 0.005),
            ("Buffers", total * 0.02, 0.002),
            ("Cached", total * (1.0 - used) * 0.6, 0.003),
            ("SwapCached", swap * 0.01, 0.01),
            ("Active", total * used * 0.6, 0.004),
            ("Inactive", total * used * 0.4, 0.004),
            ("Active_anon", total * used * 0.4, 0.004),
            ("Inactive_anon", total * used * 0.1, 0.004),
            ("Active_file", total * used * 0.2, 0.004),
            ("Inactive_file", total * used * 0.3, 0.004),
            ("Dirty", 4.0e6, 0.5),
            ("Writeback", 0.0, 0.0),
            ("AnonPages", total * used * 0.5, 0.004),
            ("Mapped", total * 0.03, 0.003),
            ("Shmem", total * 0.01, 0.002),
            ("KReclaimable", total * 0.04, 0.002),
            ("Slab", total * 0.05, 0.002),
            ("SReclaimable", total * 0.04, 0.002),
            ("SUnreclaim", total * 0.01, 0.002),
            ("KernelStack", 2.0e7, 0.01),
            ("PageTables", total * 0.005, 0.005),
            ("Committed_AS", total * used * 1.5, 0.003),
            ("SwapFree", swap * 0.9, 0.001),
            ("VmallocUsed", 5.0e7, 0.001),
            ("Percpu", 4.0e6 * self.host.ncpu as f64, 0.0),
            ("AnonHugePages", total * 0.02, 0.01),
        ];
        for (name, bytes, rel) in dynamic {
            let b = if rel == 0.0 {
                konst((bytes / 4096.0).round() * 4096.0)
            } else {
                let p = self.rng.range(0.3, 1.0);
                self.mem(bytes, rel, p)
            };
            self.gauge(&m(name), &[], b);
        }
        let consts: [(&str, f64); 13] = [
            ("SwapTotal", swap),
            ("CommitLimit", total / 2.0 + swap),
            ("VmallocTotal", 35_184_372_087_808.0),
            ("Hugepagesize", 2_097_152.0),
            ("Hugetlb", 0.0),
            ("Bounce", 0.0),
            ("NFS_Unstable", 0.0),
            ("WritebackTmp", 0.0),
            ("Mlocked", 0.0),
            ("Unevictable", 0.0),
            ("DirectMap4k", 2.0e8),
            ("DirectMap2M", total * 0.6),
            ("DirectMap1G", total * 0.4),
        ];
        for (name, v) in consts {
            self.gauge(&m(name), &[], konst((v / 4096.0).round() * 4096.0));
        }
        for n in [
            "HugePages_Free",
            "HugePages_Rsvd",
            "HugePages_Surp",
            "HugePages_Total",
        ] {
            self.gauge(&format!("node_memory_{n}"), &[], konst(0.0));
        }
    }

    fn filesystems(&mut self) {
        let root_dev = *self.rng.pick(&["/dev/sda1", "/dev/vda1", "/dev/nvme0n1p1"]);
        let mut mounts: Vec<(&str, &str, &str, f64)> = vec![
            (
                root_dev,
                "ext4",
                "/",
                *self.rng.pick(&[20.0, 50.0, 100.0, 500.0]) * GIB,
            ),
            ("tmpfs", "tmpfs", "/run", 0.8 * GIB),
            ("tmpfs", "tmpfs", "/run/lock", 5.0 * 1024.0 * 1024.0),
            ("tmpfs", "tmpfs", "/dev/shm", 4.0 * GIB),
        ];
        if self.rng.f64() < 0.5 {
            mounts.push(("/dev/sda15", "vfat", "/boot/efi", 0.1 * GIB));
        }
        if self.rng.f64() < 0.4 {
            mounts.push((
                "/dev/sdb1",
                "xfs",
                "/data",
                *self.rng.pick(&[500.0, 1000.0, 4000.0]) * GIB,
            ));
        }
        if self.rng.f64() < 0.3 {
            mounts.push(("tmpfs", "tmpfs", "/run/user/1000", 0.8 * GIB));
        }
        for (dev, fstype, mp, size) in mounts {
            let l = [("device", dev), ("fstype", fstype), ("mountpoint", mp)];
            let blocks = (size / 4096.0).round();
            let used = self.rng.range(0.01, 0.9);
            let free = (blocks * (1.0 - used)).round();
            let reserved = if fstype == "ext4" {
                (blocks * 0.05).round()
            } else {
                0.0
            };
            let moving = matches!(mp, "/" | "/data" | "/run");
            let p = if moving { 0.5 } else { 0.02 };
            let sd = (blocks * 0.0002).max(1.0);
            self.gauge("node_filesystem_size_bytes", &l, konst(blocks * 4096.0));
            let b = Behaviour::Gauge {
                base: free,
                sd,
                p,
                revert: 0.0,
                lo: 0.0,
                hi: blocks,
                mult: 4096.0,
                div: 1.0,
            };
            self.gauge("node_filesystem_free_bytes", &l, b);
            let b = Behaviour::Gauge {
                base: (free - reserved).max(0.0),
                sd,
                p,
                revert: 0.0,
                lo: 0.0,
                hi: blocks,
                mult: 4096.0,
                div: 1.0,
            };
            self.gauge("node_filesystem_avail_bytes", &l, b);
            let files = (blocks / 4.0).round();
            self.gauge("node_filesystem_files", &l, konst(files));
            let b = self.wander(files * (1.0 - used * 0.3), 3.0, p, 0.0, files, 1.0, 1.0);
            self.gauge("node_filesystem_files_free", &l, b);
            self.gauge("node_filesystem_readonly", &l, konst(0.0));
            self.gauge("node_filesystem_device_error", &l, konst(0.0));
        }
    }

    fn network(&mut self) {
        let primary = *self.rng.pick(&["eth0", "ens3", "enp0s31f6", "ens5"]);
        let mut devs: Vec<String> = vec!["lo".into(), primary.into()];
        if self.rng.f64() < 0.3 {
            devs.push("eth1".into());
        }
        if self.rng.f64() < 0.4 {
            devs.push("docker0".into());
            for _ in 0..self.rng.below(5) {
                devs.push(format!("veth{:07x}", self.rng.below(1 << 28)));
            }
        }
        let busy = self.busy;
        for dev in &devs {
            let d = [("device", dev.as_str())];
            let scale = if dev == "lo" {
                0.2
            } else if dev.starts_with("veth") {
                0.05
            } else {
                1.0
            };
            let bps = 2.0e5 * busy * scale * 10.0;
            for dir in ["receive", "transmit"] {
                let b = self.cnt(bps, 0.8, 0.0, 1.0);
                self.counter(&format!("node_network_{dir}_bytes_total"), &d, b);
                let b = self.cnt(bps / 700.0, 0.7, 0.0, 1.0);
                self.counter(&format!("node_network_{dir}_packets_total"), &d, b);
                let b = self.cnt(0.0005, 1.0, 0.995, 1.0);
                self.counter(&format!("node_network_{dir}_errs_total"), &d, b);
                let b = self.cnt(0.002, 1.0, 0.98, 1.0);
                self.counter(&format!("node_network_{dir}_drop_total"), &d, b);
                for k in ["fifo", "compressed"] {
                    self.counter(&format!("node_network_{dir}_{k}_total"), &d, konst(0.0));
                }
                let extra = if dir == "receive" {
                    ["frame", "multicast"]
                } else {
                    ["colls", "carrier"]
                };
                for k in extra {
                    let b = if k == "multicast" {
                        self.cnt(0.05, 1.0, 0.8, 1.0)
                    } else {
                        konst(0.0)
                    };
                    self.counter(&format!("node_network_{dir}_{k}_total"), &d, b);
                }
            }
            self.gauge("node_network_up", &d, konst(if dev == "lo" { 0.0 } else { 1.0 }));
            self.gauge("node_network_carrier", &d, konst(1.0));
            self.gauge(
                "node_network_mtu_bytes",
                &d,
                konst(if dev == "lo" { 65536.0 } else { 1500.0 }),
            );
            self.gauge("node_network_transmit_queue_length", &d, konst(1000.0));
            let id = self.rng.below(200) as f64 + 1.0;
            self.gauge("node_network_iface_id", &d, konst(id));
            self.gauge("node_network_flags", &d, konst(4099.0));
            self.gauge("node_network_protocol_type", &d, konst(1.0));
            self.gauge("node_network_address_assign_type", &d, konst(0.0));
            self.gauge("node_network_net_dev_group", &d, konst(0.0));
            self.gauge("node_network_dormant", &d, konst(0.0));
            self.counter("node_network_carrier_changes_total", &d, konst(2.0));
            if dev != "lo" {
                self.gauge("node_network_speed_bytes", &d, konst(1.25e9));
            }
            let info = [
                ("address", "52:54:00:12:34:56"),
                ("broadcast", "ff:ff:ff:ff:ff:ff"),
                ("device", dev.as_str()),
                ("duplex", "full"),
                ("operstate", "up"),
            ];
            self.gauge("node_network_info", &info, konst(1.0));
            let b = self.wander(3.0, 1.0, 0.05, 0.0, 50.0, 1.0, 1.0);
            self.gauge("node_arp_entries", &d, b);
        }
    }

    fn disks(&mut self) {
        let mut devs = vec![*self.rng.pick(&["sda", "vda", "nvme0n1"])];
        if self.rng.f64() < 0.4 {
            devs.push("sdb");
        }
        if self.rng.f64() < 0.3 {
            devs.push("dm-0");
        }
        let busy = self.busy;
        for dev in devs {
            let d = [("device", dev)];
            let iops = 50.0 * busy;
            let b = self.cnt(iops * 0.3, 0.8, 0.1, 1.0);
            self.counter("node_disk_reads_completed_total", &d, b);
            let b = self.cnt(iops * 0.05, 1.0, 0.5, 1.0);
            self.counter("node_disk_reads_merged_total", &d, b);
            let b = self.cnt(iops * 0.3 * 16.0, 1.0, 0.1, 512.0);
            self.counter("node_disk_read_bytes_total", &d, b);
            let b = self.secs(iops * 0.3 * 0.0005, 3, 1.0, 0.1);
            self.counter("node_disk_read_time_seconds_total", &d, b);
            let b = self.cnt(iops, 0.7, 0.02, 1.0);
            self.counter("node_disk_writes_completed_total", &d, b);
            let b = self.cnt(iops * 0.3, 0.8, 0.1, 1.0);
            self.counter("node_disk_writes_merged_total", &d, b);
            let b = self.cnt(iops * 24.0, 0.9, 0.02, 512.0);
            self.counter("node_disk_written_bytes_total", &d, b);
            let b = self.secs(iops * 0.001, 3, 0.9, 0.02);
            self.counter("node_disk_write_time_seconds_total", &d, b);
            let b = self.secs(busy * 0.05, 3, 0.8, 0.02);
            self.counter("node_disk_io_time_seconds_total", &d, b);
            let b = self.secs(busy * 0.08, 3, 0.9, 0.02);
            self.counter("node_disk_io_time_weighted_seconds_total", &d, b);
            let b = self.wander(0.0, 1.0, 0.1, 0.0, 8.0, 1.0, 1.0);
            self.gauge("node_disk_io_now", &d, b);
            for k in ["discards_completed", "discards_merged", "discarded_sectors"] {
                self.counter(&format!("node_disk_{k}_total"), &d, konst(0.0));
            }
            self.counter("node_disk_discard_time_seconds_total", &d, konst(0.0));
            let b = self.cnt(0.5, 0.8, 0.3, 1.0);
            self.counter("node_disk_flush_requests_total", &d, b);
            let b = self.secs(0.0005, 3, 1.0, 0.4);
            self.counter("node_disk_flush_requests_time_seconds_total", &d, b);
            self.gauge(
                "node_disk_info",
                &[("device", dev), ("major", "8"), ("minor", "0")],
                konst(1.0),
            );
        }
    }

    fn hwmon(&mut self) {
        let mut chips: Vec<(String, usize)> = Vec::new();
        // About 40% of hosts are VMs without hardware sensors beyond ACPI.
        if self.rng.f64() < 0.6 {
            chips.push(("platform_coretemp_0".into(), (self.host.ncpu / 2).clamp(1, 8) + 1));
            if self.rng.f64() < 0.5 {
                chips.push(("nvme_nvme0".into(), 1));
            }
        }
        chips.push(("thermal_thermal_zone0".into(), 1));
        for (chip, n) in chips {
            self.gauge(
                "node_hwmon_chip_names",
                &[("chip", &chip), ("chip_name", "coretemp")],
                konst(1.0),
            );
            for s in 1..=n {
                let sensor = format!("temp{s}");
                let l = [("chip", chip.as_str()), ("sensor", sensor.as_str())];
                let base = self.rng.range(35.0, 60.0) * 10.0;
                let b = self.wander(base, 5.0, 0.7, 200.0, 950.0, 1.0, 10.0);
                self.gauge("node_hwmon_temp_celsius", &l, b);
                self.gauge("node_hwmon_temp_crit_celsius", &l, konst(100.0));
                self.gauge("node_hwmon_temp_max_celsius", &l, konst(84.0));
                self.gauge("node_hwmon_temp_crit_alarm_celsius", &l, konst(0.0));
            }
        }
    }

    fn system(&mut self) {
        let ncpu = self.host.ncpu as f64;
        let load = self.busy * ncpu * 100.0;
        for (name, sd) in [("node_load1", 0.05), ("node_load5", 0.02), ("node_load15", 0.008)] {
            let b = self.wander(load, load * sd + 1.0, 1.0, 0.0, ncpu * 400.0, 1.0, 100.0);
            self.gauge(name, &[], b);
        }
        let b = self.cnt(3000.0 * ncpu * self.busy + 500.0, 0.3, 0.0, 1.0);
        self.counter("node_context_switches_total", &[], b);
        let b = self.cnt(2000.0 * ncpu * self.busy + 300.0, 0.3, 0.0, 1.0);
        self.counter("node_intr_total", &[], b);
        let b = self.cnt(5.0, 0.8, 0.05, 1.0);
        self.counter("node_forks_total", &[], b);
        let boot = self.start_s - self.uptime_s;
        let after = self.start_s + self.rng.range(0.0, 7200.0).round();
        self.gauge(
            "node_boot_time_seconds",
            &[],
            Behaviour::BootTime { before: boot, after },
        );
        self.gauge("node_time_seconds", &[], Behaviour::UnixTime);
        let b = self.wander(1.0, 1.0, 0.6, 0.0, ncpu * 2.0, 1.0, 1.0);
        self.gauge("node_procs_running", &[], b);
        let b = self.wander(0.0, 1.0, 0.1, 0.0, 10.0, 1.0, 1.0);
        self.gauge("node_procs_blocked", &[], b);
        let b = self.wander(256.0, 3.0, 0.3, 0.0, 256.0, 1.0, 1.0);
        self.gauge("node_entropy_available_bits", &[], b);
        self.gauge("node_entropy_pool_size_bits", &[], konst(256.0));
        let b = self.wander(2000.0 + 200.0 * ncpu, 10.0, 0.5, 100.0, 1e6, 1.0, 1.0);
        self.gauge("node_filefd_allocated", &[], b);
        self.gauge("node_filefd_maximum", &[], konst(9_223_372_036_854_775_807.0));
        let b = self.wander(500.0 + 5000.0 * self.busy, 20.0, 0.9, 0.0, 262_144.0, 1.0, 1.0);
        self.gauge("node_nf_conntrack_entries", &[], b);
        self.gauge("node_nf_conntrack_entries_limit", &[], konst(262_144.0));
        for (name, per_s, idle) in [
            ("pgfault", 5000.0, 0.0),
            ("pgmajfault", 0.5, 0.6),
            ("pgpgin", 200.0, 0.1),
            ("pgpgout", 800.0, 0.02),
            ("pswpin", 0.0, 1.0),
            ("pswpout", 0.0, 1.0),
            ("oom_kill", 0.0, 1.0),
        ] {
            let b = self.cnt(per_s * self.busy, 0.8, idle, 1.0);
            self.untyped(&format!("node_vmstat_{name}"), &[], b);
        }
        for (res, w) in [("cpu", 0.05), ("io", 0.01), ("memory", 0.001)] {
            let b = self.secs(w * self.busy, 6, 1.0, 0.1);
            self.counter(&format!("node_pressure_{res}_waiting_seconds_total"), &[], b);
            if res != "cpu" {
                let b = self.secs(w * self.busy * 0.5, 6, 1.0, 0.3);
                self.counter(&format!("node_pressure_{res}_stalled_seconds_total"), &[], b);
            }
        }
        // timex: NTP state.
        let b = self.dur(0.0002, 1.0);
        self.gauge("node_timex_offset_seconds", &[], b);
        let b = self.wander(1_000_012.0, 3.0, 0.2, 999_000.0, 1_001_000.0, 1.0, 1e6);
        self.gauge("node_timex_frequency_adjustment_ratio", &[], b);
        let b = self.wander(15_000.0, 2000.0, 0.9, 0.0, 16_000_000.0, 1.0, 1e6);
        self.gauge("node_timex_maxerror_seconds", &[], b);
        let b = self.wander(300.0, 30.0, 0.5, 0.0, 1e6, 1.0, 1e6);
        self.gauge("node_timex_estimated_error_seconds", &[], b);
        for (n, v) in [
            ("status", 8193.0),
            ("sync_status", 1.0),
            ("tai_offset_seconds", 0.0),
            ("tick_seconds", 0.01),
            ("loop_time_constant", 7.0),
            ("pps_frequency_hertz", 0.0),
            ("pps_jitter_seconds", 0.0),
            ("pps_shift_seconds", 0.0),
            ("pps_stability_hertz", 0.0),
        ] {
            self.gauge(&format!("node_timex_{n}"), &[], konst(v));
        }
        for n in ["calibration", "error", "jitter", "stability_exceeded"] {
            self.counter(&format!("node_timex_pps_{n}_total"), &[], konst(0.0));
        }
        let nodename = self.instance[..10].to_string();
        let info = [
            ("domainname", "(none)"),
            ("machine", "x86_64"),
            ("nodename", nodename.as_str()),
            ("release", "6.1.0-18-amd64"),
            ("sysname", "Linux"),
            ("version", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)"),
        ];
        self.gauge("node_uname_info", &info, konst(1.0));
        let os = [
            ("id", "debian"),
            ("name", "Debian GNU/Linux"),
            ("version_id", "12"),
        ];
        self.gauge("node_os_info", &os, konst(1.0));
        self.gauge("node_os_version", &[("id", "debian")], konst(12.0));
        self.gauge("node_textfile_scrape_error", &[], konst(0.0));
        let b = self.wander(10.0, 1.0, 0.05, 0.0, 100.0, 1.0, 1.0);
        self.gauge("node_udp_queues", &[("ip", "v4"), ("queue", "rx")], b);
        self.gauge("node_udp_queues", &[("ip", "v4"), ("queue", "tx")], konst(0.0));
    }

    fn netstat(&mut self) {
        let busy = self.busy;
        let counters: [(&str, f64, f64); 22] = [
            ("Tcp_ActiveOpens", 2.0, 0.1),
            ("Tcp_PassiveOpens", 3.0, 0.1),
            ("Tcp_InErrs", 0.001, 0.99),
            ("Tcp_InSegs", 400.0, 0.0),
            ("Tcp_OutSegs", 450.0, 0.0),
            ("Tcp_RetransSegs", 0.5, 0.5),
            ("Tcp_OutRsts", 0.3, 0.5),
            ("Udp_InDatagrams", 20.0, 0.05),
            ("Udp_OutDatagrams", 20.0, 0.05),
            ("Udp_InErrors", 0.0, 1.0),
            ("Udp_NoPorts", 0.05, 0.8),
            ("Udp_RcvbufErrors", 0.0, 1.0),
            ("Udp_SndbufErrors", 0.0, 1.0),
            ("Udp6_InDatagrams", 0.5, 0.5),
            ("Udp6_OutDatagrams", 0.5, 0.5),
            ("Icmp_InMsgs", 0.1, 0.7),
            ("Icmp_OutMsgs", 0.1, 0.7),
            ("Icmp_InErrors", 0.0, 1.0),
            ("TcpExt_ListenDrops", 0.0, 1.0),
            ("TcpExt_ListenOverflows", 0.0, 1.0),
            ("TcpExt_TCPSynRetrans", 0.05, 0.8),
            ("TcpExt_TCPTimeouts", 0.1, 0.7),
        ];
        for (n, per_s, idle) in counters {
            let b = self.cnt(per_s * busy * 2.0, 0.7, idle, 1.0);
            self.untyped(&format!("node_netstat_{n}"), &[], b);
        }
        for n in [
            "IpExt_InOctets",
            "IpExt_OutOctets",
            "Ip6_InOctets",
            "Ip6_OutOctets",
        ] {
            let b = self.cnt(1.0e5 * busy, 0.8, 0.0, 1.0);
            self.untyped(&format!("node_netstat_{n}"), &[], b);
        }
        let b = self.wander(50.0, 3.0, 0.7, 0.0, 10_000.0, 1.0, 1.0);
        self.untyped("node_netstat_Tcp_CurrEstab", &[], b);
        self.untyped("node_netstat_Ip_Forwarding", &[], konst(1.0));
        let gauges: [(&str, f64, f64); 14] = [
            ("sockets_used", 300.0, 5.0),
            ("TCP_inuse", 40.0, 2.0),
            ("TCP_orphan", 0.0, 1.0),
            ("TCP_tw", 30.0, 5.0),
            ("TCP_alloc", 60.0, 2.0),
            ("TCP_mem", 10.0, 2.0),
            ("UDP_inuse", 8.0, 1.0),
            ("UDP_mem", 5.0, 1.0),
            ("UDPLITE_inuse", 0.0, 0.0),
            ("RAW_inuse", 0.0, 0.0),
            ("FRAG_inuse", 0.0, 0.0),
            ("FRAG_memory", 0.0, 0.0),
            ("TCP6_inuse", 10.0, 1.0),
            ("UDP6_inuse", 3.0, 0.0),
        ];
        for (n, base, sd) in gauges {
            let b = if sd == 0.0 {
                konst(base)
            } else {
                self.wander(base, sd, 0.6, 0.0, base * 10.0 + 10.0, 1.0, 1.0)
            };
            self.gauge(&format!("node_sockstat_{n}"), &[], b);
        }
        for n in ["TCP_mem_bytes", "UDP_mem_bytes"] {
            let b = self.wander(20.0, 3.0, 0.6, 0.0, 1e6, 4096.0, 1.0);
            self.gauge(&format!("node_sockstat_{n}"), &[], b);
        }
    }

    fn exporter(&mut self) {
        // Collector durations and success.
        let collectors = [
            "arp",
            "bcache",
            "bonding",
            "btrfs",
            "conntrack",
            "cpu",
            "cpufreq",
            "diskstats",
            "dmi",
            "edac",
            "entropy",
            "fibrechannel",
            "filefd",
            "filesystem",
            "hwmon",
            "infiniband",
            "ipvs",
            "loadavg",
            "mdadm",
            "meminfo",
            "netclass",
            "netdev",
            "netstat",
            "nfs",
            "nfsd",
            "nvme",
            "os",
            "powersupplyclass",
            "pressure",
            "rapl",
            "schedstat",
            "selinux",
            "sockstat",
            "softnet",
            "stat",
            "tapestats",
            "textfile",
            "thermal_zone",
            "time",
            "timex",
            "udp_queues",
            "uname",
            "vmstat",
            "xfs",
            "zfs",
        ];
        for c in collectors {
            let med = self.rng.range(0.00002, 0.01);
            let b = self.dur(med, 0.4);
            self.gauge("node_scrape_collector_duration_seconds", &[("collector", c)], b);
            let ok = if matches!(c, "rapl" | "fibrechannel") {
                0.0
            } else {
                1.0
            };
            self.gauge("node_scrape_collector_success", &[("collector", c)], konst(ok));
        }
        let bi = [
            ("branch", "HEAD"),
            ("goarch", "amd64"),
            ("goos", "linux"),
            ("goversion", "go1.21.5"),
            ("revision", "7bc1a0d"),
            ("tags", "netgo osusergo static_build"),
            ("version", "1.7.0"),
        ];
        self.gauge("node_exporter_build_info", &bi, konst(1.0));
        // The exporter process itself.
        for q in ["0", "0.25", "0.5", "0.75", "1"] {
            let med = 3e-5 * (1.0 + q.parse::<f64>().unwrap_or(0.0) * 4.0);
            let b = self.dur(med, 0.3);
            self.push(
                MetricType::Summary,
                "go_gc_duration_seconds",
                "go_gc_duration_seconds",
                &[("quantile", q)],
                b,
            );
        }
        let b = self.secs(0.00003, 9, 0.5, 0.0);
        self.push(
            MetricType::Summary,
            "go_gc_duration_seconds",
            "go_gc_duration_seconds_sum",
            &[],
            b,
        );
        let b = self.cnt(0.05, 0.5, 0.3, 1.0);
        self.push(
            MetricType::Summary,
            "go_gc_duration_seconds",
            "go_gc_duration_seconds_count",
            &[],
            b,
        );
        let b = self.wander(9.0, 1.0, 0.3, 6.0, 40.0, 1.0, 1.0);
        self.gauge("go_goroutines", &[], b);
        self.gauge("go_threads", &[], konst(8.0 + self.host.ncpu as f64));
        self.gauge("go_info", &[("version", "go1.21.5")], konst(1.0));
        for (n, base) in [
            ("alloc_bytes", 3.0e6),
            ("heap_alloc_bytes", 3.0e6),
            ("heap_idle_bytes", 5.0e6),
            ("heap_inuse_bytes", 5.0e6),
            ("heap_released_bytes", 3.0e6),
            ("heap_sys_bytes", 1.2e7),
            ("next_gc_bytes", 4.2e6),
            ("sys_bytes", 2.0e7),
            ("stack_inuse_bytes", 8.0e5),
            ("mspan_inuse_bytes", 1.3e5),
            ("other_sys_bytes", 1.0e6),
        ] {
            let b = self.wander(base, base * 0.05, 0.95, 0.0, base * 10.0, 1.0, 1.0);
            self.gauge(&format!("go_memstats_{n}"), &[], b);
        }
        self.gauge(
            "go_memstats_heap_objects",
            &[],
            Behaviour::Fresh {
                median: 2.0e4,
                cv: 0.2,
                div: 1.0,
            },
        );
        for (n, v) in [
            ("stack_sys_bytes", 851_968.0),
            ("mspan_sys_bytes", 195_840.0),
            ("mcache_inuse_bytes", 4_800.0),
            ("mcache_sys_bytes", 15_600.0),
            ("buck_hash_sys_bytes", 1_456_877.0),
            ("gc_sys_bytes", 4_160_688.0),
        ] {
            self.gauge(&format!("go_memstats_{n}"), &[], konst(v));
        }
        for (n, per_s) in [
            ("alloc_bytes_total", 2.0e5),
            ("mallocs_total", 2000.0),
            ("frees_total", 1990.0),
        ] {
            let b = self.cnt(per_s, 0.3, 0.0, 1.0);
            self.counter(&format!("go_memstats_{n}"), &[], b);
        }
        self.counter("go_memstats_lookups_total", &[], konst(0.0));
        let b = self.dur(self.start_s, 0.0);
        self.gauge("go_memstats_last_gc_time_seconds", &[], b);
        let b = self.secs(0.003, 2, 0.5, 0.2);
        self.counter("process_cpu_seconds_total", &[], b);
        self.gauge("process_max_fds", &[], konst(1_048_576.0));
        let b = self.wander(10.0, 1.0, 0.1, 5.0, 100.0, 1.0, 1.0);
        self.gauge("process_open_fds", &[], b);
        let b = self.mem(2.2e7, 0.01, 0.8);
        self.gauge("process_resident_memory_bytes", &[], b);
        let b = self.mem(7.3e8, 0.001, 0.1);
        self.gauge("process_virtual_memory_bytes", &[], b);
        self.gauge(
            "process_virtual_memory_max_bytes",
            &[],
            konst(1.8446744073709552e19),
        );
        let st = self.start_s - self.uptime_s + 10.53;
        self.gauge("process_start_time_seconds", &[], konst(st));
        self.gauge("promhttp_metric_handler_requests_in_flight", &[], konst(1.0));
        let per = 1.0 / self.interval_s;
        let start = (self.uptime_s * per).round();
        let b = Behaviour::Counter {
            start,
            rate: per,
            cv: 0.0,
            idle: 0.0,
            mult: 1.0,
            div: 1.0,
            step: 0.0,
        };
        self.counter("promhttp_metric_handler_requests_total", &[("code", "200")], b);
        for code in ["500", "503"] {
            self.counter(
                "promhttp_metric_handler_requests_total",
                &[("code", code)],
                konst(0.0),
            );
        }
        for cause in ["encoding", "gathering"] {
            self.counter(
                "promhttp_metric_handler_errors_total",
                &[("cause", cause)],
                konst(0.0),
            );
        }
    }

    fn scrape(&mut self) {
        let n_series = self.out.len() as f64;
        self.gauge("up", &[], konst(1.0));
        let b = self.dur(0.02 + n_series * 2e-5, 0.3);
        self.gauge("scrape_duration_seconds", &[], b);
        self.gauge("scrape_samples_scraped", &[], konst(n_series));
        self.gauge("scrape_samples_post_metric_relabeling", &[], konst(n_series));
        self.gauge("scrape_series_added", &[], konst(0.0));
    }
}

/// The smallest number of hosts (from `base.first_host`) giving at least `target` series.
pub fn hosts_for_series(base: &GenConfig, target: usize) -> usize {
    // Series counts per host are independent of the other hosts: count them one by one.
    let mut total = 0;
    let mut h = 0;
    while total < target {
        let one = GenConfig {
            hosts: 1,
            first_host: base.first_host + h,
            samples_per_series: 1,
            ..base.clone()
        };
        total += generate(&one).num_series();
        h += 1;
    }
    h
}

/// `n` series as one scrape of each host in turn gives them, with their first sample: all
/// series of host `cfg.first_host` (in family order, as its exposition lists them), then all
/// of the next host, and so on, cut at `n` (just enough hosts, [`hosts_for_series`]); each
/// sample at `cfg.start_ms`, plus the host's offset and jitter when `cfg.jitter_ms > 0`. What
/// a remote_write request of `n` one-sample series from a Prometheus scraping node_exporters
/// carries. `cfg.hosts` and `cfg.samples_per_series` are ignored.
pub fn scrape(cfg: &GenConfig, n: usize) -> Vec<(Labels, Sample)> {
    let one = GenConfig {
        samples_per_series: 1,
        ..cfg.clone()
    };
    let ds = generate(&GenConfig {
        hosts: hosts_for_series(&one, n),
        ..one
    });
    // The data set lists series by family, hosts in order within a family: a stable sort by
    // host gives each host's series in family order.
    let mut order: Vec<(usize, &Labels, u32)> = ds
        .series
        .iter()
        .zip(&ds.specs)
        .enumerate()
        .map(|(i, (labels, spec))| (i, labels, spec.host))
        .collect();
    order.sort_by_key(|&(_, _, host)| host);
    let mut buf = Vec::with_capacity(1);
    let mut out = Vec::with_capacity(n);
    for (i, labels, _) in order.into_iter().take(n) {
        ds.samples_into(i, &mut buf);
        out.extend(buf.first().map(|s| (labels.clone(), *s)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(profile: Profile, jitter: i64) -> GenConfig {
        GenConfig {
            hosts: 3,
            profile,
            jitter_ms: jitter,
            samples_per_series: 120,
            reboot_prob: 0.5,
            ..Default::default()
        }
    }

    #[test]
    fn same_seed_same_samples_and_order_independent() {
        let a = generate(&cfg(Profile::Noisy, 5));
        let b = generate(&cfg(Profile::Noisy, 5));
        assert_eq!(a.series, b.series);
        for i in (0..a.num_series()).step_by(7) {
            assert_eq!(a.samples(i), b.samples(i));
        }
        // Reverse order gives the same samples.
        let fwd: Vec<_> = a.iter().map(|(_, s)| s).collect();
        for i in (0..a.num_series()).rev() {
            assert_eq!(a.samples(i), fwd[i]);
        }
        // A series of host 2 does not depend on how many hosts the data set has.
        let small = generate(&GenConfig {
            hosts: 1,
            first_host: 2,
            ..cfg(Profile::Noisy, 5)
        });
        for (j, l) in small.series.iter().enumerate() {
            let i = a.series.iter().position(|x| x == l).expect("series present");
            assert_eq!(a.samples(i), small.samples(j));
        }
        // Another seed gives other values.
        let c = generate(&GenConfig {
            seed: 7,
            ..cfg(Profile::Noisy, 5)
        });
        let differ = (0..a.num_series())
            .filter(|&i| a.samples(i) != c.samples(i))
            .count();
        assert!(differ > a.num_series() / 2);
    }

    #[test]
    fn profiles_and_jitter_share_the_series() {
        let n = generate(&GenConfig {
            hosts: 5,
            ..Default::default()
        });
        let s = generate(&GenConfig {
            hosts: 5,
            profile: Profile::Smooth,
            ..Default::default()
        });
        let j = generate(&GenConfig {
            hosts: 5,
            jitter_ms: 5,
            ..Default::default()
        });
        assert_eq!(n.series, s.series);
        assert_eq!(n.series, j.series);
        for i in 0..n.num_series() {
            assert_eq!(n.reset_at(i), j.reset_at(i));
        }
    }

    #[test]
    fn counters_never_decrease_except_at_resets() {
        for p in [Profile::Noisy, Profile::Smooth] {
            let d = generate(&cfg(p, 5));
            let mut resets = 0;
            let mut counters = 0;
            for (i, s) in d.iter() {
                if !d.is_counter(i) {
                    continue;
                }
                counters += 1;
                for (k, w) in s.windows(2).enumerate() {
                    if w[1].v < w[0].v {
                        assert_eq!(
                            d.reset_at(i),
                            Some(k + 1),
                            "series {} decreased at {}",
                            d.series[i],
                            k + 1
                        );
                        resets += 1;
                    }
                }
            }
            assert!(counters > 500, "{counters}");
            if p == Profile::Noisy {
                assert!(resets > 0, "with reboot_prob 0.5 some host reboots");
            } else {
                assert_eq!(resets, 0);
            }
        }
    }

    #[test]
    fn timestamps_shared_per_host_increasing_and_in_window() {
        for jitter in [0, 5] {
            let d = generate(&cfg(Profile::Noisy, jitter));
            let end = d.cfg.start_ms + d.cfg.interval_ms * d.cfg.samples_per_series as i64;
            for (i, s) in d.iter() {
                assert_eq!(s.len(), 120);
                assert!(s.windows(2).all(|w| w[0].t < w[1].t));
                assert!(s[0].t >= d.cfg.start_ms && s.last().unwrap().t < end);
                if jitter == 0 {
                    assert!(
                        s.iter()
                            .enumerate()
                            .all(|(k, x)| x.t == d.cfg.start_ms + 15_000 * k as i64)
                    );
                }
                let _ = i;
            }
        }
    }

    #[test]
    fn scrape_is_each_hosts_first_sample_host_by_host() {
        let cfg = GenConfig {
            first_host: 7,
            jitter_ms: 5,
            ..Default::default()
        };
        let got = scrape(&cfg, 2000);
        assert_eq!(got.len(), 2000);
        // Host by host, each one's series as a data set of that host alone lists them, with
        // the first of its samples (480 of them here: the count does not change the first).
        let mut rest = &got[..];
        let mut hosts = 0;
        while !rest.is_empty() {
            let d = generate(&GenConfig {
                first_host: cfg.first_host + hosts,
                ..cfg.clone()
            });
            let k = d.num_series().min(rest.len());
            for (i, (labels, sample)) in rest[..k].iter().enumerate() {
                assert_eq!(labels, &d.series[i]);
                assert_eq!(*sample, d.samples(i)[0]);
            }
            rest = &rest[k..];
            hosts += 1;
        }
        assert!(hosts >= 3, "{hosts} hosts");
        assert_eq!(hosts, hosts_for_series(&cfg, 2000));
        assert!(scrape(&cfg, 0).is_empty());
    }

    #[test]
    fn shape_is_node_exporter_like() {
        let d = generate(&GenConfig {
            hosts: 20,
            ..Default::default()
        });
        let per_host = d.num_series() / 20;
        assert!((450..=1100).contains(&per_host), "{per_host} series per host");
        let cpu = d
            .series
            .iter()
            .filter(|l| l.metric_name() == Some("node_cpu_seconds_total"))
            .count();
        assert_eq!(cpu % 8, 0);
        // Families are contiguous.
        let mut seen = std::collections::HashSet::new();
        let mut last = usize::MAX;
        for i in 0..d.num_series() {
            let f = d.family_of(i);
            if f != last {
                assert!(seen.insert(f), "family {} not contiguous", d.families[f].name);
                last = f;
            }
        }
        let l = &d.series[0];
        assert_eq!(l.get("job"), Some("node"));
        assert!(l.get("instance").unwrap().starts_with("host-000"));
    }
}
