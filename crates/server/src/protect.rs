//! Limits that protect the process from its clients: a global cap on requests in flight
//! and a per-request deadline (the header read timeout is set on the connection, in
//! `serve`). Both answer with the API's JSON error shape.
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
//! A request that has no answer after `request_timeout_seconds` (reading the body
//! included, so a slow upload cannot hold a slot forever) is answered 503 with code
//! `timeout`. PromQL queries (`/api/v1/query`, `/api/v1/query_range` and seed 001's aliases,
//! `promapi::QUERY_ROUTES`) have their own limit,
//! `query_timeout_seconds` (Prometheus' `--query.timeout`, 2 minutes by default): their
//! deadline here is a second past it, or `request_timeout_seconds` if that is longer, so
//! that a query which runs out of time ends with the engine's own `timeout` error in
//! Prometheus' shape, and each setting means what it says. Work already handed to the blocking pool cannot be cancelled and may still
//! complete: a retried remote_write is harmless (identical samples are deduplicated), a
//! retried counter increment counts twice.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::selfmetrics::SelfMetrics;

/// State of the [`protect`] middleware.
pub(crate) struct Protect {
    slots: Arc<Semaphore>,
    max: usize,
    timeout: Duration,
    query_timeout: Duration,
    metrics: Arc<SelfMetrics>,
}

impl Protect {
    /// `timeout` is `request_timeout_seconds`, `query_timeout` the engine's limit.
    pub(crate) fn new(
        max: usize,
        timeout: Duration,
        query_timeout: Duration,
        metrics: Arc<SelfMetrics>,
    ) -> Arc<Protect> {
        Arc::new(Protect {
            slots: Arc::new(Semaphore::new(max)),
            max,
            timeout,
            query_timeout: timeout.max(query_timeout.saturating_add(Duration::from_secs(1))),
            metrics,
        })
    }

    /// The deadline of a request to `path`, and the setting that sets it.
    fn deadline(&self, path: &str) -> (Duration, &'static str) {
        if crate::promapi::QUERY_ROUTES.contains(&path) && self.query_timeout > self.timeout {
            (self.query_timeout, "query_timeout_seconds")
        } else {
            (self.timeout, "request_timeout_seconds")
        }
    }
}

/// Sheds requests beyond the in-flight cap, and answers those past the deadline.
pub(crate) async fn protect(State(p): State<Arc<Protect>>, req: Request, next: Next) -> Response {
    // The permit lives until the response is produced (or the request is dropped).
    let _permit = if req.uri().path() == "/health" {
        None
    } else {
        match p.slots.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                p.metrics.requests_shed.inc();
                let mut resp = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    format!(
                        "{} requests are in flight (max_concurrent_requests); retry later",
                        p.max
                    ),
                )
                .into_response();
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return resp;
            }
        }
    };
    let path = req.uri().path().to_owned();
    let (timeout, setting) = p.deadline(&path);
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            p.metrics.requests_timed_out.inc();
            tracing::warn!(path = %path, timeout_seconds = timeout.as_secs(), "request timed out");
            let mut resp = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!("no answer within {} s ({setting})", timeout.as_secs()),
            )
            .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_get_the_query_timeout_and_everything_else_the_request_timeout() {
        let m = Arc::new(SelfMetrics::default());
        let s = Duration::from_secs;
        let p = Protect::new(8, s(60), s(120), m.clone());
        assert_eq!(p.deadline("/api/v1/query"), (s(121), "query_timeout_seconds"));
        assert_eq!(
            p.deadline("/api/v1/query_range"),
            (s(121), "query_timeout_seconds")
        );
        for alias in ["/metrics/query", "/metrics/instant", "/metrics/range"] {
            assert_eq!(p.deadline(alias), (s(121), "query_timeout_seconds"), "{alias}");
        }
        assert_eq!(p.deadline("/metrics/labels"), (s(60), "request_timeout_seconds"));
        assert_eq!(p.deadline("/api/v1/series"), (s(60), "request_timeout_seconds"));
        assert_eq!(p.deadline("/api/v1/write"), (s(60), "request_timeout_seconds"));
        // A request timeout longer than the query's leaves queries under it.
        let p = Protect::new(8, s(300), s(120), m);
        assert_eq!(p.deadline("/api/v1/query"), (s(300), "request_timeout_seconds"));
    }
}
