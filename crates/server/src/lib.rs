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
//! - [`track`]: pure decoding of track items, errors naming the field.
//! - [`collector`]: counters, histograms and summaries turned into samples, per tenant.
//! - [`exposition`]: Prometheus / OpenMetrics / JSON writers.
//! - [`trends`]: hourly buckets and the least-squares trend.
//! - [`selfmetrics`], [`logging`]: operating the service.
//!
//! # Example
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = metricsd_server::Config::default();
//! let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
//! metricsd_server::serve(cfg, listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod api;
pub mod collector;
pub mod config;
mod error;
pub mod exposition;
pub mod logging;
mod promapi;
pub mod selfmetrics;
pub mod track;
pub mod trends;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use api::{AppState, router};
pub use config::{Config, ConfigError, Overrides};
pub use error::ApiError;

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
        tokio::task::spawn_blocking(move || metricsd_tsdb::Storage::open(&d, opts))
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
    let mut maintenance = storage.start_maintenance(Duration::from_secs(60));
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
        },
        metrics.clone(),
    );
    let state = Arc::new(AppState {
        cfg: cfg.clone(),
        storage: storage.clone(),
        collector,
        metrics,
        started: Instant::now(),
    });
    let addr = listener.local_addr()?;
    tracing::info!(addr = %addr, data_dir = %dir.display(), endpoint = %cfg.metrics_endpoint, "listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
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
