//! Ingest load: pre-encoded requests from a data set, and a sender that replays them.
//!
//! [`encode_requests`] turns a [`DataSet`] into remote_write 1.0 bodies (protobuf + snappy
//! block format), [`encode_json_requests`] into batches for metricsd's JSON API, *before* any
//! load is sent, so the client's CPU during a run is only HTTP.
//! Requests are step-major, like real scrapes: request `k` of step `s` holds the samples of
//! step `s` of series `[k × n, (k + 1) × n)` (one sample per series).
//!
//! [`run_load`] sends them with `concurrency` workers, each with its own HTTP/1.1 keep-alive
//! connection. Requests are handed out in order; a request waits until the same series'
//! request of the previous step has been answered, so no series ever receives an
//! out-of-order sample (Prometheus' receiver rejects those), like Prometheus' own
//! remote_write, which shards by series.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use metricsd_ingest::{Label as PbLabel, Sample as PbSample, TimeSeries, WriteRequest, encode_write_request};
use serde_json::{Value, json};

use crate::datagen::{self, DataSet, GenConfig};

/// One pre-encoded remote_write request.
#[derive(Debug, Clone)]
pub struct EncodedRequest {
    /// The HTTP body: snappy-compressed protobuf `WriteRequest`.
    pub body: Vec<u8>,
    /// Samples in the request.
    pub samples: usize,
    /// Step (sample index within each series) the request carries.
    pub step: usize,
    /// First series (index into [`DataSet::series`]) of the request.
    pub first_series: usize,
}

/// Requests per step for `num_series` series and `series_per_request` series per request.
pub fn requests_per_step(num_series: usize, series_per_request: usize) -> usize {
    num_series.div_ceil(series_per_request.max(1))
}

/// Encodes all samples of `ds` as remote_write requests, step-major, with at most
/// `series_per_request` series (one sample each) per request.
// `step` indexes the inner vectors (`samples[i][step]`), which clippy misreads.
#[allow(clippy::needless_range_loop)]
pub fn encode_requests(ds: &DataSet, series_per_request: usize) -> Vec<EncodedRequest> {
    assert!(series_per_request > 0, "series_per_request must be positive");
    let n = ds.num_series();
    let steps = ds.cfg.samples_per_series;
    let labels: Vec<Vec<PbLabel>> = ds.series.iter().map(PbLabel::from_labels).collect();
    let samples: Vec<Vec<metricsd_model::Sample>> = (0..n).map(|i| ds.samples(i)).collect();
    let per_step = requests_per_step(n, series_per_request);
    let mut out = Vec::with_capacity(per_step * steps);
    for step in 0..steps {
        for k in 0..per_step {
            let first = k * series_per_request;
            let last = (first + series_per_request).min(n);
            let req = WriteRequest {
                timeseries: (first..last)
                    .map(|i| {
                        let s = samples[i][step];
                        TimeSeries {
                            labels: labels[i].clone(),
                            samples: vec![PbSample {
                                value: s.v,
                                timestamp: s.t,
                            }],
                            exemplars: Vec::new(),
                            histograms: Vec::new(),
                        }
                    })
                    .collect(),
                metadata: Vec::new(),
            };
            out.push(EncodedRequest {
                body: encode_write_request(&req),
                samples: last - first,
                step,
                first_series: first,
            });
        }
    }
    out
}

/// Encodes the samples of `labels.len()` series as remote_write requests of `block` samples
/// per series and at most `series_per_request` series each; `samples(i, buf)` fills `buf`
/// with the samples of series `i` (`steps` of them). Request `b × per_step + k` holds block
/// `b` (samples `[b × block, (b + 1) × block)`) of series chunk `k`, so [`run_load`] with
/// `requests_per_step = per_step` keeps every series in time order; [`EncodedRequest::step`]
/// is the block. Fewer, larger requests than [`encode_requests`] (labels are sent once per
/// block), for loading hours of data.
pub fn encode_blocks(
    labels: &[Vec<PbLabel>],
    samples: impl Fn(usize, &mut Vec<metricsd_model::Sample>),
    steps: usize,
    series_per_request: usize,
    block: usize,
) -> Vec<EncodedRequest> {
    assert!(
        series_per_request > 0 && block > 0,
        "series_per_request and block must be positive"
    );
    let n = labels.len();
    let per_step = requests_per_step(n, series_per_request);
    let blocks = steps.div_ceil(block);
    let mut out: Vec<Option<EncodedRequest>> = vec![None; per_step * blocks];
    let mut bufs: Vec<Vec<metricsd_model::Sample>> = Vec::new();
    for k in 0..per_step {
        let first = k * series_per_request;
        let last = (first + series_per_request).min(n);
        // One chunk of series at a time: all their samples, then every block of them.
        bufs.resize_with(last - first, Vec::new);
        for (i, buf) in (first..last).zip(bufs.iter_mut()) {
            samples(i, buf);
        }
        for b in 0..blocks {
            let (lo, hi) = (b * block, ((b + 1) * block).min(steps));
            let req = WriteRequest {
                timeseries: (first..last)
                    .zip(&bufs)
                    .map(|(i, buf)| TimeSeries {
                        labels: labels[i].clone(),
                        samples: buf[lo.min(buf.len())..hi.min(buf.len())]
                            .iter()
                            .map(|s| PbSample {
                                value: s.v,
                                timestamp: s.t,
                            })
                            .collect(),
                        exemplars: Vec::new(),
                        histograms: Vec::new(),
                    })
                    .collect(),
                metadata: Vec::new(),
            };
            let count = req.timeseries.iter().map(|t| t.samples.len()).sum();
            out[b * per_step + k] = Some(EncodedRequest {
                body: encode_write_request(&req),
                samples: count,
                step: b,
                first_series: first,
            });
        }
    }
    out.into_iter()
        .map(|r| r.expect("every request encoded"))
        .collect()
}

/// The wire protocol of a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// Prometheus remote_write 1.0 (protobuf + snappy) to `/api/v1/write`.
    RemoteWrite,
    /// metricsd's JSON batch API (seed 000) to `/metrics/track/batch`.
    Json,
}

impl Protocol {
    /// The endpoint's path.
    pub fn path(self) -> &'static str {
        match self {
            Protocol::RemoteWrite => "/api/v1/write",
            Protocol::Json => "/metrics/track/batch",
        }
    }

    /// The request headers a real sender of this protocol sets.
    pub fn headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Protocol::RemoteWrite => &[
                ("Content-Encoding", "snappy"),
                ("Content-Type", "application/x-protobuf"),
                ("X-Prometheus-Remote-Write-Version", "0.1.0"),
            ],
            Protocol::Json => &[("Content-Type", "application/json")],
        }
    }

    /// Pre-encodes `ds` as requests of this protocol with at most `per_request` series (one
    /// sample each) per request, step-major (see [`encode_requests`]).
    pub fn encode(self, ds: &DataSet, per_request: usize) -> Vec<EncodedRequest> {
        match self {
            Protocol::RemoteWrite => encode_requests(ds, per_request),
            Protocol::Json => encode_json_requests(ds, per_request),
        }
    }
}

/// Encodes all samples of `ds` as JSON batches for `POST /metrics/track/batch`, step-major
/// like [`encode_requests`], at most `items_per_request` items each. Each item is what a
/// service instrumented through the JSON API sends: `name` (the series' `__name__`),
/// `type`, `value`, `labels` (the others), `service` and an explicit millisecond
/// `timestamp` (the step's). Counters are sent as increments (the JSON API's counter
/// semantics): the first step sends the value, later steps the difference, and a reset
/// (a smaller value) sends the new value, so the stored cumulative series only grows. Other
/// series are gauges.
#[allow(clippy::needless_range_loop)]
pub fn encode_json_requests(ds: &DataSet, items_per_request: usize) -> Vec<EncodedRequest> {
    assert!(items_per_request > 0, "items_per_request must be positive");
    let n = ds.num_series();
    let steps = ds.cfg.samples_per_series;
    // By family: a counter that does not move is still a counter.
    let is_counter = |i: usize| ds.families[ds.family_of(i)].mtype == datagen::MetricType::Counter;
    // The constant part of each series' item, up to (and without) the value.
    let heads: Vec<String> = ds
        .series
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let name = l.get(metricsd_model::METRIC_NAME).unwrap_or("unnamed");
            let labels: serde_json::Map<String, Value> = l
                .iter()
                .filter(|l| &*l.name != metricsd_model::METRIC_NAME)
                .map(|l| (l.name.to_string(), Value::from(&*l.value)))
                .collect();
            let kind = if is_counter(i) { "counter" } else { "gauge" };
            format!(
                "{{\"name\":{},\"type\":\"{kind}\",\"service\":\"node-exporter\",\"labels\":{},",
                Value::from(name),
                Value::Object(labels)
            )
        })
        .collect();
    let samples: Vec<Vec<metricsd_model::Sample>> = (0..n).map(|i| ds.samples(i)).collect();
    let per_step = requests_per_step(n, items_per_request);
    let mut out = Vec::with_capacity(per_step * steps);
    for step in 0..steps {
        for k in 0..per_step {
            let first = k * items_per_request;
            let last = (first + items_per_request).min(n);
            let mut body = String::with_capacity((last - first) * 160);
            body.push('[');
            for i in first..last {
                let s = samples[i][step];
                let v = if is_counter(i) && step > 0 {
                    let prev = samples[i][step - 1].v;
                    if s.v >= prev { s.v - prev } else { s.v }
                } else {
                    s.v
                };
                if i > first {
                    body.push(',');
                }
                body.push_str(&heads[i]);
                // serde_json writes finite floats exactly (shortest round-trip form).
                body.push_str(&format!("\"value\":{},\"timestamp\":{}}}", Value::from(v), s.t));
            }
            body.push(']');
            out.push(EncodedRequest {
                body: body.into_bytes(),
                samples: last - first,
                step,
                first_series: first,
            });
        }
    }
    out
}

/// The data set options shared by `loadgen` and `ingest_compare`.
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// Series: the smallest number of node_exporter-like hosts giving at least this many.
    #[arg(long, default_value_t = 100_000)]
    pub series: usize,
    /// Steps (scrapes): samples per series.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Scrape interval, ms.
    #[arg(long, default_value_t = 15_000)]
    pub interval_ms: i64,
    /// Scrape timestamp jitter, ms (0: every series of a step has the same timestamp).
    #[arg(long, default_value_t = 0)]
    pub jitter_ms: i64,
    /// Smooth values (integer counters, constant gauges) instead of noisy ones.
    #[arg(long)]
    pub smooth: bool,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// First timestamp, ms since the epoch. Default: so that the last step is about a minute
    /// ago (VictoriaMetrics drops samples outside its retention, and hides the last 30 s).
    #[arg(long)]
    pub start_ms: Option<i64>,
    /// Series (one sample each) per request.
    #[arg(long, default_value_t = 2000)]
    pub samples_per_request: usize,
}

impl DataArgs {
    /// The generator configuration (hosts resolved from `--series`).
    pub fn gen_config(&self) -> GenConfig {
        let start_ms = self.start_ms.unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(datagen::DEFAULT_START_MS);
            (now / self.interval_ms) * self.interval_ms - (self.steps as i64 + 4) * self.interval_ms
        });
        let mut cfg = GenConfig {
            start_ms,
            interval_ms: self.interval_ms,
            samples_per_series: self.steps,
            jitter_ms: self.jitter_ms,
            profile: if self.smooth {
                datagen::Profile::Smooth
            } else {
                datagen::Profile::Noisy
            },
            seed: self.seed,
            ..Default::default()
        };
        cfg.hosts = datagen::hosts_for_series(&cfg, self.series);
        cfg
    }
}

/// How to send.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Full URL of the endpoint, e.g. `http://127.0.0.1:8428/api/v1/write`.
    pub url: String,
    /// What the requests are (sets the headers).
    pub protocol: Protocol,
    /// Concurrent workers (one keep-alive connection each).
    pub concurrency: usize,
    /// Stop handing out requests after this long (in-flight ones complete).
    pub duration: Option<Duration>,
    /// Requests per step (see [`requests_per_step`]): request `i` waits for `i - this`.
    pub requests_per_step: usize,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Requests sent (answered or failed).
    pub requests: usize,
    /// Requests answered with 2xx.
    pub requests_ok: usize,
    /// Samples in the 2xx-answered requests.
    pub samples_ok: u64,
    /// Bytes of request bodies sent.
    pub bytes_sent: u64,
    /// Wall time from the first request to the last answer.
    pub elapsed: Duration,
    /// Sorted request latencies, µs.
    pub latencies_us: Vec<u64>,
    /// Failures by status (`"400"`, `"transport"`, `"items"`: a 2xx JSON batch with failed
    /// items), counted per request.
    pub errors: BTreeMap<String, u64>,
    /// The first error's body or message, abbreviated.
    pub first_error: Option<String>,
    /// Whether the run stopped at its duration before sending everything.
    pub truncated: bool,
    /// The highest step all of whose requests were answered with 2xx, if any.
    pub last_full_step: Option<usize>,
}

impl LoadReport {
    /// Samples per second accepted (2xx) over the run's wall time.
    pub fn samples_per_sec(&self) -> f64 {
        self.samples_ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Latency percentile `p` in `[0, 100]`, µs (0 if no request).
    pub fn latency_pct(&self, p: f64) -> u64 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let idx = ((p / 100.0) * (self.latencies_us.len() - 1) as f64).round() as usize;
        self.latencies_us[idx.min(self.latencies_us.len() - 1)]
    }

    /// Total failed requests.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "requests": self.requests,
            "requests_ok": self.requests_ok,
            "samples_ok": self.samples_ok,
            "bytes_sent": self.bytes_sent,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "samples_per_sec": self.samples_per_sec(),
            "latency_us": {
                "p50": self.latency_pct(50.0),
                "p90": self.latency_pct(90.0),
                "p99": self.latency_pct(99.0),
                "max": self.latency_pct(100.0),
            },
            "errors": self.errors,
            "first_error": self.first_error,
            "truncated": self.truncated,
            "last_full_step": self.last_full_step,
        })
    }
}

struct Outcome {
    idx: usize,
    latency_us: u64,
    status: Result<u16, String>,
    body: Option<String>,
    /// Items a 2xx JSON batch answer reports as failed (stored partially).
    failed_items: u64,
}

/// Server text quoted in a report, cut to 300 bytes.
fn abbreviate(s: &str) -> String {
    metricsd_model::abbreviate_to(s.trim(), 300)
}

/// Sends `reqs` to `cfg.url` (see the module docs for the ordering); blocks until done.
pub fn run_load(reqs: &[EncodedRequest], cfg: &LoadConfig) -> LoadReport {
    let n = reqs.len();
    let next = AtomicUsize::new(0);
    let done: Vec<AtomicBool> = (0..n).map(|_| AtomicBool::new(false)).collect();
    let stop = AtomicBool::new(false);
    let gate = (Mutex::new(()), Condvar::new());
    let per_step = cfg.requests_per_step.max(1);
    let start = Instant::now();
    let deadline = cfg.duration.map(|d| start + d);
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(n);
    std::thread::scope(|sc| {
        let handles: Vec<_> = (0..cfg.concurrency.max(1))
            .map(|_| {
                sc.spawn(|| {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(cfg.timeout))
                        .max_idle_connections(1)
                        .max_idle_connections_per_host(1)
                        .build()
                        .into();
                    let mut mine = Vec::new();
                    loop {
                        if stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        if i >= per_step {
                            // The same series' previous step must be answered first.
                            let mut g = gate.0.lock().unwrap_or_else(|e| e.into_inner());
                            while !done[i - per_step].load(Ordering::Acquire) && !stop.load(Ordering::Relaxed)
                            {
                                g = gate
                                    .1
                                    .wait_timeout(g, Duration::from_millis(5))
                                    .unwrap_or_else(|e| e.into_inner())
                                    .0;
                            }
                        }
                        let r = &reqs[i];
                        let t0 = Instant::now();
                        let mut req = agent.post(&cfg.url).header("User-Agent", "metricsd-loadgen/0.1");
                        for (k, v) in cfg.protocol.headers() {
                            req = req.header(*k, *v);
                        }
                        let res = req.send(&r.body[..]);
                        let (status, body, failed_items) = match res {
                            Ok(mut resp) => {
                                let code = resp.status().as_u16();
                                // Read the body to the end so the connection is reused.
                                let text = resp.body_mut().read_to_string().unwrap_or_default();
                                let ok = (200..300).contains(&code);
                                // A JSON batch answers 200 when only some items failed.
                                let failed = if ok && cfg.protocol == Protocol::Json {
                                    serde_json::from_str::<Value>(&text)
                                        .ok()
                                        .and_then(|v| v["failed"].as_u64())
                                        .unwrap_or(0)
                                } else {
                                    0
                                };
                                let body = (!ok || failed > 0).then(|| abbreviate(&text));
                                (Ok(code), body, failed)
                            }
                            Err(e) => (Err(e.to_string()), None, 0),
                        };
                        let latency_us = t0.elapsed().as_micros() as u64;
                        // Mark answered even on failure: a failed request is not retried, and
                        // waiting for it would stall the run.
                        done[i].store(true, Ordering::Release);
                        {
                            let _g = gate.0.lock().unwrap_or_else(|e| e.into_inner());
                            gate.1.notify_all();
                        }
                        mine.push(Outcome {
                            idx: i,
                            latency_us,
                            status,
                            body,
                            failed_items,
                        });
                    }
                    mine
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(v) => outcomes.extend(v),
                Err(_) => stop.store(true, Ordering::Relaxed),
            }
        }
    });
    let elapsed = start.elapsed();
    let mut rep = LoadReport {
        elapsed,
        ..Default::default()
    };
    outcomes.sort_by_key(|o| o.idx);
    let steps = reqs.last().map(|r| r.step + 1).unwrap_or(0);
    let mut step_ok = vec![0usize; steps];
    for o in &outcomes {
        let r = &reqs[o.idx];
        rep.requests += 1;
        rep.bytes_sent += r.body.len() as u64;
        rep.latencies_us.push(o.latency_us);
        match &o.status {
            Ok(code) if (200..300).contains(code) && o.failed_items > 0 => {
                rep.samples_ok += (r.samples as u64).saturating_sub(o.failed_items);
                *rep.errors.entry("items".into()).or_default() += 1;
                if rep.first_error.is_none() {
                    rep.first_error = Some(format!("{code}: {}", o.body.as_deref().unwrap_or("")));
                }
            }
            Ok(code) if (200..300).contains(code) => {
                rep.requests_ok += 1;
                rep.samples_ok += r.samples as u64;
                step_ok[r.step] += 1;
            }
            Ok(code) => {
                *rep.errors.entry(code.to_string()).or_default() += 1;
                if rep.first_error.is_none() {
                    rep.first_error = Some(format!("{code}: {}", o.body.as_deref().unwrap_or("")));
                }
            }
            Err(msg) => {
                *rep.errors.entry("transport".into()).or_default() += 1;
                if rep.first_error.is_none() {
                    rep.first_error = Some(abbreviate(msg));
                }
            }
        }
    }
    rep.latencies_us.sort_unstable();
    rep.truncated = rep.requests < n;
    let mut per_step_count = vec![0usize; steps];
    for r in reqs {
        per_step_count[r.step] += 1;
    }
    rep.last_full_step = (0..steps).rev().find(|&s| step_ok[s] == per_step_count[s]);
    rep
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datagen::{GenConfig, generate};

    #[test]
    fn requests_decode_back_to_the_data_set() {
        let cfg = GenConfig {
            hosts: 2,
            samples_per_series: 3,
            jitter_ms: 5,
            ..Default::default()
        };
        let ds = generate(&cfg);
        let per_req = 97;
        let reqs = encode_requests(&ds, per_req);
        let per_step = requests_per_step(ds.num_series(), per_req);
        assert_eq!(reqs.len(), per_step * 3);
        let mut seen = vec![0usize; ds.num_series()];
        for (i, r) in reqs.iter().enumerate() {
            assert_eq!(r.step, i / per_step, "step-major order");
            assert_eq!(r.first_series, (i % per_step) * per_req);
            let batch = metricsd_ingest::decode_write_request(&r.body, 64 << 20).unwrap();
            assert!(batch.rejected.is_empty(), "{:?}", batch.rejected);
            assert_eq!(batch.sample_count(), r.samples);
            assert_eq!(batch.series.len(), r.samples);
            for (k, (labels, samples)) in batch.series.iter().enumerate() {
                let idx = r.first_series + k;
                assert_eq!(labels, &ds.series[idx]);
                let want = ds.samples(idx)[r.step];
                assert_eq!(samples.len(), 1);
                assert_eq!(samples[0].t, want.t);
                assert_eq!(samples[0].v.to_bits(), want.v.to_bits());
                seen[idx] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 3), "every series once per step");
    }

    #[test]
    fn json_batches_parse_back_to_the_data_set() {
        let cfg = GenConfig {
            hosts: 2,
            samples_per_series: 4,
            ..Default::default()
        };
        let ds = generate(&cfg);
        let reqs = encode_json_requests(&ds, 100);
        let per_step = requests_per_step(ds.num_series(), 100);
        assert_eq!(reqs.len(), per_step * 4);
        // Counters are re-accumulated from their increments, as the server does.
        // Until a series resets, the sum of its increments is its value.
        let mut total = vec![0.0f64; ds.num_series()];
        let mut reset = vec![false; ds.num_series()];
        for (i, r) in reqs.iter().enumerate() {
            assert_eq!((r.step, r.first_series), (i / per_step, (i % per_step) * 100));
            let items = metricsd_ingest::parse_batch(&r.body, 1000).unwrap();
            assert_eq!(items.len(), r.samples);
            for (k, item) in items.into_iter().enumerate() {
                let item = item.unwrap();
                let idx = r.first_series + k;
                let want = ds.samples(idx)[r.step];
                let labels = &ds.series[idx];
                assert_eq!(Some(&*item.name), labels.get(metricsd_model::METRIC_NAME));
                assert_eq!(item.labels.len(), labels.len() - 1);
                assert_eq!(item.timestamp_ms, Some(want.t));
                let counter = ds.families[ds.family_of(idx)].mtype == crate::datagen::MetricType::Counter;
                assert_eq!(item.kind.as_str(), if counter { "counter" } else { "gauge" });
                if counter {
                    assert!(item.value >= 0.0, "increments are never negative");
                    total[idx] += item.value;
                    reset[idx] |= r.step > 0 && want.v < ds.samples(idx)[r.step - 1].v;
                    if !reset[idx] {
                        assert!((total[idx] - want.v).abs() <= 1e-9 * want.v.abs().max(1.0));
                    }
                } else {
                    assert_eq!(item.value.to_bits(), want.v.to_bits());
                }
            }
        }
    }

    #[test]
    fn blocks_decode_back_to_the_data_set() {
        let cfg = GenConfig {
            hosts: 1,
            samples_per_series: 7,
            ..Default::default()
        };
        let ds = generate(&cfg);
        let labels: Vec<Vec<PbLabel>> = ds.series.iter().map(PbLabel::from_labels).collect();
        let reqs = encode_blocks(&labels, |i, buf| ds.samples_into(i, buf), 7, 100, 3);
        let per_step = requests_per_step(ds.num_series(), 100);
        assert_eq!(reqs.len(), per_step * 3);
        let mut got: Vec<Vec<metricsd_model::Sample>> = vec![Vec::new(); ds.num_series()];
        for (i, r) in reqs.iter().enumerate() {
            assert_eq!((r.step, r.first_series), (i / per_step, (i % per_step) * 100));
            let batch = metricsd_ingest::decode_write_request(&r.body, 64 << 20).unwrap();
            assert_eq!(batch.sample_count(), r.samples);
            for (k, (l, s)) in batch.series.iter().enumerate() {
                assert_eq!(l, &ds.series[r.first_series + k]);
                got[r.first_series + k].extend(s.iter().copied());
            }
        }
        for (i, g) in got.iter().enumerate() {
            let want = ds.samples(i);
            assert_eq!(g.len(), want.len());
            assert!(
                g.iter()
                    .zip(&want)
                    .all(|(a, b)| a.t == b.t && a.v.to_bits() == b.v.to_bits())
            );
        }
    }

    #[test]
    fn latency_percentiles() {
        let rep = LoadReport {
            latencies_us: (1..=100).collect(),
            ..Default::default()
        };
        assert_eq!(rep.latency_pct(50.0), 51);
        assert_eq!(rep.latency_pct(99.0), 99);
        assert_eq!(rep.latency_pct(100.0), 100);
    }
}
