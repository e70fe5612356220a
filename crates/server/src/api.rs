//! Routes and handlers. Handlers decode with the pure functions of `track`/`remote_write`,
//! run store work on the blocking pool, and answer errors through [`ApiError`] only.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metricsd_model::{Labels, MatchOp, Matcher, Sample};
use metricsd_tsdb::{Queryable, Storage};
use serde::Deserialize;
use serde_json::json;
use tracing::Instrument;

use crate::collector::{Collector, Meta, Resolved};
use crate::config::Config;
use crate::error::ApiError;
pub use crate::json::num;
use crate::selfmetrics::SelfMetrics;
pub use crate::time::{now_ms, rfc3339};
use crate::{exposition, trends};
use metricsd_ingest as track;
use metricsd_ingest::{KeyedBatch, RemoteWriteDecoder, SERVICE_LABEL, SeriesId};

mod export;
mod reads;
mod remote_write;
mod track_routes;

use export::*;
use reads::*;
use remote_write::*;
use track_routes::*;

/// Shared state of the handlers.
pub struct AppState {
    /// The configuration in force.
    pub cfg: Config,
    /// The store.
    pub storage: Arc<Storage>,
    /// Track-API state.
    pub collector: Collector,
    /// Self-metrics.
    pub metrics: Arc<SelfMetrics>,
    /// Start time, for `uptime_seconds`.
    pub started: Instant,
    /// Seed of remote_write's series keys (see `metricsd_tsdb::KeyedSeries`), random per
    /// process so that no collision can be found offline for it.
    pub rw_key_seed: u64,
    /// Metadata received over remote_write.
    pub rw_meta: crate::rwmeta::RemoteMetadata,
}

type St = State<Arc<AppState>>;

/// The router with every route and layer.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.cfg.max_body_bytes;
    let secs = std::time::Duration::from_secs;
    let request_deadline =
        crate::protect::Deadline::request(secs(state.cfg.request_timeout_seconds), state.metrics.clone());
    let query_deadline = crate::protect::Deadline::query(
        secs(state.cfg.request_timeout_seconds),
        secs(state.cfg.query_timeout_seconds),
        state.metrics.clone(),
    );
    Router::new()
        .route("/metrics/track", post(track_one))
        .route("/metrics/track/batch", post(track_batch))
        .route("/metrics", get(export))
        .route("/metrics/series", get(series))
        .route("/metrics/trends/{name}", get(trend))
        .route("/metrics/stats", get(stats))
        .route("/health", get(health))
        .route("/api/v1/write", post(write))
        .route_layer(axum::middleware::from_fn_with_state(
            request_deadline.clone(),
            crate::protect::deadline,
        ))
        .merge(crate::promapi::routes(query_deadline, request_deadline))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(DefaultBodyLimit::max(limit))
        // gzip/deflate bodies are decompressed as they are read, so the body limit above
        // caps the decompressed size (a gzip bomb is a 413, not an OOM); other encodings
        // (remote_write's snappy) pass through to the handlers.
        .layer(
            tower_http::decompression::RequestDecompressionLayer::new()
                .gzip(true)
                .deflate(true)
                .pass_through_unaccepted(true),
        )
        .layer(axum::middleware::from_fn_with_state(
            crate::protect::Protect::new(
                state.cfg.max_concurrent_requests,
                crate::protect::BodyRead {
                    max_bytes: state.cfg.max_body_bytes,
                    timeout: std::time::Duration::from_secs(state.cfg.body_read_timeout_seconds),
                    min_rate: state.cfg.body_min_bytes_per_second,
                },
                state.metrics.clone(),
            ),
            crate::protect::protect,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .with_state(state)
}

fn request_id(h: &HeaderMap) -> String {
    if let Some(id) = h.get("x-request-id").and_then(|v| v.to_str().ok())
        && !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_graphic())
    {
        return id.to_owned();
    }
    use std::sync::atomic::AtomicU64;
    static SEQ: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| (now_ms() as u64) ^ (u64::from(std::process::id()) << 40));
    format!("{start:016x}-{:08x}", SEQ.fetch_add(1, Ordering::Relaxed))
}

/// The trace id of a W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`).
pub fn trace_id(h: &HeaderMap) -> Option<String> {
    let v = h.get("traceparent")?.to_str().ok()?;
    let mut parts = v.trim().split('-');
    let (_ver, tid) = (parts.next()?, parts.next()?);
    (tid.len() == 32 && tid.bytes().all(|b| b.is_ascii_hexdigit()) && tid.bytes().any(|b| b != b'0'))
        .then(|| tid.to_ascii_lowercase())
}

/// A request's method as a label of our self-metrics and logs: the methods of RFC 9110 and
/// PATCH by name, any other as `other`, so a client inventing methods cannot create series.
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Request id, trace id, a span for the logs, and the HTTP self-metrics.
async fn observe(State(st): St, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    let method = method_label(req.method());
    let rid = request_id(req.headers());
    let tid = trace_id(req.headers());
    // `otel.*` and `http.*` fields name and describe the exported span (docs/api.md, Logs).
    let span = tracing::info_span!(
        "request",
        request_id = %rid,
        trace_id = tid.as_deref().unwrap_or(""),
        method = %method,
        route = %route,
        "otel.name" = %format_args!("{method} {route}"),
        "otel.kind" = "server",
        "http.response.status_code" = tracing::field::Empty,
    );
    crate::otel::continue_trace(&span, req.headers());
    let mut resp = next.run(req).instrument(span.clone()).await;
    let secs = start.elapsed().as_secs_f64();
    let status = resp.status().as_u16();
    span.record("http.response.status_code", status);
    st.metrics.observe_http(&route, method, status, secs);
    if route.starts_with("/metrics/track") {
        st.metrics.observe_collection(secs);
    }
    span.in_scope(|| {
        if status >= 500 {
            tracing::error!(status, duration_seconds = secs, "request failed");
        } else if status >= 400 {
            tracing::info!(status, duration_seconds = secs, "request rejected");
        } else {
            tracing::debug!(status, duration_seconds = secs, "request served");
        }
    });
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

fn body(b: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    b.map_err(|r| {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "body_too_large",
                "the request body exceeds the limit (max_body_bytes)",
            )
        } else {
            // Includes gzip/deflate bodies that fail to decompress.
            ApiError {
                field: Some("body".into()),
                ..ApiError::new(status, "invalid_body", r.body_text())
            }
        }
    })
}

/// Rejects a `Content-Encoding` the handler cannot read. gzip and deflate never get here:
/// the decompression layer removes the header when it decodes the body.
fn content_encoding(h: &HeaderMap, accepted: &[&str]) -> Result<(), ApiError> {
    let Some(v) = h.get(header::CONTENT_ENCODING) else {
        return Ok(());
    };
    let enc = v.to_str().unwrap_or("").trim().to_ascii_lowercase();
    if enc.is_empty() || enc == "identity" || accepted.contains(&enc.as_str()) {
        return Ok(());
    }
    Err(ApiError {
        field: Some("Content-Encoding".into()),
        ..ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            format!("Content-Encoding {enc:?} is not supported: use gzip or deflate, or none"),
        )
    })
}

/// Refuses remote_write messages other than 1.0's `prometheus.WriteRequest` with 415, as the
/// remote_write 2.0 specification asks of a receiver that does not support the message named
/// by `Content-Type: application/x-protobuf;proto=…`: a 2.0 sender then knows nothing was
/// stored (and may fall back to 1.0) instead of believing it delivered.
fn remote_write_version(h: &HeaderMap) -> Result<(), ApiError> {
    let Some(ct) = h.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = ct.to_str().unwrap_or("");
    let proto = ct.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("proto")
            .then(|| v.trim().trim_matches('"'))
    });
    match proto {
        None | Some("prometheus.WriteRequest") => Ok(()),
        Some(other) => Err(ApiError {
            field: Some("Content-Type".into()),
            ..ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "remote_write message {other:?} is not supported: this receiver speaks remote_write 1.0 (proto=prometheus.WriteRequest)"
                ),
            )
        }),
    }
}

/// The tenant named by `X-Scope-OrgID`, if any ([`crate::tenant`]).
fn header_tenant(h: &HeaderMap) -> Result<Option<String>, ApiError> {
    crate::tenant::from_header(h).map_err(ApiError::from)
}

/// The tenant of a read: `tenant_id` query parameter or `X-Scope-OrgID`; both must agree.
fn read_tenant(h: &HeaderMap, param: Option<&str>) -> Result<String, ApiError> {
    crate::tenant::of_read(h, param).map_err(ApiError::from)
}

/// JSON bodies up to this size are decoded and stored on the runtime worker that received
/// them: about a millisecond of work (≈ 300 items of 200 bytes). The cost is latency for
/// other requests on that worker, bounded by that work; the other workers steal its queue. Handing such a request to
/// the blocking pool costs a thread wake-up and a switch each way, about 10% of its CPU,
/// and every pool thread keeps an allocator heap of its own (RSS). Larger bodies, and every
/// write when the WAL is fsynced per commit, go to the blocking pool so that a worker never
/// stalls for long. (axum's own `Json` extractor decodes any body on the worker.)
pub const JSON_INLINE_MAX: usize = 64 * 1024;

/// The same for snappy-compressed remote_write bodies: node_exporter-like data compresses
/// to about 13 bytes per sample, so 16 KiB is about 1,200 samples, or 2 ms of work.
pub const SNAPPY_INLINE_MAX: usize = 32 * 1024;

/// Runs ingest work inline when `small` (see [`JSON_INLINE_MAX`]) and the WAL is not
/// fsynced per commit, else on the blocking pool.
async fn ingest_work<T: Send + 'static>(
    st: &AppState,
    small: bool,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    if small && st.cfg.fsync != crate::config::Fsync::Always {
        Ok(f())
    } else {
        blocking(f).await
    }
}

/// [`crate::blocking`] with the JSON API's error.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    crate::blocking(f).await
}
