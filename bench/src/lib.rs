//! metricsd-bench: benchmark harness for metricsd.
//!
//! - [`compat`]: PromQL conformance against Prometheus (data set, query set, comparator).
//! - [`datagen`]: the deterministic, streaming generator of node_exporter-like data sets (the
//!   `metricsd-datagen` crate, `crates/datagen`, re-exported).
//! - [`openmetrics`]: writes a data set as an OpenMetrics text file that
//!   `promtool tsdb create-blocks-from openmetrics` accepts.
//! - [`rwload`]: pre-encoded Prometheus remote_write requests from a data set, and a
//!   keep-alive HTTP sender (used by the `loadgen` and `ingest_compare` binaries).
//! - [`servers`]: starts Prometheus, VictoriaMetrics and metricsd on loopback ports and reads
//!   their CPU and memory from `/proc`.
//!
//! The `storage_compare` binary uses both to compare metricsd's bytes per sample with
//! Prometheus' (see `docs/benchmarks.md`).
#![warn(missing_docs)]

pub mod compat;
pub use metricsd_datagen as datagen;
pub mod openmetrics;
pub mod rwload;
pub mod servers;

/// An HTTP agent that returns non-2xx answers as responses (not errors), with a global
/// per-request timeout.
pub fn http_agent(timeout: std::time::Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}
