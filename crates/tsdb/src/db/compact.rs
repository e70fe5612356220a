//! Cutting the head into blocks, merging blocks, retention, backfill.

use std::collections::BTreeSet;
use std::fs;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use metricsd_model::{Labels, Sample};

use super::{Db, block_select, prio_by_creation};
use crate::block::{self, Block, CompactionMeta};
use crate::querier::{ChunkSeries, SeriesEntry, merge_entries};
use crate::{Error, Result};

/// What a compaction did.
#[derive(Debug, Default)]
pub struct CompactReport {
    /// Blocks written from the head (ULIDs).
    pub head_blocks: Vec<String>,
    /// Merges: the source blocks and the block that replaced them.
    pub merged: Vec<(Vec<String>, String)>,
    /// Blocks deleted by time retention.
    pub deleted_retention: Vec<String>,
    /// Blocks deleted by size retention.
    pub deleted_size: Vec<String>,
    /// Head series garbage-collected.
    pub series_removed: usize,
    /// The WAL segment a checkpoint was written through.
    pub wal_checkpoint: Option<u64>,
    /// Closed head chunks re-encoded with the block codec.
    pub head_chunks_recompressed: usize,
    /// `chunks_head` files removed after the head was truncated.
    pub head_chunk_files_removed: usize,
    /// Head bytes that re-encoding saved.
    pub head_bytes_saved: usize,
}

/// A head checkpoint is due when the WAL is at least this large (and three times the last
/// checkpoint): below it, replaying the WAL is quick and its disk small.
pub const HEAD_CHECKPOINT_MIN_BYTES: u64 = 16 << 20;

impl CompactReport {
    /// Whether the compaction changed anything.
    pub fn is_empty(&self) -> bool {
        self.head_blocks.is_empty()
            && self.merged.is_empty()
            && self.deleted_retention.is_empty()
            && self.deleted_size.is_empty()
    }
}

impl Db {
    /// Moves the head's closed chunks out of memory (re-encoded, into `chunks_head/`) if
    /// any were cut since the last pass and the pass is due ([`crate::storage::SETTLE_EVERY`]
    /// since the last, or [`crate::storage::SETTLE_SOON_CHUNKS`] waiting), then writes a
    /// head checkpoint if one is due; skipped while a compaction runs (it does the same).
    /// Cheap when there is nothing to do: the maintenance thread calls it every second.
    /// Returns the chunks moved.
    pub fn settle_head_chunks(&self) -> usize {
        let now = self.opts.clock.now_ms();
        let since = now.saturating_sub(self.last_settle_ms.load(Ordering::Relaxed));
        let waiting = self.head.unsettled.load(Ordering::Relaxed);
        if waiting < crate::storage::SETTLE_SOON_CHUNKS
            && since < crate::storage::SETTLE_EVERY.as_millis() as i64
        {
            return 0;
        }
        let Some(_c) = self.compact_lock.try_lock() else {
            return 0;
        };
        self.last_settle_ms.store(now, Ordering::Relaxed);
        let moved = self.head.recompress(false).0;
        if self.head_checkpoint_due()
            && let Err(e) = self.checkpoint_head_locked()
        {
            tracing::error!(tenant = %self.tenant, error = %e, "head checkpoint failed; the WAL keeps every segment");
        }
        moved
    }

    /// Writes a head checkpoint now ([`Db::checkpoint_head_locked`]); returns its figures.
    ///
    /// # Errors
    /// I/O errors writing the checkpoint or fsyncing the chunk files; then nothing is
    /// deleted.
    pub fn checkpoint_head(&self) -> Result<crate::wal::CheckpointStats> {
        let _c = self.compact_lock.lock();
        self.checkpoint_head_locked()
    }

    /// Whether a head checkpoint now would pay: the WAL is at least
    /// [`HEAD_CHECKPOINT_MIN_BYTES`] and three times what the checkpoint would write, so
    /// that writing checkpoints costs at most half of what the WAL itself writes.
    ///
    /// What it would write is estimated from the head as it is now
    /// ([`crate::head::Head::checkpoint_estimate`]), not taken from the last checkpoint: one
    /// written during a backfill holds the many samples of the chunks still open then, and
    /// waiting for three times that left a WAL of every sample of the backfill on disk long
    /// after those samples had moved to chunk files (issue 12: 91 MB where a checkpoint of
    /// 20 MB would have done). After a failed checkpoint the WAL must grow to three times
    /// its size at the failure first, so a failing disk is not hammered.
    fn head_checkpoint_due(&self) -> bool {
        if self.head.chunk_file_stats().0 == 0 {
            return false;
        }
        let wal = self.wal.size_bytes().unwrap_or(0);
        let failed_at = self.checkpoint_failed_at.load(Ordering::Relaxed);
        // Cheap checks first; the estimate visits every series.
        if wal < HEAD_CHECKPOINT_MIN_BYTES || wal < failed_at.saturating_mul(3) {
            return false;
        }
        wal >= self.head.checkpoint_estimate().saturating_mul(3)
    }

    /// A **head checkpoint**: the WAL up to a segment cut now is replaced by a snapshot of
    /// the head ([`crate::head::Head::snapshot`]) that names the closed chunks already in
    /// `chunks_head/` files instead of repeating their samples, so the disk holds those
    /// samples once, compressed with the block codec, and replay does not decode them.
    ///
    /// Order, for crash safety: newly closed chunks are moved to the chunk files; the
    /// segment is cut under the append gate (every record before the cut has been applied
    /// to the head); the snapshot is written to the checkpoint's tmp directory; the chunk
    /// files are fsynced (everything the snapshot names was written before); then the
    /// checkpoint is published and the segments it replaces are deleted. A crash before
    /// publication leaves the old checkpoint and every segment; after it, the new
    /// checkpoint and possibly some covered segments (removed at open). Callers hold the
    /// compaction lock (chunk files are only removed under it, after a checkpoint that no
    /// longer names them).
    ///
    /// After publication the chunk files that neither the new checkpoint nor the head names
    /// are deleted. On failure the next attempt waits until the WAL has grown threefold
    /// (a failing disk is not hammered with a snapshot and a new segment every few seconds).
    fn checkpoint_head_locked(&self) -> Result<crate::wal::CheckpointStats> {
        let res = self.try_checkpoint_head();
        // The WAL's size at a failure (see `head_checkpoint_due`); 0 after a success.
        let failed_at = match &res {
            Ok(_) => 0,
            Err(_) => self.wal.size_bytes().unwrap_or(0),
        };
        self.checkpoint_failed_at.store(failed_at, Ordering::Relaxed);
        res
    }

    fn try_checkpoint_head(&self) -> Result<crate::wal::CheckpointStats> {
        self.head.recompress(false);
        let next = {
            let _g = self.gate.write();
            self.wal.cut_segment()?
        };
        let head = &self.head;
        let mut named = std::collections::HashSet::new();
        let stats = self.wal.snapshot(next.saturating_sub(1), |emit| {
            named = head.snapshot(emit)?;
            head.sync_chunk_files()
        })?;
        head.retain_chunk_files(&named);
        Ok(stats)
    }

    /// Runs every due maintenance step: cuts the head while it spans more than 1.5 block
    /// ranges, merges overlapping blocks and full ranges of smaller blocks, rewrites blocks
    /// with tombstones, applies time and size retention. Call it periodically (the
    /// [`crate::Storage`] background thread does, every minute by default).
    pub fn compact(&self) -> Result<CompactReport> {
        let _c = self.compact_lock.lock();
        let mut rep = CompactReport::default();
        let range = self.opts.block_range_ms;
        // Bounded: each cut moves the head's min time past a block boundary.
        for _ in 0..10_000 {
            let (Some(min), Some(max)) = (self.head.min_time(), self.head.max_time()) else {
                break;
            };
            // The head's span ends at its newest sample but never after the clock, so the
            // cut (and `min_valid`, which moves with it) stays at least half a block range
            // behind now: a sample stamped in the future stays in the head until its time
            // comes, and cannot make the present too old.
            let max = max.min(self.opts.clock.now_ms());
            if max.saturating_sub(min) <= range / 2 * 3 {
                break;
            }
            let end = min.div_euclid(range).saturating_add(1).saturating_mul(range);
            self.cut_head(end, &mut rep)?;
        }
        let (n, before, after) = self.head.recompress(true);
        rep.head_chunks_recompressed = n;
        rep.head_bytes_saved = before.saturating_sub(after);
        self.compact_blocks(&mut rep)?;
        self.apply_retention(&mut rep)?;
        if !rep.is_empty() {
            self.counters.compactions.fetch_add(1, Ordering::Relaxed);
            tracing::info!(tenant = %self.tenant, report = ?rep, "compaction");
        }
        Ok(rep)
    }

    /// Persists everything in the head before `end` (aligned down to the block range),
    /// out-of-order data included, even if the head does not span 1.5 ranges yet: the
    /// `flush` admin operation, and tests. `end` is capped at the clock: the head's
    /// `min_valid` moves to the cut, and the future must stay writable.
    pub fn flush_head_before(&self, end: i64) -> Result<CompactReport> {
        // Aligned down, so no head chunk spans the cut.
        let range = self.opts.block_range_ms;
        let end = end.min(self.opts.clock.now_ms());
        let end = end.div_euclid(range).saturating_mul(range);
        let _c = self.compact_lock.lock();
        let mut rep = CompactReport::default();
        self.cut_head(end, &mut rep)?;
        Ok(rep)
    }

    /// Writes head data before `end` as blocks (one per block range it touches), then
    /// truncates the head, collects empty series and checkpoints the WAL.
    fn cut_head(&self, end: i64, rep: &mut CompactReport) -> Result<()> {
        let entries = {
            let _g = self.gate.write();
            self.head.set_min_valid(end);
            self.head.snapshot_range(i64::MIN, end.saturating_sub(1))
        };
        let range = self.opts.block_range_ms;
        let mut windows = BTreeSet::new();
        for e in &entries {
            for c in &e.chunks {
                let (lo, hi) = (
                    c.mint.div_euclid(range),
                    c.maxt.min(end.saturating_sub(1)).div_euclid(range),
                );
                windows.extend(lo..=hi);
            }
        }
        for w in windows {
            let (wmin, wmax) = window(w, range);
            if let Some(b) = self.write_entries(&entries, wmin, wmax, level1())? {
                rep.head_blocks.push(b.meta().ulid.clone());
                self.set_blocks(|v| v.push(b));
            }
        }
        self.head.truncate(end);
        {
            let _g = self.gate.write();
            rep.series_removed += self.head.gc();
        }
        // The checkpoint no longer names the truncated chunks: only then may their files go.
        // Without it the compaction goes on (the blocks are written; the WAL and the old
        // checkpoint still hold everything, replay merges the overlap), keeping the files.
        match self.checkpoint_head_locked() {
            Ok(stats) => {
                rep.wal_checkpoint = Some(stats.index);
                rep.head_chunk_files_removed += self.head.remove_chunk_files_before(end);
            }
            Err(e) => {
                tracing::error!(tenant = %self.tenant, error = %e, "head checkpoint after the head cut failed; the WAL keeps every segment");
            }
        }
        Ok(())
    }

    /// Writes the samples of `entries` in `[wmin, wmax)` as a block; `None` if there are none.
    fn write_entries(
        &self,
        entries: &[SeriesEntry],
        wmin: i64,
        wmax: i64,
        compaction: CompactionMeta,
    ) -> Result<Option<Arc<Block>>> {
        let mut failed: Option<Error> = None;
        let series = entries.iter().filter_map(|e| {
            if !e.chunks.iter().any(|c| c.maxt >= wmin && c.mint < wmax) {
                return None;
            }
            let (samples, err) = ChunkSeries::new(e.chunks.clone(), wmin, wmax - 1).read_all();
            if let Some(err) = err {
                tracing::error!(series = %e.labels, error = %err, "dropping unreadable chunk while compacting");
                failed.get_or_insert(Error::InvalidChunk(err.to_string()));
            }
            (!samples.is_empty()).then(|| (e.labels.clone(), samples))
        });
        let meta = block::write_block(&self.dir, wmin, wmax, series, compaction)?;
        let path = self.dir.join(&meta.ulid);
        if meta.stats.num_series == 0 {
            remove_block_dir(&path);
            return Ok(None);
        }
        let b = Block::open(&path)?;
        Ok(Some(Arc::new(b)))
    }

    fn compact_blocks(&self, rep: &mut CompactReport) -> Result<()> {
        // Bounded: each merge reduces the number of blocks by at least one, each rewrite
        // clears a block's tombstones.
        for _ in 0..10_000 {
            let blocks = self.blocks();
            if let Some(group) = overlapping_group(&blocks) {
                self.merge(&group, rep)?;
                continue;
            }
            if let Some(group) = self.leveled_group(&blocks) {
                self.merge(&group, rep)?;
                continue;
            }
            if let Some(b) = blocks.iter().find(|b| !b.tombstones().is_empty()) {
                self.merge(std::slice::from_ref(b), rep)?;
                continue;
            }
            break;
        }
        Ok(())
    }

    /// The first aligned window of a larger compaction range that holds two or more blocks
    /// and lies entirely before the head's in-order data.
    fn leveled_group(&self, blocks: &[Arc<Block>]) -> Option<Vec<Arc<Block>>> {
        let min_valid = self.head.min_valid_time();
        for &r in self.opts.compaction_ranges().iter().skip(1) {
            let mut i = 0;
            while let Some(b) = blocks.get(i) {
                let w = b.meta().min_time.div_euclid(r);
                let (wmin, wmax) = window(w, r);
                let group: Vec<Arc<Block>> = blocks
                    .iter()
                    .filter(|b| b.meta().min_time >= wmin && b.meta().max_time <= wmax)
                    .cloned()
                    .collect();
                let skip = blocks
                    .iter()
                    .filter(|b| b.meta().min_time.div_euclid(r) == w)
                    .count()
                    .max(1);
                if group.len() >= 2 && wmax <= min_valid {
                    return Some(group);
                }
                i += skip;
            }
        }
        None
    }

    /// Merges `group` into one block (deduplicating overlapping samples, dropping deleted
    /// ones), swaps it in and deletes the sources.
    fn merge(&self, group: &[Arc<Block>], rep: &mut CompactReport) -> Result<()> {
        let mut lists = Vec::with_capacity(group.len());
        for (b, prio) in group.iter().zip(prio_by_creation(group)) {
            lists.push(block_select(b, prio, None, i64::MIN, i64::MAX)?);
        }
        let entries = merge_entries(lists);
        let mint = group.iter().map(|b| b.meta().min_time).min().unwrap_or(0);
        let maxt = group.iter().map(|b| b.meta().max_time).max().unwrap_or(0);
        let mut sources: Vec<String> = group
            .iter()
            .flat_map(|b| b.meta().compaction.sources.clone())
            .collect();
        sources.sort();
        sources.dedup();
        let compaction = CompactionMeta {
            level: group.iter().map(|b| b.meta().compaction.level).max().unwrap_or(1) + 1,
            sources,
            parents: group.iter().map(|b| b.meta().ulid.clone()).collect(),
        };
        let new = self.write_entries(&entries, mint, maxt, compaction)?;
        let old: Vec<String> = group.iter().map(|b| b.meta().ulid.clone()).collect();
        self.set_blocks(|v| {
            v.retain(|b| !old.contains(&b.meta().ulid));
            if let Some(n) = &new {
                v.push(n.clone());
            }
        });
        for b in group {
            remove_block_dir(b.dir());
        }
        rep.merged
            .push((old, new.map(|n| n.meta().ulid.clone()).unwrap_or_default()));
        Ok(())
    }

    fn apply_retention(&self, rep: &mut CompactReport) -> Result<()> {
        let blocks = self.blocks();
        let newest = blocks
            .iter()
            .map(|b| b.meta().max_time.saturating_sub(1))
            .chain(self.head.max_time())
            .max()
            .unwrap_or(i64::MIN);
        let mut doomed: Vec<Arc<Block>> = Vec::new();
        if self.opts.retention_ms > 0 {
            // Measured from the newest sample (so historical data keeps its retention
            // relative to itself), but never from later than the clock: no sample, however
            // far in the future, makes data younger than the retention by the clock go.
            let newest = newest.min(self.opts.clock.now_ms());
            let cutoff = newest.saturating_sub(self.opts.retention_ms);
            for b in blocks.iter().filter(|b| b.meta().max_time <= cutoff) {
                rep.deleted_retention.push(b.meta().ulid.clone());
                doomed.push(b.clone());
            }
        }
        if self.opts.max_bytes > 0 {
            let mut total: u64 = self.wal.size_bytes().unwrap_or(0)
                + blocks
                    .iter()
                    .filter(|b| !doomed.iter().any(|d| Arc::ptr_eq(d, b)))
                    .map(|b| b.size_bytes())
                    .sum::<u64>();
            for b in blocks.iter() {
                if total <= self.opts.max_bytes {
                    break;
                }
                if doomed.iter().any(|d| Arc::ptr_eq(d, b)) {
                    continue;
                }
                total = total.saturating_sub(b.size_bytes());
                rep.deleted_size.push(b.meta().ulid.clone());
                doomed.push(b.clone());
            }
        }
        if doomed.is_empty() {
            return Ok(());
        }
        self.set_blocks(|v| v.retain(|b| !doomed.iter().any(|d| Arc::ptr_eq(d, b))));
        self.counters
            .blocks_deleted_retention
            .fetch_add(doomed.len() as u64, Ordering::Relaxed);
        for b in &doomed {
            remove_block_dir(b.dir());
        }
        Ok(())
    }

    /// Backfill: writes `series` (any time range) directly as blocks, one per block range,
    /// bypassing the head and the WAL. Blocks that overlap existing data are merged by the
    /// next compaction; on equal timestamps, existing data wins over imported data only if
    /// it was compacted later (the newer block wins). Returns the blocks written.
    ///
    /// # Errors
    /// A sample outside `[MIN_TIMESTAMP, now + max_future_ms]` ([`Error::OutOfBounds`],
    /// [`Error::TooFarInFuture`]) or invalid labels reject the whole import.
    pub fn import(&self, mut series: Vec<(Labels, Vec<Sample>)>) -> Result<Vec<String>> {
        let now = self.opts.clock.now_ms();
        let max_t = now.saturating_add(self.opts.max_future_ms.max(0));
        for (l, s) in &mut series {
            metricsd_model::validate_labels(l, &self.opts.limits)?;
            if let Some(x) = s.iter().find(|x| x.t > max_t) {
                return Err(Error::TooFarInFuture {
                    series: l.to_string(),
                    t: x.t,
                    now,
                    max_future_ms: self.opts.max_future_ms,
                });
            }
            if let Some(x) = s.iter().find(|x| x.t < crate::MIN_TIMESTAMP) {
                return Err(Error::OutOfBounds {
                    series: l.to_string(),
                    t: x.t,
                    min_valid: crate::MIN_TIMESTAMP,
                });
            }
            s.sort_by_key(|x| x.t);
            s.dedup_by_key(|x| x.t);
        }
        series.sort_by(|a, b| a.0.cmp(&b.0));
        series.dedup_by(|b, a| {
            if a.0 == b.0 {
                a.1.append(&mut b.1);
                a.1.sort_by_key(|x| x.t);
                a.1.dedup_by_key(|x| x.t);
                true
            } else {
                false
            }
        });
        let range = self.opts.block_range_ms;
        let mut windows = BTreeSet::new();
        for (_, s) in &series {
            for x in s {
                windows.insert(x.t.div_euclid(range));
            }
        }
        let _c = self.compact_lock.lock();
        let mut out = Vec::new();
        for w in windows {
            let (wmin, wmax) = window(w, range);
            let it = series.iter().filter_map(|(l, s)| {
                let lo = s.partition_point(|x| x.t < wmin);
                let hi = s.partition_point(|x| x.t < wmax);
                s.get(lo..hi)
                    .filter(|part| !part.is_empty())
                    .map(|part| (l.clone(), part.to_vec()))
            });
            let meta = block::write_block(&self.dir, wmin, wmax, it, level1())?;
            let b = Arc::new(Block::open(&self.dir.join(&meta.ulid))?);
            out.push(meta.ulid.clone());
            self.set_blocks(|v| v.push(b));
        }
        Ok(out)
    }
}

/// `[w * range, (w + 1) * range)`, saturating at the ends of `i64`.
fn window(w: i64, range: i64) -> (i64, i64) {
    (w.saturating_mul(range), w.saturating_add(1).saturating_mul(range))
}

/// The first set of blocks whose time ranges overlap (transitively), if any.
fn overlapping_group(blocks: &[Arc<Block>]) -> Option<Vec<Arc<Block>>> {
    // `blocks` is sorted by min time.
    let mut rest = blocks;
    while let Some((first, tail)) = rest.split_first() {
        let mut end = first.meta().max_time;
        let n = 1 + tail
            .iter()
            .take_while(|b| {
                let overlaps = b.meta().min_time < end;
                if overlaps {
                    end = end.max(b.meta().max_time);
                }
                overlaps
            })
            .count();
        let (group, after) = rest.split_at_checked(n).unwrap_or((rest, &[]));
        if group.len() >= 2 {
            return Some(group.to_vec());
        }
        rest = after;
    }
    None
}

/// Deletes a block directory: renamed first so that a crash never leaves a half-deleted
/// block that looks like a corrupt one.
fn remove_block_dir(path: &std::path::Path) {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let doomed = path.with_file_name(format!("{name}.deleted.tmp"));
    let target = if fs::rename(path, &doomed).is_ok() {
        doomed
    } else {
        path.to_owned()
    };
    if let Err(e) = fs::remove_dir_all(&target) {
        tracing::warn!(dir = %target.display(), error = %e, "could not delete block directory");
    }
}

/// Compaction metadata of a block written from the head or imported.
fn level1() -> CompactionMeta {
    CompactionMeta {
        level: 1,
        ..CompactionMeta::default()
    }
}
