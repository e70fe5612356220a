//! Issue 11's hostile inputs against the real binary, each bounded in count and time, on
//! loopback: every one is answered with a clear error, and afterwards the process is alive,
//! `/health` answers and nothing acknowledged is lost.
//!
//! Where each row of the table is run:
//!
//! | input | test |
//! |---|---|
//! | `abs(abs(…))` 1,500 deep | here: `deep_nesting_is_a_400_not_a_stack_overflow` |
//! | `quantile_over_time(0.5, x[30d:1ms])`, `vector(1)[100y:1ms]`, `sum(count_over_time(x[1d:1ms]))` with `timeout=5s` | here: `huge_query_grids_are_refused_before_allocation` |
//! | a timeout not honoured inside a long series | here: `a_query_timeout_ends_work_in_the_step_loop` |
//! | a sample at `i64::MAX`, a gauge stamped 2999, `i64::MIN` | `clock.rs`: `far_future_and_ancient_samples_are_refused_on_every_path`, `a_stored_far_future_sample_deletes_nothing_and_blocks_nothing` |
//! | 300 new tenants; `/api/v1/metadata` and other reads with new tenant ids | `tenants.rs`: `three_hundred_tenants_cost_no_thread_each`, `max_tenants_and_reads_that_create_nothing`, `idle_tenants_are_closed_and_reopened_on_use` |
//! | 260 POSTs trickling their bodies | here: `trickling_uploads_hold_no_slot_and_are_cut_off`; `protect.rs`: `a_stalled_upload_holds_no_slot_and_is_cut_off`, `one_client_holds_only_its_share_of_connections` |
//! | a 6-byte snappy body declaring 80 MiB | here: `a_snappy_header_cannot_size_the_buffer` |
//! | remote_write 2.0 | here: `remote_write_2_is_refused_with_415` |
//! | methods `XMETHOD1`, `XMETHOD2`, … | here: `invented_methods_create_no_self_metric_series` |
//! | `le="NaN"` / `quantile="NaN"` among 20+ buckets (a sort that panicked on NaN) | here: `nan_bucket_bounds_are_answered_not_a_panic` |
//! | a block's files truncated while open | `durability.rs`: `block_files_truncated_underneath_cost_samples_not_the_process` |
//! | global figures, paths and the working directory shown to any tenant | `tenants.rs`: `max_tenants_and_reads_that_create_nothing`; `durability.rs` (warnings) |
//!
//! The engine-level versions of the query rows are in `crates/promql/tests/limits.rs`, the
//! in-flight cap and deadlines in `crates/server/src/protect.rs`'s unit tests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use metricsd_ingest::{Label, Sample, TimeSeries, WriteRequest, encode_write_request};
use serde_json::Value;

use crate::util::{Server, form, now_ms, time_series, write_body};

/// Writes `series` series of `x` with a sample a minute over the last `minutes`.
fn write_x(s: &Server, series: usize, minutes: i64) {
    let now = now_ms();
    let req = WriteRequest {
        timeseries: (0..series)
            .map(|i| TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "x".into(),
                    },
                    Label {
                        name: "i".into(),
                        value: i.to_string(),
                    },
                ],
                samples: (0..minutes)
                    .map(|k| Sample {
                        value: k as f64,
                        timestamp: now - (minutes - k) * 60_000,
                    })
                    .collect(),
                exemplars: vec![],
                histograms: vec![],
            })
            .collect(),
        metadata: vec![],
    };
    let (st, text) = post_rw(s, encode_write_request(&req), &[]);
    assert_eq!(st, 204, "{text}");
}

fn post_rw(s: &Server, body: Vec<u8>, headers: &[(&str, &str)]) -> (u16, String) {
    s.remote_write(body, headers)
}

/// GETs a PromQL instant query; (status, JSON body).
fn query(s: &Server, q: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut params = vec![("query", q)];
    params.extend_from_slice(extra);
    let url = s.url(&format!("/api/v1/query?{}", form(&params)));
    let r = s.client.get(url).send().unwrap();
    let st = r.status().as_u16();
    (st, r.json().unwrap_or(Value::Null))
}

/// Prometheus' error shape with `error_type`.
fn assert_prom_error(v: &Value, error_type: &str, needle: &str) {
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["errorType"], error_type, "{v}");
    let e = v["error"].as_str().unwrap_or_default();
    assert!(e.contains(needle), "{needle:?} not in {v}");
}

fn assert_alive(s: &Server) {
    assert_eq!(s.get("/health").0, 200, "/health after the abuse");
    let (st, v) = query(s, "count(x)", &[]);
    assert_eq!(st, 200, "{v}");
}

#[test]
fn deep_nesting_is_a_400_not_a_stack_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    write_x(&s, 3, 10);
    // A 7.5 KB GET that aborted the process: 1,500 nested calls.
    let q = format!("{}x{}", "abs(".repeat(1500), ")".repeat(1500));
    let (st, v) = query(&s, &q, &[]);
    assert_eq!(st, 400, "{v}");
    assert_prom_error(&v, "bad_data", "nests more than 512");
    // And operator chains, which nest without brackets.
    let q = format!("x{}", " + x".repeat(3000));
    let (st, v) = query(&s, &q, &[]);
    assert_eq!(st, 400, "{v}");
    // The deepest accepted query evaluates.
    let q = format!("{}x{}", "abs(".repeat(250), ")".repeat(250));
    let (st, v) = query(&s, &q, &[]);
    assert_eq!(
        (st, v["data"]["result"].as_array().map(Vec::len)),
        (200, Some(3)),
        "{v}"
    );
    assert_alive(&s);
}

#[test]
fn huge_query_grids_are_refused_before_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    write_x(&s, 20, 30);
    let rss_before = s.proc_status_kib("VmRSS");
    let start = Instant::now();
    for (q, timeout) in [
        // RSS grew to 22 GB and the kernel killed the process.
        ("quantile_over_time(0.5, x[30d:1ms])", None),
        // 26 s of CPU and 13.5 GB, then 422, with timeout=5s.
        ("sum(count_over_time(x[1d:1ms]))", Some("5s")),
        // A step grid allocated before any limit was charged.
        ("vector(1)[100y:1ms]", None),
        ("count_over_time(vector(1)[30d:1ms])", None),
    ] {
        let extra: Vec<(&str, &str)> = timeout.map(|t| ("timeout", t)).into_iter().collect();
        let (st, v) = query(&s, q, &extra);
        assert_eq!(st, 422, "{q}: {v}");
        assert_prom_error(&v, "execution", "too many samples");
    }
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    // Refused before allocating: the process did not grow by the grids' gigabytes.
    let grown = s.proc_status_kib("VmHWM").saturating_sub(rss_before);
    assert!(grown < 1 << 20, "peak RSS grew by {grown} KiB");
    assert_alive(&s);
}

#[test]
fn a_query_timeout_ends_work_in_the_step_loop() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    write_x(&s, 4, 3 * 24 * 60);
    // Each of 11,000 steps sorts a day of samples: far longer than the 1 s asked for.
    let end = now_ms() / 1000;
    let start = Instant::now();
    let params = form(&[
        ("query", "quantile_over_time(0.5, x[1d])"),
        ("start", &(end - 10_999 * 20).to_string()),
        ("end", &end.to_string()),
        ("step", "20"),
        ("timeout", "1s"),
    ]);
    let r = s
        .client
        .get(s.url(&format!("/api/v1/query_range?{params}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().unwrap();
    assert_prom_error(&v, "timeout", "");
    assert!(start.elapsed() < Duration::from_secs(4), "{:?}", start.elapsed());
    assert_alive(&s);
}

#[test]
fn a_snappy_header_cannot_size_the_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    write_x(&s, 1, 1);
    let rss_before = s.proc_status_kib("VmRSS");
    // 6 bytes announcing just under 80 MiB, 20 times.
    let mut body = Vec::new();
    let mut n: u64 = (80 << 20) - 1;
    while n >= 0x80 {
        body.push((n as u8) | 0x80);
        n >>= 7;
    }
    body.push(n as u8);
    body.extend_from_slice(&[0, 0]);
    assert_eq!(body.len(), 6);
    for _ in 0..20 {
        let (st, text) = post_rw(&s, body.clone(), &[]);
        assert_eq!(st, 400, "{text}");
        assert!(text.contains("announces 83886079"), "{text}");
    }
    let grown = s.proc_status_kib("VmHWM").saturating_sub(rss_before);
    assert!(grown < 40 << 10, "peak RSS grew by {grown} KiB");
    assert_alive(&s);
}

#[test]
fn remote_write_2_is_refused_with_415() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    write_x(&s, 1, 1);
    let req = WriteRequest::default();
    let (st, text) = post_rw(
        &s,
        encode_write_request(&req),
        &[(
            "content-type",
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        )],
    );
    assert_eq!(st, 415, "{text}");
    assert!(text.contains("io.prometheus.write.v2.Request"), "{text}");
    // 1.0, named or not, is accepted.
    for ct in [
        "application/x-protobuf",
        "application/x-protobuf;proto=prometheus.WriteRequest",
    ] {
        let (st, text) = post_rw(&s, encode_write_request(&req), &[("content-type", ct)]);
        assert_eq!(st, 204, "{ct}: {text}");
    }
    assert_alive(&s);
}

#[test]
fn invented_methods_create_no_self_metric_series() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    write_x(&s, 1, 1);
    for i in 0..30 {
        let m = reqwest::Method::from_bytes(format!("XMETHOD{i}").as_bytes()).unwrap();
        let r = s.client.request(m, s.url("/api/v1/query")).send().unwrap();
        assert_eq!(r.status(), 405);
    }
    let (_, text) = s.get("/metrics");
    assert!(!text.contains("XMETHOD"), "a series per invented method");
    assert!(
        text.lines()
            .any(|l| l.starts_with("metricsd_http_requests_total{")
                && l.contains("method=\"other\"")
                && l.contains("status=\"405\"")),
        "{text}"
    );
    assert_alive(&s);
}

/// Opens a POST announcing `len` body bytes and sends one of them.
fn trickle(addr: &str, len: usize) -> TcpStream {
    let mut c = TcpStream::connect(addr).unwrap();
    write!(
        c,
        "POST /api/v1/write HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\nContent-Length: {len}\r\n\r\nx"
    )
    .unwrap();
    c.flush().unwrap();
    c
}

#[test]
fn trickling_uploads_hold_no_slot_and_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    write_x(&s, 1, 1);
    let addr = s.base.trim_start_matches("http://").to_owned();
    // More trickling uploads than the 256 slots of the in-flight cap.
    let mut held: Vec<TcpStream> = (0..260).map(|_| trickle(&addr, 100_000)).collect();
    std::thread::sleep(Duration::from_millis(500));
    // Every route still answers.
    let (st, v) = query(&s, "count(x)", &[]);
    assert_eq!(st, 200, "{v}");
    write_x(&s, 1, 1);
    assert_eq!(s.get_json("/health")["status"], "ok");
    // Each upload is answered 408 once it falls below the minimum rate (after 2 s).
    let start = Instant::now();
    for c in held.iter_mut().step_by(13) {
        let _ = c.write_all(b"y");
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 512];
        let n = c.read(&mut buf).unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    }
    assert!(start.elapsed() < Duration::from_secs(8), "{:?}", start.elapsed());
    drop(held);
    assert_alive(&s);
}

/// A NaN bucket bound (`le="NaN"`) or summary position (`quantile="NaN"`) among more than
/// 20 series of a family made two sorts panic (their comparison was not a total order on
/// NaN): `histogram_quantile` and the `/metrics` export answered 500, the export for as long
/// as the series stayed in its window. Both now sort NaN last.
#[test]
fn nan_bucket_bounds_are_answered_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let t = now_ms() - 1000;
    let mut series = Vec::new();
    for (i, le) in ["100", "NaN"].into_iter().enumerate() {
        series.push(time_series(
            &[("__name__", "h_bucket"), ("instance", "a"), ("le", le)],
            &[(t, i as f64)],
        ));
    }
    let bounds: Vec<String> = (1..20)
        .map(|k| (k * 5).to_string())
        .chain(["+Inf".into()])
        .collect();
    for (i, le) in bounds.iter().enumerate() {
        series.push(time_series(
            &[("__name__", "h_bucket"), ("instance", "b"), ("le", le)],
            &[(t, i as f64)],
        ));
    }
    for (i, q) in (0..21)
        .map(|k| format!("0.{k:02}"))
        .chain(["+NaN".into()]) // "+NaN" sorts before "0.00": the NaN is not last
        .enumerate()
    {
        series.push(time_series(
            &[("__name__", "lat"), ("quantile", &q)],
            &[(t, i as f64)],
        ));
    }
    let (st, text) = s.remote_write(write_body(series), &[]);
    assert_eq!(st, 204, "{text}");
    let (st, v) = query(&s, "histogram_quantile(0.5, sum by (le) (h_bucket))", &[]);
    assert_eq!(st, 200, "{v}");
    let (st, text) = s.get("/metrics");
    assert_eq!(st, 200, "{text}");
    assert!(text.contains("NaN\"}"), "{text}");
    assert_eq!(s.get("/health").0, 200);
}
