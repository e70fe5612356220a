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
    Router::new()
        .route("/metrics/track", post(track_one))
        .route("/metrics/track/batch", post(track_batch))
        .route("/metrics", get(export))
        .route("/metrics/series", get(series))
        .route("/metrics/trends/{name}", get(trend))
        .route("/metrics/stats", get(stats))
        .route("/health", get(health))
        .route("/api/v1/write", post(write))
        .merge(crate::promapi::routes())
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
                std::time::Duration::from_secs(state.cfg.request_timeout_seconds),
                std::time::Duration::from_secs(state.cfg.query_timeout_seconds),
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

fn resolve<'a>(
    item: track::TrackItem<'a>,
    header: Option<&'a str>,
    index: usize,
) -> Result<Resolved<'a>, ApiError> {
    let tenant = match (&item.tenant_id, header) {
        (Some(t), Some(h)) if t != h => {
            return Err(ApiError::field(
                "tenant_id",
                "tenant_id differs from the X-Scope-OrgID header",
            ));
        }
        (Some(t), _) => t.clone(),
        (None, Some(h)) => Cow::Borrowed(h),
        (None, None) => Cow::Borrowed(metricsd_tsdb::DEFAULT_TENANT),
    };
    Ok(Resolved { index, tenant, item })
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

async fn track_one(
    State(st): St,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    content_encoding(&headers, &[])?;
    let b = body(b)?;
    let header = header_tenant(&headers)?;
    let st2 = st.clone();
    // Decoding runs with the store work, so items can borrow the body.
    let r = ingest_work(
        &st,
        b.len() <= JSON_INLINE_MAX,
        move || -> Result<(), ApiError> {
            let item = track::parse_track(&b).inspect_err(|_| st2.metrics.errors.inc())?;
            let r = resolve(item, header.as_deref(), 0).inspect_err(|_| st2.metrics.errors.inc())?;
            let name = r.item.name.to_string();
            let service = r.item.service.as_deref().map(str::to_owned);
            let mut out = st2.collector.track(vec![r]);
            let res = out.results.pop().unwrap_or(Ok(()));
            if res.is_ok() {
                collected(tracing::Level::INFO, &name, service.as_deref());
            }
            res
        },
    )
    .await?;
    r?;
    Ok(Json(json!({ "success": true, "message": "Metric tracked successfully" })).into_response())
}

/// Seed 000's log event for a stored track item: `"message": "Metric collected
/// successfully"`, `metric_name`, and the item's `service` (which, as in the seed's example,
/// is the line's `service`; see docs/api.md, Logs). Info for `/metrics/track`, debug per
/// item of a batch (a batch logs one info event with its counts).
fn collected(level: tracing::Level, name: &str, service: Option<&str>) {
    macro_rules! event {
        ($lvl:expr) => {
            match service {
                Some(service) => tracing::event!(
                    $lvl,
                    event = "metric_collected",
                    metric_name = name,
                    service,
                    "Metric collected successfully"
                ),
                None => tracing::event!(
                    $lvl,
                    event = "metric_collected",
                    metric_name = name,
                    "Metric collected successfully"
                ),
            }
        };
    }
    if level == tracing::Level::INFO {
        event!(tracing::Level::INFO);
    } else {
        event!(tracing::Level::DEBUG);
    }
}

async fn track_batch(
    State(st): St,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    content_encoding(&headers, &[])?;
    let b = body(b)?;
    let header = header_tenant(&headers)?;
    let st2 = st.clone();
    let (total, mut errors) = ingest_work(
        &st,
        b.len() <= JSON_INLINE_MAX,
        move || -> Result<(usize, Vec<(usize, ApiError)>), ApiError> {
            let parsed = track::parse_batch(&b, st2.cfg.max_batch_items)?;
            let total = parsed.len();
            let mut errors: Vec<(usize, ApiError)> = Vec::new();
            let mut ok: Vec<Resolved<'_>> = Vec::with_capacity(total);
            for (i, p) in parsed.into_iter().enumerate() {
                match p
                    .map_err(ApiError::from)
                    .and_then(|it| resolve(it, header.as_deref(), i).map_err(|e| e.at_index(i)))
                {
                    Ok(r) => ok.push(r),
                    Err(e) => errors.push((i, e)),
                }
            }
            st2.metrics.errors.add(errors.len() as u64);
            let indices: Vec<usize> = ok.iter().map(|r| r.index).collect();
            // Per-item events only at debug: their names are kept only when they are logged.
            let names: Option<Vec<(String, Option<String>)>> =
                tracing::enabled!(tracing::Level::DEBUG).then(|| {
                    ok.iter()
                        .map(|r| {
                            (
                                r.item.name.to_string(),
                                r.item.service.as_deref().map(str::to_owned),
                            )
                        })
                        .collect()
                });
            let out = st2.collector.track(ok);
            let stored = out.results.iter().filter(|r| r.is_ok()).count();
            if let Some(names) = &names {
                for ((name, service), r) in names.iter().zip(&out.results) {
                    if r.is_ok() {
                        collected(tracing::Level::DEBUG, name, service.as_deref());
                    }
                }
            }
            if stored > 0 {
                tracing::info!(
                    event = "metric_collected",
                    total,
                    successful = stored,
                    failed = total - stored,
                    "Metric batch collected successfully"
                );
            }
            for (i, r) in indices.into_iter().zip(out.results) {
                if let Err(e) = r {
                    let e = if e.field.as_deref().is_some_and(|f| f.starts_with('[')) {
                        e
                    } else {
                        e.at_index(i)
                    };
                    errors.push((i, e));
                }
            }
            Ok((total, errors))
        },
    )
    .await??;
    errors.sort_by_key(|e| e.0);
    let failed = errors.len();
    let mut resp =
        json!({ "success": failed == 0, "total": total, "successful": total - failed, "failed": failed });
    if failed > 0 {
        resp["errors"] = errors
            .iter()
            .map(|(i, e)| json!({ "index": i, "error": e.body() }))
            .collect();
    }
    // All items failed: answer with the first error's status (5xx tells the client to retry).
    let status = match errors.first() {
        Some((_, e)) if failed == total => e.status,
        _ => StatusCode::OK,
    };
    Ok((status, Json(resp)).into_response())
}

#[derive(Deserialize)]
struct ExportQuery {
    format: Option<String>,
    aggregated: Option<String>,
    tenant_id: Option<String>,
}

/// Newest sample of every series in `[mint, maxt]`.
fn newest_all(
    db: &metricsd_tsdb::Db,
    mint: i64,
    maxt: i64,
) -> metricsd_tsdb::Result<Vec<(Labels, f64, i64)>> {
    let q = db.querier(mint, maxt)?;
    let all = Matcher::new(MatchOp::Regex, metricsd_model::METRIC_NAME, ".+")?;
    let mut out = Vec::new();
    for s in q.select(&[all])? {
        let last = s.iter().filter(|x| !metricsd_model::is_stale_nan(x.v)).last();
        if let Some(x) = last {
            out.push((s.labels().clone(), x.v, x.t));
        }
    }
    Ok(out)
}

fn all_samples(
    db: &metricsd_tsdb::Db,
    mint: i64,
    maxt: i64,
    m: &[Matcher],
) -> metricsd_tsdb::Result<Vec<(Labels, Vec<Sample>)>> {
    let q = db.querier(mint, maxt)?;
    let mut out = Vec::new();
    for s in q.select(m)? {
        let v: Vec<Sample> = s.iter().filter(|x| !metricsd_model::is_stale_nan(x.v)).collect();
        if !v.is_empty() {
            out.push((s.labels().clone(), v));
        }
    }
    Ok(out)
}

/// Series in the head of `tenant`: figures shown to a tenant are its own.
fn tenant_series(storage: &Storage, tenant: &str) -> u64 {
    storage
        .existing_tenant(tenant)
        .map_or(0, |db| db.head().num_series() as u64)
}

/// The series of the aggregated export: every series with samples in `[start, ∞)` that
/// [`crate::aggregate::role`] aggregates, with its samples there and, for cumulative ones,
/// its baseline: the newest sample before `start`, looked for in the window before and,
/// for the series without one there, in all earlier data (cheap for a series that has
/// none: it is not selected; a series is read further back only when it was idle for a
/// whole window).
fn window_series(
    db: &metricsd_tsdb::Db,
    meta: &HashMap<String, Meta>,
    start: i64,
    window_ms: i64,
) -> metricsd_tsdb::Result<Vec<crate::aggregate::WindowSeries>> {
    use crate::aggregate::{WindowSeries, role};
    let all = Matcher::new(MatchOp::Regex, metricsd_model::METRIC_NAME, ".+")?;
    // Open-ended: timestamps of hot series may run a few ms ahead of the clock (see collector).
    let mut out: Vec<WindowSeries> = Vec::new();
    let mut need: HashMap<Labels, usize> = HashMap::new();
    let mut names: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for (labels, samples) in all_samples(db, start, i64::MAX, &[all])? {
        let Some((_, r)) = labels.metric_name().and_then(|n| role(n, meta)) else {
            continue;
        };
        if r.cumulative() {
            names.insert(labels.metric_name().unwrap_or_default().to_owned());
            need.insert(labels.clone(), out.len());
        }
        out.push(WindowSeries {
            labels,
            baseline: None,
            samples,
        });
    }
    if need.is_empty() {
        return Ok(out);
    }
    // Metric names have no regex metacharacters: the alternation matches them literally.
    let names: Vec<String> = names.into_iter().collect();
    let m = Matcher::new(MatchOp::Regex, metricsd_model::METRIC_NAME, names.join("|"))?;
    let near = start.saturating_sub(window_ms);
    for (lo, hi) in [(near, start - 1), (i64::MIN, near.saturating_sub(1))] {
        if need.is_empty() || hi < lo {
            break;
        }
        let q = db.querier(lo, hi)?;
        for s in q.select(std::slice::from_ref(&m))? {
            let Some(&i) = need.get(s.labels()) else {
                continue;
            };
            if let Some(last) = s.iter().filter(|x| !metricsd_model::is_stale_nan(x.v)).last() {
                out[i].baseline = Some(last.v);
                need.remove(s.labels());
            }
        }
    }
    Ok(out)
}

async fn export(
    State(st): St,
    headers: HeaderMap,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let tenant = read_tenant(&headers, q.tenant_id.as_deref())?;
    let format = q.format.as_deref().unwrap_or("prometheus");
    if !matches!(format, "prometheus" | "openmetrics" | "json") {
        return Err(ApiError::field(
            "format",
            format!("unknown format {format:?}: use prometheus, openmetrics or json"),
        ));
    }
    let aggregated = match q.aggregated.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => {
            return Err(ApiError::field(
                "aggregated",
                format!("{other:?} is not true or false"),
            ));
        }
    };
    let st2 = st.clone();
    let tenant2 = tenant.clone();
    let fams = blocking(move || -> Result<Vec<exposition::Family>, ApiError> {
        let tenant = tenant2;
        let Some(db) = st2.storage.existing_tenant(&tenant) else {
            return Ok(Vec::new());
        };
        let meta = st2.collector.metadata(&tenant);
        let now = now_ms();
        if aggregated {
            let w = st2.cfg.aggregation_window_seconds as i64 * 1000;
            let series = window_series(&db, &meta, now - w, w).map_err(|e| ApiError::from_store(&e))?;
            let fams = crate::aggregate::aggregate(series, &meta, w, &st2.cfg.aggregation_types);
            st2.metrics.windows.inc();
            st2.metrics.aggregated_series.store(
                fams.iter().map(|f| f.samples.len() as u64).sum(),
                Ordering::Relaxed,
            );
            Ok(fams)
        } else {
            let lookback = st2.cfg.export_lookback_seconds as i64 * 1000;
            let series = newest_all(&db, now - lookback, i64::MAX).map_err(|e| ApiError::from_store(&e))?;
            Ok(exposition::group(series, &meta))
        }
    })
    .await??;
    st.metrics.exports.inc();
    st.metrics
        .last_export_ms
        .store(now_ms() as u64, Ordering::Relaxed);
    let now = now_ms();
    if format == "json" {
        let body = json!({ "metrics": exposition::to_json(&fams), "timestamp": rfc3339(now) });
        return Ok(Json(body).into_response());
    }
    // Tracked families, then self-metrics, through the one text writer.
    let own = if aggregated {
        Vec::new()
    } else {
        let user: std::collections::HashSet<&str> = fams.iter().map(|f| f.name.as_str()).collect();
        // One pass over the tenant's head series: off the async threads.
        let st3 = st.clone();
        let tenant3 = tenant.clone();
        let tsdb = blocking(move || {
            let g = st3.storage.existing_tenant(&tenant3).map(|db| db.gauges());
            (g, st3.storage.open_tenants().len())
        })
        .await?;
        st.metrics.families(
            tenant_series(&st.storage, &tenant),
            tsdb.0.as_ref(),
            tsdb.1,
            &|n| user.contains(n),
        )
    };
    let mut all = exposition::to_metric_families(fams);
    all.extend(own);
    let mut s = String::new();
    let content_type = if format == "openmetrics" {
        metricsd_ingest::write_openmetrics(&all, &mut s);
        metricsd_ingest::OPENMETRICS_CONTENT_TYPE
    } else {
        metricsd_ingest::write_prometheus(&all, &mut s);
        metricsd_ingest::PROMETHEUS_CONTENT_TYPE
    };
    let resp = ([(header::CONTENT_TYPE, content_type)], s).into_response();
    Ok(resp)
}

#[derive(Deserialize)]
struct SeriesQuery {
    service: Option<String>,
    name: Option<String>,
    limit: Option<String>,
    tenant_id: Option<String>,
    start: Option<String>,
    end: Option<String>,
}

fn time_param(field: &str, v: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    let j = match v.parse::<f64>() {
        Ok(f) => json!(f),
        Err(_) => json!(v),
    };
    track::parse_timestamp(&j)
        .map(Some)
        .map_err(|m| ApiError::field(field, m))
}

fn kind_of(name: &str, meta: &HashMap<String, Meta>) -> String {
    if let Some(m) = meta.get(name) {
        return m.kind.clone();
    }
    for suf in ["_bucket", "_sum", "_count"] {
        if let Some(m) = name.strip_suffix(suf).and_then(|b| meta.get(b)) {
            return m.kind.clone();
        }
    }
    "untyped".into()
}

async fn series(
    State(st): St,
    headers: HeaderMap,
    Query(q): Query<SeriesQuery>,
) -> Result<Response, ApiError> {
    let tenant = read_tenant(&headers, q.tenant_id.as_deref())?;
    let limit = match q.limit.as_deref() {
        None => 100,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| ApiError::field("limit", "limit must be an integer from 1 to 10000"))?,
    };
    let end = time_param("end", q.end.as_deref())?.unwrap_or(i64::MAX);
    let start = time_param("start", q.start.as_deref())?.unwrap_or(i64::MIN);
    if start > end {
        return Err(ApiError::field("start", "start is after end"));
    }
    let mut matchers = vec![match &q.name {
        Some(n) if !metricsd_model::is_valid_metric_name(n) => {
            return Err(ApiError::field("name", "invalid metric name"));
        }
        Some(n) => Matcher::equal(metricsd_model::METRIC_NAME, n),
        None => Matcher::new(MatchOp::Regex, metricsd_model::METRIC_NAME, ".+")
            .map_err(|e| ApiError::field("name", e.to_string()))?,
    }];
    if let Some(s) = &q.service {
        matchers.push(Matcher::equal(SERVICE_LABEL, s));
    }
    let max_points = st.cfg.max_points_per_series;
    let st2 = st.clone();
    let tenant2 = tenant.clone();
    let (total, out) = blocking(move || -> Result<(usize, Vec<serde_json::Value>), ApiError> {
        let Some(db) = st2.storage.existing_tenant(&tenant2) else {
            return Ok((0, Vec::new()));
        };
        let meta = st2.collector.metadata(&tenant2);
        let q = db.querier(start, end).map_err(|e| ApiError::from_read(&e))?;
        let sel = q.select(&matchers).map_err(|e| ApiError::from_read(&e))?;
        let total = sel.len();
        let mut out = Vec::new();
        for s in sel.iter() {
            if out.len() >= limit {
                break;
            }
            let mut pts: std::collections::VecDeque<Sample> = std::collections::VecDeque::new();
            for x in s.iter() {
                if metricsd_model::is_stale_nan(x.v) {
                    continue;
                }
                if pts.len() == max_points {
                    pts.pop_front();
                }
                pts.push_back(x);
            }
            if pts.is_empty() {
                continue;
            }
            let l = s.labels();
            let name = l.metric_name().unwrap_or_default();
            let labels: serde_json::Map<String, serde_json::Value> = l
                .iter()
                .filter(|x| &*x.name != metricsd_model::METRIC_NAME && &*x.name != SERVICE_LABEL)
                .map(|x| (x.name.to_string(), json!(&*x.value)))
                .collect();
            let points: Vec<serde_json::Value> = pts
                .iter()
                .map(|p| json!({ "value": num(p.v), "timestamp": rfc3339(p.t) }))
                .collect();
            out.push(json!({
                "name": name,
                "type": kind_of(name, &meta),
                "labels": labels,
                "service": l.get(SERVICE_LABEL),
                "tenant_id": tenant2,
                "points": points,
            }));
        }
        Ok((total, out))
    })
    .await??;
    let _ = total;
    Ok(Json(json!({ "series": out, "total": out.len(), "timestamp": rfc3339(now_ms()) })).into_response())
}

#[derive(Deserialize)]
struct TrendQuery {
    hours: Option<String>,
    tenant_id: Option<String>,
}

async fn trend(
    State(st): St,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<TrendQuery>,
) -> Result<Response, ApiError> {
    let tenant = read_tenant(&headers, q.tenant_id.as_deref())?;
    if !metricsd_model::is_valid_metric_name(&name) {
        return Err(ApiError::field("name", format!("invalid metric name {name:?}")));
    }
    let hours = match q.hours.as_deref() {
        None => st.cfg.trend_hours as i64,
        Some(h) => h
            .parse::<i64>()
            .ok()
            .filter(|h| (1..=24 * 31).contains(h))
            .ok_or_else(|| ApiError::field("hours", "hours must be an integer from 1 to 744"))?,
    };
    let st2 = st.clone();
    let name2 = name.clone();
    let (points, kind) = blocking(move || -> Result<(Vec<(i64, f64)>, String), ApiError> {
        let Some(db) = st2.storage.existing_tenant(&tenant) else {
            return Ok((Vec::new(), "untyped".into()));
        };
        let meta = st2.collector.metadata(&tenant);
        let kind = kind_of(&name2, &meta);
        const H: i64 = 3_600_000;
        let end = now_ms();
        let start = end - hours * H;
        let n = hours as usize;
        let get = |n: &str| -> Result<Vec<Vec<Sample>>, ApiError> {
            Ok(all_samples(
                &db,
                start - H,
                i64::MAX,
                &[Matcher::equal(metricsd_model::METRIC_NAME, n)],
            )
            .map_err(|e| ApiError::from_store(&e))?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
        };
        let values = match kind.as_str() {
            "counter" => trends::counter_increase(&get(&name2)?, start, H, n),
            "histogram" | "summary" => {
                let s = trends::counter_increase(&get(&format!("{name2}_sum"))?, start, H, n);
                let c = trends::counter_increase(&get(&format!("{name2}_count"))?, start, H, n);
                s.into_iter()
                    .zip(c)
                    .map(|(s, c)| match (s, c) {
                        (Some(s), Some(c)) if c > 0.0 => Some(s / c),
                        _ => None,
                    })
                    .collect()
            }
            _ => trends::mean(&get(&name2)?, start, H, n),
        };
        Ok((
            values
                .into_iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (start + i as i64 * H, v)))
                .collect(),
            kind,
        ))
    })
    .await??;
    let xy: Vec<(f64, f64)> = points
        .iter()
        .map(|(t, v)| (*t as f64 / 3_600_000.0, *v))
        .collect();
    let t = trends::trend(&xy);
    let data_points: Vec<serde_json::Value> = points
        .iter()
        .map(|(t, v)| json!({ "timestamp": rfc3339(*t), "value": num(*v) }))
        .collect();
    Ok(Json(json!({
        "metric_name": name,
        "trend": t.trend,
        "change_percent": t.change_percent,
        "data_points": data_points,
        "type": kind,
        "slope_per_hour": if t.slope.is_finite() { json!(t.slope) } else { json!(null) },
        "t_statistic": if t.t_stat.is_finite() { json!(t.t_stat) } else { json!(null) },
    }))
    .into_response())
}

async fn health(State(st): St) -> Response {
    let st2 = st.clone();
    let store_ok = blocking(move || {
        // Open tenants only: a closed (idle) one closed its WAL cleanly, and checking must
        // not reopen it.
        let dbs_ok = st2.storage.open_tenants().iter().all(|db| db.healthy());
        // A write probe catches a read-only or full data directory before a client does.
        let probe = st2.storage.root().join(".health-probe");
        let writable = std::fs::write(&probe, b"ok").is_ok();
        let _ = std::fs::remove_file(&probe);
        dbs_ok && writable
    })
    .await
    .unwrap_or(false);
    // Shedding load is degraded service, but the process is alive: still 200, so an
    // orchestrator does not restart an instance that is merely busy.
    let shedding = crate::protect::shedding();
    let status = if store_ok && !shedding { "ok" } else { "degraded" };
    let body = json!({
        "service": "metrics",
        "status": status,
        "uptime_seconds": st.started.elapsed().as_secs(),
        // The seed's shape: shedding shows as the collector's state.
        "dependencies": {
            "collector": if !store_ok { "failing" } else if shedding { "shedding" } else { "ok" },
            "aggregator": "ok",
        },
        "version": env!("CARGO_PKG_VERSION"),
        // The build's git revision, or `unknown` when built outside git (see build.rs).
        "commit": env!("METRICSD_COMMIT"),
    });
    let code = if store_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

#[derive(Deserialize)]
struct StatsQuery {
    tenant_id: Option<String>,
}

async fn stats(State(st): St, headers: HeaderMap, Query(q): Query<StatsQuery>) -> Result<Response, ApiError> {
    let tenant = read_tenant(&headers, q.tenant_id.as_deref())?;
    let m = &st.metrics;
    let last = m.last_export_ms.load(Ordering::Relaxed);
    let (points, dropped) = m.tenant_points(&tenant);
    let st2 = st.clone();
    let series = blocking(move || tenant_series(&st2.storage, &tenant)).await?;
    Ok(Json(json!({
        "collector": {
            "total_points": points,
            "total_series": series,
            "dropped_points": dropped,
        },
        "aggregator": {
            "total_windows": m.windows.get(),
            "aggregated_series": m.aggregated_series.load(Ordering::Relaxed),
        },
        "exporter": {
            "total_exports": m.exports.get(),
            "last_export": if last == 0 { json!(null) } else { json!(rfc3339(last as i64)) },
        },
        "timestamp": rfc3339(now_ms()),
    }))
    .into_response())
}

async fn write(
    State(st): St,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // The body is snappy-compressed whatever the header says (remote_write 1.0); a gzip or
    // deflate layer on top was removed by the decompression layer.
    content_encoding(&headers, &["snappy"])?;
    remote_write_version(&headers)?;
    let b = body(b)?;
    let tenant = crate::tenant::of_request(&headers)?;
    let max = st.cfg.max_body_bytes.saturating_mul(8);
    let st2 = st.clone();
    // Decoding (snappy, protobuf, label validation) runs with the store work.
    let res = ingest_work(
        &st,
        b.len() <= SNAPPY_INLINE_MAX,
        move || -> Result<(usize, usize, Option<String>), ApiError> {
            // Series the tenant's head knows by the key of their label bytes cost no label
            // parsing, validation or lookup; the others are remembered at commit.
            let known = st2.storage.existing_tenant(&tenant);
            let mut batch = KeyedBatch::default();
            RemoteWriteDecoder::new(max, st2.cfg.limits())
                .with_key_seed(st2.rw_key_seed)
                .decode_keyed(&b, &mut batch, |key| known.as_ref()?.keyed_series(key))
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.to_string()))?;
            // The handles are of the store they were found in: append there. A request
            // without samples (metadata only, say) creates no tenant.
            let (db, created) = match known {
                Some(db) => (db, false),
                None if batch.samples.is_empty() => {
                    st2.metrics.points_dropped.add(batch.rejected_samples as u64);
                    let first = batch.rejected.first().map(|(_, e)| e.to_string());
                    return Ok((batch.rejected_samples, batch.rejected_samples, first));
                }
                None => st2
                    .storage
                    .tenant_for_write(&tenant)
                    .map_err(|e| ApiError::from_store(&e))?,
            };
            let mut app = db.appender();
            app.reserve(batch.series.len(), batch.samples.len());
            let mut dropped = batch.rejected_samples;
            let mut first: Option<String> = batch.rejected.first().map(|(_, e)| e.to_string());
            let total = batch.samples.len() + batch.rejected_samples;
            for (id, samples) in batch.drain() {
                match id {
                    SeriesId::Known(series) => app.append_known(series, samples),
                    SeriesId::New { labels, key } => app.append_keyed(key, labels, samples),
                }
            }
            let report = app.commit().map_err(|e| ApiError::from_store(&e))?;
            drop(db);
            // A tenant created for samples that were all refused is not left behind.
            let forgotten = created && report.accepted == 0 && st2.storage.forget_unused(&tenant);
            // Metadata is kept once the request is stored (a failed one is resent with it).
            if !forgotten {
                let lost = st2.rw_meta.record(&tenant, &batch.metadata);
                st2.metrics.metadata_dropped.add(lost as u64);
            }
            dropped += report.rejected.len();
            if first.is_none()
                && let Some((_, e)) = report.rejected.first()
            {
                first = Some(e.to_string());
            }
            st2.metrics.points_stored.add(report.accepted as u64);
            st2.metrics.points_dropped.add(dropped as u64);
            if !forgotten {
                st2.metrics
                    .add_tenant_points(&tenant, report.accepted as u64, dropped as u64);
            }
            Ok((total, dropped, first))
        },
    )
    .await?;
    let (total, dropped, first) = res.inspect_err(|_| st.metrics.errors.inc())?;
    if dropped > 0 {
        st.metrics.errors.inc();
        // 400: the sender drops the request; the valid samples of it are stored.
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "rejected",
            format!(
                "{dropped} of {total} samples rejected; first: {}",
                first.unwrap_or_default()
            ),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
