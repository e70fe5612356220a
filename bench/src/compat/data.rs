//! The conformance data set: a few hundred series with every edge case PromQL cares about,
//! and the remote_write sender that loads it.
//!
//! The data set is a function of its start time only (fixed seed): two servers loaded with
//! the same start hold the same samples, and the queries' `${start}`/`${end}` variables
//! (see [`super::queries`]) refer to it. It spans [`SPAN_MS`] from `start`; [`default_start`]
//! puts the last sample 5–10 minutes before now, because Prometheus' remote_write receiver
//! appends to its head, which takes nothing older than about 1h30 before the newest sample it
//! holds, and VictoriaMetrics drops samples outside its retention.
//!
//! What is in it (times relative to the start `S`; `i-N:8080` instances, jobs `api`, `db`,
//! `cache`):
//! - `http_requests_total{job,instance,method,code}`: 54 counters every 15 s; `api`/`i-1`
//!   resets at S+40m, `db`/`i-2` resets twice (S+35m, S+37m); `code="500"` is mostly flat.
//! - `http_request_duration_seconds_{bucket,sum,count}`: classic histograms (12 buckets
//!   incl. `+Inf`) every 30 s, one instance resetting at S+70m; `weird_histogram_bucket`
//!   without `+Inf`, with decreasing buckets, with a NaN bucket, with only `+Inf`.
//! - gauges: `node_temperature_celsius` (negative values), `memory_bytes` (around 1e12–1e15),
//!   `api_latency_seconds` (90 series for grouping), `queue_length` (small integers, many
//!   repeats), `temperature_setpoint` (constant), `process_start_time_seconds`.
//! - `extreme_values{kind}`: ±1e308 (sums overflow), 5e-324, alternating tiny values;
//!   `special_values{kind}`: NaN, +Inf, -Inf, occasional NaN, one +Inf spike.
//! - staleness: `flappy_gauge`/`flappy_requests_total{instance}`: stops with a staleness
//!   marker at S+50m and resumes at S+65m (`i-0`), stops for good at S+30m (`i-1`), a 12 min
//!   gap without marker (`i-2`, S+80m–S+92m), a 4 min gap (`i-3`); `early_series` ends at
//!   S+20m, `late_series` begins at S+100m.
//! - `irregular_gauge`/`irregular_total`: intervals of 3–45 s.
//! - `up{job,instance}` with some 0 periods; `node_info{instance,os,version}` = 1 every 60 s
//!   for `group_left` joins.
//! - `collide_seconds`/`collide_ms` with equal labels: dropping the name collides.
//! - `escape_test`: label values with quotes, backslashes, newlines, tabs and non-ASCII.
//! - `cpu_usage_seconds_total{instance,cpu,mode}`: 36 counters every 30 s.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use metricsd_ingest::{Label as PbLabel, Sample as PbSample, TimeSeries, WriteRequest, encode_write_request};

use crate::datagen::Rng;

/// Prometheus' staleness marker: a NaN with this exact bit pattern.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// How long the data set spans.
pub const SPAN_MS: i64 = 140 * MIN;

/// Samples of one series.
type Samples = Vec<(i64, f64)>;

const SEC: i64 = 1000;
const MIN: i64 = 60 * SEC;

/// One series: labels (`__name__` included) and samples in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Labels sorted by name; `__name__` is one of them.
    pub labels: Vec<(String, String)>,
    /// `(timestamp ms, value)`, strictly increasing timestamps.
    pub samples: Vec<(i64, f64)>,
}

/// The generated data set.
#[derive(Debug, Clone)]
pub struct Data {
    /// First possible sample timestamp, ms.
    pub start_ms: i64,
    /// Last possible sample timestamp, ms (`start_ms + SPAN_MS`).
    pub end_ms: i64,
    /// The series.
    pub series: Vec<Series>,
}

impl Data {
    /// Total samples (staleness markers included).
    pub fn num_samples(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }
}

/// The start for a data set loaded now: a multiple of 5 minutes, 2h25–2h30 before `now_ms`,
/// so the last sample is 5–10 minutes old.
pub fn default_start(now_ms: i64) -> i64 {
    let start = now_ms - (SPAN_MS + 5 * MIN);
    start - start.rem_euclid(5 * MIN)
}

struct Builder {
    start: i64,
    series: Vec<Series>,
    rng: Rng,
}

/// What a series does at one of its scrape times.
enum Step {
    Value(f64),
    /// No sample (a gap).
    Skip,
}

impl Builder {
    fn push(&mut self, name: &str, labels: &[(&str, &str)], samples: Vec<(i64, f64)>) {
        let mut l: Vec<(String, String)> = labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        l.push(("__name__".into(), name.into()));
        l.sort();
        debug_assert!(
            samples.windows(2).all(|w| w[0].0 < w[1].0),
            "{name}: unordered samples"
        );
        self.series.push(Series { labels: l, samples });
    }

    /// Scrape times every `interval` from `from` to `to` (offsets from the start, inclusive).
    fn times(&self, from: i64, to: i64, interval: i64) -> Vec<i64> {
        (0..)
            .map(|i| from + i * interval)
            .take_while(|&t| t <= to)
            .map(|t| self.start + t)
            .collect()
    }

    /// Samples from `f(index, offset from start)` at every time of `times`.
    fn sample(&mut self, times: &[i64], mut f: impl FnMut(&mut Rng, usize, i64) -> Step) -> Vec<(i64, f64)> {
        let mut out = Vec::with_capacity(times.len());
        for (i, &t) in times.iter().enumerate() {
            if let Step::Value(v) = f(&mut self.rng, i, t - self.start) {
                out.push((t, v));
            }
        }
        out
    }
}

/// A counter: increments drawn by `inc`, reset to a small value at each of `resets` (offsets).
fn counter(
    b: &mut Builder,
    times: &[i64],
    base: f64,
    resets: &[i64],
    mut inc: impl FnMut(&mut Rng) -> f64,
) -> Vec<(i64, f64)> {
    let mut v = base;
    let mut pending: Vec<i64> = resets.to_vec();
    b.sample(times, |r, i, off| {
        if i > 0 {
            v += inc(r);
        }
        if let Some(p) = pending.iter().position(|&x| off >= x) {
            pending.remove(p);
            v = (inc(r) * 0.5).floor();
        }
        Step::Value(v)
    })
}

/// Builds the data set starting at `start_ms`.
pub fn generate(start_ms: i64) -> Data {
    let mut b = Builder {
        start: start_ms,
        series: Vec::new(),
        rng: Rng::new(0x636f_6d70_6174),
    };
    let end = SPAN_MS;
    let jobs = ["api", "db", "cache"];
    let instances = ["i-0:8080", "i-1:8080", "i-2:8080"];

    // Counters with resets.
    let t15 = b.times(0, end, 15 * SEC);
    for job in jobs {
        for inst in instances {
            for method in ["GET", "POST"] {
                for code in ["200", "404", "500"] {
                    let resets: &[i64] = match (job, inst) {
                        ("api", "i-1:8080") => &[40 * MIN],
                        ("db", "i-2:8080") => &[35 * MIN, 37 * MIN],
                        _ => &[],
                    };
                    let rate = match code {
                        "200" => 20.0,
                        "404" => 2.0,
                        _ => 0.05,
                    } * if method == "GET" { 3.0 } else { 1.0 };
                    let s = counter(&mut b, &t15, 1000.0, resets, |r| {
                        let x = r.range(0.0, 2.0 * rate * 15.0);
                        if rate < 1.0 && r.f64() < 0.8 {
                            0.0
                        } else {
                            x.floor()
                        }
                    });
                    b.push(
                        "http_requests_total",
                        &[
                            ("job", job),
                            ("instance", inst),
                            ("method", method),
                            ("code", code),
                        ],
                        s,
                    );
                }
            }
        }
    }

    // Classic histograms every 30 s.
    let les = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ];
    let t30 = b.times(0, end, 30 * SEC);
    for job in ["api", "db"] {
        for inst in ["i-0:8080", "i-1:8080"] {
            let reset = job == "db" && inst == "i-1:8080";
            let mut buckets = vec![Vec::new(); les.len()];
            let mut sums = Vec::new();
            let mut counts = Vec::new();
            let mut cum = vec![0.0f64; les.len()];
            let mut sum = 0.0f64;
            let median = if job == "api" { 0.08 } else { 0.6 };
            for (i, &t) in t30.iter().enumerate() {
                if reset && t - start_ms >= 70 * MIN && t - start_ms < 70 * MIN + 30 * SEC {
                    cum.iter_mut().for_each(|c| *c = 0.0);
                    sum = 0.0;
                }
                if i > 0 {
                    let n = 10 + b.rng.below(40);
                    for _ in 0..n {
                        let lat = median * (b.rng.gauss() * 1.2).exp();
                        sum += lat;
                        for (k, le) in les.iter().enumerate() {
                            let bound: f64 = if *le == "+Inf" {
                                f64::INFINITY
                            } else {
                                le.parse().unwrap_or(0.0)
                            };
                            if lat <= bound {
                                cum[k] += 1.0;
                            }
                        }
                    }
                }
                for k in 0..les.len() {
                    buckets[k].push((t, cum[k]));
                }
                sums.push((t, sum));
                counts.push((t, cum[les.len() - 1]));
            }
            for (k, le) in les.iter().enumerate() {
                b.push(
                    "http_request_duration_seconds_bucket",
                    &[("job", job), ("instance", inst), ("le", le)],
                    std::mem::take(&mut buckets[k]),
                );
            }
            b.push(
                "http_request_duration_seconds_sum",
                &[("job", job), ("instance", inst)],
                sums,
            );
            b.push(
                "http_request_duration_seconds_count",
                &[("job", job), ("instance", inst)],
                counts,
            );
        }
    }
    // Broken histograms: histogram_quantile's corner cases.
    let weird: [(&str, &[(&str, f64)]); 4] = [
        ("no_inf", &[("0.1", 1.0), ("1", 3.0), ("10", 4.0)]),
        (
            "non_monotonic",
            &[("0.1", 5.0), ("1", 3.0), ("10", 8.0), ("+Inf", 7.0)],
        ),
        ("nan_bucket", &[("0.1", 1.0), ("1", f64::NAN), ("+Inf", 4.0)]),
        ("only_inf", &[("+Inf", 3.0)]),
    ];
    for (case, buckets) in weird {
        for (le, per_step) in buckets {
            let s = b.sample(&t30, |_, i, _| Step::Value(per_step * i as f64));
            b.push("weird_histogram_bucket", &[("case", case), ("le", le)], s);
        }
    }

    // Gauges.
    for inst in instances {
        for (sensor, base) in [("cpu", 55.0), ("gpu", 40.0), ("ambient", -5.0)] {
            let mut v: f64 = base;
            let s = b.sample(&t15, |r, _, _| {
                v = (v + r.gauss() * 3.0).clamp(-25.0, 95.0);
                Step::Value((v * 10.0).round() / 10.0)
            });
            b.push(
                "node_temperature_celsius",
                &[("instance", inst), ("sensor", sensor)],
                s,
            );
        }
        for (ty, base) in [("used", 3.2e12), ("free", 9.007_199_254_740_993e15)] {
            let s = b.sample(&t30, |r, _, _| {
                Step::Value((base * (1.0 + r.gauss() * 0.01)).round())
            });
            b.push("memory_bytes", &[("instance", inst), ("type", ty)], s);
        }
        let s = b.sample(&t15, |_, _, _| Step::Value(1.7e9 + 123.456));
        b.push("process_start_time_seconds", &[("instance", inst)], s);
    }
    for job in jobs {
        for inst in instances {
            for e in 0..10 {
                let ep = format!("/e{e}");
                let base = 0.01 * (e + 1) as f64;
                let s = b.sample(&t15, |r, _, _| Step::Value(base * (r.gauss() * 0.5).exp()));
                b.push(
                    "api_latency_seconds",
                    &[("job", job), ("instance", inst), ("endpoint", &ep)],
                    s,
                );
            }
            let s = b.sample(&t15, |r, _, _| Step::Value(r.below(4) as f64));
            b.push("queue_length", &[("job", job), ("instance", inst)], s);
            let s = b.sample(&t15, |r, _, off| {
                let down = (job == "db" && (50 * MIN..60 * MIN).contains(&off))
                    || (inst == "i-2:8080" && r.f64() < 0.05);
                Step::Value(if down { 0.0 } else { 1.0 })
            });
            b.push("up", &[("job", job), ("instance", inst)], s);
        }
    }
    let s = b.sample(&t15, |_, _, _| Step::Value(21.5));
    b.push("temperature_setpoint", &[], s);
    let t60 = b.times(0, end, 60 * SEC);
    for (inst, os) in instances.iter().zip(["linux", "linux", "freebsd"]) {
        let s = b.sample(&t60, |_, _, _| Step::Value(1.0));
        b.push(
            "node_info",
            &[("instance", inst), ("os", os), ("version", "1.2.3")],
            s,
        );
    }

    // Extreme and special values.
    type Value1 = fn(usize) -> f64;
    let extremes: [(&str, Value1); 5] = [
        ("huge", |i| 1e308 - i as f64 * 1e292),
        ("neg_huge", |_| -1.7e308),
        ("tiny", |_| 5e-324),
        ("small_alternating", |i| if i % 2 == 0 { 1e-9 } else { -1e-9 }),
        ("big_int", |i| 9_007_199_254_740_992.0 + (i % 4) as f64 * 2.0),
    ];
    for (kind, f) in extremes {
        let s = b.sample(&t15, |_, i, _| Step::Value(f(i)));
        b.push("extreme_values", &[("kind", kind)], s);
    }
    type Value2 = fn(usize, i64) -> f64;
    let specials: [(&str, Value2); 5] = [
        ("nan", |_, _| f64::NAN),
        ("inf", |_, _| f64::INFINITY),
        ("ninf", |_, _| f64::NEG_INFINITY),
        (
            "sometimes_nan",
            |i, _| if i % 7 == 3 { f64::NAN } else { i as f64 },
        ),
        ("inf_spike", |i, off| {
            if off == 60 * MIN {
                f64::INFINITY
            } else {
                10.0 + i as f64
            }
        }),
    ];
    for (kind, f) in specials {
        let s = b.sample(&t15, |_, i, off| Step::Value(f(i, off)));
        b.push("special_values", &[("kind", kind)], s);
    }

    // Staleness and gaps.
    let stale = f64::from_bits(STALE_NAN);
    for (k, inst) in ["i-0:8080", "i-1:8080", "i-2:8080", "i-3:8080"]
        .into_iter()
        .enumerate()
    {
        let mut state = 0.0;
        let mut cnt = 500.0;
        let (g, c): (Samples, Samples) = {
            let mut g = Vec::new();
            let mut c = Vec::new();
            for &t in &t15 {
                let off = t - start_ms;
                let what = match k {
                    // Marked stale at 50m (the first missed scrape), back at 65m.
                    0 if off == 50 * MIN => Some(true),
                    0 if (50 * MIN..65 * MIN).contains(&off) => None,
                    1 if off == 30 * MIN => Some(true),
                    1 if off > 30 * MIN => None,
                    // Gaps without markers: 12 min, 4 min.
                    2 if (80 * MIN..92 * MIN).contains(&off) => None,
                    3 if (44 * MIN..48 * MIN).contains(&off) => None,
                    _ => Some(false),
                };
                match what {
                    Some(true) => {
                        g.push((t, stale));
                        c.push((t, stale));
                    }
                    Some(false) => {
                        state += b.rng.gauss();
                        cnt += b.rng.below(30) as f64;
                        g.push((t, (state * 100.0).round() / 100.0));
                        c.push((t, cnt));
                    }
                    None => {}
                }
            }
            (g, c)
        };
        b.push("flappy_gauge", &[("instance", inst)], g);
        b.push("flappy_requests_total", &[("instance", inst)], c);
    }
    let s = b.sample(&t15, |_, i, off| match off {
        o if o < 20 * MIN => Step::Value(i as f64),
        o if o == 20 * MIN => Step::Value(stale),
        _ => Step::Skip,
    });
    b.push("early_series", &[("job", "api")], s);
    let s = b.sample(&t15, |_, i, off| {
        if off >= 100 * MIN {
            Step::Value(i as f64 * 0.5)
        } else {
            Step::Skip
        }
    });
    b.push("late_series", &[("job", "api")], s);

    // Irregular intervals.
    for inst in instances {
        let mut t = start_ms + b.rng.below(10_000) as i64;
        let mut g = Vec::new();
        let mut c = Vec::new();
        let mut v = 0.0;
        let mut n = 0.0;
        while t <= start_ms + end {
            v += b.rng.gauss();
            n += b.rng.below(100) as f64 / 4.0;
            g.push((t, (v * 1000.0).round() / 1000.0));
            c.push((t, n));
            t += 3 * SEC + b.rng.below(42_000) as i64;
        }
        b.push("irregular_gauge", &[("instance", inst)], g);
        b.push("irregular_total", &[("instance", inst)], c);
    }

    // Names that only differ by name: dropping it collides.
    for name in ["collide_seconds", "collide_ms"] {
        let s = b.sample(&t15, |r, _, _| Step::Value(r.below(1000) as f64));
        b.push(name, &[("job", "api"), ("instance", "i-0:8080")], s);
    }
    // Label values that need escaping.
    for (k, path) in ["/a\"b\\c", "line1\nline2\ttab ünï©ødé ✓"]
        .into_iter()
        .enumerate()
    {
        let s = b.sample(&t15, |_, i, _| Step::Value((i + k) as f64));
        b.push(
            "escape_test",
            &[("path", path), ("quote", "'single' and `back`")],
            s,
        );
    }
    // CPU counters every 30 s.
    for inst in instances {
        for cpu in ["0", "1", "2", "3"] {
            for (mode, share) in [("user", 0.3), ("system", 0.1), ("idle", 0.6)] {
                let s = counter(&mut b, &t30, 10_000.0, &[], |r| {
                    ((share * 30.0 * r.range(0.5, 1.5)) * 100.0).round() / 100.0
                });
                b.push(
                    "cpu_usage_seconds_total",
                    &[("instance", inst), ("cpu", cpu), ("mode", mode)],
                    s,
                );
            }
        }
    }

    Data {
        start_ms,
        end_ms: start_ms + SPAN_MS,
        series: b.series,
    }
}

/// Encodes `data` as remote_write requests in time order: request `k` holds every sample in
/// `[start + k × window, start + (k + 1) × window)`, so sending them in order never makes a
/// series go back in time.
pub fn encode(data: &Data, window_ms: i64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = vec![0usize; data.series.len()];
    let mut lo = data.start_ms;
    while lo <= data.end_ms {
        let hi = lo + window_ms;
        let mut req = WriteRequest::default();
        for (s, p) in data.series.iter().zip(pos.iter_mut()) {
            let from = *p;
            while *p < s.samples.len() && s.samples[*p].0 < hi {
                *p += 1;
            }
            if *p > from {
                req.timeseries.push(TimeSeries {
                    labels: s
                        .labels
                        .iter()
                        .map(|(n, v)| PbLabel {
                            name: n.clone(),
                            value: v.clone(),
                        })
                        .collect(),
                    samples: s.samples[from..*p]
                        .iter()
                        .map(|&(t, v)| PbSample {
                            value: v,
                            timestamp: t,
                        })
                        .collect(),
                    exemplars: Vec::new(),
                    histograms: Vec::new(),
                });
            }
        }
        if !req.timeseries.is_empty() {
            out.push(encode_write_request(&req));
        }
        lo = hi;
    }
    out
}

/// Sends `data` to the remote_write endpoint `url`, one request at a time, in time order.
pub fn load(data: &Data, url: &str) -> Result<()> {
    let agent = crate::http_agent(Duration::from_secs(60));
    for (i, body) in encode(data, 10 * MIN).iter().enumerate() {
        let mut r = agent
            .post(url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .send(&body[..])
            .with_context(|| format!("POST {url}"))?;
        let code = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        ensure!((200..300).contains(&code), "request {i} to {url}: {code} {text}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_shifted_with_the_start() {
        let a = generate(1_700_000_000_000);
        let b = generate(1_700_000_000_000 + 3_600_000);
        assert_eq!(a.series.len(), b.series.len());
        for (x, y) in a.series.iter().zip(&b.series) {
            assert_eq!(x.labels, y.labels);
            assert_eq!(x.samples.len(), y.samples.len());
            for (p, q) in x.samples.iter().zip(&y.samples) {
                assert_eq!(p.0 + 3_600_000, q.0);
                assert_eq!(p.1.to_bits(), q.1.to_bits());
            }
        }
        assert!((250..600).contains(&a.series.len()), "{} series", a.series.len());
    }

    #[test]
    fn series_are_unique_ordered_and_in_the_window() {
        let d = generate(1_700_000_000_000);
        let mut seen = std::collections::HashSet::new();
        for s in &d.series {
            assert!(seen.insert(s.labels.clone()), "duplicate {:?}", s.labels);
            assert!(s.samples.windows(2).all(|w| w[0].0 < w[1].0), "{:?}", s.labels);
            assert!(
                s.samples
                    .iter()
                    .all(|&(t, _)| (d.start_ms..=d.end_ms).contains(&t))
            );
        }
        let stale = d
            .series
            .iter()
            .flat_map(|s| &s.samples)
            .filter(|(_, v)| v.to_bits() == STALE_NAN)
            .count();
        assert_eq!(stale, 5, "flappy ×2 for two instances, early_series");
    }

    #[test]
    fn encoded_requests_carry_every_sample_in_time_order() {
        let d = generate(1_700_000_000_000);
        let reqs = encode(&d, 10 * MIN);
        let mut n = 0;
        let mut last: std::collections::HashMap<Vec<(String, String)>, i64> = Default::default();
        for body in &reqs {
            let batch = metricsd_ingest::decode_write_request(body, 64 << 20).unwrap();
            for (labels, samples) in &batch.series {
                let key: Vec<(String, String)> = labels
                    .iter()
                    .map(|l| (l.name.to_string(), l.value.to_string()))
                    .collect();
                for s in samples {
                    let prev = last.insert(key.clone(), s.t);
                    assert!(prev.is_none_or(|p| p < s.t));
                    n += 1;
                }
            }
        }
        assert_eq!(n, d.num_samples());
    }

    #[test]
    fn default_start_is_aligned_and_recent() {
        let now = 1_700_000_123_456;
        let s = default_start(now);
        assert_eq!(s % (5 * MIN), 0);
        assert!(now - (s + SPAN_MS) >= 5 * MIN && now - (s + SPAN_MS) < 10 * MIN);
    }
}
