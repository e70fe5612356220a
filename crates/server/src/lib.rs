//! metricsd's HTTP service: the JSON metrics API of seed 000, the Prometheus remote_write
//! receiver, exposition of tracked series and self-metrics, tenancy and limits, on the
//! embedded store of `metricsd-tsdb`.
//!
//! # Layout
//! - [`config`]: settings and their layers (defaults, YAML file, `ACCESS_*`, flags).
//! - `api`: the axum router, handlers, request ids and HTTP self-metrics; remote_write
//!   bodies are decoded by `metricsd_ingest::RemoteWriteDecoder`.
//! - `promapi`: the Prometheus HTTP API (`/api/v1/query`, ..., `/federate`) over
//!   `metricsd-promql`, and seed 001's query aliases (`/metrics/query`, ...).
//! - track items are decoded by `metricsd_ingest::parse_track`/`parse_batch` (the one
//!   parser, shared with the fuzz target); their errors become [`ApiError`]s once.
//! - [`collector`]: counters, histograms and summaries turned into samples, per tenant.
//! - [`exposition`]: Prometheus / OpenMetrics / JSON writers.
//! - [`aggregate`]: the aggregated export's `_avg`/`_sum`/`_min`/`_max` families.
//! - [`trends`]: hourly buckets and the least-squares trend.
//! - [`rwmeta`]: metric metadata received over remote_write, for `/api/v1/metadata`.
//! - [`selfmetrics`], [`logging`], [`otel`]: operating the service (self-metrics, JSON
//!   logs, our own spans over OTLP).
//!
//! # Example
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = metricsd_server::Config::default();
//! let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
//! metricsd_server::serve(cfg, listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
#![warn(clippy::unwrap_used, clippy::panic)]
// Requests are hostile input: every index is checked (`get`, patterns, iterators), a bad
// value failing as the API's error; the two allowed sites state why their bound holds.
#![warn(clippy::indexing_slicing)]
#![warn(missing_docs)]

/// Runs `f` on the blocking pool inside the caller's span; a task that panicked becomes the
/// route's error type (the JSON API's or Prometheus').
pub(crate) async fn blocking<T: Send + 'static, E: From<tokio::task::JoinError>>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, E> {
    let span = tracing::Span::current();
    Ok(tokio::task::spawn_blocking(move || span.in_scope(f)).await?)
}

pub mod aggregate;
mod api;
pub mod collector;
pub mod config;
mod error;
pub mod exposition;
mod json;
pub mod logging;
pub mod otel;
mod promapi;
mod protect;
pub mod rwmeta;
pub mod selfmetrics;
mod tenant;
pub mod time;
pub mod trends;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use api::{AppState, router};
pub use config::{Config, ConfigError, Overrides, SETTINGS};
pub use error::ApiError;
pub use promapi::{PromError, query_request};

/// Why the service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store could not be opened.
    #[error("cannot open the store at {dir}: {source}")]
    Store {
        /// The data directory.
        dir: std::path::PathBuf,
        /// The store's error.
        source: metricsd_tsdb::Error,
    },
    /// The HTTP server failed.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    /// The final flush failed.
    #[error("flushing the store at shutdown failed: {0}")]
    Flush(metricsd_tsdb::Error),
}

/// Accepts HTTP/1 connections until `shutdown` resolves, then stops accepting and waits for
/// the connections' in-flight requests. Our own loop rather than `axum::serve`, which sets
/// no timer on hyper and so cannot apply a header read timeout: without one a client that
/// trickles header bytes (slowloris) holds a connection and its memory forever.
/// Open connections per client address. An entry exists only while its address has a
/// connection open, so the table is bounded by `max_connections`.
#[derive(Default)]
struct PerClient(parking_lot::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One open connection of a client; gives its place back when dropped.
struct ClientConn(Arc<PerClient>, std::net::IpAddr);

impl PerClient {
    /// Takes a place for a connection from `ip`, unless it has `max` open already.
    fn admit(self: &Arc<Self>, ip: std::net::IpAddr, max: usize) -> Option<ClientConn> {
        let mut m = self.0.lock();
        let n = m.entry(ip).or_insert(0);
        if max > 0 && *n >= max {
            if *n == 0 {
                m.remove(&ip);
            }
            return None;
        }
        *n += 1;
        Some(ClientConn(self.clone(), ip))
    }
}

impl Drop for ClientConn {
    fn drop(&mut self) {
        let mut m = self.0.0.lock();
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

async fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_read_timeout: Duration,
    (max_connections, max_per_client): (usize, usize),
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    // Each connection holds a permit; at the cap, accepting waits for one to close and new
    // clients wait in the kernel's backlog (as Prometheus' --web.max-connections).
    let conns = Arc::new(tokio::sync::Semaphore::new(max_connections));
    // And no client address holds more than its share: a client over it is closed at once.
    let clients = Arc::new(PerClient::default());
    loop {
        let permit = tokio::select! {
            p = conns.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (io, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(client) = clients.admit(peer.ip(), max_per_client) else {
            tracing::info!(client = %peer.ip(), max_connections_per_client = max_per_client, "connection refused: the client has its share open");
            drop(io);
            continue;
        };
        let svc = hyper_util::service::TowerToHyperService::new(
            app.clone()
                .map_request(|r: axum::http::Request<hyper::body::Incoming>| r.map(axum::body::Body::new)),
        );
        let conn = graceful.watch(http.serve_connection(TokioIo::new(io), svc));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop((permit, client));
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Opens the store, serves on `listener` until `shutdown` resolves, finishes in-flight
/// requests, stops maintenance and flushes every tenant's WAL.
pub async fn serve(
    cfg: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let dir = cfg.data_dir.clone();
    let (storage, reports) = {
        let d = dir.clone();
        let opts = cfg.db_options();
        let sopts = cfg.storage_options();
        tokio::task::spawn_blocking(move || metricsd_tsdb::Storage::open_with(&d, opts, sopts))
            .await
            .map_err(|e| ServeError::Io(std::io::Error::other(e)))?
            .map_err(|source| ServeError::Store {
                dir: dir.clone(),
                source,
            })?
    };
    for (tenant, rep) in &reports {
        tracing::info!(tenant = %tenant, report = ?rep, "tenant opened");
    }
    let storage = Arc::new(storage);
    let mut maintenance = storage.start_maintenance(Duration::from_secs(cfg.compaction_interval_seconds));
    let metrics = Arc::new(selfmetrics::SelfMetrics::default());
    let collector = collector::Collector::new(
        storage.clone(),
        collector::CollectorOptions {
            limits: cfg.limits(),
            max_series: cfg.max_metric_series,
            naming: cfg.naming_policy,
            summary_window_ms: cfg.summary_window_seconds as i64 * 1000,
            summary_max: cfg.summary_max_observations,
            meta_dir: dir.join("server").join("metadata"),
            idle_timeout_ms: (cfg.series_idle_timeout_seconds as i64).saturating_mul(1000),
        },
        metrics.clone(),
    );
    let state = Arc::new(AppState {
        cfg: cfg.clone(),
        storage: storage.clone(),
        collector,
        metrics,
        started: Instant::now(),
        rw_key_seed: std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u64),
        rw_meta: rwmeta::RemoteMetadata::default(),
    });
    // The collector's eviction pass, a few times per idle timeout (1 s to 1 min apart).
    let eviction = {
        let state = state.clone();
        let every = Duration::from_secs((cfg.series_idle_timeout_seconds / 4).clamp(1, 60));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let st = state.clone();
                let n = tokio::task::spawn_blocking(move || {
                    // remote_write metadata goes with its tenant when the store closes it.
                    let open: std::collections::HashSet<String> = st
                        .storage
                        .open_tenants()
                        .iter()
                        .map(|db| db.tenant().to_owned())
                        .collect();
                    st.rw_meta.retain(|t| open.contains(t));
                    st.collector.evict_idle(crate::time::now_ms())
                })
                .await
                .unwrap_or(0);
                if n > 0 {
                    tracing::debug!(evicted = n, "idle series evicted from the collector");
                }
            }
        })
    };
    for var in &cfg.unknown_env_vars {
        tracing::warn!(variable = %var, "environment variable names no setting; see docs/configuration.md");
    }
    for setting in &cfg.inert {
        tracing::warn!(setting = %setting, "accepted for seed 000's configuration; it has no effect in metricsd");
    }
    let addr = listener.local_addr()?;
    tracing::info!(addr = %addr, data_dir = %dir.display(), endpoint = %cfg.metrics_endpoint, "listening");
    serve_http(
        listener,
        router(state),
        Duration::from_secs(cfg.header_read_timeout_seconds),
        (cfg.max_connections, cfg.max_connections_per_client),
        shutdown,
    )
    .await;
    eviction.abort();
    tracing::info!("shutting down: flushing the store");
    maintenance.stop();
    let s2 = storage.clone();
    tokio::task::spawn_blocking(move || s2.sync_all())
        .await
        .map_err(|e| ServeError::Io(std::io::Error::other(e)))?
        .map_err(ServeError::Flush)?;
    tracing::info!("stopped");
    Ok(())
}
