//! metricsd-tsdb: the embedded time-series store.
#![warn(missing_docs)]

pub mod block;
pub mod chunkenc;
mod error;
pub mod index;
pub mod tombstones;

pub use error::{Error, Result, Status};
