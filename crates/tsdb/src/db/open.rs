//! Opening a store: lock the directory, load blocks (quarantining corrupt ones), repair and
//! replay the WAL into the head.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use parking_lot::{Mutex, RwLock};

use super::{Counters, Db, DbOptions, head_options};
use crate::block::{self, Block};
use crate::head::Head;
use crate::wal::{Record, RepairReport, Wal};
use crate::{Error, Result};

/// What opening a store found and did.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// What WAL repair truncated or removed.
    pub wal_repair: RepairReport,
    /// WAL records replayed.
    pub replayed_records: u64,
    /// Samples replayed into the head.
    pub replayed_samples: u64,
    /// Replayed samples the head rejected (already in a block, or a conflict).
    pub replay_rejected: u64,
    /// Replayed samples of series the WAL did not define.
    pub replay_unknown_series: u64,
    /// Closed head chunks a checkpoint handed back from `chunks_head/` files.
    pub replayed_chunks: u64,
    /// Head chunks a checkpoint named that were missing from `chunks_head/` (their
    /// samples are lost).
    pub lost_chunks: u64,
    /// `chunks_head/` files deleted because no checkpoint named them.
    pub chunk_files_removed: usize,
    /// Blocks that failed to open, moved aside as `<dir>.corrupt`, and why.
    pub corrupt_blocks: Vec<(PathBuf, String)>,
    /// Chunks found corrupt in blocks that otherwise opened: (block dir, chunk ref).
    pub corrupt_chunks: Vec<(PathBuf, u64)>,
    /// Blocks loaded.
    pub blocks: usize,
    /// Time taken to replay the WAL.
    pub replay_duration: Duration,
}

impl OpenReport {
    /// Whether anything was dropped or quarantined.
    pub fn lost_anything(&self) -> bool {
        !self.wal_repair.truncated.is_empty()
            || !self.wal_repair.removed_segments.is_empty()
            || !self.corrupt_blocks.is_empty()
            || !self.corrupt_chunks.is_empty()
            || self.lost_chunks > 0
    }
}

impl Db {
    /// Opens (creating) the store of `tenant` in `dir`. Corruption never prevents opening: a
    /// torn WAL tail is truncated, a block with a corrupt index or meta is moved aside, a
    /// corrupt chunk is skipped on read; all of it is logged and in the [`OpenReport`].
    /// Fails if another process holds the directory.
    pub fn open(dir: &Path, tenant: &str, opts: DbOptions) -> Result<(Db, OpenReport)> {
        if opts.block_range_ms <= 0 {
            return Err(Error::InvalidArgument(format!(
                "block range must be positive, got {} ms",
                opts.block_range_ms
            )));
        }
        fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        let lock_path = dir.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io("open", &lock_path, e))?;
        lock.try_lock()
            .map_err(|_| Error::Unavailable(format!("{} is locked by another process", dir.display())))?;

        let mut report = OpenReport::default();
        let blocks = load_blocks(dir, &mut report)?;
        report.blocks = blocks.len();

        let head = Arc::new(Head::new(head_options(&opts, tenant)).with_chunk_dir(&dir.join("chunks_head"))?);
        // In-order data before the end of the newest block is already persisted. Never
        // later than the clock: a block cut in the future by a version that let the head's
        // newest sample decide must not make the present too old. (Data written below such
        // a block's end overlaps it and is merged by the next compaction.)
        if let Some(max) = blocks
            .iter()
            .filter(|b| b.meta().compaction.level <= 1)
            .map(|b| b.meta().max_time)
            .max()
        {
            head.set_min_valid(max.min(opts.clock.now_ms()));
        }

        let (wal, repair) = Wal::open_with(&dir.join("wal"), opts.wal, opts.fsync_scheduler.as_ref())?;
        report.wal_repair = repair;
        let started = Instant::now();
        let named = replay(&wal, &head, opts.clock.now_ms(), &mut report)?;
        report.chunk_files_removed = head.retain_chunk_files(&named);
        report.replay_duration = started.elapsed();
        if report.lost_anything() {
            tracing::warn!(tenant, ?report, "store opened after dropping corrupt data");
        }
        tracing::info!(
            tenant,
            blocks = report.blocks,
            series = head.num_series(),
            samples = report.replayed_samples,
            chunks = report.replayed_chunks,
            replay_ms = report.replay_duration.as_millis() as u64,
            "store opened"
        );
        let db = Db {
            dir: dir.to_owned(),
            tenant: tenant.to_owned(),
            opts,
            head,
            wal,
            blocks: RwLock::new(Arc::new(blocks)),
            gate: RwLock::new(()),
            compact_lock: Mutex::new(()),
            counters: Counters::default(),
            last_used: std::sync::atomic::AtomicI64::new(i64::MIN),
            checkpoint_failed_at: std::sync::atomic::AtomicU64::new(0),
            last_settle_ms: std::sync::atomic::AtomicI64::new(i64::MIN),
            _lock: lock,
        };
        Ok((db, report))
    }
}

fn load_blocks(dir: &Path, report: &mut OpenReport) -> Result<Vec<Arc<Block>>> {
    block::cleanup_tmp(dir)?;
    let mut blocks = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| Error::io("read dir", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read dir", dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !path.is_dir() || !is_ulid(name) {
            continue;
        }
        match Block::open(&path) {
            Ok(b) => {
                for &c in b.corrupt_chunks() {
                    report.corrupt_chunks.push((path.clone(), c));
                }
                blocks.push(Arc::new(b));
            }
            Err(e) => {
                let aside = path.with_file_name(format!("{name}.corrupt"));
                tracing::error!(block = %path.display(), error = %e, moved_to = %aside.display(), "block is corrupt; moved aside");
                let _ = fs::rename(&path, &aside);
                report.corrupt_blocks.push((path, e.to_string()));
            }
        }
    }
    blocks.sort_by_key(|b| (b.meta().min_time, b.meta().max_time));
    Ok(blocks)
}

fn is_ulid(s: &str) -> bool {
    s.len() == 26 && s.bytes().all(|c| c.is_ascii_alphanumeric())
}

/// Replays the WAL into the head. Every sample in it was acknowledged, so none is refused
/// for its time, not even one stamped far ahead of `now` by a version without the future
/// bound: the head cut and retention measure from the clock, so such a sample stays in the
/// head without moving anything.
/// Returns the `chunks_head/` files the checkpoint names.
fn replay(
    wal: &Wal,
    head: &Head,
    now: i64,
    report: &mut OpenReport,
) -> Result<std::collections::HashSet<u32>> {
    let mut named = std::collections::HashSet::new();
    // WAL series ids that map onto another live series with the same labels (a series
    // re-created after garbage collection, say).
    let mut alias: HashMap<u64, u32> = HashMap::new();
    let id_of = |alias: &HashMap<u64, u32>, r: u64| alias.get(&r).copied().or_else(|| u32::try_from(r).ok());
    let stats = wal.replay(|rec| {
        match rec {
            Record::Series(series) => {
                for s in series {
                    let Ok(id) = u32::try_from(s.series_ref) else {
                        continue;
                    };
                    let got = head.create_with_id(id, &s.labels);
                    // Ids past every replayed one, even one that aliased: a new series must
                    // not take an id that a later record of this WAL still uses.
                    head.bump_next_id(id);
                    if got.id != id {
                        alias.insert(s.series_ref, got.id);
                    } else {
                        // The id is this series' now, whatever it aliased before.
                        alias.remove(&s.series_ref);
                    }
                }
            }
            Record::Samples(samples) => {
                for s in samples {
                    let Some(series) = id_of(&alias, s.series_ref).and_then(|id| head.series(id)) else {
                        report.replay_unknown_series += 1;
                        continue;
                    };
                    match head.append(&series, s.t, s.v, true, now) {
                        Ok(_) => report.replayed_samples += 1,
                        Err(_) => report.replay_rejected += 1,
                    }
                }
            }
            Record::Chunks(items) => {
                for item in items {
                    named.extend(item.chunks.iter().map(|c| c.file));
                    let Some(series) = id_of(&alias, item.series_ref).and_then(|id| head.series(id)) else {
                        report.lost_chunks += item.chunks.len() as u64;
                        continue;
                    };
                    let (restored, lost) = head.restore_chunks(&series, &item);
                    report.replayed_chunks += restored as u64;
                    report.lost_chunks += lost as u64;
                }
            }
            Record::Tombstones(ts) => {
                for t in ts {
                    if let Some(id) = id_of(&alias, t.series_ref) {
                        head.delete_range(id, t.mint, t.maxt);
                    }
                }
            }
        }
        Ok(())
    })?;
    report.replayed_records = stats.records;
    Ok(named)
}
