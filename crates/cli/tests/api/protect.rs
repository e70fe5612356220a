//! Compressed request bodies and the limits that protect the process: body size after
//! decompression, requests in flight, the request deadline, the header read timeout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::{GzEncoder, ZlibEncoder};
use serde_json::{Value, json};

use crate::util::{Server, sample};

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// HTTP's `deflate` is the zlib format (RFC 9110, 8.4.1.2), not raw deflate.
fn deflate(b: &[u8]) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn assert_error_shape(v: &Value, code: &str, field: &str) {
    assert_eq!(v["success"], false, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert_eq!(v["error"]["field"], field, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
}

#[test]
fn gzip_and_deflate_bodies_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let one = json!({"name": "zipped_total", "value": 2, "type": "counter"}).to_string();
    let (st, v) = s.post(
        "/metrics/track",
        gzip(one.as_bytes()),
        &[("content-encoding", "gzip")],
    );
    assert_eq!(st, 200, "{v}");
    let batch = json!([
        {"name": "zipped_total", "value": 3, "type": "counter"},
        {"name": "deflated", "value": 7, "type": "gauge"}
    ])
    .to_string();
    let (st, v) = s.post(
        "/metrics/track/batch",
        deflate(batch.as_bytes()),
        &[("content-encoding", "deflate")],
    );
    assert_eq!((st, v["successful"].as_u64()), (200, Some(2)), "{v}");
    // remote_write: snappy inside, gzip around it.
    let req = metricsd_ingest::WriteRequest {
        timeseries: vec![metricsd_ingest::TimeSeries {
            labels: vec![metricsd_ingest::Label {
                name: "__name__".into(),
                value: "rw_zipped".into(),
            }],
            samples: vec![metricsd_ingest::Sample {
                value: 4.0,
                timestamp: metricsd_server::time::now_ms(),
            }],
            exemplars: vec![],
            histograms: vec![],
        }],
        metadata: vec![],
    };
    let body = gzip(&metricsd_ingest::encode_write_request(&req));
    let r = s
        .client
        .post(s.url("/api/v1/write"))
        .header("content-encoding", "gzip")
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().unwrap_or_default());
    let (_, text) = s.get("/metrics");
    assert_eq!(sample(&text, "zipped_total"), Some(5.0), "{text}");
    assert_eq!(sample(&text, "deflated"), Some(7.0), "{text}");
    assert_eq!(sample(&text, "rw_zipped"), Some(4.0), "{text}");
}

#[test]
fn bad_compressed_bodies_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &[], &[]);
    // Corrupt gzip: a valid header, then garbage.
    let mut bad = gzip(br#"{"name":"x","value":1,"type":"gauge"}"#);
    let n = bad.len();
    for b in &mut bad[10..n - 8] {
        *b ^= 0x5a;
    }
    let (st, v) = s.post("/metrics/track", bad, &[("content-encoding", "gzip")]);
    assert_eq!(st, 400, "{v}");
    assert_error_shape(&v, "invalid_body", "body");
    // A gzip bomb: 11 MiB of spaces in 11 KiB; the 10 MiB limit applies to the
    // decompressed bytes. (Small, so the server has read all of it when it answers: bytes
    // left unread in the socket make the close a reset that can swallow the answer.)
    let bomb = {
        let mut e = GzEncoder::new(Vec::new(), Compression::best());
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..11 {
            e.write_all(&chunk).unwrap();
        }
        e.finish().unwrap()
    };
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    // Its own client: the server closes a connection whose body it did not read to the end.
    let r = reqwest::blocking::Client::new()
        .post(s.url("/metrics/track/batch"))
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"]["code"], "body_too_large", "{v}");
    // An encoding we cannot read.
    let (st, v) = s.post(
        "/metrics/track",
        r#"{"name":"x","value":1,"type":"gauge"}"#,
        &[("content-encoding", "br")],
    );
    assert_eq!(st, 415, "{v}");
    assert_error_shape(&v, "unsupported_encoding", "Content-Encoding");
    assert!(s.healthy());
    let (_, text) = s.get("/metrics");
    assert_eq!(sample(&text, "x"), None, "nothing stored: {text}");
}

/// Sends the head of a POST with a 100-byte body and only part of the body: the request
/// holds its slot while the server waits for the rest.
fn stalled_post(base: &str) -> TcpStream {
    let addr = base.trim_start_matches("http://");
    let mut c = TcpStream::connect(addr).unwrap();
    write!(
        c,
        "POST /metrics/track HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\""
    )
    .unwrap();
    c.flush().unwrap();
    c
}

fn read_response(c: &mut TcpStream, within: Duration) -> String {
    c.set_read_timeout(Some(within)).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match c.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                if let Some(i) = text.find("\r\n\r\n")
                    && text[i + 4..].contains("\"success\"")
                    && text.ends_with('}')
                {
                    break;
                }
            }
            Err(e) => panic!(
                "no response within {within:?}: {e}; got {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn a_stalled_upload_holds_no_slot_and_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        dir.path(),
        &[],
        &["--max-concurrent-requests", "1", "--request-timeout-seconds", "2"],
    );
    let started = Instant::now();
    let mut held = stalled_post(&s.base);
    std::thread::sleep(Duration::from_millis(300));
    // The stalled upload is not in flight (its body has not arrived): the one slot is free.
    let (st, v) = s.track(&json!({"name": "y", "value": 1, "type": "gauge"}));
    assert_eq!(st, 200, "{v}");
    // It is answered 408 once its rate falls below the minimum (after 2 s of grace).
    let resp = read_response(&mut held, Duration::from_secs(10));
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert!(resp.contains("\"code\":\"body_timeout\""), "{resp}");
    assert!(resp.contains("body_min_bytes_per_second"), "{resp}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    let (_, text) = s.get("/metrics");
    assert_eq!(
        sample(&text, "metricsd_http_requests_shed_total"),
        Some(0.0),
        "{text}"
    );
}

#[test]
fn connections_that_trickle_headers_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &[], &["--header-read-timeout-seconds", "1"]);
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut c = TcpStream::connect(&addr).unwrap();
    // Headers never finish.
    write!(c, "GET /health HTTP/1.1\r\nHost: {addr}\r\n").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let n = match c.read(&mut buf) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
        Err(e) => panic!("the connection was not closed: {e}"),
    };
    let got = String::from_utf8_lossy(&buf[..n]);
    // hyper closes the connection (possibly after a 408); it never serves the request.
    assert!(n == 0 || got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // On a fresh connection: the same timeout closes the test client's idle keep-alive
    // connection too, at about this moment, so reusing it would race the close.
    let fresh = reqwest::blocking::Client::new();
    let r = fresh.get(s.url("/health")).send().unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn one_client_holds_only_its_share_of_connections() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(dir.path(), &[("ACCESS_MAX_CONNECTIONS_PER_CLIENT", "4")], &[]);
    let addr = s.base.trim_start_matches("http://").to_owned();
    // Idle connections, as a slowloris holds them; the test's own HTTP client may keep one
    // more open, so connect until the server closes one at once.
    let mut held = Vec::new();
    let refused_at = loop {
        let mut c = TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut b = [0u8; 1];
        match c.read(&mut b) {
            Ok(0) => break held.len(),
            Ok(_) => panic!("the server sent something unasked"),
            Err(_) => held.push(c), // still open
        }
        assert!(held.len() <= 4, "more than the client's share of 4 open");
    };
    assert!((3..=4).contains(&refused_at), "{refused_at}");
    // One closed, one more fits again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = TcpStream::connect(&addr).unwrap();
        write!(
            c,
            "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut text = String::new();
        let _ = c.read_to_string(&mut text);
        if text.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no connection admitted after one closed: {text:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs = s.logs.lock().unwrap().join("\n");
    assert!(
        logs.contains("max_connections_per_client"),
        "the refusal is logged"
    );
}
