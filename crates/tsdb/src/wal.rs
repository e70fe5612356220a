//! The write-ahead log: every change to the head is appended here before it is acknowledged,
//! so that a restart can rebuild the head by replaying it.
//!
//! - [`Wal`]: the log; [`Wal::open`] repairs torn or corrupt tails, [`Wal::log`] appends,
//!   [`Wal::replay`] reads back, [`Wal::checkpoint`] compacts old segments.
//! - [`Record`]: what is logged ([`RefSeries`], [`RefSample`], [`RefTombstone`] batches).
//! - [`WalOptions`], [`FsyncPolicy`]: segment size and when data is fsynced.
//!
//! The byte layout (segments, frames, record payloads, checkpoints) is in
//! [`docs/format/wal.md`](../../../../docs/format/wal.md).
//!
//! # Layout
//! - `wal.rs`: [`Wal`]: open/repair, the writer, replay, checkpoint orchestration
//! - `wal/record.rs`: [`Record`] payload encode/decode (no I/O)
//! - `wal/segment.rs`: segment names, record framing, the checked frame reader, truncation
//! - `wal/checkpoint.rs`: checkpoint directories, [`CheckpointStats`]
//!
//! # Example
//! ```
//! use metricsd_tsdb::wal::{Record, RefSample, Wal, WalOptions};
//! let dir = tempfile::tempdir().unwrap();
//! let (wal, report) = Wal::open(dir.path(), WalOptions::default()).unwrap();
//! assert!(report.truncated.is_empty());
//! wal.log(&[Record::Samples(vec![RefSample { series_ref: 1, t: 1000, v: 1.5 }])]).unwrap();
//! let mut n = 0;
//! wal.replay(|_rec| { n += 1; Ok(()) }).unwrap();
//! assert_eq!(n, 1);
//! ```

mod checkpoint;
pub mod codec;
pub mod record;
pub(crate) mod segment;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

pub use checkpoint::CheckpointStats;
pub use record::{Record, RefChunk, RefChunks, RefSample, RefSeries, RefTombstone};

use crate::{Error, Result};
use segment::{Frame, MAX_RECORD_LEN, SegmentReader};

/// When [`Wal::log`] data is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fsync before [`Wal::log`] returns: an acknowledged write survives power loss.
    Always,
    /// A background thread fsyncs the written segment at this interval: a power loss may
    /// lose up to about one interval of acknowledged writes (a process crash loses none).
    /// The thread is an [`FsyncScheduler`]'s, shared by every WAL opened with it.
    Interval(Duration),
    /// fsync only when a segment is cut, on [`Wal::sync`] and on [`Wal::close`].
    Never,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        FsyncPolicy::Interval(Duration::from_secs(1))
    }
}

/// Options of [`Wal::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// A segment is cut when the next write would make it larger than this (a single write
    /// bigger than this gets a segment of its own). Default 128 MiB.
    pub segment_size: u64,
    /// When to fsync. Default [`FsyncPolicy::Interval`] of 1 s.
    pub fsync: FsyncPolicy,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: 128 << 20,
            fsync: FsyncPolicy::default(),
        }
    }
}

/// What [`Wal::open`] found damaged and repaired.
///
/// Empty unless the WAL or its checkpoint was torn or corrupt. Segments that were already
/// covered by the checkpoint (left over by a crash during [`Wal::checkpoint`]) are deleted
/// too but are not damage and are not listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Files truncated: (segment or checkpoint file, offset of the first bad record, reason).
    pub truncated: Vec<(PathBuf, u64, String)>,
    /// Files removed because they followed a truncated or missing one.
    pub removed_segments: Vec<PathBuf>,
    /// Bytes cut off or removed in total.
    pub bytes_dropped: u64,
}

impl RepairReport {
    /// Whether nothing was repaired.
    pub fn is_clean(&self) -> bool {
        self.truncated.is_empty() && self.removed_segments.is_empty()
    }
}

/// What [`Wal::replay`] read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Records passed to the callback (checkpoint records included).
    pub records: u64,
    /// Bytes of frames read (headers included, checkpoint included).
    pub bytes: u64,
    /// WAL segments read (not counting the checkpoint's files).
    pub segments: u32,
    /// The index of the checkpoint replayed first, if any.
    pub checkpoint: Option<u64>,
}

/// The write-ahead log in one directory: numbered segment files `00000000`, `00000001`, ...
/// and at most one complete checkpoint `checkpoint.<index>/` (see the module doc for the
/// format).
///
/// # Invariants
/// - **Single writer.** All writes ([`Wal::log_buffered`], [`Wal::log`], [`Wal::flush`],
///   [`Wal::cut_segment`]) serialize on one internal mutex, so records appear in the log in
///   exactly the order those calls took the lock: a record passed to `log_buffered` precedes
///   every record of any later `log`, and the records of one `log` call are contiguous. Two
///   processes must not open the same directory (the caller holds the data directory lock).
/// - **Whole records.** A record is one frame with a crc32c; a frame never spans segments.
///   Each `log` call is one `write` to a file opened in append mode; after a failed write the
///   segment is truncated back to its last whole record, and if even that fails the WAL
///   refuses further writes ([`Error::Unavailable`]) rather than append after garbage.
/// - **Segments are chained.** Every segment starts with a header frame naming its index and
///   the final size of the previous segment (which is fsynced before the next is created, at a
///   cut and at open). A segment cut short exactly at a frame boundary looks clean on its
///   own; open detects it by that recorded size and removes everything after it, so replay
///   never skips a hole.
/// - **Durability when `log` returns `Ok`.** The records (and the pending buffer) are in the
///   OS page cache: they survive a crash or SIGKILL of the process. Surviving power loss
///   depends on [`FsyncPolicy`]: `Always` has fsynced them; `Interval(d)` fsyncs them within
///   about `d`; `Never` only at the next segment cut, [`Wal::sync`] or [`Wal::close`].
///   Records given to `log_buffered` only are in memory until the next `log`/`flush`.
/// - **A failed fsync is fatal.** After fsync fails (in any path, including the background
///   thread) the kernel may have dropped the dirty pages, so the WAL refuses further writes.
/// - **Open repairs, never refuses.** [`Wal::open`] checks every frame of the checkpoint and
///   the segments, and each file's size against its successor's header; at the first torn or
///   corrupt frame (or missing tail) it truncates that file there and removes all later
///   files, logging (`tracing::warn!`) and reporting file, offset and reason. Writing then
///   continues in a new segment, so a partly written old segment is never appended to.
/// - **Checkpoint damage is disk damage.** Checkpoints are published by rename after fsync,
///   so they are never torn; a bad frame in one is logged loudly, the rest of the checkpoint is
///   cut off (open truncates it, replay skips it) and replay continues with the segments.
///   Corruption found in a *segment* by [`Wal::replay`] (i.e. after open checked it) is an
///   [`Error::Corruption`].
/// - **Checkpoints and replay** take a second mutex, so a checkpoint never deletes segments
///   that a replay is reading. Neither holds the writer mutex while reading, so `log` may be
///   called concurrently (even from the replay callback); the callback must not call
///   [`Wal::checkpoint`] or [`Wal::replay`] (they would deadlock).
/// - **Bounded frames, unbounded batches.** A frame holds at most 64 MiB; the pending buffer
///   and a `log` batch are not bounded (one `write_all`, i.e. one `write` below ~2 GiB): callers
///   should not `log_buffered` without a following `log`/`flush`.
pub struct Wal {
    shared: Arc<Shared>,
    /// Serializes [`Wal::checkpoint`] and [`Wal::replay`]: one deletes what the other reads.
    maintenance: Mutex<()>,
    /// The scheduler whose thread fsyncs it under [`FsyncPolicy::Interval`]; released at
    /// close (a private scheduler's thread stops then).
    scheduler: Mutex<Option<FsyncScheduler>>,
}

/// State shared with the fsync scheduler's thread.
struct Shared {
    dir: PathBuf,
    opts: WalOptions,
    state: Mutex<State>,
}

/// Everything behind the writer mutex.
struct State {
    /// The segment being written; `None` only after [`Wal::close`].
    active: Option<Active>,
    /// Records of `log_buffered` not yet written. They are kept as records, not bytes: a
    /// record's encoding depends on the segment it lands in (see [`codec`]).
    pending: Vec<Record>,
    /// The encoding state of the active segment.
    enc: codec::Encoder,
    /// The bytes of the write being prepared.
    buf: Vec<u8>,
    /// fsyncs done and the time they took (ns), for self-metrics.
    fsyncs: u64,
    fsync_nanos: u64,
    /// A write failed after its records were encoded: the next write starts a new segment
    /// (with a fresh state), as the encoder's state holds records that never reached this one.
    must_cut: bool,
    /// Data was written since the last fsync.
    dirty: bool,
    /// Set by close: refuse writes.
    closed: bool,
    /// Set at close: the fsync scheduler forgets this WAL.
    stop: bool,
    /// Why the WAL refuses writes (a failed fsync, or a failed write it could not undo).
    failed: Option<String>,
    /// An error of `log_buffered`, which cannot return one; the next write call returns it.
    deferred: Option<Error>,
}

struct Active {
    index: u64,
    /// Shared with the fsync scheduler, which fsyncs without holding the writer mutex.
    file: Arc<File>,
    path: PathBuf,
    /// Bytes of whole records written.
    size: u64,
}

/// Records per batch the replay reader hands over, and batches it may be ahead: bounds the
/// decoded records in flight (a record is at most 64 MiB encoded; typical ones are a few KiB).
const REPLAY_BATCH: usize = 64;
const REPLAY_QUEUE: usize = 4;

/// The write buffer is shrunk back to this after a write that grew it beyond 16 MiB.
const BUF_KEEP_CAPACITY: usize = 1 << 20;

impl Wal {
    /// Opens (creating) the WAL in `dir`, repairs damage (see [`RepairReport`] and the type
    /// doc) and starts a new segment for writing. Under [`FsyncPolicy::Interval`] it gets a
    /// scheduler (a thread) of its own; [`Wal::open_with`] shares one.
    ///
    /// # Errors
    /// I/O errors (including reading a file during the check); damaged content is repaired,
    /// not an error.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<(Wal, RepairReport)> {
        Wal::open_with(dir, opts, None)
    }

    /// [`Wal::open`], fsynced under [`FsyncPolicy::Interval`] by `scheduler`'s thread (a new
    /// scheduler of its own when `None`).
    pub fn open_with(
        dir: &Path,
        opts: WalOptions,
        scheduler: Option<&FsyncScheduler>,
    ) -> Result<(Wal, RepairReport)> {
        fs::create_dir_all(dir).map_err(|e| Error::io("create dir", dir, e))?;
        let mut report = RepairReport::default();

        // Checkpoints: drop unfinished ones, keep only the newest complete one, check it.
        let (mut cps, tmps) = checkpoint::list(dir)?;
        for t in tmps {
            tracing::info!(path = %t.display(), "removing unfinished WAL checkpoint");
            fs::remove_dir_all(&t).map_err(|e| Error::io("remove", &t, e))?;
        }
        let latest = cps.pop();
        for (_, old) in cps {
            tracing::info!(path = %old.display(), "removing superseded WAL checkpoint");
            fs::remove_dir_all(&old).map_err(|e| Error::io("remove", &old, e))?;
        }
        if let Some((_, cp_dir)) = &latest {
            let files = segment::list_segments(cp_dir)?;
            repair_files(&files, &mut report)?;
        }

        // Segments: those covered by the checkpoint are leftovers of an interrupted
        // checkpoint (deleted oldest first, so the rest is still contiguous).
        let mut segs = segment::list_segments(dir)?;
        if let Some((cp, _)) = &latest {
            for (_, p) in segs.iter().filter(|(i, _)| i <= cp) {
                tracing::info!(path = %p.display(), "removing WAL segment already in the checkpoint");
                fs::remove_file(p).map_err(|e| Error::io("remove", p, e))?;
            }
            segs.retain(|(i, _)| i > cp);
            if let Some((first, _)) = segs.first()
                && *first > cp + 1
            {
                tracing::warn!(
                    dir = %dir.display(), checkpoint = cp, first_segment = first,
                    "WAL segments between the checkpoint and the first segment are missing"
                );
            }
        }
        // A gap in the numbering means lost data: what follows it cannot be trusted to
        // refer to series that were logged.
        if let Some((gap, [before, _])) = segs
            .array_windows()
            .enumerate()
            .find(|(_, [a, b])| b.0 != a.0 + 1)
        {
            let missing = before.0 + 1;
            let reason = format!("segment {} is missing", segment::segment_name(missing));
            tracing::warn!(dir = %dir.display(), %reason, "WAL has a gap; removing the segments after it");
            remove_files(segs.get(gap + 1..).unwrap_or_default(), &mut report)?;
            segs.truncate(gap + 1);
        }
        let kept = repair_files(&segs, &mut report)?;
        // The next segment follows the last one kept: numbering stays contiguous.
        segs.truncate(kept);
        if !report.removed_segments.is_empty() || !report.truncated.is_empty() {
            segment::sync_dir(dir)?;
        }
        // The last segment may hold data a crashed process never fsynced. Make it durable
        // before starting a new segment, so that every segment but the last is complete on
        // disk: the new segment's header records its size, and a power loss must not be able
        // to leave a hole before data written from now on.
        let prev_size = match segs.last() {
            Some((_, p)) => {
                let f = File::open(p).map_err(|e| Error::io("open", p, e))?;
                f.sync_all().map_err(|e| Error::io("fsync", p, e))?;
                f.metadata().map_err(|e| Error::io("stat", p, e))?.len()
            }
            None => 0,
        };

        let next = segs
            .last()
            .map(|(i, _)| i + 1)
            .max(latest.as_ref().map(|(i, _)| i + 1))
            .unwrap_or(0);
        let (file, path) = segment::create_segment(dir, next, prev_size)?;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            opts,
            state: Mutex::new(State {
                active: Some(Active {
                    index: next,
                    file: Arc::new(file),
                    path,
                    size: segment::SEGMENT_HEADER_LEN,
                }),
                pending: Vec::new(),
                enc: codec::Encoder::new(),
                buf: Vec::new(),
                must_cut: false,
                fsyncs: 0,
                fsync_nanos: 0,
                dirty: false,
                closed: false,
                stop: false,
                failed: None,
                deferred: None,
            }),
        });
        let scheduler = match opts.fsync {
            FsyncPolicy::Interval(every) => {
                let sched = match scheduler {
                    Some(s) => s.clone(),
                    None => FsyncScheduler::new().map_err(|e| Error::io("spawn fsync thread for", dir, e))?,
                };
                sched.register(&shared, every);
                Some(sched)
            }
            FsyncPolicy::Always | FsyncPolicy::Never => None,
        };
        let wal = Wal {
            shared,
            maintenance: Mutex::new(()),
            scheduler: Mutex::new(scheduler),
        };
        Ok((wal, report))
    }

    /// The WAL's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Replays the latest checkpoint, then all segments in order, calling `f` for every
    /// record. Reads what was written when it started (not the pending buffer).
    ///
    /// # Errors
    /// The first error of `f`; I/O errors; [`Error::Corruption`] for a bad frame or an
    /// undecodable record in a segment (checkpoint damage is logged and skipped).
    pub fn replay(&self, mut f: impl FnMut(Record) -> Result<()>) -> Result<ReplayStats> {
        let _m = self.maintenance.lock();
        // Reading and decoding run on a second thread, a bounded batch of records ahead of
        // `f` (which applies them to the head): decoding v2 records costs about as much as
        // reading v1's three times larger ones did, and on two cores it now overlaps with
        // the appends instead of adding to them.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Record>>>(REPLAY_QUEUE);
        std::thread::scope(|sc| {
            let reader = std::thread::Builder::new()
                .name("wal-replay-read".into())
                .spawn_scoped(sc, || self.read_all(tx))
                .map_err(|e| Error::io("spawn a WAL reader thread for", &self.shared.dir, e))?;
            let mut applied: Result<()> = Ok(());
            for batch in rx.iter() {
                match batch {
                    Ok(recs) => {
                        for rec in recs {
                            if let Err(e) = f(rec) {
                                applied = Err(e);
                                break;
                            }
                        }
                    }
                    Err(e) => applied = Err(e),
                }
                if applied.is_err() {
                    // Dropping the receiver stops the reader at its next send.
                    break;
                }
            }
            drop(rx);
            let stats = reader
                .join()
                .map_err(|_| Error::Unavailable("the WAL reader thread panicked".into()))?;
            applied.map(|()| stats)
        })
    }

    /// Reads and decodes the checkpoint and the segments (as of the call) in order, sending
    /// records in batches to `tx`; an error is sent as the last item. Stops early when the
    /// receiver is gone. Returns what was read.
    fn read_all(&self, tx: std::sync::mpsc::SyncSender<Result<Vec<Record>>>) -> ReplayStats {
        let mut stats = ReplayStats::default();
        let mut batch: Vec<Record> = Vec::with_capacity(REPLAY_BATCH);
        let res = (|| -> Result<()> {
            let dir = &self.shared.dir;
            // Snapshot how far the active segment holds whole records: a concurrent `log`
            // may be mid-write past that point.
            let (active_index, active_size) = {
                let st = self.shared.state.lock();
                match &st.active {
                    Some(a) => (a.index, a.size),
                    None => (u64::MAX, u64::MAX),
                }
            };
            let send = |rec: Record, batch: &mut Vec<Record>| -> Result<()> {
                batch.push(rec);
                if batch.len() >= REPLAY_BATCH {
                    let full = std::mem::replace(batch, Vec::with_capacity(REPLAY_BATCH));
                    tx.send(Ok(full))
                        .map_err(|_| Error::Unavailable("WAL replay stopped".into()))?;
                }
                Ok(())
            };
            let cp = checkpoint::latest(dir)?;
            if let Some((idx, cp_dir)) = &cp {
                stats.checkpoint = Some(*idx);
                'files: for (_, path) in segment::list_segments(cp_dir)? {
                    let mut r = SegmentReader::open(&path, None)?;
                    let mut dec = codec::Decoder::new();
                    loop {
                        let (_, rec) = match read_record(&mut r, &path, &mut dec)? {
                            Ok(None) => break,
                            Ok(Some(x)) => x,
                            Err(e) => {
                                tracing::warn!(
                                    error = %e,
                                    "WAL checkpoint is damaged; skipping the rest of it and replaying the segments"
                                );
                                break 'files;
                            }
                        };
                        stats.records += 1;
                        send(rec, &mut batch)?;
                    }
                    stats.bytes += r.good_len();
                }
            }
            let first = cp.as_ref().map_or(0, |(i, _)| i + 1);
            for (index, path) in segment::list_segments(dir)? {
                if index < first || index > active_index {
                    continue;
                }
                let limit = (index == active_index).then_some(active_size);
                let mut r = SegmentReader::open(&path, limit)?;
                let mut dec = codec::Decoder::new();
                stats.segments += 1;
                while let Some((_, rec)) = read_record(&mut r, &path, &mut dec)?? {
                    stats.records += 1;
                    send(rec, &mut batch)?;
                }
                stats.bytes += r.good_len();
            }
            Ok(())
        })();
        // What was read before an error is applied before the error is seen.
        if !batch.is_empty() {
            let _ = tx.send(Ok(batch));
        }
        if let Err(e) = res {
            let _ = tx.send(Err(e));
        }
        stats
    }

    /// Encodes `rec` into the in-memory pending buffer, without I/O. The next [`Wal::log`],
    /// [`Wal::flush`] or [`Wal::cut_segment`] writes it ahead of its own records; used for
    /// series records under the head's locks so that they precede any sample referring to
    /// them.
    ///
    /// A record over the 64 MiB frame limit is split. If a single item is over the limit
    /// (impossible with validated labels), it is dropped and the next write call returns
    /// [`Error::InvalidArgument`].
    pub fn log_buffered(&self, rec: &Record) {
        let mut st = self.shared.state.lock();
        match check_items(rec) {
            Ok(()) => st.pending.push(rec.clone()),
            Err(e) if st.deferred.is_none() => st.deferred = Some(e),
            Err(_) => {}
        }
    }

    /// Writes the pending buffer plus `recs` with one `write` to the current segment
    /// (cutting a new one first if it would overflow), then applies the [`FsyncPolicy`].
    /// Records over the 64 MiB frame limit are split into several records.
    ///
    /// # Errors
    /// I/O errors; [`Error::Unavailable`] after [`Wal::close`] or a fatal fsync/write failure;
    /// [`Error::InvalidArgument`] if a single item exceeds the frame limit. On error none of
    /// `recs` is in the log; the pending buffer is kept for the next call unless the WAL
    /// failed.
    pub fn log(&self, recs: &[Record]) -> Result<()> {
        let mut st = self.shared.state.lock();
        st.usable(&self.shared.dir)?;
        for r in recs {
            check_items(r)?;
        }
        self.write_pending(&mut st, recs)
    }

    /// Writes the pending buffer.
    ///
    /// # Errors
    /// As [`Wal::log`].
    pub fn flush(&self) -> Result<()> {
        let mut st = self.shared.state.lock();
        st.usable(&self.shared.dir)?;
        self.write_pending(&mut st, &[])
    }

    /// Writes the pending buffer and fsyncs the current segment.
    ///
    /// # Errors
    /// As [`Wal::log`].
    pub fn sync(&self) -> Result<()> {
        let mut st = self.shared.state.lock();
        st.usable(&self.shared.dir)?;
        self.write_pending(&mut st, &[])?;
        st.fsync_active()
    }

    /// Writes the pending buffer, fsyncs and closes the current segment and starts a new
    /// one; returns the new segment's index.
    ///
    /// # Errors
    /// As [`Wal::log`].
    pub fn cut_segment(&self) -> Result<u64> {
        let mut st = self.shared.state.lock();
        st.usable(&self.shared.dir)?;
        self.write_pending(&mut st, &[])?;
        st.cut(&self.shared.dir)
    }

    /// The (first, last) segment indices present; last is the segment being written.
    ///
    /// # Errors
    /// I/O errors listing the directory.
    pub fn segment_range(&self) -> Result<(u64, u64)> {
        let segs = segment::list_segments(&self.shared.dir)?;
        match (segs.first(), segs.last()) {
            (Some((a, _)), Some((b, _))) => Ok((*a, *b)),
            _ => Err(Error::Unavailable(format!(
                "no WAL segments in {}",
                self.shared.dir.display()
            ))),
        }
    }

    /// Writes a checkpoint of everything up to and including segment `through`: the records
    /// of the previous checkpoint and of segments `<= through`, each passed through `keep`
    /// (return `Some` to keep it, possibly filtered, `None` to drop it). Published atomically
    /// as `checkpoint.<through:08>` (tmp dir, fsync, rename, fsync dir), then the covered
    /// segments (oldest first) and older checkpoints are deleted. Replay starts from it.
    ///
    /// If `through` is the segment being written, a new segment is cut first.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `through` is beyond the current segment or an existing
    /// checkpoint already covers it; I/O errors; [`Error::Corruption`] if a segment is damaged.
    /// On error nothing is deleted and no checkpoint is published.
    pub fn checkpoint(
        &self,
        through: u64,
        mut keep: impl FnMut(Record) -> Option<Record>,
    ) -> Result<CheckpointStats> {
        self.publish_checkpoint(through, |w, stats, prev, segs| {
            if let Some((_, cp_dir)) = prev {
                'files: for (_, path) in segment::list_segments(cp_dir)? {
                    let mut r = SegmentReader::open(&path, None)?;
                    let mut dec = codec::Decoder::new();
                    loop {
                        match read_record(&mut r, &path, &mut dec)? {
                            Ok(None) => break,
                            Ok(Some((_, rec))) => {
                                stats.records_read += 1;
                                if let Some(k) = keep(rec) {
                                    stats.records_kept += 1;
                                    w.add(&k)?;
                                }
                            }
                            Err(e) => {
                                tracing::warn!(
                                    error = %e,
                                    "previous WAL checkpoint is damaged; the rest of it is not carried over"
                                );
                                break 'files;
                            }
                        }
                    }
                }
            }
            for (_, path) in segs {
                let mut r = SegmentReader::open(path, None)?;
                let mut dec = codec::Decoder::new();
                stats.segments_read += 1;
                while let Some((_, rec)) = read_record(&mut r, path, &mut dec)?? {
                    stats.records_read += 1;
                    if let Some(k) = keep(rec) {
                        stats.records_kept += 1;
                        w.add(&k)?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Writes a checkpoint through segment `through` whose records are not read from the
    /// log but given by `fill` (a snapshot of the state the records up to `through` built,
    /// such as the head's): `fill` gets a sink for records and must return only when what
    /// they refer to is durable. Published and cleaned up as [`Wal::checkpoint`]; the
    /// previous checkpoint and the covered segments are not read.
    ///
    /// # Errors
    /// As [`Wal::checkpoint`], and whatever `fill` returns (then nothing is published).
    pub fn snapshot(
        &self,
        through: u64,
        fill: impl FnOnce(&mut dyn FnMut(&Record) -> Result<()>) -> Result<()>,
    ) -> Result<CheckpointStats> {
        self.publish_checkpoint(through, |w, stats, _, _| {
            fill(&mut |rec: &Record| {
                stats.records_kept += 1;
                w.add(rec)
            })
        })
    }

    /// The steps every checkpoint shares: checks, the cut, the tmp directory that `body`
    /// fills (given the previous checkpoint and the segments to replace), publication, and
    /// the removal of what it replaces.
    fn publish_checkpoint(
        &self,
        through: u64,
        body: impl FnOnce(
            &mut checkpoint::Writer,
            &mut CheckpointStats,
            Option<&(u64, PathBuf)>,
            &[(u64, PathBuf)],
        ) -> Result<()>,
    ) -> Result<CheckpointStats> {
        let _m = self.maintenance.lock();
        let dir = &self.shared.dir;
        {
            let mut st = self.shared.state.lock();
            st.usable(dir)?;
            let active = st.active_index();
            if through > active {
                return Err(Error::InvalidArgument(format!(
                    "cannot checkpoint through WAL segment {through}: the current segment is {active}"
                )));
            }
            if through == active {
                self.write_pending(&mut st, &[])?;
                st.cut(dir)?;
            }
        }
        let prev = checkpoint::latest(dir)?;
        if let Some((p, _)) = &prev
            && *p >= through
        {
            return Err(Error::InvalidArgument(format!(
                "cannot checkpoint through WAL segment {through}: checkpoint {p} already covers it"
            )));
        }
        let first = prev.as_ref().map_or(0, |(i, _)| i + 1);
        let segs: Vec<(u64, PathBuf)> = segment::list_segments(dir)?
            .into_iter()
            .filter(|(i, _)| (first..=through).contains(i))
            .collect();

        let started = Instant::now();
        let mut stats = CheckpointStats {
            index: through,
            ..CheckpointStats::default()
        };
        let mut w = checkpoint::Writer::create(dir, through, self.shared.opts.segment_size)?;
        if let Err(e) = body(&mut w, &mut stats, prev.as_ref(), &segs) {
            w.abort();
            return Err(e);
        }
        stats.bytes_written = w.finish(dir)?;

        // The checkpoint is durable: what it covers can go. Oldest first, so that a crash
        // here leaves a contiguous run of segments (open removes the covered rest).
        for (_, path) in &segs {
            fs::remove_file(path).map_err(|e| Error::io("remove", path, e))?;
            stats.segments_deleted += 1;
        }
        let (cps, _) = checkpoint::list(dir)?;
        for (i, path) in cps {
            if i < through {
                fs::remove_dir_all(&path).map_err(|e| Error::io("remove", &path, e))?;
                stats.checkpoints_deleted += 1;
            }
        }
        segment::sync_dir(dir)?;
        tracing::info!(
            dir = %dir.display(), through, records_read = stats.records_read, records_kept = stats.records_kept,
            bytes = stats.bytes_written, segments_deleted = stats.segments_deleted, elapsed = ?started.elapsed(),
            "WAL checkpoint written"
        );
        Ok(stats)
    }

    /// fsyncs done since open and the seconds they took in total.
    pub fn fsync_stats(&self) -> (u64, f64) {
        let st = self.shared.state.lock();
        (st.fsyncs, st.fsync_nanos as f64 / 1e9)
    }

    /// Bytes of all segments and the checkpoint on disk.
    ///
    /// # Errors
    /// I/O errors listing or stat-ing files.
    pub fn size_bytes(&self) -> Result<u64> {
        let dir = &self.shared.dir;
        let mut total = 0;
        let (cps, tmps) = checkpoint::list(dir)?;
        let dirs = std::iter::once(dir.clone())
            .chain(cps.into_iter().map(|(_, p)| p))
            .chain(tmps);
        for d in dirs {
            for (_, p) in segment::list_segments(&d)? {
                match fs::metadata(&p) {
                    Ok(m) => total += m.len(),
                    // Deleted by a concurrent checkpoint.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("stat", &p, e)),
                }
            }
        }
        Ok(total)
    }

    /// Writes the pending buffer, fsyncs, leaves the fsync scheduler. Later writes return
    /// [`Error::Unavailable`]; closing again is a no-op.
    ///
    /// # Errors
    /// I/O errors of the final write or fsync (the WAL is closed regardless).
    pub fn close(&self) -> Result<()> {
        let res = {
            let mut st = self.shared.state.lock();
            let res = if st.closed {
                Ok(())
            } else {
                let r = match st.usable(&self.shared.dir) {
                    Ok(()) => self.write_pending(&mut st, &[]).and_then(|()| st.fsync_active()),
                    Err(e) => Err(e),
                };
                st.closed = true;
                st.active = None;
                r
            };
            st.stop = true;
            res
        };
        // The scheduler skips and forgets a stopped WAL; a private one stops its thread.
        drop(self.scheduler.lock().take());
        res
    }

    /// Encodes and writes `st.pending` plus `recs` as one write, cutting a new segment first
    /// when they would overflow this one (then encoding them again against the new segment's
    /// fresh state). On failure the partial write is undone, `recs` are dropped, the pending
    /// records kept, and the next write starts a new segment.
    fn write_pending(&self, st: &mut MutexGuard<'_, State>, recs: &[Record]) -> Result<()> {
        if st.pending.is_empty() && recs.is_empty() {
            return Ok(());
        }
        let opts = &self.shared.opts;
        let dir = &self.shared.dir;
        if std::mem::take(&mut st.must_cut) {
            st.enc.reset();
            if st
                .active
                .as_ref()
                .is_some_and(|a| a.size > segment::SEGMENT_HEADER_LEN)
                && let Err(e) = st.cut(dir)
            {
                st.must_cut = true;
                return Err(e);
            }
        }
        st.encode(recs);
        let size = st.active.as_ref().map_or(0, |a| a.size);
        // Cut unless the segment holds no records yet (a write too big for any segment gets
        // one of its own).
        if size > segment::SEGMENT_HEADER_LEN && size + st.buf.len() as u64 > opts.segment_size {
            st.enc.reset();
            if let Err(e) = st.cut(dir) {
                st.must_cut = true;
                return Err(e);
            }
            st.encode(recs);
        }
        let State { active, buf, .. } = &mut **st;
        let Some(a) = active else {
            return Err(Error::Unavailable("WAL is closed".into()));
        };
        if let Err(e) = (&*a.file).write_all(buf) {
            // The file is in append mode: cutting the partial record off puts the next
            // write right after the last whole record.
            let undo = a.file.set_len(a.size);
            let (path, size) = (a.path.clone(), a.size);
            st.must_cut = true;
            if let Err(u) = undo {
                st.fail(format!(
                    "write to {} failed ({e}) and truncating it back to {size} bytes failed too ({u})",
                    path.display(),
                ));
            }
            return Err(Error::io("write", path, e));
        }
        a.size += buf.len() as u64;
        if buf.capacity() > 16 << 20 {
            *buf = Vec::with_capacity(BUF_KEEP_CAPACITY);
        } else {
            buf.clear();
        }
        st.pending.clear();
        if st.pending.capacity() > 4096 {
            st.pending = Vec::new();
        }
        st.dirty = true;
        if opts.fsync == FsyncPolicy::Always {
            st.fsync_active()?;
        }
        Ok(())
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(dir = %self.shared.dir.display(), error = %e, "closing the WAL on drop failed");
        }
    }
}

impl State {
    /// Errors if writes are refused; returns (once) a deferred `log_buffered` error.
    fn usable(&mut self, dir: &Path) -> Result<()> {
        if self.closed {
            return Err(Error::Unavailable(format!("WAL in {} is closed", dir.display())));
        }
        if let Some(why) = &self.failed {
            return Err(Error::Unavailable(format!(
                "WAL in {} failed: {why}",
                dir.display()
            )));
        }
        match self.deferred.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Encodes the pending records and then `recs` into `buf` (cleared first) with the
    /// active segment's state. The items were checked ([`check_items`]): this cannot fail.
    fn encode(&mut self, recs: &[Record]) {
        let State {
            pending, enc, buf, ..
        } = self;
        buf.clear();
        for r in pending.iter().chain(recs) {
            // Checked before: a record whose item could overflow a frame never gets here.
            let _ = segment::append_framed(buf, r.as_ref(), MAX_RECORD_LEN, enc);
        }
    }

    fn active_index(&self) -> u64 {
        self.active.as_ref().map_or(0, |a| a.index)
    }

    fn fail(&mut self, why: String) {
        tracing::error!(reason = %why, "WAL refuses further writes");
        self.failed = Some(why);
    }

    /// fsyncs the active segment (if it has unsynced data).
    fn fsync_active(&mut self) -> Result<()> {
        let Some(a) = &self.active else { return Ok(()) };
        if !self.dirty {
            return Ok(());
        }
        let t = Instant::now();
        let res = a.file.sync_data();
        self.fsyncs += 1;
        self.fsync_nanos += t.elapsed().as_nanos() as u64;
        if let Err(e) = res {
            let path = a.path.clone();
            self.fail(format!("fsync of {} failed: {e}", path.display()));
            return Err(Error::io("fsync", path, e));
        }
        self.dirty = false;
        Ok(())
    }

    /// fsyncs the active segment and starts the next one. The caller resets the encoder.
    fn cut(&mut self, dir: &Path) -> Result<u64> {
        self.fsync_active()?;
        let next = self.active_index() + 1;
        let prev_size = self.active.as_ref().map_or(0, |a| a.size);
        let (file, path) = segment::create_segment(dir, next, prev_size)?;
        self.enc.reset();
        self.active = Some(Active {
            index: next,
            file: Arc::new(file),
            path,
            size: segment::SEGMENT_HEADER_LEN,
        });
        Ok(next)
    }
}

/// Reads the next record: `Ok(Ok(None))` at the end, `Ok(Err(corruption))` for a bad frame
/// or an undecodable payload (naming the file and the frame's offset), `Err` for I/O errors.
#[allow(clippy::type_complexity)]
fn read_record(
    r: &mut SegmentReader,
    path: &Path,
    dec: &mut codec::Decoder,
) -> Result<Result<Option<(u64, Record)>>> {
    match r.next()? {
        Frame::End => Ok(Ok(None)),
        Frame::Bad { offset, reason } => Ok(Err(Error::Corruption {
            path: path.to_path_buf(),
            offset,
            reason,
        })),
        Frame::Record { offset } => match Record::decode_in(r.payload(), dec) {
            Ok(rec) => Ok(Ok(Some((offset, rec)))),
            Err(e) => Ok(Err(Error::Corruption {
                path: path.to_path_buf(),
                offset,
                reason: format!("record does not decode: {e}"),
            })),
        },
    }
}

/// Checks `files` (one sequence of segments) in order; truncates the first damaged one and
/// removes all after it. Returns how many files are left.
///
/// A file is damaged if a frame is bad, or if it does not end where the next file's header
/// says it ended (a tail cut off at a frame boundary leaves only whole frames behind) or the
/// next file does not follow it in numbering: then the later files would be replayed after a
/// hole.
fn repair_files(files: &[(u64, PathBuf)], report: &mut RepairReport) -> Result<usize> {
    for (i, (index, path)) in files.iter().enumerate() {
        let expected_size = match files.get(i + 1) {
            Some((next, _)) if *next != index + 1 => {
                let reason = format!("segment {} is missing", segment::segment_name(index + 1));
                tracing::warn!(file = %path.display(), %reason, "removing the WAL files after a gap");
                remove_files(files.get(i + 1..).unwrap_or_default(), report)?;
                return Ok(i + 1);
            }
            Some((_, next)) => segment::SegmentHeader::read(next)?.map(|h| h.prev_size),
            None => None,
        };
        if let Some(d) = segment::check_and_truncate(path, *index, expected_size)? {
            tracing::warn!(
                file = %path.display(), offset = d.offset, reason = %d.reason, bytes_dropped = d.dropped,
                later_files_removed = files.len() - i - 1,
                "torn or corrupt WAL record; truncated the file there and removed all later ones"
            );
            report.truncated.push((path.clone(), d.offset, d.reason));
            report.bytes_dropped += d.dropped;
            remove_files(files.get(i + 1..).unwrap_or_default(), report)?;
            return Ok(i + 1);
        }
    }
    Ok(files.len())
}

fn remove_files(files: &[(u64, PathBuf)], report: &mut RepairReport) -> Result<()> {
    for (_, p) in files {
        let len = fs::metadata(p).map_err(|e| Error::io("stat", p, e))?.len();
        fs::remove_file(p).map_err(|e| Error::io("remove", p, e))?;
        tracing::warn!(file = %p.display(), bytes = len, "removed WAL file after damage");
        report.removed_segments.push(p.clone());
        report.bytes_dropped += len;
    }
    Ok(())
}

/// Checks that no single item of `rec` could overflow a frame, before anything is encoded.
fn check_items(rec: &Record) -> Result<()> {
    match rec.as_ref().largest_item_len() {
        Some(len) if len > MAX_RECORD_LEN => Err(Error::InvalidArgument(format!(
            "a single WAL item encodes to up to {len} bytes, more than the record limit of {MAX_RECORD_LEN} bytes"
        ))),
        _ => Ok(()),
    }
}

/// One thread that fsyncs every WAL registered with it, each at its own
/// [`FsyncPolicy::Interval`]: a store with many tenants needs one thread, not one per WAL.
///
/// - **Durability as before.** Each WAL's active segment is fsynced about every interval
///   if it was written meanwhile; the fsync runs without the WAL's writer mutex (on a
///   shared file handle), so writers do not wait for the disk. WALs are fsynced one after
///   the other, so a slow disk delays the rest of a round by as long as the slow fsync
///   takes.
/// - **A failed fsync is fatal** for that WAL (it refuses further writes), as in [`Wal`].
/// - **Registration is weak.** The scheduler holds no WAL open: a closed or dropped WAL is
///   forgotten at its next turn. Each WAL holds a handle, so the thread runs while any WAL
///   opened with it is open or any handle exists, and stops when the last one goes.
#[derive(Clone)]
pub struct FsyncScheduler {
    owner: Arc<SchedulerOwner>,
}

struct SchedulerOwner {
    core: Arc<SchedulerCore>,
    thread: Option<JoinHandle<()>>,
}

struct SchedulerCore {
    state: Mutex<SchedulerState>,
    wake: Condvar,
}

#[derive(Default)]
struct SchedulerState {
    wals: Vec<Scheduled>,
    stop: bool,
}

struct Scheduled {
    wal: std::sync::Weak<Shared>,
    every: Duration,
    next: Instant,
}

impl std::fmt::Debug for FsyncScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FsyncScheduler({} WALs)", self.len())
    }
}

impl FsyncScheduler {
    /// Starts the scheduler's thread (`wal-fsync`).
    pub fn new() -> std::io::Result<FsyncScheduler> {
        let core = Arc::new(SchedulerCore {
            state: Mutex::new(SchedulerState::default()),
            wake: Condvar::new(),
        });
        let c = core.clone();
        let thread = std::thread::Builder::new()
            .name("wal-fsync".into())
            .spawn(move || scheduler_loop(&c))?;
        Ok(FsyncScheduler {
            owner: Arc::new(SchedulerOwner {
                core,
                thread: Some(thread),
            }),
        })
    }

    /// Number of WALs registered (closed ones until their next turn).
    pub fn len(&self) -> usize {
        self.owner.core.state.lock().wals.len()
    }

    /// Whether no WAL is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn register(&self, shared: &Arc<Shared>, every: Duration) {
        let core = &self.owner.core;
        core.state.lock().wals.push(Scheduled {
            wal: Arc::downgrade(shared),
            every,
            next: Instant::now() + every,
        });
        core.wake.notify_all();
    }
}

impl Drop for SchedulerOwner {
    fn drop(&mut self) {
        self.core.state.lock().stop = true;
        self.core.wake.notify_all();
        if let Some(h) = self.thread.take()
            && h.thread().id() != std::thread::current().id()
            && h.join().is_err()
        {
            tracing::error!("WAL fsync thread panicked");
        }
    }
}

/// The scheduler's thread: sleeps until the earliest WAL is due, fsyncs every due one
/// (without the scheduler's lock), forgets closed and dropped ones.
fn scheduler_loop(core: &SchedulerCore) {
    let mut st = core.state.lock();
    loop {
        if st.stop {
            return;
        }
        let now = Instant::now();
        let mut due: Vec<Arc<Shared>> = Vec::new();
        st.wals.retain_mut(|w| {
            let Some(shared) = w.wal.upgrade() else {
                return false;
            };
            if w.next <= now {
                w.next = now + w.every;
                due.push(shared);
            }
            true
        });
        if due.is_empty() {
            match st.wals.iter().map(|w| w.next).min() {
                Some(next) => {
                    core.wake.wait_until(&mut st, next);
                }
                None => core.wake.wait(&mut st),
            }
            continue;
        }
        let closed: Vec<*const Shared> = MutexGuard::unlocked(&mut st, || {
            let closed = due.iter().filter(|s| !fsync_once(s)).map(Arc::as_ptr).collect();
            // The upgraded handles are dropped here, without the scheduler's lock.
            drop(due);
            closed
        });
        if !closed.is_empty() {
            st.wals.retain(|w| !closed.contains(&w.wal.as_ptr()));
        }
    }
}

/// Fsyncs `shared`'s active segment if it is dirty; false once the WAL is closed.
fn fsync_once(shared: &Shared) -> bool {
    let mut st = shared.state.lock();
    if st.stop {
        return false;
    }
    if !st.dirty || st.failed.is_some() {
        return true;
    }
    let Some(a) = &st.active else { return true };
    let (file, path) = (Arc::clone(&a.file), a.path.clone());
    // Cleared before the fsync: a write during it sets it again for the next round.
    st.dirty = false;
    let t = Instant::now();
    let res = MutexGuard::unlocked(&mut st, || file.sync_data());
    st.fsyncs += 1;
    st.fsync_nanos += t.elapsed().as_nanos() as u64;
    if let Err(e) = res {
        st.fail(format!("background fsync of {} failed: {e}", path.display()));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use metricsd_model::Labels;
    use proptest::prelude::*;

    fn opts(segment_size: u64, fsync: FsyncPolicy) -> WalOptions {
        WalOptions { segment_size, fsync }
    }

    fn series(r: u64) -> Record {
        Record::Series(vec![RefSeries {
            series_ref: r,
            labels: Labels::from_pairs([("__name__", "m"), ("i", r.to_string().as_str())]),
        }])
    }

    fn samples(r: u64, t: i64, n: usize) -> Record {
        Record::Samples(
            (0..n)
                .map(|k| RefSample {
                    series_ref: r,
                    t: t + k as i64,
                    v: if k % 7 == 3 {
                        f64::from_bits(metricsd_model::STALE_NAN)
                    } else {
                        k as f64 * 0.5
                    },
                })
                .collect(),
        )
    }

    /// Records compared by their encoding, so NaN payloads count and NaN != NaN does not.
    fn enc(recs: &[Record]) -> Vec<Vec<u8>> {
        recs.iter()
            .map(|r| {
                let mut b = Vec::new();
                r.encode(&mut b);
                b
            })
            .collect()
    }

    fn replay_all(wal: &Wal) -> Vec<Record> {
        let mut out = Vec::new();
        wal.replay(|r| {
            out.push(r);
            Ok(())
        })
        .unwrap();
        out
    }

    fn workload(n: u64) -> Vec<Record> {
        (0..n)
            .map(|i| {
                if i % 5 == 0 {
                    series(i)
                } else {
                    samples(i, i as i64 * 1000, 1 + (i % 13) as usize)
                }
            })
            .collect()
    }

    #[test]
    fn round_trip_across_segments_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let recs = workload(300);
        {
            let (wal, report) = Wal::open(dir.path(), opts(2048, FsyncPolicy::Never)).unwrap();
            assert!(report.is_clean());
            for chunk in recs.chunks(3) {
                wal.log(chunk).unwrap();
            }
            let (first, last) = wal.segment_range().unwrap();
            assert_eq!(first, 0);
            assert!(last >= 5, "only {last} segments");
            for (_, p) in segment::list_segments(dir.path()).unwrap() {
                // 3 records of at most ~250 bytes each fit in one write.
                assert!(fs::metadata(&p).unwrap().len() <= 2048, "{}", p.display());
            }
            assert_eq!(enc(&replay_all(&wal)), enc(&recs));
            wal.close().unwrap();
            assert!(matches!(wal.log(&recs[..1]), Err(Error::Unavailable(_))));
            wal.close().unwrap();
        }
        let (wal, report) = Wal::open(dir.path(), opts(2048, FsyncPolicy::Never)).unwrap();
        assert!(report.is_clean(), "{report:?}");
        let stats = wal
            .replay({
                let mut i = 0;
                let recs = &recs;
                move |r| {
                    assert_eq!(enc(&[r]), enc(&recs[i..=i]), "record {i}");
                    i += 1;
                    Ok(())
                }
            })
            .unwrap();
        assert_eq!(stats.records, 300);
        assert_eq!(stats.checkpoint, None);
        assert!(stats.segments > 5);
        assert_eq!(stats.bytes, wal.size_bytes().unwrap());
    }

    #[test]
    fn buffered_records_precede_logged_ones_and_are_not_replayed_before_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        wal.log_buffered(&series(1));
        assert!(replay_all(&wal).is_empty());
        wal.log(&[samples(1, 0, 3)]).unwrap();
        wal.log_buffered(&series(2));
        wal.flush().unwrap();
        assert_eq!(
            enc(&replay_all(&wal)),
            enc(&[series(1), samples(1, 0, 3), series(2)])
        );
    }

    #[test]
    fn torn_tail_is_truncated_and_earlier_records_kept() {
        let dir = tempfile::tempdir().unwrap();
        let recs = workload(20);
        let seg0 = dir.path().join("00000000");
        let good_len;
        {
            let (wal, _) = Wal::open(dir.path(), opts(1 << 20, FsyncPolicy::Always)).unwrap();
            wal.log(&recs[..19]).unwrap();
            good_len = fs::metadata(&seg0).unwrap().len();
            wal.log(&recs[19..]).unwrap();
        }
        let f = fs::OpenOptions::new().write(true).open(&seg0).unwrap();
        f.set_len(good_len + 12).unwrap();
        drop(f);
        let (wal, report) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        assert_eq!(report.truncated.len(), 1, "{report:?}");
        let (path, offset, reason) = &report.truncated[0];
        assert_eq!((path, *offset), (&seg0, good_len));
        assert!(reason.contains("runs past the end"), "{reason}");
        assert_eq!(report.bytes_dropped, 12);
        assert_eq!(fs::metadata(&seg0).unwrap().len(), good_len);
        assert_eq!(enc(&replay_all(&wal)), enc(&recs[..19]));
        // Writing goes on in a new segment, after the repaired one.
        assert_eq!(wal.segment_range().unwrap(), (0, 1));
        wal.log(&recs[19..]).unwrap();
        assert_eq!(enc(&replay_all(&wal)), enc(&recs));
    }

    #[test]
    fn tails_with_bad_headers_are_truncated() {
        let check = |tail: &[u8], want: &str| {
            let dir = tempfile::tempdir().unwrap();
            let recs = workload(10);
            {
                let (wal, _) = Wal::open(dir.path(), opts(1 << 20, FsyncPolicy::Never)).unwrap();
                wal.log(&recs).unwrap();
            }
            let seg0 = dir.path().join("00000000");
            let good = fs::metadata(&seg0).unwrap().len();
            let mut f = fs::OpenOptions::new().append(true).open(&seg0).unwrap();
            f.write_all(tail).unwrap();
            drop(f);
            let (wal, report) = Wal::open(dir.path(), WalOptions::default()).unwrap();
            assert_eq!(report.truncated.len(), 1, "{want}: {report:?}");
            assert_eq!(report.truncated[0].1, good);
            assert!(report.truncated[0].2.contains(want), "{want}: {report:?}");
            assert_eq!(report.bytes_dropped, tail.len() as u64);
            assert_eq!(enc(&replay_all(&wal)), enc(&recs));
        };
        // A garbage length must be rejected before allocating anything.
        let mut huge = 0xffff_fff0u32.to_le_bytes().to_vec();
        huge.extend_from_slice(&[0; 100]);
        check(&huge, "exceeds the limit");
        let mut past = 1000u32.to_le_bytes().to_vec();
        past.extend_from_slice(&[1; 100]);
        check(&past, "runs past the end");
        check(&[0; 4096], "zero-length record");
        check(&[7, 0, 0], "torn record header");
        let mut bad_crc = 3u32.to_le_bytes().to_vec();
        bad_crc.extend_from_slice(&[0, 0, 0, 0, 2, 0, 0]);
        check(&bad_crc, "crc32c mismatch");
    }

    #[test]
    fn flipped_byte_truncates_that_segment_and_removes_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let recs = workload(200);
        {
            let (wal, _) = Wal::open(dir.path(), opts(2048, FsyncPolicy::Never)).unwrap();
            for r in &recs {
                wal.log(std::slice::from_ref(r)).unwrap();
            }
        }
        let segs = segment::list_segments(dir.path()).unwrap();
        assert!(segs.len() > 4);
        let in_seg0 = {
            let mut r = SegmentReader::open(&segs[0].1, None).unwrap();
            let mut n = 0;
            while let Frame::Record { .. } = r.next().unwrap() {
                n += 1;
            }
            n
        };
        let victim = &segs[1].1;
        let mut bytes = fs::read(victim).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        fs::write(victim, &bytes).unwrap();

        let (wal, report) = Wal::open(dir.path(), opts(2048, FsyncPolicy::Never)).unwrap();
        assert_eq!(report.truncated.len(), 1, "{report:?}");
        assert_eq!(&report.truncated[0].0, victim);
        assert!(report.truncated[0].1 <= mid as u64);
        let removed: Vec<PathBuf> = segs[2..].iter().map(|(_, p)| p.clone()).collect();
        assert_eq!(report.removed_segments, removed);
        // The first removed name is reused for the new segment, which holds just its header.
        assert_eq!(
            fs::metadata(&removed[0]).unwrap().len(),
            segment::SEGMENT_HEADER_LEN
        );
        for p in &removed[1..] {
            assert!(!p.exists());
        }
        let got = replay_all(&wal);
        assert!(
            got.len() > in_seg0 && got.len() < recs.len(),
            "{} records",
            got.len()
        );
        assert_eq!(enc(&got), enc(&recs[..got.len()]));
    }

    /// A segment whose tail is cut off exactly at a frame boundary (or to nothing) still
    /// reads as clean frames; only the next segment's header shows records are missing. The
    /// later segments must go, or replay would skip the lost records (found by
    /// `prop_damage_leaves_a_prefix`).
    #[test]
    fn tail_cut_at_a_frame_boundary_removes_later_segments() {
        for keep_frames in [None, Some(0), Some(1)] {
            let dir = tempfile::tempdir().unwrap();
            let recs = workload(200);
            {
                let (wal, _) = Wal::open(dir.path(), opts(1024, FsyncPolicy::Never)).unwrap();
                for pair in recs.chunks(2) {
                    wal.log(pair).unwrap();
                }
            }
            let segs = segment::list_segments(dir.path()).unwrap();
            assert!(segs.len() > 4);
            let victim = &segs[1].1;
            // Frame ends in the victim: just the header, after the first record, or nothing.
            let cut = match keep_frames {
                None => 0,
                Some(n) => {
                    let mut r = SegmentReader::open(victim, None).unwrap();
                    for _ in 0..n {
                        assert!(matches!(r.next().unwrap(), Frame::Record { .. }));
                    }
                    if n == 0 {
                        assert!(matches!(r.next().unwrap(), Frame::Record { .. }));
                        segment::SEGMENT_HEADER_LEN
                    } else {
                        r.good_len()
                    }
                }
            };
            let full = fs::metadata(victim).unwrap().len();
            assert!(cut < full);
            fs::OpenOptions::new()
                .write(true)
                .open(victim)
                .unwrap()
                .set_len(cut)
                .unwrap();

            let (wal, report) = Wal::open(dir.path(), opts(1024, FsyncPolicy::Never)).unwrap();
            assert_eq!(report.truncated.len(), 1, "{keep_frames:?}: {report:?}");
            assert_eq!((&report.truncated[0].0, report.truncated[0].1), (victim, cut));
            assert!(
                report.truncated[0]
                    .2
                    .contains("bytes of whole records are missing"),
                "{report:?}"
            );
            let removed: Vec<PathBuf> = segs[2..].iter().map(|(_, p)| p.clone()).collect();
            assert_eq!(report.removed_segments, removed);
            let got = replay_all(&wal);
            assert!(got.len() < recs.len());
            assert_eq!(enc(&got), enc(&recs[..got.len()]));
            drop(wal);
            let (_, again) = Wal::open(dir.path(), opts(1024, FsyncPolicy::Never)).unwrap();
            assert!(again.is_clean(), "{again:?}");
        }
    }

    /// Segments written before segment headers existed (no header frame) still replay.
    #[test]
    fn segments_without_a_header_still_replay() {
        let dir = tempfile::tempdir().unwrap();
        let recs = workload(6);
        for (i, pair) in recs.chunks(2).enumerate() {
            let mut buf = Vec::new();
            let mut enc = codec::Encoder::new();
            for r in pair {
                segment::append_framed(&mut buf, r.as_ref(), MAX_RECORD_LEN, &mut enc).unwrap();
            }
            fs::write(dir.path().join(segment::segment_name(i as u64)), &buf).unwrap();
        }
        let (wal, report) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(enc(&replay_all(&wal)), enc(&recs));
        assert_eq!(wal.segment_range().unwrap(), (0, 3));
    }

    /// A segment header naming another segment (a renamed or copied file) is damage.
    #[test]
    fn segment_header_must_name_its_segment() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
            wal.log(&workload(3)).unwrap();
        }
        fs::rename(dir.path().join("00000000"), dir.path().join("00000007")).unwrap();
        let (wal, report) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        assert_eq!(report.truncated.len(), 1, "{report:?}");
        assert_eq!(report.truncated[0].1, 0);
        assert!(
            report.truncated[0].2.contains("names segment 00000000"),
            "{report:?}"
        );
        assert!(replay_all(&wal).is_empty());
    }

    #[test]
    fn empty_segments_and_gaps() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("00000000"), b"").unwrap();
        fs::write(dir.path().join("00000001"), b"").unwrap();
        fs::write(dir.path().join("not-a-segment"), b"x").unwrap();
        {
            let (wal, report) = Wal::open(dir.path(), WalOptions::default()).unwrap();
            assert!(report.is_clean(), "{report:?}");
            assert_eq!(wal.segment_range().unwrap(), (0, 2));
            assert!(replay_all(&wal).is_empty());
            wal.log(&[series(1)]).unwrap();
        }
        // A missing segment: what follows it is dropped.
        fs::write(dir.path().join("00000005"), b"").unwrap();
        let (wal, report) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        assert_eq!(report.removed_segments, [dir.path().join("00000005")]);
        assert_eq!(wal.segment_range().unwrap(), (0, 3));
        assert_eq!(enc(&replay_all(&wal)), enc(&[series(1)]));
    }

    #[test]
    fn checkpoint_keeps_what_keep_returns_and_replay_starts_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), opts(4096, FsyncPolicy::Never)).unwrap();
        let old: Vec<Record> = (0..10).flat_map(|r| [series(r), samples(r, 0, 5)]).collect();
        wal.log(&old).unwrap();
        let through = wal.cut_segment().unwrap() - 1;
        let new = vec![samples(2, 100, 3), series(11)];
        wal.log(&new).unwrap();

        // Keep the series with even refs, drop every sample.
        let keep = |r: Record| match r {
            Record::Series(s) => {
                let s: Vec<RefSeries> = s.into_iter().filter(|s| s.series_ref % 2 == 0).collect();
                (!s.is_empty()).then_some(Record::Series(s))
            }
            _ => None,
        };
        let stats = wal.checkpoint(through, keep).unwrap();
        assert_eq!(stats.records_read, 20);
        assert_eq!(stats.records_kept, 5);
        assert_eq!(stats.segments_deleted as u64, through + 1);
        assert!(checkpoint::checkpoint_dir(dir.path(), through).is_dir());
        assert_eq!(wal.segment_range().unwrap(), (through + 1, through + 1));

        let mut want: Vec<Record> = (0..10).filter(|r| r % 2 == 0).map(series).collect();
        want.extend(new.iter().cloned());
        assert_eq!(enc(&replay_all(&wal)), enc(&want));
        assert!(matches!(
            wal.checkpoint(through, Some),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            wal.checkpoint(through + 5, Some),
            Err(Error::InvalidArgument(_))
        ));

        // A second checkpoint through the active segment cuts it, carries the first over and
        // deletes it.
        let active = wal.segment_range().unwrap().1;
        let stats = wal.checkpoint(active, Some).unwrap();
        assert_eq!(stats.checkpoints_deleted, 1);
        assert!(!checkpoint::checkpoint_dir(dir.path(), through).exists());
        drop(wal);
        let (wal, report) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        assert!(report.is_clean());
        let mut got = Vec::new();
        let rs = wal
            .replay(|r| {
                got.push(r);
                Ok(())
            })
            .unwrap();
        assert_eq!(rs.checkpoint, Some(active));
        assert_eq!(enc(&got), enc(&want));
    }

    #[test]
    fn damaged_checkpoint_is_cut_and_segments_still_replay() {
        let dir = tempfile::tempdir().unwrap();
        let through;
        {
            let (wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
            wal.log(&(0..50).map(series).collect::<Vec<_>>()).unwrap();
            through = wal.cut_segment().unwrap() - 1;
            wal.checkpoint(through, Some).unwrap();
            wal.log(&[samples(1, 5, 2)]).unwrap();
        }
        let cp_file = checkpoint::checkpoint_dir(dir.path(), through).join("00000000");
        let mut bytes = fs::read(&cp_file).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        fs::write(&cp_file, &bytes).unwrap();
        // Leftovers of an interrupted checkpoint are cleaned up.
        fs::create_dir(dir.path().join("checkpoint.00000009.tmp")).unwrap();

        let (wal, report) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        assert_eq!(report.truncated.len(), 1);
        assert_eq!(report.truncated[0].0, cp_file);
        assert!(!dir.path().join("checkpoint.00000009.tmp").exists());
        let got = replay_all(&wal);
        let n = got.len() - 1;
        assert!(n > 0 && n < 50);
        let mut want: Vec<Record> = (0..n as u64).map(series).collect();
        want.push(samples(1, 5, 2));
        assert_eq!(enc(&got), enc(&want));
    }

    #[test]
    fn fsync_policies() {
        for fsync in [
            FsyncPolicy::Always,
            FsyncPolicy::Never,
            FsyncPolicy::Interval(Duration::from_millis(5)),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let (wal, _) = Wal::open(dir.path(), opts(1 << 20, fsync)).unwrap();
            wal.log(&workload(10)).unwrap();
            match fsync {
                FsyncPolicy::Always => assert!(!wal.shared.state.lock().dirty),
                FsyncPolicy::Never => assert!(wal.shared.state.lock().dirty),
                FsyncPolicy::Interval(_) => {
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while wal.shared.state.lock().dirty {
                        assert!(Instant::now() < deadline, "background fsync never ran");
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            }
            wal.sync().unwrap();
            assert!(!wal.shared.state.lock().dirty);
            assert_eq!(replay_all(&wal).len(), 10);
        }
    }

    #[test]
    fn one_scheduler_fsyncs_many_wals_and_forgets_closed_ones() {
        let sched = FsyncScheduler::new().unwrap();
        let every = FsyncPolicy::Interval(Duration::from_millis(5));
        let dirs: Vec<_> = (0..20).map(|_| tempfile::tempdir().unwrap()).collect();
        let wals: Vec<Wal> = dirs
            .iter()
            .map(|d| {
                Wal::open_with(d.path(), opts(1 << 20, every), Some(&sched))
                    .unwrap()
                    .0
            })
            .collect();
        assert_eq!(sched.len(), 20);
        for w in &wals {
            w.log(&workload(3)).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while wals.iter().any(|w| w.shared.state.lock().dirty) {
            assert!(
                Instant::now() < deadline,
                "the shared scheduler did not fsync every WAL"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        // Closed and dropped WALs are forgotten; the others are still fsynced.
        let mut wals = wals;
        wals[0].close().unwrap();
        let weak = Arc::downgrade(&wals[1].shared);
        drop(wals.remove(1));
        let deadline = Instant::now() + Duration::from_secs(10);
        while sched.len() > 18 || weak.upgrade().is_some() {
            assert!(Instant::now() < deadline, "{} WALs still scheduled", sched.len());
            std::thread::sleep(Duration::from_millis(2));
        }
        wals[5].log(&workload(2)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while wals[5].shared.state.lock().dirty {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(2));
        }
        // The thread lives while any handle does, and stops with the last.
        drop(wals);
        assert!(sched.is_empty() || sched.len() <= 18);
        drop(sched);
    }

    #[test]
    fn background_thread_stops_on_close_and_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let every = FsyncPolicy::Interval(Duration::from_secs(3600));
        let (wal, _) = Wal::open(dir.path(), opts(1 << 20, every)).unwrap();
        let weak = Arc::downgrade(&wal.shared);
        let started = Instant::now();
        wal.close().unwrap();
        // Woken by close, not by its hour-long timer.
        assert!(started.elapsed() < Duration::from_secs(60));
        assert!(wal.scheduler.lock().is_none());
        drop(wal);
        assert!(weak.upgrade().is_none(), "the fsync thread still holds the WAL");

        let (wal, _) = Wal::open(dir.path(), opts(1 << 20, every)).unwrap();
        let weak = Arc::downgrade(&wal.shared);
        wal.log(&[series(1)]).unwrap();
        drop(wal);
        assert!(weak.upgrade().is_none(), "the fsync thread outlived the WAL");
        let (wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        assert_eq!(replay_all(&wal).len(), 1);
    }

    #[test]
    fn concurrent_writers_never_interleave_within_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), opts(64 << 10, FsyncPolicy::Never)).unwrap();
        const PER_THREAD: i64 = 300;
        std::thread::scope(|s| {
            for th in 0..4u64 {
                let wal = &wal;
                s.spawn(move || {
                    for i in 0..PER_THREAD {
                        // Every sample of a record carries its thread and sequence number.
                        let rec = Record::Samples(
                            (0..(1 + i % 50))
                                .map(|_| RefSample {
                                    series_ref: th,
                                    t: i,
                                    v: (th * 1000) as f64 + i as f64,
                                })
                                .collect(),
                        );
                        if i % 2 == 0 {
                            wal.log(&[rec]).unwrap();
                        } else {
                            wal.log_buffered(&rec);
                            wal.flush().unwrap();
                        }
                    }
                });
            }
        });
        let mut next = [0i64; 4];
        for r in replay_all(&wal) {
            let Record::Samples(s) = r else {
                panic!("unexpected record")
            };
            let (th, i) = (s[0].series_ref, s[0].t);
            assert_eq!(s.len() as i64, 1 + i % 50);
            for x in &s {
                assert_eq!((x.series_ref, x.t, x.v), (th, i, (th * 1000) as f64 + i as f64));
            }
            assert_eq!(next[th as usize], i, "thread {th} out of order");
            next[th as usize] += 1;
        }
        assert_eq!(next, [PER_THREAD; 4]);
    }

    #[test]
    fn wal_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Wal>();
    }

    #[test]
    fn failed_checkpoint_publishes_and_deletes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        wal.log(&workload(20)).unwrap();
        let through = wal.cut_segment().unwrap() - 1;
        // Damage after open checked the segment: the checkpoint must refuse, not carry on.
        let seg0 = dir.path().join("00000000");
        let mut bytes = fs::read(&seg0).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x10;
        fs::write(&seg0, &bytes).unwrap();
        let err = wal.checkpoint(through, Some).unwrap_err();
        assert!(
            matches!(err, Error::Corruption { ref path, .. } if *path == seg0),
            "{err}"
        );
        assert!(seg0.exists());
        let (cps, tmps) = checkpoint::list(dir.path()).unwrap();
        assert!(cps.is_empty() && tmps.is_empty(), "{cps:?} {tmps:?}");
        // Replay reports it too, naming the segment.
        let err = wal.replay(|_| Ok(())).unwrap_err();
        assert!(
            matches!(err, Error::Corruption { ref path, .. } if *path == seg0),
            "{err}"
        );
    }

    #[test]
    fn replay_callback_errors_stop_replay() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        wal.log(&workload(5)).unwrap();
        let mut n = 0;
        let err = wal
            .replay(|_| {
                n += 1;
                if n == 2 {
                    Err(Error::InvalidArgument("stop".into()))
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
        assert!(err.to_string().contains("stop"));
        assert_eq!(n, 2);
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        prop_oneof![
            (any::<u64>(), "[a-z]{1,8}").prop_map(|(r, v)| Record::Series(vec![RefSeries {
                series_ref: r,
                labels: Labels::from_pairs([("__name__", v)]),
            }])),
            prop::collection::vec((any::<u64>(), any::<i64>(), any::<u64>()), 0..40).prop_map(|v| {
                Record::Samples(
                    v.into_iter()
                        .map(|(series_ref, t, bits)| RefSample {
                            series_ref,
                            t,
                            v: f64::from_bits(bits),
                        })
                        .collect(),
                )
            }),
            (any::<u64>(), any::<i64>(), any::<i64>()).prop_map(|(series_ref, mint, maxt)| {
                Record::Tombstones(vec![RefTombstone {
                    series_ref,
                    mint,
                    maxt,
                }])
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Whatever is cut off or flipped, replay after open is a prefix of what was logged.
        #[test]
        fn prop_damage_leaves_a_prefix(
            batches in prop::collection::vec(prop::collection::vec(arb_record(), 1..4), 1..30),
            seg_pick in any::<usize>(),
            at in any::<u64>(),
            flip in any::<bool>(),
            byte in 1u8..,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let all: Vec<Record> = batches.iter().flatten().cloned().collect();
            {
                let (wal, _) = Wal::open(dir.path(), opts(1024, FsyncPolicy::Never)).unwrap();
                for b in &batches {
                    wal.log(b).unwrap();
                }
            }
            let segs: Vec<_> = segment::list_segments(dir.path())
                .unwrap()
                .into_iter()
                .filter(|(_, p)| fs::metadata(p).unwrap().len() > 0)
                .collect();
            let (_, victim) = &segs[seg_pick % segs.len()];
            let mut bytes = fs::read(victim).unwrap();
            let at = (at % bytes.len() as u64) as usize;
            if flip {
                bytes[at] ^= byte;
            } else {
                bytes.truncate(at);
            }
            fs::write(victim, &bytes).unwrap();
            let (wal, report) = Wal::open(dir.path(), opts(1024, FsyncPolicy::Never)).unwrap();
            let got = replay_all(&wal);
            prop_assert!(got.len() < all.len() || report.is_clean());
            prop_assert_eq!(enc(&got), enc(&all[..got.len()]));
            // Repaired: a second open finds nothing to do.
            drop(wal);
            let (_, again) = Wal::open(dir.path(), opts(1024, FsyncPolicy::Never)).unwrap();
            prop_assert!(again.is_clean(), "{:?}", again);
        }
    }
}
