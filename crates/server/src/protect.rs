//! Limits that protect the process from its clients: a body read with a deadline and a
//! minimum rate, a global cap on requests in flight, and a per-request deadline (the header
//! read timeout and the connection cap are set on the listener, in `serve`). Each answers with
//! the API's JSON error shape.
//!
//! # Bodies are read before a slot is taken
//! A request's body is read into memory (at most `max_body_bytes` as sent, before
//! decompression) *before* it counts against `max_concurrent_requests`: a client that
//! trickles its upload holds its own connection, not one of the slots every other client
//! needs. The read must finish within `body_read_timeout_seconds` and, after a 2 s grace,
//! keep up at least `body_min_bytes_per_second` on average; else 408 with code
//! `body_timeout`, naming the setting. Before this, 260 uploads sending a byte every 4 s
//! kept every route but `/health` answering 503 for as long as they trickled.
//!
//! Bodies being read and bodies in flight share one byte budget, `max_concurrent_requests ×
//! max_body_bytes` (what the in-flight cap bounded before bodies were read first): a chunk
//! that does not fit is a 503 `overloaded`, so many connections uploading at once cannot
//! buffer more than that. A body's bytes are charged as they arrive and given back when its
//! response is produced.
//!
//! # Why 503 + `Retry-After` when too many requests are in flight
//! The cap is about the *server's* capacity, not one client's behaviour, which is what 503
//! (Service Unavailable) says; 429 (Too Many Requests) tells one client to slow down, and
//! is what a per-tenant rate limit would answer. It also matters to the senders we serve:
//! Prometheus' remote_write retries 5xx with backoff but drops a request answered 429
//! unless `retry_on_http_429` is set (off by default in 2.x), so 429 would lose data that a
//! retry a second later would have stored. Requests over the cap are refused at once
//! (load shedding) instead of queued: a queue only adds latency to requests whose clients
//! may already have given up. `/health` is exempt, so an overloaded instance is not also
//! declared dead by its orchestrator.
//!
//! # The request deadline
//! A request that has no answer `request_timeout_seconds` after its body arrived (the
//! body read has its own deadline, above) is answered 503 with code
//! `timeout`. PromQL queries (`/api/v1/query`, `/api/v1/query_range` and seed 001's aliases,
//! the routes `promapi::routes` puts under the query [`Deadline`]) have their own limit,
//! `query_timeout_seconds` (Prometheus' `--query.timeout`, 2 minutes by default): their
//! deadline here is a second past it, or `request_timeout_seconds` if that is longer, so
//! that a query which runs out of time ends with the engine's own `timeout` error in
//! Prometheus' shape, and each setting means what it says. Work already handed to the blocking pool cannot be cancelled and may still
//! complete: a retried remote_write is harmless (identical samples are deduplicated), a
//! retried counter increment counts twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::selfmetrics::SelfMetrics;

/// How requests' bodies are read: see the module docs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyRead {
    /// Most bytes of a body as sent (`max_body_bytes`).
    pub max_bytes: usize,
    /// The whole body's deadline (`body_read_timeout_seconds`).
    pub timeout: Duration,
    /// The least average rate after the grace period (`body_min_bytes_per_second`; 0 = none).
    pub min_rate: u64,
}

/// The time a slow upload gets before its average rate is held to the minimum.
const BODY_GRACE: Duration = Duration::from_secs(2);

/// State of the [`protect`] middleware.
pub(crate) struct Protect {
    slots: Arc<Semaphore>,
    /// Bytes of bodies read or being read (see the module docs).
    body_bytes: Arc<Semaphore>,
    max: usize,
    body: BodyRead,
    metrics: Arc<SelfMetrics>,
}

/// When a request was last shed, as ms since the process started (0 = never). `/health`
/// reports `degraded` for a while after.
pub(crate) static LAST_SHED_MS: AtomicU64 = AtomicU64::new(0);

/// How long `/health` says `degraded` after a request was shed.
pub(crate) const SHED_DEGRADED_FOR: Duration = Duration::from_secs(10);

fn process_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Whether requests were shed within [`SHED_DEGRADED_FOR`].
pub(crate) fn shedding() -> bool {
    let last = LAST_SHED_MS.load(Ordering::Relaxed);
    last != 0 && process_ms().saturating_sub(last) < SHED_DEGRADED_FOR.as_millis() as u64
}

impl Protect {
    /// `max` in-flight requests, bodies read as `body` says.
    pub(crate) fn new(max: usize, body: BodyRead, metrics: Arc<SelfMetrics>) -> Arc<Protect> {
        let budget = max.saturating_mul(body.max_bytes).min(Semaphore::MAX_PERMITS);
        Arc::new(Protect {
            slots: Arc::new(Semaphore::new(max)),
            body_bytes: Arc::new(Semaphore::new(budget)),
            max,
            body,
            metrics,
        })
    }
}

/// A route's deadline (see the module docs): a `route_layer`, so each route family states
/// its own ([`deadline`]).
#[derive(Debug)]
pub(crate) struct Deadline {
    timeout: Duration,
    /// The setting that sets it, named in the answer.
    setting: &'static str,
    metrics: Arc<SelfMetrics>,
}

impl Deadline {
    /// The deadline of every route but PromQL queries: `request_timeout_seconds`.
    pub(crate) fn request(timeout: Duration, metrics: Arc<SelfMetrics>) -> Arc<Deadline> {
        Arc::new(Deadline {
            timeout,
            setting: "request_timeout_seconds",
            metrics,
        })
    }

    /// The deadline of PromQL queries: a second past `query_timeout_seconds`, so that the
    /// engine's own timeout answers first, or `request_timeout_seconds` if that is longer.
    pub(crate) fn query(request: Duration, query: Duration, metrics: Arc<SelfMetrics>) -> Arc<Deadline> {
        let q = query.saturating_add(Duration::from_secs(1));
        Arc::new(if q > request {
            Deadline {
                timeout: q,
                setting: "query_timeout_seconds",
                metrics,
            }
        } else {
            Deadline {
                timeout: request,
                setting: "request_timeout_seconds",
                metrics,
            }
        })
    }
}

/// Answers 503 `timeout` when the route has no answer within its [`Deadline`].
pub(crate) async fn deadline(State(d): State<Arc<Deadline>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    match tokio::time::timeout(d.timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            d.metrics.requests_timed_out.inc();
            tracing::warn!(path = %path, timeout_seconds = d.timeout.as_secs(), "request timed out");
            let mut resp = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!("no answer within {} s ({})", d.timeout.as_secs(), d.setting),
            )
            .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
    }
}

/// 503 `overloaded` with `Retry-After`, counted as shed.
fn shed(p: &Protect, message: String) -> Response {
    p.metrics.requests_shed.inc();
    LAST_SHED_MS.store(process_ms(), Ordering::Relaxed);
    let mut resp = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message).into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// Reads `req`'s body into memory under `p`'s size, deadline and minimum rate, charging its
/// bytes to the body budget; the permit holds them until it is dropped.
async fn read_body(
    req: Request,
    p: &Protect,
) -> Result<(Request, Option<tokio::sync::OwnedSemaphorePermit>), Response> {
    use http_body_util::BodyExt;
    let b = &p.body;
    let mut held: Option<tokio::sync::OwnedSemaphorePermit> = None;
    let (parts, mut body) = req.into_parts();
    let start = Instant::now();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // The next frame is due when the average rate would fall below the minimum, and
        // at the latest at the whole body's deadline.
        let mut due = b.timeout;
        if b.min_rate > 0 {
            let secs = (buf.len() as u64 + 1) as f64 / b.min_rate as f64;
            due = due.min(BODY_GRACE + Duration::from_secs_f64(secs));
        }
        let left = due.saturating_sub(start.elapsed());
        let frame = match tokio::time::timeout(left, body.frame()).await {
            Err(_) => {
                let (setting, what) = if due < b.timeout {
                    (
                        "body_min_bytes_per_second",
                        format!("the body arrived slower than {} bytes/s", b.min_rate),
                    )
                } else {
                    (
                        "body_read_timeout_seconds",
                        format!("the body did not arrive within {} s", b.timeout.as_secs()),
                    )
                };
                tracing::info!(received = buf.len(), setting, "slow request body cut off");
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!("{what} ({setting}); {} bytes received", buf.len()),
                )
                .into_response());
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    format!("cannot read the request body: {e}"),
                )
                .into_response());
            }
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > b.max_bytes {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!(
                        "the request body is larger than {} bytes (max_body_bytes)",
                        b.max_bytes
                    ),
                )
                .into_response());
            }
            let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
            match p.body_bytes.clone().try_acquire_many_owned(n) {
                Ok(permit) => match &mut held {
                    Some(h) => h.merge(permit),
                    None => held = Some(permit),
                },
                Err(_) => {
                    return Err(shed(
                        p,
                        "request bodies in memory are at their budget (max_concurrent_requests x max_body_bytes); retry later".into(),
                    ));
                }
            }
            if buf.is_empty() {
                // Sized from what arrived, never from a declared length.
                buf.reserve(data.len());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok((Request::from_parts(parts, axum::body::Body::from(buf)), held))
}

/// Reads the body, then sheds requests beyond the in-flight cap (the routes' deadlines are
/// [`deadline`] layers inside this one).
pub(crate) async fn protect(State(p): State<Arc<Protect>>, req: Request, next: Next) -> Response {
    use axum::body::HttpBody;
    // The body's bytes stay charged until the response is produced.
    let (req, _body_bytes) = if req.body().is_end_stream() {
        (req, None)
    } else {
        match read_body(req, &p).await {
            Ok(r) => r,
            Err(resp) => return resp,
        }
    };
    // The permit lives until the response is produced (or the request is dropped).
    let _permit = if req.uri().path() == "/health" {
        None
    } else {
        match p.slots.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                return shed(
                    &p,
                    format!(
                        "{} requests are in flight (max_concurrent_requests); retry later",
                        p.max
                    ),
                );
            }
        }
    };
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_get_the_query_timeout_and_everything_else_the_request_timeout() {
        let m = Arc::new(SelfMetrics::default());
        let s = Duration::from_secs;
        let q = Deadline::query(s(60), s(120), m.clone());
        assert_eq!((q.timeout, q.setting), (s(121), "query_timeout_seconds"));
        let r = Deadline::request(s(60), m.clone());
        assert_eq!((r.timeout, r.setting), (s(60), "request_timeout_seconds"));
        // A request timeout longer than the query's leaves queries under it.
        let q = Deadline::query(s(300), s(120), m);
        assert_eq!((q.timeout, q.setting), (s(300), "request_timeout_seconds"));
    }

    /// A router whose `/slow` answers after `/slow`'s body arrived and `hold` passed.
    fn app(max: usize, hold: Duration, body: BodyRead) -> (axum::Router, Arc<SelfMetrics>) {
        let m = Arc::new(SelfMetrics::default());
        let p = Protect::new(max, body, m.clone());
        let d = Deadline::request(Duration::from_millis(500), m.clone());
        let r = axum::Router::new()
            .route(
                "/slow",
                axum::routing::post(move |b: axum::body::Bytes| async move {
                    tokio::time::sleep(hold).await;
                    b.len().to_string()
                }),
            )
            .route_layer(axum::middleware::from_fn_with_state(d, deadline))
            .layer(axum::middleware::from_fn_with_state(p, protect));
        (r, m)
    }

    fn body_read(min_rate: u64) -> BodyRead {
        BodyRead {
            max_bytes: 1000,
            timeout: Duration::from_secs(5),
            min_rate,
        }
    }

    async fn call(app: &axum::Router, body: axum::body::Body) -> (StatusCode, String) {
        use tower::ServiceExt;
        let rq = Request::post("/slow").body(body).unwrap();
        let resp = app.clone().oneshot(rq).await.unwrap();
        let status = resp.status();
        let b = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, String::from_utf8_lossy(&b).into_owned())
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_body_holds_no_slot_and_is_cut_off_at_the_minimum_rate() {
        let (app, _) = app(1, Duration::ZERO, body_read(100));
        let (mut tx, body) =
            http_body_util::channel::Channel::<axum::body::Bytes, std::convert::Infallible>::new(1);
        let slow = tokio::spawn({
            let app = app.clone();
            async move { call(&app, axum::body::Body::new(body)).await }
        });
        tx.send_data("a".into()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The trickling upload is not in flight: the one slot is free.
        assert_eq!(call(&app, "abc".into()).await, (StatusCode::OK, "3".into()));
        // 2 s of grace plus 2 bytes at 100 bytes/s: cut off at about 2.02 s.
        let (st, text) = slow.await.unwrap();
        assert_eq!(st, StatusCode::REQUEST_TIMEOUT, "{text}");
        assert!(text.contains("body_min_bytes_per_second"), "{text}");
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_slower_than_its_deadline_is_cut_off() {
        let (app, _) = app(1, Duration::ZERO, body_read(0));
        let (mut tx, body) =
            http_body_util::channel::Channel::<axum::body::Bytes, std::convert::Infallible>::new(1);
        let slow = tokio::spawn({
            let app = app.clone();
            async move { call(&app, axum::body::Body::new(body)).await }
        });
        for _ in 0..10 {
            if tx.send_data("a".into()).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let (st, text) = slow.await.unwrap();
        assert_eq!(st, StatusCode::REQUEST_TIMEOUT, "{text}");
        assert!(text.contains("body_read_timeout_seconds"), "{text}");
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused_as_they_arrive() {
        let (app, _) = app(1, Duration::ZERO, body_read(0));
        let (st, text) = call(&app, vec![b'x'; 1001].into()).await;
        assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
        assert!(text.contains("max_body_bytes"), "{text}");
        assert_eq!(call(&app, vec![b'x'; 1000].into()).await.0, StatusCode::OK);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_beyond_the_cap_are_shed_and_health_says_so() {
        let (app, m) = app(1, Duration::from_millis(300), body_read(0));
        let first = tokio::spawn({
            let app = app.clone();
            async move { call(&app, "a".into()).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let (st, text) = call(&app, "b".into()).await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{text}");
        assert!(text.contains("\"overloaded\""), "{text}");
        assert_eq!(m.requests_shed.get(), 1);
        assert!(shedding());
        assert_eq!(first.await.unwrap().0, StatusCode::OK);
    }

    #[tokio::test(start_paused = true)]
    async fn bodies_share_one_byte_budget() {
        // Two slots of 1000 bytes: a budget of 2000 bytes of bodies.
        let (app, m) = app(2, Duration::from_millis(300), body_read(0));
        let first = tokio::spawn({
            let app = app.clone();
            async move { call(&app, vec![b'x'; 1000].into()).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        // A body being read still fits next to the first ...
        let (mut tx, body) =
            http_body_util::channel::Channel::<axum::body::Bytes, std::convert::Infallible>::new(1);
        let second = tokio::spawn({
            let app = app.clone();
            async move { call(&app, axum::body::Body::new(body)).await }
        });
        tx.send_data(vec![b'y'; 900].into()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        // ... a third does not: 1000 + 900 + 200 > 2000.
        let (st, text) = call(&app, vec![b'z'; 200].into()).await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{text}");
        assert!(text.contains("max_body_bytes"), "{text}");
        assert_eq!(m.requests_shed.get(), 1);
        drop(tx);
        assert_eq!(first.await.unwrap().0, StatusCode::OK);
        assert_eq!(second.await.unwrap().0, StatusCode::OK);
        // Given back with the responses.
        assert_eq!(call(&app, vec![b'z'; 1000].into()).await.0, StatusCode::OK);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_past_the_deadline_get_503() {
        let (app, m) = app(4, Duration::from_secs(3), body_read(0));
        let (st, text) = call(&app, "a".into()).await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{text}");
        assert!(text.contains("request_timeout_seconds"), "{text}");
        assert_eq!(m.requests_timed_out.get(), 1);
    }
}
