//! metricsd-tsdb: metricsd's embedded, durable, compressed time-series store.
//!
//! A [`Storage`] holds one [`Db`] per tenant under `<root>/tenants/<id>/`. A `Db` is:
//! - a [`head::Head`]: every active series in memory, its samples compressed into
//!   Prometheus-compatible XOR chunks as they arrive ([`chunkenc`]), an inverted index of its
//!   labels ([`index`]), and an out-of-order buffer;
//! - a write-ahead log ([`wal`]): every accepted batch is in it before it is acknowledged;
//!   replayed on open, checkpointed when the head is cut, torn tails truncated not fatal;
//! - persisted blocks ([`block`]): immutable 2h (then compacted 6h, 18h, ...) directories
//!   with a chunks file, an index and `meta.json` (the index read into memory, chunks read
//!   with `pread`, so a file truncated underneath is a corruption warning, not a SIGBUS),
//!   re-encoded with a columnar codec that is about half the size of Prometheus' blocks;
//! - compaction, retention by time and size, deletion with tombstones, and backfill.
//!
//! Reads go through [`Queryable`] → [`Querier`] → [`Series`], which iterates samples lazily
//! across head, out-of-order data and blocks, merged and deduplicated.
//!
//! # Layout
//! - `chunkenc`: chunk codecs (XOR, columnar), no I/O
//! - `wal`, `wal/record`: the write-ahead log and its records
//! - `block`, `block/index`, `block/chunks`, `block/meta`: persisted blocks
//! - `head`, `head/append`, `head/read`, `head/postings`, `head/symbols`: the in-memory head
//! - `index`: the label index trait and matcher evaluation shared by head and blocks
//! - `querier`: the read API and sample merging
//! - `db`, `db/appender`, `db/open`, `db/compact`: one tenant's store
//! - `storage`: tenants and the maintenance thread
//! - `clock`: the wall clock every time window is measured from
//! - `tombstones`: deletion intervals
//! - `encoding`: varints shared by the on-disk formats
//!
//! The on-disk formats are described in `docs/format/` and `docs/architecture.md`.
//!
//! # Example
//! ```
//! use metricsd_model::{Labels, Matcher};
//! use metricsd_tsdb::{Db, DbOptions, Queryable};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let (db, _report) = Db::open(dir.path(), "default", DbOptions::default()).unwrap();
//! let mut app = db.appender();
//! let series = Labels::from_pairs([("__name__", "up"), ("job", "node")]);
//! app.append(series.clone(), 1_000, 1.0);
//! app.append(series, 16_000, 1.0);
//! let report = app.commit().unwrap();
//! assert_eq!(report.accepted, 2);
//!
//! let q = db.querier(0, 60_000).unwrap();
//! let found = q.select(&[Matcher::equal("job", "node")]).unwrap();
//! assert_eq!(found[0].samples().unwrap().len(), 2);
//! ```
#![warn(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
#![warn(missing_docs)]

mod encoding;
mod error;

pub mod block;
pub mod chunkenc;
pub mod clock;
pub mod db;
pub mod head;
pub mod index;
pub mod querier;
pub mod storage;
pub mod tombstones;
pub mod wal;

pub use clock::{Clock, MIN_TIMESTAMP};
pub use db::{Appender, CommitReport, CompactReport, Db, DbOptions, Gauges, OpenReport, Stats};
pub use error::{Error, Result, Status};
pub use head::{KeyedSeries, SeriesRef};
pub use metricsd_storage::{Querier, Queryable, SampleIterator, Series};
pub use storage::{DEFAULT_TENANT, Maintenance, Storage, StorageOptions, is_valid_tenant};
pub use wal::{FsyncPolicy, FsyncScheduler, WalOptions};
