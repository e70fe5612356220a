//! metricsd-tsdb: the embedded time-series store.
#![warn(missing_docs)]

pub mod chunkenc;
mod error;
pub mod index;
pub mod tombstones;
pub mod wal;

pub use error::{Error, Result, Status};
