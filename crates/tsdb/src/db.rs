//! One tenant's store: a head, its WAL and the persisted blocks, with compaction,
//! retention and deletion.
//!
//! # Invariants
//! - A sample is acknowledged ([`Appender::commit`] returns) only after the WAL holds it
//!   (written to the OS; fsynced too under [`FsyncPolicy::Always`]).
//! - Every record in a WAL segment older than the segment cut at the start of a head
//!   compaction was applied to the head before the cut (the *append gate*: commits hold it
//!   shared from WAL write to head apply, the cut holds it exclusively).
//! - In-order samples are accepted only at or after `min_valid` (the end of the last cut
//!   block); older samples within the out-of-order window go to the out-of-order buffer and
//!   are written as (possibly overlapping) blocks at the next cut, which compaction merges.
//! - The block list is replaced atomically (copy-on-write `Arc<Vec<_>>`): a querier sees a
//!   fixed set of blocks; a deleted block's files stay readable through its open files until
//!   the last querier drops it.

mod appender;
mod compact;
mod open;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use metricsd_model::{Labels, Limits, Matcher};
use parking_lot::{Mutex, RwLock};

use crate::block::Block;
use crate::head::{Head, HeadOptions};
use crate::index::{IndexReader, label_names_matching, label_values_matching, postings_for_matchers};
use crate::querier::{
    ChunkData, ChunkReader, ChunkSeries, ChunkSource, Querier, Queryable, Series, SeriesEntry, merge_entries,
};
use crate::tombstones::Interval;
use crate::wal::{Record, RefTombstone, Wal, WalOptions};
use crate::{Error, Result};

pub use appender::{Appender, CommitReport};
pub use compact::CompactReport;
pub use open::OpenReport;

/// Options of a tenant's store.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Span of a head-cut block in ms (default 2h). Larger compacted blocks are multiples.
    pub block_range_ms: i64,
    /// Blocks entirely older than this before the newest data are deleted (default 15d;
    /// 0 keeps everything). The newest data counts only up to the clock: data stamped in
    /// the future cannot make the store delete data younger than this by the clock.
    pub retention_ms: i64,
    /// When blocks and WAL exceed this many bytes, the oldest blocks are deleted (0 = no limit).
    pub max_bytes: u64,
    /// Out-of-order window in ms (default 1h; 0 rejects out-of-order samples).
    pub ooo_window_ms: i64,
    /// Most series the tenant may have (0 = unlimited).
    pub max_series: usize,
    /// Label limits.
    pub limits: Limits,
    /// WAL segment size and fsync policy.
    pub wal: WalOptions,
    /// Samples per head chunk. Default [`crate::head::DEFAULT_CHUNK_MAX_SAMPLES`].
    pub chunk_max_samples: usize,
    /// Largest compacted block span in ms (default 31d, capped at a tenth of retention).
    pub max_block_range_ms: i64,
    /// Samples later than the clock plus this (ms) are rejected with
    /// [`Error::TooFarInFuture`] (default 10 minutes, as Mimir's `creation_grace_period`).
    pub max_future_ms: i64,
    /// The wall clock the future bound, the out-of-order window, the head cut and retention
    /// are measured from (the system clock; tests inject their own).
    pub clock: crate::Clock,
    /// The scheduler whose thread fsyncs the WAL under [`crate::FsyncPolicy::Interval`]
    /// (`None`: a thread of the store's own). [`crate::Storage`] shares one among tenants.
    pub fsync_scheduler: Option<crate::FsyncScheduler>,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            block_range_ms: 2 * 3600 * 1000,
            retention_ms: 15 * 24 * 3600 * 1000,
            max_bytes: 0,
            ooo_window_ms: 3600 * 1000,
            max_series: 0,
            limits: Limits::default(),
            wal: WalOptions::default(),
            chunk_max_samples: crate::head::DEFAULT_CHUNK_MAX_SAMPLES,
            max_block_range_ms: 31 * 24 * 3600 * 1000,
            max_future_ms: 10 * 60 * 1000,
            clock: crate::Clock::system(),
            fsync_scheduler: None,
        }
    }
}

impl DbOptions {
    /// The compaction ranges: the block range times 1, 3, 9, 27, ... up to the cap.
    pub fn compaction_ranges(&self) -> Vec<i64> {
        let mut cap = self.max_block_range_ms;
        if self.retention_ms > 0 {
            cap = cap.min(self.retention_ms / 10);
        }
        let mut v = vec![self.block_range_ms];
        let mut r = self.block_range_ms;
        while r.saturating_mul(3) <= cap {
            r *= 3;
            v.push(r);
        }
        v
    }
}

/// Counters of a store since it was opened.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub samples_rejected: AtomicU64,
    pub commits: AtomicU64,
    pub compactions: AtomicU64,
    pub blocks_deleted_retention: AtomicU64,
    pub wal_failures: AtomicU64,
}

/// A tenant's store. See the module docs for its invariants.
pub struct Db {
    dir: PathBuf,
    tenant: String,
    opts: DbOptions,
    head: Arc<Head>,
    wal: Wal,
    blocks: RwLock<Arc<Vec<Arc<Block>>>>,
    /// Commits hold it shared from WAL write to head apply; a head cut holds it exclusively.
    gate: RwLock<()>,
    /// One compaction (or deletion rewrite) at a time.
    compact_lock: Mutex<()>,
    counters: Counters,
    /// When the store was last handed out by [`crate::Storage`] (clock ms).
    last_used: std::sync::atomic::AtomicI64,
    /// The WAL's size when the last head checkpoint failed; 0 after a success (see
    /// `head_checkpoint_due`).
    checkpoint_failed_at: AtomicU64,
    /// When the last settle pass began (clock ms; see [`Db::settle_head_chunks`]).
    last_settle_ms: std::sync::atomic::AtomicI64,
    _lock: File,
}

/// Figures describing a store, for `/api/v1/status/tsdb` and `/metrics/stats`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    /// Series in the head.
    pub head_series: usize,
    /// Chunks in the head.
    pub head_chunks: usize,
    /// Samples appended since start.
    pub head_samples_appended: u64,
    /// Out-of-order samples appended since start.
    pub head_ooo_samples_appended: u64,
    /// Approximate bytes of memory the head holds.
    pub head_bytes: usize,
    /// Closed head chunks moved to `chunks_head/` files: (files, bytes on disk).
    pub head_chunk_files: (usize, u64),
    /// Oldest head sample (ms), if any.
    pub head_min_time: Option<i64>,
    /// Newest head sample (ms), if any.
    pub head_max_time: Option<i64>,
    /// Persisted blocks.
    pub blocks: usize,
    /// Samples in persisted blocks.
    pub block_samples: u64,
    /// Series summed over blocks (a series in two blocks counts twice).
    pub block_series: u64,
    /// Chunks in persisted blocks.
    pub block_chunks: u64,
    /// Bytes of persisted blocks on disk.
    pub block_bytes: u64,
    /// Bytes of the WAL on disk.
    pub wal_bytes: u64,
    /// Samples rejected since start.
    pub samples_rejected: u64,
    /// Compactions since start.
    pub compactions: u64,
    /// Top metric names by series count (head).
    pub top_metrics: Vec<(String, u64)>,
    /// Top label names by number of distinct values (head).
    pub top_label_names_by_values: Vec<(String, u64)>,
    /// Top label names by series count (head): memory used by label names.
    pub top_label_names_by_series: Vec<(String, u64)>,
    /// Top `name=value` pairs by series count (head).
    pub top_label_pairs: Vec<(String, u64)>,
}

/// A store's figures that are cheap to read (no cardinality lists): what the server exports
/// as `metricsd_tsdb_*` self-metrics.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Series in the head.
    pub head_series: usize,
    /// Chunks in the head (in memory and in `chunks_head/`).
    pub head_chunks: usize,
    /// Approximate bytes of memory the head holds.
    pub head_bytes: usize,
    /// Bytes of closed head chunks in `chunks_head/` files.
    pub head_chunk_file_bytes: u64,
    /// Samples appended since open (in order and out of order).
    pub head_samples_appended: u64,
    /// Out-of-order samples appended since open.
    pub head_ooo_samples_appended: u64,
    /// Series created since open.
    pub head_series_created: u64,
    /// Series removed (garbage-collected) since open.
    pub head_series_removed: u64,
    /// Samples rejected since open.
    pub samples_rejected: u64,
    /// Bytes of the WAL on disk.
    pub wal_bytes: u64,
    /// WAL fsyncs since open.
    pub wal_fsyncs: u64,
    /// Total duration of those fsyncs, seconds.
    pub wal_fsync_seconds: f64,
    /// Compactions that changed something, since open.
    pub compactions: u64,
    /// Persisted blocks.
    pub blocks: usize,
    /// Bytes of persisted blocks on disk.
    pub block_bytes: u64,
}

impl Db {
    /// Cheap figures for self-metrics: one pass over the head's series (for memory), no
    /// cardinality lists.
    pub fn gauges(&self) -> Gauges {
        let head = &self.head;
        let (head_chunks, head_bytes) = head.mem_stats();
        let (wal_fsyncs, wal_fsync_seconds) = self.wal.fsync_stats();
        let blocks = self.blocks();
        Gauges {
            head_series: head.num_series(),
            head_chunks,
            head_bytes,
            head_chunk_file_bytes: head.chunk_file_stats().1,
            head_samples_appended: head.samples_appended.load(Ordering::Relaxed),
            head_ooo_samples_appended: head.ooo_appended.load(Ordering::Relaxed),
            head_series_created: head.series_created.load(Ordering::Relaxed),
            head_series_removed: head.series_removed.load(Ordering::Relaxed),
            samples_rejected: self.counters.samples_rejected.load(Ordering::Relaxed),
            wal_bytes: self.wal.size_bytes().unwrap_or(0),
            wal_fsyncs,
            wal_fsync_seconds,
            compactions: self.counters.compactions.load(Ordering::Relaxed),
            blocks: blocks.len(),
            block_bytes: blocks.iter().map(|b| b.size_bytes()).sum(),
        }
    }

    /// The tenant this store belongs to.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Marks the store as used now (for closing idle tenants).
    pub(crate) fn touch(&self) {
        self.last_used.store(self.opts.clock.now_ms(), Ordering::Relaxed);
    }

    /// Milliseconds since the store was last marked as used.
    pub(crate) fn idle_ms(&self) -> i64 {
        self.opts
            .clock
            .now_ms()
            .saturating_sub(self.last_used.load(Ordering::Relaxed))
    }

    /// The store's options.
    pub fn options(&self) -> &DbOptions {
        &self.opts
    }

    /// The head.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// The persisted blocks, oldest first.
    pub fn blocks(&self) -> Arc<Vec<Arc<Block>>> {
        self.blocks.read().clone()
    }

    fn set_blocks(&self, f: impl FnOnce(&mut Vec<Arc<Block>>)) {
        let mut w = self.blocks.write();
        let mut v: Vec<Arc<Block>> = w.as_ref().clone();
        f(&mut v);
        v.sort_by_key(|b| (b.meta().min_time, b.meta().max_time));
        *w = Arc::new(v);
    }

    /// A new appender. Samples are validated and stored at [`Appender::commit`].
    pub fn appender(&self) -> Appender<'_> {
        Appender::new(self)
    }

    /// Whether the WAL accepts writes (false after a failed write until one succeeds).
    pub fn healthy(&self) -> bool {
        self.counters.wal_failures.load(Ordering::Relaxed) == 0
    }

    /// Deletes the samples of series matching `matchers` in `[mint, maxt]`. In the head the
    /// samples are removed at once (the deletion is logged to the WAL first, so replay
    /// repeats it at the same point); blocks get tombstones, which reads apply and
    /// compaction makes permanent. Samples written after the call are not affected.
    /// Returns how many series (head plus blocks) had samples deleted or tombstoned.
    pub fn delete(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<usize> {
        if matchers.is_empty() {
            return Err(Error::InvalidArgument("delete needs at least one matcher".into()));
        }
        if mint > maxt {
            return Err(Error::InvalidArgument(format!(
                "delete range start {mint} is after its end {maxt}"
            )));
        }
        let _c = self.compact_lock.lock();
        let mut affected = 0;
        {
            let _g = self.gate.read();
            let ids = postings_for_matchers(self.head.as_ref(), matchers)?;
            if !ids.is_empty() {
                // Logged first: replay deletes exactly the samples that preceded the delete.
                let recs: Vec<RefTombstone> = ids
                    .iter()
                    .map(|id| RefTombstone {
                        series_ref: id as u64,
                        mint,
                        maxt,
                    })
                    .collect();
                self.wal.log(&[Record::Tombstones(recs)])?;
                for id in &ids {
                    affected += usize::from(self.head.delete_range(id, mint, maxt));
                }
            }
        }
        let blocks = self.blocks();
        let mut replaced = Vec::new();
        for b in blocks.iter() {
            let m = b.meta();
            if m.max_time <= mint || m.min_time > maxt {
                continue;
            }
            let ids = postings_for_matchers(b.index(), matchers)?;
            if ids.is_empty() {
                continue;
            }
            affected += ids.len() as usize;
            let add: Vec<(u32, Interval)> = ids.iter().map(|id| (id, Interval { mint, maxt })).collect();
            let nb = b.with_tombstones(&add)?;
            replaced.push((b.meta().ulid.clone(), Arc::new(nb)));
        }
        if !replaced.is_empty() {
            self.set_blocks(|v| {
                for (ulid, nb) in replaced {
                    if let Some(slot) = v.iter_mut().find(|b| b.meta().ulid == ulid) {
                        *slot = nb;
                    }
                }
            });
        }
        Ok(affected)
    }

    /// Figures for status endpoints; `top` bounds each cardinality list.
    pub fn stats(&self, top: usize) -> Stats {
        let head = &self.head;
        let mut s = Stats {
            head_series: head.num_series(),
            head_samples_appended: head.samples_appended.load(Ordering::Relaxed),
            head_ooo_samples_appended: head.ooo_appended.load(Ordering::Relaxed),
            head_min_time: head.min_time(),
            head_max_time: head.max_time(),
            samples_rejected: self.counters.samples_rejected.load(Ordering::Relaxed),
            compactions: self.counters.compactions.load(Ordering::Relaxed),
            wal_bytes: self.wal.size_bytes().unwrap_or(0),
            ..Stats::default()
        };
        (s.head_chunks, s.head_bytes) = head.mem_stats();
        s.head_chunk_files = head.chunk_file_stats();
        let blocks = self.blocks();
        s.blocks = blocks.len();
        for b in blocks.iter() {
            let m = b.meta();
            s.block_samples += m.stats.num_samples;
            s.block_series += m.stats.num_series;
            s.block_chunks += m.stats.num_chunks;
            s.block_bytes += b.size_bytes();
        }
        let postings = head.postings.read();
        let mut by_values: Vec<(String, u64)> = Vec::new();
        let mut by_series: Vec<(String, u64)> = Vec::new();
        for (name, values, series) in postings.cardinalities() {
            by_values.push((name.to_string(), values as u64));
            by_series.push((name.to_string(), series));
        }
        let mut metrics: Vec<(String, u64)> = Vec::new();
        let mut pairs: Vec<(String, u64)> = Vec::new();
        for (n, v, count) in postings.pairs() {
            if &**n == metricsd_model::METRIC_NAME {
                metrics.push((v.to_string(), count));
            }
            pairs.push((format!("{n}={v}"), count));
        }
        drop(postings);
        let top_n = |mut v: Vec<(String, u64)>| {
            v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            v.truncate(top);
            v
        };
        s.top_metrics = top_n(metrics);
        s.top_label_names_by_values = top_n(by_values);
        s.top_label_names_by_series = top_n(by_series);
        s.top_label_pairs = top_n(pairs);
        s
    }

    /// Flushes and fsyncs the WAL. The store stays usable.
    pub fn sync(&self) -> Result<()> {
        self.wal.sync()
    }

    /// Flushes the WAL and stops its background thread.
    pub fn close(&self) -> Result<()> {
        self.wal.close()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Err(e) = self.wal.close() {
            tracing::error!(tenant = %self.tenant, error = %e, "closing the WAL failed");
        }
    }
}

impl ChunkReader for Block {
    fn read_chunk<'b>(
        &self,
        chunk_ref: u64,
        buf: &'b mut Vec<u8>,
    ) -> Result<(crate::chunkenc::Encoding, &'b [u8])> {
        self.chunk(chunk_ref, buf)
    }
}

/// Priorities of `blocks` on equal timestamps: the block written last (largest ULID, which
/// sorts by creation time) wins, so the newest write of a timestamp is the one kept.
pub(crate) fn prio_by_creation(blocks: &[Arc<Block>]) -> Vec<u8> {
    let mut order: Vec<(usize, &Arc<Block>)> = blocks.iter().enumerate().collect();
    order.sort_by(|(_, a), (_, b)| a.meta().ulid.cmp(&b.meta().ulid));
    let mut prio = vec![0u8; blocks.len()];
    for (rank, (i, _)) in order.into_iter().enumerate() {
        if let Some(p) = prio.get_mut(i) {
            *p = rank.min(150) as u8;
        }
    }
    prio
}

/// Series of `block` matching `matchers` with chunks in `[mint, maxt]`, in label order.
pub(crate) fn block_select(
    block: &Arc<Block>,
    prio: u8,
    matchers: Option<&[Matcher]>,
    mint: i64,
    maxt: i64,
) -> Result<Vec<SeriesEntry>> {
    let ix = block.index();
    let ids = match matchers {
        Some(m) => postings_for_matchers(ix, m)?,
        None => ix.all_postings()?,
    };
    let reader: Arc<dyn ChunkReader> = block.clone();
    let tomb = block.tombstones();
    let mut metas = Vec::new();
    let mut lbuf = Vec::new();
    let mut out = Vec::with_capacity(ids.len() as usize);
    for id in &ids {
        // One decode of the series record for labels and chunk metas.
        ix.series(id, Some(&mut lbuf), Some(&mut metas))?;
        let tombstones = tomb.get(&id).map(|t| Arc::new(t.clone()));
        let chunks: Vec<ChunkSource> = metas
            .iter()
            .filter(|c| c.maxt >= mint && c.mint <= maxt)
            .map(|c| ChunkSource {
                mint: c.mint,
                maxt: c.maxt,
                prio,
                data: ChunkData::Block {
                    reader: reader.clone(),
                    chunk_ref: c.chunk_ref,
                },
                tombstones: tombstones.clone(),
            })
            .collect();
        if chunks.is_empty() {
            continue;
        }
        out.push(SeriesEntry {
            labels: Labels::from_sorted(lbuf.clone()),
            chunks,
        });
    }
    Ok(out)
}

/// A querier over a fixed set of blocks and the head.
struct DbQuerier {
    head: Arc<Head>,
    blocks: Vec<(u8, Arc<Block>)>,
    mint: i64,
    maxt: i64,
}

impl DbQuerier {
    fn select(&self, matchers: &[Matcher]) -> Result<Vec<Series>> {
        if matchers.is_empty() {
            return Ok(Vec::new());
        }
        let mut lists = Vec::with_capacity(self.blocks.len() + 1);
        for (prio, b) in &self.blocks {
            lists.push(block_select(b, *prio, Some(matchers), self.mint, self.maxt)?);
        }
        lists.push(self.head.select(matchers, self.mint, self.maxt)?);
        Ok(merge_entries(lists)
            .into_iter()
            .map(|e| ChunkSeries::series(e, self.mint, self.maxt))
            .collect())
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<Arc<str>>> {
        let mut all = label_names_matching(self.head.as_ref(), matchers)?;
        for (_, b) in &self.blocks {
            all.extend(label_names_matching(b.index(), matchers)?);
        }
        all.sort();
        all.dedup();
        Ok(all)
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<Arc<str>>> {
        let mut all = label_values_matching(self.head.as_ref(), name, matchers)?;
        for (_, b) in &self.blocks {
            all.extend(label_values_matching(b.index(), name, matchers)?);
        }
        all.sort();
        all.dedup();
        Ok(all)
    }
}

impl Querier for DbQuerier {
    fn select(&self, matchers: &[Matcher]) -> metricsd_storage::Result<Vec<Series>> {
        DbQuerier::select(self, matchers).map_err(Into::into)
    }

    fn label_names(&self, matchers: &[Matcher]) -> metricsd_storage::Result<Vec<Arc<str>>> {
        DbQuerier::label_names(self, matchers).map_err(Into::into)
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> metricsd_storage::Result<Vec<Arc<str>>> {
        DbQuerier::label_values(self, name, matchers).map_err(Into::into)
    }

    fn range(&self) -> (i64, i64) {
        (self.mint, self.maxt)
    }
}

impl Queryable for Db {
    fn querier(&self, mint: i64, maxt: i64) -> metricsd_storage::Result<Box<dyn Querier + '_>> {
        self.db_querier(mint, maxt)
            .map(|q| Box::new(q) as Box<dyn Querier + '_>)
            .map_err(Into::into)
    }
}

impl Db {
    fn db_querier(&self, mint: i64, maxt: i64) -> Result<DbQuerier> {
        if mint > maxt {
            return Err(Error::InvalidArgument(format!(
                "query range start {mint} is after its end {maxt}"
            )));
        }
        let blocks: Vec<Arc<Block>> = self
            .blocks()
            .iter()
            .filter(|b| b.meta().max_time > mint && b.meta().min_time <= maxt)
            .cloned()
            .collect();
        let prio = prio_by_creation(&blocks);
        let blocks = prio.into_iter().zip(blocks).collect();
        Ok(DbQuerier {
            head: self.head.clone(),
            blocks,
            mint,
            maxt,
        })
    }
}

/// Options for the head derived from the store's.
fn head_options(opts: &DbOptions, tenant: &str) -> HeadOptions {
    HeadOptions {
        block_range_ms: opts.block_range_ms,
        chunk_max_samples: opts.chunk_max_samples,
        ooo_window_ms: opts.ooo_window_ms,
        max_series: opts.max_series,
        limits: opts.limits,
        tenant: tenant.to_owned(),
        clock: opts.clock.clone(),
    }
}

// The store is shared across request handlers and the maintenance thread.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Db>();
};
