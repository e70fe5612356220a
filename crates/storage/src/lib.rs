//! The storage seam: what the PromQL engine, the rules engine and importers need from a
//! store, and nothing else (Prometheus' `storage` package, beside its `tsdb`).
//!
//! - Reading: [`Queryable`] opens a [`Querier`] over a time range; [`Querier::select`]
//!   returns [`Series`], whose samples a [`SeriesData`] produces lazily.
//! - Writing: [`Appendable`] hands out an [`Appender`] that commits a batch.
//! - [`mem::MemStore`]: both, over a map in memory, for the engine's unit tests and small
//!   embedders.
//!
//! `metricsd-tsdb` implements both for its `Db`. A crate that serves data to the engine
//! depends on this crate only.
//!
//! ```
//! use metricsd_model::{Labels, Matcher};
//! use metricsd_storage::{Appendable, Queryable, mem::MemStore};
//! let store = MemStore::new();
//! let mut app = store.appender();
//! app.append(&Labels::from_pairs([("__name__", "up"), ("job", "a")]), 1000, 1.0);
//! app.commit().unwrap();
//! let q = store.querier(0, 2000).unwrap();
//! let series = q.select(&[Matcher::equal("__name__", "up")]).unwrap();
//! assert_eq!(series[0].samples().unwrap().len(), 1);
//! ```

#![warn(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
pub mod mem;

use std::fmt;
use std::sync::Arc;

pub use metricsd_model::{Labels, Matcher, Sample};

/// What kind of failure an [`Error`] is, for callers that answer clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request was wrong (a range whose start is after its end, a bad label): 4xx.
    InvalidInput,
    /// A limit of the store was reached.
    LimitExceeded,
    /// The store failed (I/O, corruption): 5xx, logged.
    Internal,
}

/// A storage error: its kind and a message that names no file paths (it may reach clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Its message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// The result of storage operations.
pub type Result<T> = std::result::Result<T, Error>;

/// Something that can be queried over a time range: a tenant's store.
pub trait Queryable: Send + Sync {
    /// A querier over `[mint, maxt]` (inclusive, ms). It sees a consistent set of
    /// persisted data; data appended after this call may or may not be visible.
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier + '_>>;
}

/// Selects series and label metadata within the querier's time range.
pub trait Querier: Send + Sync {
    /// Series matching all `matchers` with at least one sample in range, sorted by labels.
    /// An empty matcher list selects nothing.
    fn select(&self, matchers: &[Matcher]) -> Result<Vec<Series>>;
    /// Label names of the series matching `matchers` (all series when empty), sorted.
    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<Arc<str>>>;
    /// Values of label `name` among series matching `matchers` (all when empty), sorted.
    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<Arc<str>>>;
    /// The range `[mint, maxt]` this querier reads.
    fn range(&self) -> (i64, i64);
}

/// Produces a selected series' samples in the querier's range.
pub trait SeriesData: Send + Sync {
    /// A lazy iterator over the samples, in time order, without duplicates.
    fn iter(&self) -> Box<dyn SampleIterator + '_>;
    /// How many stored pieces (chunks) the samples come from; a hint for cost estimates.
    fn num_chunks(&self) -> usize {
        1
    }
}

/// Iterates a series' samples. A piece that cannot be read is skipped and its error kept,
/// so one corrupt chunk costs its samples, not the query.
pub trait SampleIterator: Iterator<Item = Sample> {
    /// The first read error met so far, if any.
    fn err(&self) -> Option<Error>;

    /// Appends every remaining sample to `out`; returns the first read error, if any.
    /// Implementations copy whole decoded pieces instead of one call per sample.
    fn drain_into(&mut self, out: &mut Vec<Sample>) -> Option<Error> {
        for s in &mut *self {
            out.push(s);
        }
        self.err()
    }
}

/// A selected series: its labels and its samples, decoded when asked for. Cloning is cheap.
#[derive(Clone)]
pub struct Series {
    labels: Labels,
    data: Arc<dyn SeriesData>,
}

impl fmt::Debug for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Series")
            .field("labels", &self.labels)
            .field("chunks", &self.data.num_chunks())
            .finish()
    }
}

impl Series {
    /// A series of `labels` whose samples `data` produces.
    pub fn new(labels: Labels, data: Arc<dyn SeriesData>) -> Series {
        Series { labels, data }
    }

    /// The series' labels.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// Number of stored pieces the samples come from (before merging).
    pub fn num_chunks(&self) -> usize {
        self.data.num_chunks()
    }

    /// A lazy iterator over the samples in range.
    pub fn iter(&self) -> Box<dyn SampleIterator + '_> {
        self.data.iter()
    }

    /// All samples in range; fails on the first piece that cannot be read.
    pub fn samples(&self) -> Result<Vec<Sample>> {
        let mut out = Vec::new();
        match self.iter().drain_into(&mut out) {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// Something samples can be written to: a tenant's store.
pub trait Appendable: Send + Sync {
    /// A new batch.
    fn appender(&self) -> Box<dyn Appender + '_>;
}

/// A batch of samples, stored together by [`Appender::commit`].
pub trait Appender: Send {
    /// Adds a sample of the series `labels` to the batch.
    fn append(&mut self, labels: &Labels, t: i64, v: f64);
    /// Stores the batch. Samples the store refuses (too old, a conflicting duplicate, a
    /// limit) are reported per item; the rest are stored. `Err` means nothing was stored.
    fn commit(self: Box<Self>) -> Result<AppendReport>;
}

/// What a commit stored and refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendReport {
    /// Samples stored (duplicates of stored samples included).
    pub appended: usize,
    /// Refused samples: their index in the batch and why.
    pub rejected: Vec<(usize, String)>,
}
