//! The Prometheus HTTP API (`/api/v1/...`, `/federate`) over the PromQL engine of
//! `metricsd-promql`, and seed 001's query aliases (`/metrics/query`, `/metrics/instant`,
//! `/metrics/range`, `/metrics/labels`).
//!
//! Shapes, parameters, error texts and status codes are Prometheus' (2.42), so Grafana,
//! promtool and the Prometheus client libraries work unchanged; `docs/api.md` lists the
//! routes and the few differences. The tenant is `X-Scope-OrgID` (`default` when absent); a
//! tenant without data answers empty results.
//!
//! Queries run on the blocking pool. A [`CancelOnDrop`] guard held by the handler's future
//! sets the query's cancel flag when that future is dropped, which hyper does when the client
//! disconnects, so an abandoned query stops at its next check instead of running to its
//! timeout.
//!
//! # Layout
//! - `params`: form values, times, durations, `match[]` selectors (pure).
//! - `response`: envelopes, errors and the hand-written encoding of query results.

mod params;
mod response;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metricsd_model::{Labels, Matcher};
use metricsd_promql::{Engine, QueryContext, QueryError, QueryResult};
use metricsd_tsdb::{Querier, Queryable, Series};
use serde_json::json;

use crate::api::AppState;
use crate::time::now_ms;

use crate::protect::Deadline;
use crate::time::format_duration_ms;
use params::{Form, MAX_TIME_MS, MIN_TIME_MS, match_param, parse_duration_ns, parse_time, time_param};
pub use response::PromError;
use response::{success, success_raw, write_labels, write_query_data, write_str};

type St = State<Arc<AppState>>;

/// The routes of this module, merged into the service's router: those that evaluate PromQL
/// under `for_queries`' deadline (see `protect`), the others under `for_others`'.
pub(crate) fn routes(for_queries: Arc<Deadline>, for_others: Arc<Deadline>) -> Router<Arc<AppState>> {
    let queries = Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        // Seed 001's names. The seed gives no response shape, so they answer Prometheus'.
        .route("/metrics/query", get(alias_query).post(alias_query))
        .route("/metrics/instant", get(alias_query).post(alias_query))
        .route("/metrics/range", get(alias_range).post(alias_range))
        .route_layer(axum::middleware::from_fn_with_state(
            for_queries,
            crate::protect::deadline,
        ));
    Router::new()
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/query_exemplars", get(exemplars).post(exemplars))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/status/runtimeinfo", get(runtimeinfo))
        .route("/api/v1/status/flags", get(flags))
        .route("/api/v1/status/config", get(config))
        .route("/api/v1/status/tsdb", get(tsdb_status))
        .route(
            "/api/v1/admin/tsdb/delete_series",
            post(delete_series).put(delete_series),
        )
        .route("/federate", get(federate))
        .route("/metrics/labels", get(alias_labels).post(alias_labels))
        .route_layer(axum::middleware::from_fn_with_state(
            for_others,
            crate::protect::deadline,
        ))
        .merge(queries)
}

/// A request's form values (URL, plus a form-encoded body of POST and PUT) and headers.
struct Req {
    form: Form,
    headers: HeaderMap,
}

impl<S: Send + Sync> FromRequest<S> for Req {
    type Rejection = PromError;

    async fn from_request(req: Request, state: &S) -> Result<Self, PromError> {
        let headers = req.headers().clone();
        let query = req.uri().query().map(str::to_owned);
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|ct| ct.split(';').next())
            .is_some_and(|ct| {
                ct.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        // Go's ParseForm reads the body of POST, PUT and PATCH only.
        let body =
            if is_form && matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
                Some(Bytes::from_request(req, state).await.map_err(|r| {
                    PromError::bad_data(format!("error parsing form values: {}", r.body_text()))
                })?)
            } else {
                None
            };
        Ok(Req {
            form: Form::parse(query.as_deref(), body.as_deref()),
            headers,
        })
    }
}

/// The tenant of a Prometheus API request: `X-Scope-OrgID`, else `default`.
fn api_tenant(h: &HeaderMap) -> Result<String, PromError> {
    crate::tenant::of_request(h).map_err(PromError::from)
}

/// The tenant of an alias request: like the service's other `/metrics/*` reads, the
/// `tenant_id` parameter or `X-Scope-OrgID`; both must agree.
fn alias_tenant(h: &HeaderMap, form: &Form) -> Result<String, PromError> {
    crate::tenant::of_read(h, Some(form.value("tenant_id"))).map_err(PromError::from)
}

/// Sets its flag when dropped: held by a handler's future, it cancels the query that future
/// waits for when hyper drops it (the client went away).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A store that holds nothing: what a tenant without data is queried through.
struct EmptyStore;

struct EmptyQuerier(i64, i64);

impl Queryable for EmptyStore {
    fn querier(&self, mint: i64, maxt: i64) -> metricsd_storage::Result<Box<dyn Querier + '_>> {
        Ok(Box::new(EmptyQuerier(mint, maxt)))
    }
}

impl Querier for EmptyQuerier {
    fn select(&self, _: &[Matcher]) -> metricsd_storage::Result<Vec<Series>> {
        Ok(Vec::new())
    }
    fn label_names(&self, _: &[Matcher]) -> metricsd_storage::Result<Vec<Arc<str>>> {
        Ok(Vec::new())
    }
    fn label_values(&self, _: &str, _: &[Matcher]) -> metricsd_storage::Result<Vec<Arc<str>>> {
        Ok(Vec::new())
    }
    fn range(&self) -> (i64, i64) {
        (self.0, self.1)
    }
}

/// Runs `f` on the blocking pool.
/// [`crate::blocking`] with Prometheus' error.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, PromError> {
    crate::blocking(f).await
}

/// Runs a query against `tenant`'s store on the blocking pool, cancelled when the calling
/// future is dropped. Returns the result and the evaluation time in seconds.
async fn run_query(
    st: &AppState,
    tenant: &str,
    deadline: Option<Instant>,
    f: impl FnOnce(&Engine, &dyn Queryable, &QueryContext) -> Result<QueryResult, QueryError> + Send + 'static,
) -> Result<(QueryResult, f64), PromError> {
    let cancel = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancel.clone());
    let ctx = QueryContext {
        cancel: Some(cancel),
        deadline,
    };
    let engine = Engine::new(st.cfg.engine_options());
    let db = st.storage.existing_tenant(tenant);
    let (res, secs) = blocking(move || {
        let start = Instant::now();
        let store: &dyn Queryable = match &db {
            Some(db) => db.as_ref(),
            None => &EmptyStore,
        };
        let res = f(&engine, store, &ctx);
        if let Err(QueryError::Canceled(_)) = &res {
            tracing::info!("query canceled: the client went away");
        }
        (res, start.elapsed().as_secs_f64())
    })
    .await?;
    Ok((res.map_err(PromError::from_query)?, secs))
}

/// The query's deadline: `query_timeout_seconds`, shortened by the request's `timeout`
/// parameter. (The request deadline of the `protect` layer is a second later for query
/// routes, so the query ends first, with Prometheus' `timeout` error.)
fn deadline(st: &AppState, form: &Form) -> Result<Option<Instant>, PromError> {
    deadline_for(st.cfg.query_timeout_seconds, form)
}

fn deadline_for(timeout_seconds: u64, form: &Form) -> Result<Option<Instant>, PromError> {
    let now = Instant::now();
    let mut d = now + Duration::from_secs(timeout_seconds);
    match form.value("timeout") {
        "" => {}
        v => {
            let ns = parse_duration_ns(v).map_err(|e| PromError::invalid_param("timeout", e))?;
            d = d.min(now + Duration::from_nanos(ns.max(0) as u64));
        }
    }
    Ok(Some(d))
}

fn query_response(res: &QueryResult, form: &Form, secs: f64) -> Response {
    let mut data = String::with_capacity(256);
    let stats = (!form.value("stats").is_empty()).then_some(secs);
    write_query_data(&mut data, res, stats);
    success_raw(&data, &res.warnings)
}

async fn query(State(st): St, req: Req) -> Result<Response, PromError> {
    let tenant = api_tenant(&req.headers)?;
    instant(&st, &tenant, req.form).await
}

async fn instant(st: &AppState, tenant: &str, form: Form) -> Result<Response, PromError> {
    let t = instant_params(&form, now_ms())?;
    let deadline = deadline(st, &form)?;
    let expr = form.value("query").to_owned();
    let (res, secs) = run_query(st, tenant, deadline, move |engine, store, ctx| {
        engine.instant_query(store, &expr, t, ctx)
    })
    .await?;
    Ok(query_response(&res, &form, secs))
}

/// The evaluation time of an instant query: `time`, else `now`.
fn instant_params(form: &Form, now: i64) -> Result<i64, PromError> {
    time_param(form, "time", now).map_err(|e| PromError::invalid_param("time", e))
}

async fn query_range(State(st): St, req: Req) -> Result<Response, PromError> {
    let tenant = api_tenant(&req.headers)?;
    range(&st, &tenant, req.form).await
}

/// `11000` as Prometheus writes it in its message: `11,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

async fn range(st: &AppState, tenant: &str, form: Form) -> Result<Response, PromError> {
    let (start, end, step) = range_params(&form, st.cfg.query_max_points_per_series)?;
    let deadline = deadline(st, &form)?;
    let expr = form.value("query").to_owned();
    let (res, secs) = run_query(st, tenant, deadline, move |engine, store, ctx| {
        engine.range_query(store, &expr, start, end, step, ctx)
    })
    .await?;
    Ok(query_response(&res, &form, secs))
}

/// `start`, `end` and `step` (ms) of a range query, checked in Prometheus' order, with its
/// messages; at most `max` points per series.
fn range_params(form: &Form, max: u64) -> Result<(i64, i64, i64), PromError> {
    let start = parse_time(form.value("start")).map_err(|e| PromError::invalid_param("start", e))?;
    let end = parse_time(form.value("end")).map_err(|e| PromError::invalid_param("end", e))?;
    if end < start {
        return Err(PromError::invalid_param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    let step_ns = parse_duration_ns(form.value("step")).map_err(|e| PromError::invalid_param("step", e))?;
    // Steps are whole milliseconds here, as in Prometheus' engine: below 1ms is zero.
    let step = step_ns / 1_000_000;
    if step <= 0 {
        return Err(PromError::invalid_param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if ((end as i128 - start as i128) / step as i128) > max as i128 {
        return Err(PromError::bad_data(format!(
            "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
            thousands(max)
        )));
    }
    Ok((start, end, step))
}

/// The whole of `/api/v1/query` (`range` false) or `/api/v1/query_range` after the HTTP
/// layer, on the calling thread: the form values of the URL's `url_query` and of a
/// form-encoded `body`, parsed as the handlers parse them (`query`, `time`, `start`, `end`,
/// `step`, `timeout`, `stats`), the query evaluated over `store` with `cfg`'s engine
/// options and deadline, and the answer encoded. Returns the success body
/// (`{"status":"success","data":...}`) or the error the handler would answer. For the fuzz
/// target `fuzz/fuzz_targets/api_query.rs`; the handlers run the same steps, evaluating on
/// the blocking pool.
pub fn query_request(
    cfg: &crate::Config,
    store: &dyn Queryable,
    range: bool,
    url_query: Option<&str>,
    body: Option<&[u8]>,
    now: i64,
) -> Result<String, PromError> {
    let form = Form::parse(url_query, body);
    enum Kind {
        Instant(i64),
        Range(i64, i64, i64),
    }
    let kind = if range {
        let (start, end, step) = range_params(&form, cfg.query_max_points_per_series)?;
        Kind::Range(start, end, step)
    } else {
        Kind::Instant(instant_params(&form, now)?)
    };
    let ctx = QueryContext {
        cancel: None,
        deadline: deadline_for(cfg.query_timeout_seconds, &form)?,
    };
    let engine = Engine::new(cfg.engine_options());
    let expr = form.value("query");
    let started = Instant::now();
    let res = match kind {
        Kind::Instant(t) => engine.instant_query(store, expr, t, &ctx),
        Kind::Range(start, end, step) => engine.range_query(store, expr, start, end, step, &ctx),
    }
    .map_err(PromError::from_query)?;
    let mut data = String::with_capacity(256);
    let stats = (!form.value("stats").is_empty()).then_some(started.elapsed().as_secs_f64());
    write_query_data(&mut data, &res, stats);
    Ok(response::success_body(&data, &res.warnings))
}

/// `start` and `end` of the metadata endpoints: Prometheus' MinTime and MaxTime by default.
fn time_range(form: &Form) -> Result<(i64, i64), PromError> {
    let start = time_param(form, "start", MIN_TIME_MS).map_err(|e| PromError::invalid_param("start", e))?;
    let end = time_param(form, "end", MAX_TIME_MS).map_err(|e| PromError::invalid_param("end", e))?;
    Ok((start, end))
}

async fn series(State(st): St, req: Req) -> Result<Response, PromError> {
    let tenant = api_tenant(&req.headers)?;
    if req.form.values("match[]").next().is_none() {
        return Err(PromError::bad_data("no match[] parameter provided"));
    }
    let (start, end) = time_range(&req.form)?;
    let sets = match_param(&req.form).map_err(PromError::bad_data)?;
    let st2 = st.clone();
    let found = blocking(move || -> Result<Vec<Labels>, PromError> {
        let Some(db) = st2.storage.existing_tenant(&tenant) else {
            return Ok(Vec::new());
        };
        let q = db.querier(start, end).map_err(|e| PromError::from_read(&e))?;
        let mut all: Vec<Labels> = Vec::new();
        for set in &sets {
            let sel = q.select(set).map_err(|e| PromError::from_read(&e))?;
            all.extend(sel.iter().map(|s| s.labels().clone()));
        }
        // Each select is sorted; several overlap: merge them as Prometheus' merge set does.
        if sets.len() > 1 {
            all.sort();
            all.dedup();
        }
        Ok(all)
    })
    .await??;
    Ok(success_raw(&json_array(&found, write_labels), &[]))
}

fn string_list(v: &[Arc<str>]) -> Response {
    success_raw(&json_array(v, |out, s| write_str(out, s)), &[])
}

/// `items` as a JSON array, each written by `write`.
fn json_array<T>(items: &[T], mut write: impl FnMut(&mut String, &T)) -> String {
    let mut data = String::from("[");
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        write(&mut data, it);
    }
    data.push(']');
    data
}

async fn labels(State(st): St, req: Req) -> Result<Response, PromError> {
    let tenant = api_tenant(&req.headers)?;
    label_names(&st, tenant, &req.form).await
}

async fn label_names(st: &Arc<AppState>, tenant: String, form: &Form) -> Result<Response, PromError> {
    let (start, end) = time_range(form)?;
    let sets = match_param(form).map_err(PromError::bad_data)?;
    let st2 = st.clone();
    let names = blocking(move || -> Result<Vec<Arc<str>>, PromError> {
        let Some(db) = st2.storage.existing_tenant(&tenant) else {
            return Ok(Vec::new());
        };
        let q = db.querier(start, end).map_err(|e| PromError::from_read(&e))?;
        if sets.is_empty() {
            return q.label_names(&[]).map_err(|e| PromError::from_read(&e));
        }
        let mut all = Vec::new();
        for set in &sets {
            all.extend(q.label_names(set).map_err(|e| PromError::from_read(&e))?);
        }
        all.sort();
        all.dedup();
        Ok(all)
    })
    .await??;
    Ok(string_list(&names))
}

async fn label_values(State(st): St, Path(name): Path<String>, req: Req) -> Result<Response, PromError> {
    let tenant = api_tenant(&req.headers)?;
    if !metricsd_model::is_valid_label_name(&name) {
        return Err(PromError::bad_data(format!("invalid label name: {name:?}")));
    }
    let (start, end) = time_range(&req.form)?;
    let sets = match_param(&req.form).map_err(PromError::bad_data)?;
    let st2 = st.clone();
    let values = blocking(move || -> Result<Vec<Arc<str>>, PromError> {
        let Some(db) = st2.storage.existing_tenant(&tenant) else {
            return Ok(Vec::new());
        };
        let q = db.querier(start, end).map_err(|e| PromError::from_read(&e))?;
        if sets.is_empty() {
            return q.label_values(&name, &[]).map_err(|e| PromError::from_read(&e));
        }
        let mut all = Vec::new();
        for set in &sets {
            all.extend(q.label_values(&name, set).map_err(|e| PromError::from_read(&e))?);
        }
        all.sort();
        all.dedup();
        Ok(all)
    })
    .await??;
    Ok(string_list(&values))
}

/// `/api/v1/metadata`: the type, help and unit of every metric family of the tenant, from
/// the JSON API and from remote_write senders' metadata (`rwmeta`), sorted by name. A
/// family both name lists both entries when they differ, as Prometheus lists a family's
/// distinct entries; `limit` counts families.
async fn metadata(State(st): St, req: Req) -> Result<Response, PromError> {
    let tenant = api_tenant(&req.headers)?;
    let limit: i64 = match req.form.value("limit") {
        "" => -1,
        s => s
            .parse()
            .map_err(|_| PromError::bad_data("limit must be a number"))?,
    };
    let metric = req.form.value("metric");
    let mut families: std::collections::BTreeMap<String, Vec<serde_json::Value>> = Default::default();
    for (name, m) in st.collector.metadata(&tenant) {
        families
            .entry(name)
            .or_default()
            .push(json!({ "type": m.kind.as_str(), "help": m.help.as_deref().unwrap_or(""), "unit": "" }));
    }
    for (name, m) in st.rw_meta.of(&tenant) {
        let e = json!({ "type": m.kind, "help": m.help, "unit": m.unit });
        let entries = families.entry(name).or_default();
        if !entries.contains(&e) {
            entries.push(e);
        }
    }
    let mut out = serde_json::Map::new();
    for (name, entries) in families {
        if !metric.is_empty() && name != metric {
            continue;
        }
        if limit >= 0 && out.len() as i64 >= limit {
            break;
        }
        out.insert(name, serde_json::Value::Array(entries));
    }
    Ok(success(serde_json::Value::Object(out)))
}

/// `/api/v1/query_exemplars`: metricsd stores no exemplars; the query is still checked.
async fn exemplars(req: Req) -> Result<Response, PromError> {
    api_tenant(&req.headers)?;
    let (start, end) = time_range(&req.form)?;
    if end < start {
        return Err(PromError::bad_data(
            "end timestamp must not be before start timestamp",
        ));
    }
    metricsd_promql::parse(req.form.value("query")).map_err(|e| PromError::bad_data(e.to_string()))?;
    Ok(success(json!([])))
}

async fn buildinfo() -> Response {
    success(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": env!("METRICSD_COMMIT"),
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
}

/// Threads of this process (Linux), standing in for Prometheus' goroutine count.
fn thread_count() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn runtimeinfo(State(st): St) -> Response {
    let start_ms = now_ms() - st.started.elapsed().as_millis() as i64;
    let start = crate::time::rfc3339(start_ms);
    success(json!({
        "startTime": start,
        "reloadConfigSuccess": true,
        "lastConfigTime": start,
        "corruptionCount": 0,
        "goroutineCount": thread_count(),
        "GOMAXPROCS": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": retention_text(st.cfg.retention_hours),
    }))
}

fn retention_text(hours: u64) -> String {
    if hours == 0 {
        "unlimited".into()
    } else {
        format_duration_ms((hours as i64).saturating_mul(3_600_000))
    }
}

/// `/api/v1/status/flags`: every setting under its YAML key, plus the Prometheus flag names
/// of the settings that have one.
async fn flags(State(st): St) -> Response {
    let c = &st.cfg;
    let mut out = serde_json::Map::new();
    if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(c) {
        for (k, v) in m
            .into_iter()
            .filter(|(k, _)| !HIDDEN_SETTINGS.contains(&k.as_str()))
        {
            let s = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            out.insert(k, json!(s));
        }
    }
    for (k, v) in [
        ("web.listen-address", c.listen.to_string()),
        ("web.enable-admin-api", c.enable_admin_api.to_string()),
        ("storage.tsdb.retention.time", retention_text(c.retention_hours)),
        ("query.lookback-delta", c.query_lookback_delta.to_string()),
        (
            "query.timeout",
            format_duration_ms(c.query_timeout_seconds as i64 * 1000),
        ),
        ("query.max-samples", c.query_max_samples.to_string()),
    ] {
        out.insert(k.to_owned(), json!(v));
    }
    success(serde_json::Value::Object(out))
}

/// Settings that the status routes do not show: paths of the server's machine. There is no
/// authentication yet, so no route is admin-only; the paths are in the log (`listening`
/// names `data_dir`).
const HIDDEN_SETTINGS: &[&str] = &["data_dir"];

/// `/api/v1/status/config`: the configuration in force, as YAML, without
/// [`HIDDEN_SETTINGS`].
async fn config(State(st): St) -> Result<Response, PromError> {
    let mut v = serde_json::to_value(&st.cfg)
        .map_err(|e| PromError::internal(format!("cannot render the configuration: {e}")))?;
    if let Some(m) = v.as_object_mut() {
        for k in HIDDEN_SETTINGS {
            m.remove(*k);
        }
    }
    let yaml = serde_saphyr::to_string(&v)
        .map_err(|e| PromError::internal(format!("cannot render the configuration: {e}")))?;
    Ok(success(json!({ "yaml": yaml })))
}

/// `/api/v1/status/tsdb`: head cardinality in Prometheus' shape; `limit` (default 10)
/// bounds each list.
async fn tsdb_status(State(st): St, req: Req) -> Result<Response, PromError> {
    let tenant = api_tenant(&req.headers)?;
    let limit: usize = match req.form.value("limit") {
        "" => 10,
        s => s
            .parse()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| PromError::bad_data("limit must be a positive number"))?,
    };
    let st2 = st.clone();
    let data = blocking(move || {
        let Some(db) = st2.storage.existing_tenant(&tenant) else {
            return tsdb_status_json(&metricsd_tsdb::Stats::default(), limit);
        };
        // Every pair, not just the top ones: memoryInBytesByLabelName sums over all of them.
        tsdb_status_json(&db.stats(usize::MAX), limit)
    })
    .await?;
    Ok(success(data))
}

/// Prometheus' `tsdbStatus` from our store figures. `memoryInBytesByLabelName` is
/// Prometheus' figure: per label name, the bytes of its values summed over the series that
/// carry them. An empty head reports Prometheus' empty-head times (`minTime` i64::MAX,
/// `maxTime` i64::MIN).
fn tsdb_status_json(s: &metricsd_tsdb::Stats, limit: usize) -> serde_json::Value {
    let list = |v: &[(String, u64)]| -> serde_json::Value {
        v.iter()
            .take(limit)
            .map(|(n, c)| json!({ "name": n, "value": c }))
            .collect()
    };
    let mut bytes: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for (pair, count) in &s.top_label_pairs {
        // Label names cannot contain '=': the first one separates name and value.
        if let Some((n, v)) = pair.split_once('=') {
            *bytes.entry(n).or_default() += v.len() as u64 * count;
        }
    }
    let mut mem: Vec<(String, u64)> = bytes.into_iter().map(|(n, b)| (n.to_owned(), b)).collect();
    mem.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    json!({
        "headStats": {
            "numSeries": s.head_series,
            "numLabelPairs": s.top_label_pairs.len(),
            "chunkCount": s.head_chunks,
            "minTime": s.head_min_time.unwrap_or(i64::MAX),
            "maxTime": s.head_max_time.unwrap_or(i64::MIN),
        },
        "seriesCountByMetricName": list(&s.top_metrics),
        "labelValueCountByLabelName": list(&s.top_label_names_by_values),
        "memoryInBytesByLabelName": list(&mem),
        "seriesCountByLabelValuePair": list(&s.top_label_pairs),
    })
}

/// `/api/v1/admin/tsdb/delete_series`: 204 after deleting the samples of the matching
/// series in `[start, end]`; `unavailable` unless `enable_admin_api` is on.
async fn delete_series(State(st): St, req: Req) -> Result<Response, PromError> {
    if !st.cfg.enable_admin_api {
        return Err(PromError::unavailable("admin APIs disabled"));
    }
    let tenant = api_tenant(&req.headers)?;
    if req.form.values("match[]").next().is_none() {
        return Err(PromError::bad_data("no match[] parameter provided"));
    }
    let (start, end) = time_range(&req.form)?;
    let sets = match_param(&req.form).map_err(PromError::bad_data)?;
    let st2 = st.clone();
    let deleted = blocking(move || -> Result<usize, PromError> {
        let Some(db) = st2.storage.existing_tenant(&tenant) else {
            return Ok(0);
        };
        let mut n = 0;
        for set in &sets {
            n += db
                .delete(set, start, end)
                .map_err(|e| PromError::from_store(&e))?;
        }
        Ok(n)
    })
    .await??;
    tracing::info!(
        series = deleted,
        start,
        end,
        "series deleted through the admin API"
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `/federate`: the newest sample within the lookback delta of every series matching a
/// `match[]`, in the text format, as untyped families sorted by metric name. Errors are
/// plain text, as Prometheus' federation handler answers them.
async fn federate(State(st): St, req: Req) -> Response {
    match federate_text(&st, &req).await {
        Ok(text) => (
            [(header::CONTENT_TYPE, metricsd_ingest::PROMETHEUS_CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Err(e) => (e.status(), e.message).into_response(),
    }
}

async fn federate_text(st: &Arc<AppState>, req: &Req) -> Result<String, PromError> {
    let tenant = api_tenant(&req.headers)?;
    let sets = match_param(&req.form).map_err(PromError::bad_data)?;
    let maxt = now_ms();
    let mint = maxt - st.cfg.query_lookback_delta.as_millis();
    let st2 = st.clone();
    let latest = blocking(move || -> Result<Vec<(Labels, i64, f64)>, PromError> {
        let Some(db) = st2.storage.existing_tenant(&tenant) else {
            return Ok(Vec::new());
        };
        let q = db.querier(mint, maxt).map_err(|e| PromError::from_read(&e))?;
        let mut out = Vec::new();
        for set in &sets {
            for s in q.select(set).map_err(|e| PromError::from_read(&e))? {
                if let Some(p) = s.iter().last()
                    && !metricsd_model::is_stale_nan(p.v)
                {
                    out.push((s.labels().clone(), p.t, p.v));
                }
            }
        }
        Ok(out)
    })
    .await??;
    Ok(federation_text(latest))
}

/// The federation body: one untyped family per metric name, in name order; series of one
/// name in label order; each sample with its timestamp.
fn federation_text(mut latest: Vec<(Labels, i64, f64)>) -> String {
    use metricsd_ingest::{FamilyKind, FamilySample, MetricFamily};
    latest.sort_by(|a, b| a.0.cmp(&b.0));
    latest.dedup_by(|a, b| a.0 == b.0);
    // Stable: within a name, label order stays.
    latest.sort_by(|a, b| a.0.metric_name().cmp(&b.0.metric_name()));
    let mut fams: Vec<MetricFamily> = Vec::new();
    for (labels, t, v) in latest {
        let Some(name) = labels.metric_name().map(str::to_owned) else {
            continue;
        };
        if fams.last().is_none_or(|f| f.name != name) {
            fams.push(MetricFamily {
                name,
                help: None,
                kind: FamilyKind::Unknown,
                unit: None,
                samples: Vec::new(),
            });
        }
        if let Some(f) = fams.last_mut() {
            f.samples.push(FamilySample {
                suffix: "",
                labels,
                value: v,
                timestamp_ms: Some(t),
            });
        }
    }
    let mut out = String::new();
    metricsd_ingest::write_prometheus(&fams, &mut out);
    out
}

async fn alias_query(State(st): St, req: Req) -> Result<Response, PromError> {
    let tenant = alias_tenant(&req.headers, &req.form)?;
    instant(&st, &tenant, req.form).await
}

async fn alias_range(State(st): St, req: Req) -> Result<Response, PromError> {
    let tenant = alias_tenant(&req.headers, &req.form)?;
    range(&st, &tenant, req.form).await
}

async fn alias_labels(State(st): St, req: Req) -> Result<Response, PromError> {
    let tenant = alias_tenant(&req.headers, &req.form)?;
    label_names(&st, tenant, &req.form).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_as_prometheus_writes_them() {
        assert_eq!(thousands(11_000), "11,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }

    #[test]
    fn federation_sorts_by_name_and_writes_untyped_families() {
        let l = |pairs: &[(&str, &str)]| Labels::from_pairs(pairs.iter().copied());
        let text = federation_text(vec![
            (l(&[("__name__", "up"), ("job", "b")]), 2000, 0.0),
            (l(&[("__name__", "a_total"), ("x", "q\"\\\n")]), 1000, 1.5e21),
            (l(&[("__name__", "up"), ("job", "a")]), 1000, 1.0),
            (l(&[("__name__", "up"), ("job", "a")]), 1000, 1.0),
            (l(&[("job", "nameless")]), 1000, 1.0),
        ]);
        assert_eq!(
            text,
            "# TYPE a_total untyped\n\
             a_total{x=\"q\\\"\\\\\\n\"} 1.5e+21 1000\n\
             # TYPE up untyped\n\
             up{job=\"a\"} 1 1000\n\
             up{job=\"b\"} 0 2000\n"
        );
    }

    #[test]
    fn tsdb_status_shape() {
        let s = metricsd_tsdb::Stats {
            head_series: 3,
            head_chunks: 4,
            head_min_time: Some(1000),
            head_max_time: Some(2000),
            top_metrics: vec![("up".into(), 2), ("x".into(), 1)],
            top_label_names_by_values: vec![("job".into(), 2), ("__name__".into(), 2)],
            top_label_pairs: vec![
                ("__name__=up".into(), 2),
                ("job=node".into(), 2),
                ("__name__=x".into(), 1),
                ("job=a".into(), 1),
            ],
            ..Default::default()
        };
        let v = tsdb_status_json(&s, 1);
        assert_eq!(
            v["headStats"],
            json!({"numSeries": 3, "numLabelPairs": 4, "chunkCount": 4, "minTime": 1000, "maxTime": 2000})
        );
        assert_eq!(v["seriesCountByMetricName"], json!([{"name": "up", "value": 2}]));
        assert_eq!(
            v["labelValueCountByLabelName"],
            json!([{"name": "job", "value": 2}])
        );
        // job: 4 bytes × 2 + 1 × 1 = 9; __name__: 2 × 2 + 1 × 1 = 5.
        assert_eq!(
            v["memoryInBytesByLabelName"],
            json!([{"name": "job", "value": 9}])
        );
        assert_eq!(
            v["seriesCountByLabelValuePair"],
            json!([{"name": "__name__=up", "value": 2}])
        );
        let empty = tsdb_status_json(&metricsd_tsdb::Stats::default(), 10);
        assert_eq!(empty["headStats"]["minTime"], i64::MAX);
        assert_eq!(empty["seriesCountByMetricName"], json!([]));
    }

    #[tokio::test]
    async fn dropping_the_waiting_future_cancels_the_query() {
        // The query waits for the flag like the engine's checks do; dropping the future
        // that awaits it (as hyper does when the client goes away) must set it.
        let flag = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicBool::new(false));
        let (flag2, seen2) = (flag.clone(), seen.clone());
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let fut = async move {
            let _guard = CancelOnDrop(flag2.clone());
            blocking(move || {
                let _ = started_tx.send(());
                let until = Instant::now() + Duration::from_secs(10);
                while Instant::now() < until {
                    if flag2.load(Ordering::Relaxed) {
                        seen2.store(true, Ordering::Relaxed);
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
            .await
        };
        let handle = tokio::spawn(fut);
        started_rx.await.unwrap();
        handle.abort();
        let _ = handle.await;
        assert!(flag.load(Ordering::Relaxed));
        let until = Instant::now() + Duration::from_secs(5);
        while !seen.load(Ordering::Relaxed) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            seen.load(Ordering::Relaxed),
            "the blocking work saw the cancellation"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hyper_drops_the_handler_when_the_client_disconnects() {
        // What cancellation relies on: a client closing its connection mid-request makes
        // hyper drop the handler's future, and with it the guard.
        let flag = Arc::new(AtomicBool::new(false));
        let f2 = flag.clone();
        let app: Router = Router::new().route(
            "/slow",
            get(move || {
                let guard = CancelOnDrop(f2.clone());
                async move {
                    let _guard = guard;
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "done"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            std::thread::sleep(Duration::from_millis(200));
            // Dropped here: the connection closes without waiting for the answer.
        });
        client.await.unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        while !flag.load(Ordering::Relaxed) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(flag.load(Ordering::Relaxed), "the handler's future was dropped");
    }
}
