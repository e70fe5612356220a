//! metricsd-bench: benchmark harness for metricsd.
//!
//! - [`datagen`]: a deterministic, streaming generator of node_exporter-like data sets.
//! - [`openmetrics`]: writes a data set as an OpenMetrics text file that
//!   `promtool tsdb create-blocks-from openmetrics` accepts.
//! - [`rwload`]: pre-encoded Prometheus remote_write requests from a data set, and a
//!   keep-alive HTTP sender (used by the `loadgen` and `ingest_compare` binaries).
//!
//! The `storage_compare` binary uses both to compare metricsd's bytes per sample with
//! Prometheus' (see `docs/benchmarks.md`).
#![warn(missing_docs)]

pub mod datagen;
pub mod openmetrics;
pub mod rwload;
