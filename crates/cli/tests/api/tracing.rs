//! ACCESS_ENABLE_TRACING: our request spans reach an OTLP/HTTP receiver, as children of the
//! caller's `traceparent`, and a collector that is down costs requests nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::json;

use crate::util::Server;

/// A span as received: trace id, parent span id, name, `service.name` of its resource.
#[derive(Debug, Clone)]
struct Received {
    trace_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    name: String,
    service: Option<String>,
}

/// A minimal OTLP/HTTP receiver: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`, answered 200 with an empty response message.
fn otlp_receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let got = Arc::new(Mutex::new(Vec::new()));
    let got2 = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let got = got2.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let (mut len, mut path) = (0usize, String::new());
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if path.is_empty() {
                            path = line.split(' ').nth(1).unwrap_or("").to_owned();
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0u8; len];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    if path == "/v1/traces"
                        && let Ok(req) = ExportTraceServiceRequest::decode(body.as_slice())
                    {
                        for rs in req.resource_spans {
                            let service = rs.resource.as_ref().and_then(|r| {
                                r.attributes.iter().find(|kv| kv.key == "service.name").and_then(
                                    |kv| match kv.value.as_ref()?.value.as_ref()? {
                                        AnyValue::StringValue(s) => Some(s.clone()),
                                        _ => None,
                                    },
                                )
                            });
                            for ss in rs.scope_spans {
                                for sp in ss.spans {
                                    got.lock().unwrap().push(Received {
                                        trace_id: sp.trace_id,
                                        parent_span_id: sp.parent_span_id,
                                        name: sp.name,
                                        service: service.clone(),
                                    });
                                }
                            }
                        }
                    }
                    let _ = conn.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n",
                    );
                }
            });
        }
    });
    (addr, got)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn request_spans_reach_the_otlp_collector_as_children_of_the_caller() {
    let (addr, got) = otlp_receiver();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://{addr}");
    let s = Server::start_with(
        dir.path(),
        &[
            ("ACCESS_ENABLE_TRACING", "true"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
        &[],
    );
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let (st, v) = s.post(
        "/metrics/track",
        json!({"name": "traced", "value": 1, "type": "gauge"}).to_string(),
        &[("traceparent", &format!("00-{trace_id}-{parent}-01"))],
    );
    assert_eq!(st, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let span = loop {
        let spans = got.lock().unwrap().clone();
        if let Some(sp) = spans.iter().find(|sp| hex(&sp.trace_id) == trace_id) {
            break sp.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no span of trace {trace_id} arrived: {spans:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(hex(&span.parent_span_id), parent, "{span:?}");
    assert_eq!(span.name, "POST /metrics/track", "{span:?}");
    assert_eq!(span.service.as_deref(), Some("metricsd"), "{span:?}");
    // The trace id is still logged.
    assert!(s.logs.lock().unwrap().iter().any(|l| l.contains(trace_id)));
}

#[test]
fn a_collector_that_is_down_costs_requests_nothing() {
    // A port with nothing listening: every export fails.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    let s = Server::start_with(
        dir.path(),
        &[
            ("ACCESS_ENABLE_TRACING", "true"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
        &[],
    );
    let started = Instant::now();
    for i in 0..50 {
        let (st, v) = s.post(
            "/metrics/track",
            json!({"name": "untraced", "value": i, "type": "gauge"}).to_string(),
            &[(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-01",
            )],
        );
        assert_eq!(st, 200, "{v}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(s.healthy());
    assert_eq!(s.stop(), Some(0));
}
