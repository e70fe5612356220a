//! The head: the in-memory, writable part of a tenant's store.
//!
//! Every series lives here while it receives samples: its labels as interned symbols, its
//! closed XOR chunks (immutable, shared with readers by `Arc`), one open chunk that samples
//! are compressed into as they arrive, and an out-of-order buffer. The head is cut into
//! persisted blocks by [`crate::Db::compact`], which then truncates it.
//!
//! # Concurrency
//! Two sharded maps find a series, by label hash (for appends that carry labels) and by id
//! (for WAL replay and reads); each series has its own mutex, so appends to different series
//! never contend on anything but a shard's read lock. Lock order, never reversed:
//! hash shard → id shard → postings → symbols, and series mutex → symbols (an append's
//! error message names the series); `gc` takes an id shard, then series mutexes.
//!
//! A third sharded map, the key table, finds series by keys that ingest paths choose (a
//! seeded 128-bit hash of a series' labels as received, see [`KeyedSeries`]); its shard
//! locks are taken alone too.

pub(crate) mod append;
pub(crate) mod chunk_file;
pub(crate) mod pending;
mod postings;
mod read;
mod symbols;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use hashbrown::HashMap;
use metricsd_model::{Label, Labels, Limits, Sample};
use parking_lot::{Mutex, RwLock};
use smallvec::SmallVec;
use thin_vec::ThinVec;

use crate::chunkenc::{Encoding, XorChunk};
use crate::{Error, Result};

pub(crate) use postings::MemPostings;
pub(crate) use symbols::Symbols;

const SHARDS: usize = 64;

/// The shard of `shards` for hash or id `h`.
#[inline]
#[allow(
    clippy::indexing_slicing,
    reason = "`h % SHARDS` is below SHARDS, the length of the array"
)]
fn shard<T>(shards: &[T; SHARDS], h: usize) -> &T {
    &shards[h % SHARDS]
}

/// Room the key table has beyond two keys per head series (keys per shard: this plus
/// twice the series, over [`SHARDS`]).
const KEYED_SLACK: usize = 64 * 1024;

/// Samples per head chunk by default: 120, as Prometheus. The open chunk of every series
/// is in memory, so its size is most of a series' memory while data arrives; closed chunks
/// go to `chunks_head/` and blocks re-chunk up to [`crate::block::MAX_SAMPLES_PER_CHUNK`]
/// samples, so a smaller head chunk costs no block size. (240 was the default before issue
/// 12: at 100k series × 2 h of noisy data, 120 saves ≈ 0.45 KB of RSS per series;
/// `docs/benchmarks.md`.)
pub const DEFAULT_CHUNK_MAX_SAMPLES: usize = 120;

/// Options of the head.
#[derive(Debug, Clone)]
pub struct HeadOptions {
    /// Block range in ms: chunks never span a multiple of it, so blocks cut cleanly. At
    /// most `u32::MAX` (49 days; [`Head::new`] lowers a larger one).
    pub block_range_ms: i64,
    /// Samples per chunk before a new one is started. Default
    /// [`DEFAULT_CHUNK_MAX_SAMPLES`].
    pub chunk_max_samples: usize,
    /// How far behind the newest sample an out-of-order sample may be (ms); 0 rejects them.
    pub ooo_window_ms: i64,
    /// Most series the head may hold; 0 = unlimited.
    pub max_series: usize,
    /// Label limits checked when a series is created.
    pub limits: Limits,
    /// The tenant, for error messages.
    pub tenant: String,
    /// The wall clock: the out-of-order window ends at the newest sample, but never later
    /// than now.
    pub clock: crate::Clock,
}

impl Default for HeadOptions {
    fn default() -> Self {
        HeadOptions {
            block_range_ms: 2 * 3600 * 1000,
            chunk_max_samples: DEFAULT_CHUNK_MAX_SAMPLES,
            ooo_window_ms: 3600 * 1000,
            max_series: 0,
            limits: Limits::default(),
            tenant: "default".into(),
            clock: crate::Clock::system(),
        }
    }
}

/// One series in the head.
pub(crate) struct MemSeries {
    pub id: u32,
    /// Label pairs as (name, value) symbols, sorted by name.
    pub labels: Box<[(u32, u32)]>,
    pub data: Mutex<SeriesData>,
    /// Set by [`Head::gc`] when the series leaves the head: a [`SeriesRef`] to it is stale.
    pub removed: AtomicBool,
    /// The series' labels, set by [`Head::gc`] when it removes the series while someone
    /// still holds it: its symbols are released, so [`Head::labels_of`] answers from here.
    pub tomb: std::sync::OnceLock<Box<Labels>>,
}

/// A closed, immutable head chunk: 32 bytes, for there are a dozen per series in a head
/// that holds three hours (issue 12: it was 48).
///
/// The bytes are in a slab ([`pending`]: chunks cut recently, waiting for the settle pass;
/// or a slab of their own, for a head without chunk files and for a chunk a delete
/// rewrote) or in a `chunks_head` file ([`chunk_file`]), at `chunk_ref` (`offset << 24 |
/// length`, as both name their chunks). The time range is `mint` and a 32-bit span, which
/// holds any chunk: chunks never cross a block-range boundary, and [`Head::new`] caps the
/// block range at `u32::MAX` ms (49 days).
#[derive(Clone)]
pub(crate) struct HeadChunk {
    pub mint: i64,
    chunk_ref: u64,
    place: Place,
}

/// Where a closed chunk's bytes are, with the chunk's span, encoding and whether
/// [`Head::recompress`] has chosen its final encoding (these ride in the padding after the
/// variant tag, which is what keeps [`HeadChunk`] at 32 bytes).
#[derive(Clone)]
enum Place {
    Slab {
        slab: Arc<pending::Slab>,
        span: u32,
        enc: Encoding,
        settled: bool,
    },
    File {
        file: Arc<chunk_file::ChunkFile>,
        span: u32,
        enc: Encoding,
        settled: bool,
    },
}

/// Where a chunk's bytes are, without the rest: what [`HeadChunk::new`] takes.
#[derive(Clone)]
pub(crate) enum ChunkBytes {
    /// In memory, in a slab.
    Slab(Arc<pending::Slab>, u64),
    /// In a `chunks_head` file, read with `pread` when needed.
    File(Arc<chunk_file::ChunkFile>, u64),
}

const _: () = assert!(std::mem::size_of::<HeadChunk>() == 32);

impl HeadChunk {
    /// A chunk of `[mint, maxt]` whose bytes are `at`; `None` when the span does not fit in
    /// 32 bits (never for a chunk this head cut; a damaged checkpoint could name one).
    pub(crate) fn new(
        mint: i64,
        maxt: i64,
        enc: Encoding,
        settled: bool,
        at: ChunkBytes,
    ) -> Option<HeadChunk> {
        let span = u32::try_from(maxt.checked_sub(mint)?).ok()?;
        Some(match at {
            ChunkBytes::Slab(slab, chunk_ref) => HeadChunk {
                mint,
                chunk_ref,
                place: Place::Slab {
                    slab,
                    span,
                    enc,
                    settled,
                },
            },
            ChunkBytes::File(file, chunk_ref) => HeadChunk {
                mint,
                chunk_ref,
                place: Place::File {
                    file,
                    span,
                    enc,
                    settled,
                },
            },
        })
    }

    /// A chunk in a slab of its own (a head without chunk files, a chunk a delete
    /// rewrote). `None` when its span does not fit (see [`HeadChunk::new`]).
    pub(crate) fn mem(mint: i64, maxt: i64, enc: Encoding, data: &[u8]) -> Option<HeadChunk> {
        let (slab, chunk_ref) = pending::Slab::single(enc, data);
        HeadChunk::new(mint, maxt, enc, false, ChunkBytes::Slab(slab, chunk_ref))
    }

    /// The newest sample's timestamp.
    pub(crate) fn maxt(&self) -> i64 {
        let (Place::Slab { span, .. } | Place::File { span, .. }) = &self.place;
        self.mint + i64::from(*span)
    }

    /// The chunk's encoding.
    pub(crate) fn enc(&self) -> Encoding {
        let (Place::Slab { enc, .. } | Place::File { enc, .. }) = &self.place;
        *enc
    }

    /// Whether [`Head::recompress`] has chosen this chunk's final encoding.
    pub(crate) fn settled(&self) -> bool {
        let (Place::Slab { settled, .. } | Place::File { settled, .. }) = &self.place;
        *settled
    }

    /// Where the bytes are.
    pub(crate) fn bytes(&self) -> ChunkBytes {
        match &self.place {
            Place::Slab { slab, .. } => ChunkBytes::Slab(slab.clone(), self.chunk_ref),
            Place::File { file, .. } => ChunkBytes::File(file.clone(), self.chunk_ref),
        }
    }

    /// The chunk file holding the chunk, if it is in one, and its ref there.
    pub(crate) fn file(&self) -> Option<(&Arc<chunk_file::ChunkFile>, u64)> {
        match &self.place {
            Place::File { file, .. } => Some((file, self.chunk_ref)),
            Place::Slab { .. } => None,
        }
    }

    /// The chunk as a query reads it.
    pub(crate) fn reader(&self) -> (Arc<dyn crate::querier::ChunkReader>, u64) {
        match &self.place {
            Place::Slab { slab, .. } => (slab.clone(), self.chunk_ref),
            Place::File { file, .. } => (file.clone(), self.chunk_ref),
        }
    }

    /// The chunk's encoding and bytes, read into `raw`.
    pub(crate) fn load<'a>(&self, raw: &'a mut Vec<u8>) -> Result<(Encoding, &'a [u8])> {
        use crate::querier::ChunkReader;
        match &self.place {
            Place::Slab { slab, .. } => slab.read_chunk(self.chunk_ref, raw),
            Place::File { file, .. } => file.read_chunk(self.chunk_ref, raw),
        }
    }

    /// Decodes the chunk's samples into `dst`.
    pub(crate) fn decode_into(&self, dst: &mut Vec<Sample>) -> Result<()> {
        let mut raw = Vec::new();
        let (enc, bytes) = self.load(&mut raw)?;
        crate::chunkenc::decode(enc, bytes, dst)
    }

    /// Bytes of memory the chunk's data holds.
    pub(crate) fn mem_bytes(&self) -> usize {
        match &self.place {
            Place::Slab { .. } => pending::chunk_len(self.chunk_ref),
            Place::File { .. } => 0,
        }
    }

    /// Whether `self` still holds the bytes `data` (not replaced meanwhile).
    fn holds(&self, data: &ChunkBytes) -> bool {
        match (&self.place, data) {
            (Place::Slab { slab: a, .. }, ChunkBytes::Slab(b, r)) => {
                Arc::ptr_eq(a, b) && self.chunk_ref == *r
            }
            _ => false,
        }
    }
}

/// Appends `c` growing `v` by one slot, not by doubling: a series closes a chunk every
/// 120 samples, so the reallocation is rare, and doubling left up to half of a long-lived
/// list empty (a three-hour head has a dozen chunks per series).
pub(crate) fn push_exact(v: &mut ThinVec<HeadChunk>, c: HeadChunk) {
    if v.len() == v.capacity() {
        v.reserve_exact(1);
    }
    v.push(c);
}

/// The mutable state of a series, guarded by its mutex.
pub(crate) struct SeriesData {
    /// `ThinVec`s: a pointer each while empty (most series have no out-of-order samples).
    pub closed: ThinVec<HeadChunk>,
    pub open: Option<OpenChunk>,
    /// Newest in-order sample; `i64::MIN` when the series has none.
    pub last_t: i64,
    pub last_v: u64,
    /// Out-of-order samples, sorted by time, unique timestamps.
    pub ooo: ThinVec<Sample>,
    /// Out-of-order samples taken by a running compaction: still readable until its block
    /// is in place.
    pub ooo_compacting: ThinVec<Sample>,
}

pub(crate) struct OpenChunk {
    pub chunk: XorChunk,
    pub mint: i64,
    pub maxt: i64,
}

impl SeriesData {
    fn new() -> Self {
        SeriesData {
            closed: ThinVec::new(),
            open: None,
            last_t: i64::MIN,
            last_v: 0,
            ooo: ThinVec::new(),
            ooo_compacting: ThinVec::new(),
        }
    }

    /// Whether the series holds no samples at all.
    pub fn is_empty(&self) -> bool {
        self.closed.is_empty() && self.open.is_none() && self.ooo.is_empty() && self.ooo_compacting.is_empty()
    }

    pub fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.closed.capacity() * std::mem::size_of::<HeadChunk>()
            + self.closed.iter().map(HeadChunk::mem_bytes).sum::<usize>()
            + self.open.as_ref().map_or(0, |o| o.chunk.mem_size())
            + (self.ooo.capacity() + self.ooo_compacting.capacity()) * 16
    }
}

/// A handle to a head series, for appending without looking its labels up each time
/// (Prometheus' appenders hand out series refs for the same reason).
///
/// A ref may go stale: [`Head::gc`] removes series that hold no samples, and a tenant's
/// store may be reopened with a new head. Appends through a stale ref are never lost: the
/// [`crate::db::Appender`] checks the ref under the append gate (which `gc` needs
/// exclusively) and falls back to finding or creating the series by the labels the ref
/// carries. Cloning is one reference count.
#[derive(Clone)]
pub struct SeriesRef(Arc<RefInner>);

struct RefInner {
    series: Arc<MemSeries>,
    /// [`Head::uid`] of the head the series lives in.
    head: u64,
    labels: Labels,
}

impl SeriesRef {
    fn new(head: &Head, series: Arc<MemSeries>, labels: &Labels) -> SeriesRef {
        SeriesRef(Arc::new(RefInner {
            series,
            head: head.uid,
            labels: labels.clone(),
        }))
    }

    /// The series' id in the head.
    pub fn id(&self) -> u32 {
        self.0.series.id
    }

    /// The series' labels.
    pub fn labels(&self) -> &Labels {
        &self.0.labels
    }

    /// Whether two refs are the same handle (not merely the same series).
    pub fn same(&self, other: &SeriesRef) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for SeriesRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SeriesRef({}, {})", self.0.series.id, self.0.labels)
    }
}

/// A head series found by a key an ingest path chose ([`crate::Db::keyed_series`]), to
/// append to without naming its labels ([`crate::Appender::append_known`]).
///
/// Keys are the caller's: typically a seeded 128-bit hash of a series' labels exactly as a
/// protocol delivered them, so that a known series costs no label parsing, validation or
/// lookup by labels. The store trusts that one key always means one label set; a caller
/// derives keys from the labels' bytes and a seed nobody else knows, and uses one seed per
/// encoding. The table keeps at most about two keys per head series (plus some slack) and
/// forgets a shard's keys when it overflows; [`Head::gc`] drops the keys of removed
/// series. A handle whose series was removed since it was found still stores its samples:
/// the commit finds or recreates the series by its labels.
#[derive(Clone)]
pub struct KeyedSeries {
    pub(crate) series: Arc<MemSeries>,
    /// [`Head::uid`] of the head the series lives in.
    pub(crate) head: u64,
}

impl std::fmt::Debug for KeyedSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyedSeries({})", self.series.id)
    }
}

/// Hashes a key table key by its low 64 bits: keys are uniform hashes already.
#[derive(Clone, Copy, Default)]
struct KeyBuild;

struct KeyHasher(u64);

impl std::hash::BuildHasher for KeyBuild {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not reached for u128 keys (they call write_u128); kept correct for any input.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u128(&mut self, k: u128) {
        self.0 = k as u64;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyShard = HashMap<u128, Arc<MemSeries>, KeyBuild>;

/// Distinguishes heads, so a ref from one is never used in another.
static NEXT_HEAD_UID: AtomicU64 = AtomicU64::new(1);

type HashShard = HashMap<u64, SmallVec<[Arc<MemSeries>; 1]>, foldhash::fast::RandomState>;
type IdShard = HashMap<u32, Arc<MemSeries>, foldhash::fast::RandomState>;

/// The in-memory head of one tenant's store.
pub struct Head {
    opts: HeadOptions,
    /// This head's identity for [`SeriesRef`]s.
    uid: u64,
    pub(crate) symbols: Symbols,
    by_hash: Box<[RwLock<HashShard>; SHARDS]>,
    by_id: Box<[RwLock<IdShard>; SHARDS]>,
    /// The key table (see [`KeyedSeries`]).
    keyed: Box<[RwLock<KeyShard>; SHARDS]>,
    pub(crate) postings: RwLock<MemPostings>,
    next_id: AtomicU32,
    num_series: AtomicUsize,
    /// Oldest and newest sample timestamps in the head (`i64::MAX`/`i64::MIN` when empty).
    min_t: AtomicI64,
    max_t: AtomicI64,
    /// In-order samples must be at or after this: older data has been cut into blocks.
    min_valid: AtomicI64,
    /// Samples appended since start (in-order and out-of-order).
    pub(crate) samples_appended: AtomicU64,
    pub(crate) ooo_appended: AtomicU64,
    pub(crate) series_created: AtomicU64,
    pub(crate) series_removed: AtomicU64,
    /// Where closed chunks go to leave memory; `None` keeps them in memory.
    chunk_files: Option<chunk_file::ChunkFiles>,
    /// Where closed chunks wait for the settle pass (heads with chunk files only).
    pub(crate) pending: Option<pending::Pending>,
    /// Closed chunks cut since the last [`Head::recompress`] pass began (approximate: a
    /// pass with nothing to do is skipped).
    pub(crate) unsettled: AtomicUsize,
}

impl Head {
    /// An empty head.
    pub fn new(mut opts: HeadOptions) -> Head {
        // A chunk never crosses a multiple of the block range, so this bounds a chunk's
        // span to what `HeadChunk` holds.
        opts.block_range_ms = opts.block_range_ms.min(i64::from(u32::MAX));
        Head {
            opts,
            uid: NEXT_HEAD_UID.fetch_add(1, Ordering::Relaxed),
            symbols: Symbols::default(),
            by_hash: Box::new(std::array::from_fn(|_| RwLock::new(HashShard::default()))),
            by_id: Box::new(std::array::from_fn(|_| RwLock::new(IdShard::default()))),
            keyed: Box::new(std::array::from_fn(|_| RwLock::new(KeyShard::default()))),
            postings: RwLock::new(MemPostings::default()),
            next_id: AtomicU32::new(1),
            num_series: AtomicUsize::new(0),
            min_t: AtomicI64::new(i64::MAX),
            max_t: AtomicI64::new(i64::MIN),
            min_valid: AtomicI64::new(i64::MIN),
            samples_appended: AtomicU64::new(0),
            ooo_appended: AtomicU64::new(0),
            series_created: AtomicU64::new(0),
            series_removed: AtomicU64::new(0),
            chunk_files: None,
            pending: None,
            unsettled: AtomicUsize::new(0),
        }
    }

    /// Closed chunks will be moved to files in `dir` (`chunks_head/`) by
    /// [`Head::recompress`]. The files a previous process left are opened for replay to
    /// hand back ([`Head::restore_chunks`]); [`Head::retain_chunk_files`] then deletes the
    /// ones nothing refers to (see [`chunk_file`]).
    ///
    /// # Errors
    /// I/O errors creating or listing the directory.
    pub fn with_chunk_dir(mut self, dir: &std::path::Path) -> Result<Head> {
        self.chunk_files = Some(chunk_file::ChunkFiles::open(dir)?);
        self.pending = Some(pending::Pending::default());
        Ok(self)
    }

    /// Removes the chunk files that only hold chunks before `t` (after [`Head::truncate`]).
    pub(crate) fn remove_chunk_files_before(&self, t: i64) -> usize {
        self.chunk_files.as_ref().map_or(0, |f| f.remove_before(t))
    }

    /// (files, bytes) of closed chunks on disk.
    pub fn chunk_file_stats(&self) -> (usize, u64) {
        self.chunk_files.as_ref().map_or((0, 0), |f| f.stats())
    }

    /// Finds or creates the series `labels` **without logging it to a WAL**: for embedders
    /// that do not need durability and for benchmarks of the head alone. Durable writes go
    /// through [`crate::Db::appender`]. It does not take a store's append gate, so it is
    /// not for the head of a [`crate::Db`] that may be compacting.
    pub fn series_ref(&self, labels: &Labels) -> Result<SeriesRef> {
        self.get_or_create(labels, |_, _| {})
            .map(|(s, _)| SeriesRef::new(self, s, labels))
    }

    /// Appends one sample to a series **without a WAL** (see [`Head::series_ref`]); a stale
    /// ref is resolved by its labels.
    pub fn append_sample(&self, series: &SeriesRef, t: i64, v: f64) -> Result<()> {
        let now = self.opts.clock.now_ms();
        match self.live(series) {
            Some(s) => self.append(s, t, v, false, now),
            None => self.append(&self.series_ref(series.labels())?.0.series, t, v, false, now),
        }
        .map(|_| ())
    }

    /// The series of `r` if it is this head's and still in it. Callers that append hold the
    /// append gate (or are the only user of the head), so the answer holds until they
    /// release it.
    pub(crate) fn live<'r>(&self, r: &'r SeriesRef) -> Option<&'r Arc<MemSeries>> {
        (r.0.head == self.uid && !r.0.series.removed.load(Ordering::Acquire)).then_some(&r.0.series)
    }

    fn key_shard(&self, key: u128) -> &RwLock<KeyShard> {
        shard(&self.keyed, (key >> 64) as usize)
    }

    /// The live series remembered under `key`.
    pub(crate) fn keyed(&self, key: u128) -> Option<KeyedSeries> {
        let series = self.key_shard(key).read().get(&key)?.clone();
        (!series.removed.load(Ordering::Acquire)).then_some(KeyedSeries {
            series,
            head: self.uid,
        })
    }

    /// Remembers `series` under `key`. A shard that is full forgets its keys first, which
    /// bounds the table however many encodings of their labels senders use.
    pub(crate) fn remember(&self, key: u128, series: &Arc<MemSeries>) {
        let cap = (self.num_series().saturating_mul(2) + KEYED_SLACK) / SHARDS;
        let mut shard = self.key_shard(key).write();
        if shard.len() >= cap && !shard.contains_key(&key) {
            *shard = KeyShard::default();
        }
        shard.insert(key, series.clone());
    }

    /// The series of a keyed handle if it is this head's and still in it (see
    /// [`Head::live`]); `Err` when the handle is from another head.
    pub(crate) fn live_keyed<'k>(&self, k: &'k KeyedSeries) -> Result<Option<&'k Arc<MemSeries>>> {
        if k.head != self.uid {
            return Err(Error::Unavailable(
                "a keyed series handle from another store was used".into(),
            ));
        }
        Ok((!k.series.removed.load(Ordering::Acquire)).then_some(&k.series))
    }

    /// Number of keys in the key table.
    #[cfg(test)]
    pub(crate) fn keyed_len(&self) -> usize {
        self.keyed.iter().map(|s| s.read().len()).sum()
    }

    /// A ref to `series` (found or created for `labels`).
    pub(crate) fn make_ref(&self, series: Arc<MemSeries>, labels: &Labels) -> SeriesRef {
        SeriesRef::new(self, series, labels)
    }

    /// The head's options.
    pub fn options(&self) -> &HeadOptions {
        &self.opts
    }

    /// Number of interned label strings (names and values) of the head's series.
    pub fn num_symbols(&self) -> usize {
        self.symbols.stats().0
    }

    /// Number of series.
    pub fn num_series(&self) -> usize {
        self.num_series.load(Ordering::Relaxed)
    }

    /// Oldest sample timestamp, `None` when the head is empty.
    pub fn min_time(&self) -> Option<i64> {
        let t = self.min_t.load(Ordering::Acquire);
        (t != i64::MAX).then_some(t)
    }

    /// Newest sample timestamp, `None` when the head is empty.
    pub fn max_time(&self) -> Option<i64> {
        let t = self.max_t.load(Ordering::Acquire);
        (t != i64::MIN).then_some(t)
    }

    /// The oldest timestamp an in-order sample may have.
    pub fn min_valid_time(&self) -> i64 {
        self.min_valid.load(Ordering::Acquire)
    }

    pub(crate) fn set_min_valid(&self, t: i64) {
        self.min_valid.fetch_max(t, Ordering::AcqRel);
    }

    pub(crate) fn set_min_time(&self, t: i64) {
        self.min_t.store(t, Ordering::Release);
    }

    #[inline]
    fn note_time(&self, t: i64) {
        // Cheap loads first: fetch_max/min on a contended cache line costs more than a load.
        if t > self.max_t.load(Ordering::Relaxed) {
            self.max_t.fetch_max(t, Ordering::AcqRel);
        }
        if t < self.min_t.load(Ordering::Relaxed) {
            self.min_t.fetch_min(t, Ordering::AcqRel);
        }
    }

    /// Id of the next series to be created (replay sets it past every replayed id).
    pub(crate) fn bump_next_id(&self, past: u32) {
        self.next_id.fetch_max(past.saturating_add(1), Ordering::AcqRel);
    }

    /// The series with `id`.
    pub(crate) fn series(&self, id: u32) -> Option<Arc<MemSeries>> {
        shard(&self.by_id, id as usize).read().get(&id).cloned()
    }

    /// Finds the series with `labels` (its stable hash is `hash`).
    pub(crate) fn lookup(&self, labels: &Labels, hash: u64) -> Option<Arc<MemSeries>> {
        let shard = shard(&self.by_hash, hash as usize).read();
        let cands = shard.get(&hash)?;
        cands.iter().find(|s| self.labels_equal(s, labels)).cloned()
    }

    fn labels_equal(&self, s: &MemSeries, labels: &Labels) -> bool {
        if s.labels.len() != labels.len() {
            return false;
        }
        self.symbols.with(|get| {
            s.labels
                .iter()
                .zip(labels.iter())
                .all(|(&(n, v), l)| *get(n) == *l.name && *get(v) == *l.value)
        })
    }

    /// The labels of a series (of a removed one too, see [`MemSeries::tomb`]).
    pub(crate) fn labels_of(&self, s: &MemSeries) -> Labels {
        self.symbols.with(|get| {
            // Under the symbols' read lock: a release (write lock) that freed this series'
            // symbols happened after its tomb was set, so this sees one or the other.
            if let Some(t) = s.tomb.get() {
                return Labels::clone(t);
            }
            Labels::from_sorted(
                s.labels
                    .iter()
                    .map(|&(n, v)| Label {
                        name: get(n),
                        value: get(v),
                    })
                    .collect(),
            )
        })
    }

    /// Finds or creates the series with `labels`. `on_create(id, labels)` runs under the
    /// shard lock before the new series becomes visible (the WAL logs the series record
    /// there, so it precedes every sample that refers to it). Checks label limits and the
    /// series limit for new series only.
    pub(crate) fn get_or_create(
        &self,
        labels: &Labels,
        on_create: impl FnOnce(u32, &Labels),
    ) -> Result<(Arc<MemSeries>, bool)> {
        let hash = labels.stable_hash();
        if let Some(s) = self.lookup(labels, hash) {
            return Ok((s, false));
        }
        metricsd_model::validate_labels(labels, &self.opts.limits)?;
        let mut shard = shard(&self.by_hash, hash as usize).write();
        if let Some(s) = shard
            .get(&hash)
            .and_then(|c| c.iter().find(|s| self.labels_equal(s, labels)))
        {
            return Ok((s.clone(), false));
        }
        if self.opts.max_series > 0 && self.num_series.load(Ordering::Relaxed) >= self.opts.max_series {
            return Err(Error::TooManySeries {
                tenant: self.opts.tenant.clone(),
                limit: self.opts.max_series,
                series: labels.clone(),
            });
        }
        let id = self.next_id.fetch_add(1, Ordering::AcqRel);
        if id == u32::MAX {
            return Err(Error::Unavailable(
                "head series id space exhausted; restart compacts it".into(),
            ));
        }
        on_create(id, labels);
        let s = self.insert(id, labels);
        shard.entry(hash).or_default().push(s.clone());
        Ok((s, true))
    }

    /// Creates a series with a given id (WAL replay). Returns the existing series when one
    /// with the same labels exists already (the caller maps the replayed id onto it).
    pub(crate) fn create_with_id(&self, id: u32, labels: &Labels) -> Arc<MemSeries> {
        let hash = labels.stable_hash();
        let mut shard = shard(&self.by_hash, hash as usize).write();
        if let Some(s) = shard
            .get(&hash)
            .and_then(|c| c.iter().find(|s| self.labels_equal(s, labels)))
        {
            return s.clone();
        }
        self.bump_next_id(id);
        let s = self.insert(id, labels);
        shard.entry(hash).or_default().push(s.clone());
        s
    }

    fn insert(&self, id: u32, labels: &Labels) -> Arc<MemSeries> {
        let s = Arc::new(MemSeries {
            id,
            labels: self.symbols.acquire(labels),
            data: Mutex::new(SeriesData::new()),
            removed: AtomicBool::new(false),
            tomb: std::sync::OnceLock::new(),
        });
        shard(&self.by_id, id as usize).write().insert(id, s.clone());
        // Postings share the symbols' strings (lock order: postings, then symbols).
        let mut postings = self.postings.write();
        self.symbols
            .with(|get| postings.add(id, s.labels.iter().map(|&(n, v)| (get(n), get(v)))));
        drop(postings);
        self.num_series.fetch_add(1, Ordering::Relaxed);
        self.series_created.fetch_add(1, Ordering::Relaxed);
        s
    }

    /// Removes series that hold no samples (after truncation). Returns how many went.
    /// Callers hold the append gate exclusively, so no appender holds a removed series;
    /// [`SeriesRef`]s to them are marked stale.
    pub(crate) fn gc(&self) -> usize {
        let mut removed = Vec::new();
        for shard in self.by_id.iter() {
            let mut w = shard.write();
            w.retain(|_, s| {
                let empty = s.data.lock().is_empty();
                if empty {
                    s.removed.store(true, Ordering::Release);
                    removed.push(s.clone());
                }
                !empty
            });
        }
        if removed.is_empty() {
            return 0;
        }
        for s in &removed {
            let labels = self.labels_of(s);
            let hash = labels.stable_hash();
            let mut shard = shard(&self.by_hash, hash as usize).write();
            if let Some(c) = shard.get_mut(&hash) {
                c.retain(|x| x.id != s.id);
                if c.is_empty() {
                    shard.remove(&hash);
                }
            }
            drop(shard);
            self.postings
                .write()
                .remove(s.id, labels.iter().map(|l| (l.name.clone(), l.value.clone())));
        }
        for shard in self.keyed.iter() {
            shard.write().retain(|_, s| !s.removed.load(Ordering::Relaxed));
        }
        // Out of every map now: a count above one (ours) is a reader or an appender's
        // handle, which may still ask for the labels after the symbols are released.
        for s in &removed {
            if Arc::strong_count(s) > 1 {
                let _ = s.tomb.set(Box::new(self.labels_of(s)));
            }
        }
        self.symbols.release(
            removed
                .iter()
                .flat_map(|s| s.labels.iter().flat_map(|&(n, v)| [n, v])),
        );
        self.num_series.fetch_sub(removed.len(), Ordering::Relaxed);
        self.series_removed
            .fetch_add(removed.len() as u64, Ordering::Relaxed);
        removed.len()
    }

    /// Every series, in id order.
    pub(crate) fn all_series(&self) -> Vec<Arc<MemSeries>> {
        let mut v: Vec<Arc<MemSeries>> = self
            .by_id
            .iter()
            .flat_map(|s| s.read().values().cloned().collect::<Vec<_>>())
            .collect();
        v.sort_unstable_by_key(|s| s.id);
        v
    }

    /// Re-encodes closed XOR chunks with the smaller of XOR and the block codec (Pco is
    /// about 0.4× XOR on noisy data) and, if the head has chunk files, moves them there,
    /// out of memory. Runs on the maintenance thread, never on the append path: chunks are
    /// decoded, encoded and written outside the series lock and swapped in only if
    /// unchanged. With `force` false, a pass is skipped when no chunk was cut since the
    /// last one. Returns (chunks re-encoded, bytes before, bytes after).
    pub fn recompress(&self, force: bool) -> (usize, usize, usize) {
        self.recompress_on(force, None)
    }

    /// [`Head::recompress`] on `threads` threads (`None`: by the head's size, see
    /// `settle_threads`); for tests of the split.
    #[doc(hidden)]
    pub fn recompress_on(&self, force: bool, threads: Option<usize>) -> (usize, usize, usize) {
        if self.unsettled.swap(0, Ordering::AcqRel) == 0 && !force {
            return (0, 0, 0);
        }
        let all = self.all_series();
        let threads = threads.unwrap_or_else(|| settle_threads(all.len())).max(1);
        let (n, before, after) = if threads <= 1 {
            self.recompress_series(&all)
        } else {
            // A big head's pass (a backfill, a restart's replay) is CPU-bound: decode XOR,
            // encode Pco. Its series are split among a few scoped threads; each writes its
            // own batches (`ChunkFiles::write` takes a lock per batch).
            std::thread::scope(|sc| {
                let per = all.len().div_ceil(threads);
                let parts: Vec<_> = all
                    .chunks(per)
                    .map(|part| {
                        let spawned = std::thread::Builder::new()
                            .name("metricsd-settle".into())
                            .spawn_scoped(sc, move || self.recompress_series(part));
                        // No thread to be had: this one does that part.
                        spawned.map_err(|_| self.recompress_series(part))
                    })
                    .collect();
                parts.into_iter().fold((0, 0, 0), |acc, part| {
                    let (n, b, a) = match part {
                        Ok(h) => h.join().unwrap_or((0, 0, 0)),
                        Err(done) => done,
                    };
                    (acc.0 + n, acc.1 + b, acc.2 + a)
                })
            })
        };
        if let Some(pending) = &self.pending {
            pending.release_if_unused();
        }
        (n, before, after)
    }

    /// One settle pass over `series` (see [`Head::recompress`]).
    fn recompress_series(&self, series: &[Arc<MemSeries>]) -> (usize, usize, usize) {
        let mut p = Pass::default();
        let mut buf = Vec::new();
        let mut raw = Vec::new();
        for s in series {
            let todo: Vec<HeadChunk> = s
                .data
                .lock()
                .closed
                .iter()
                .filter(|c| !c.settled() && c.file().is_none())
                .cloned()
                .collect();
            for c in todo {
                let (mint, maxt) = (c.mint, c.maxt());
                buf.clear();
                let old_len = {
                    let Ok((enc0, bytes)) = c.load(&mut raw) else {
                        continue;
                    };
                    if crate::chunkenc::decode(enc0, bytes, &mut buf).is_err() || buf.is_empty() {
                        continue;
                    }
                    bytes.len()
                };
                let old = c.bytes();
                let (enc, data) = crate::chunkenc::encode_best_with(&buf, crate::chunkenc::Effort::Fast);
                p.before += old_len;
                p.after += data.len();
                if let Some(files) = &self.chunk_files
                    && p.batch.push(enc, &data, maxt).is_some()
                {
                    p.queued.push((s.clone(), old, mint, maxt, enc, data));
                    if p.batch.bytes() >= 1 << 20 {
                        self.settle(files, &mut p);
                    }
                    continue;
                }
                let (slab, chunk_ref) = pending::Slab::single(enc, &data);
                settle_one(s, &old, mint, maxt, enc, ChunkBytes::Slab(slab, chunk_ref));
                p.n += 1;
            }
        }
        if let Some(files) = &self.chunk_files {
            self.settle(files, &mut p);
        }
        (p.n, p.before, p.after)
    }

    /// Writes the queued chunks to a chunk file and swaps them in; if the write fails they
    /// stay in memory (re-encoded) and the failure is logged.
    fn settle(&self, files: &chunk_file::ChunkFiles, p: &mut Pass) {
        if p.batch.len() == 0 {
            return;
        }
        let written = files.write(&p.batch);
        if let Err(e) = &written {
            tracing::warn!(tenant = %self.opts.tenant, error = %e, "cannot write head chunks to disk; they stay in memory");
        }
        for (i, (s, old, mint, maxt, enc, data)) in p.queued.drain(..).enumerate() {
            // One ref per chunk of the batch, in order; a chunk without one stays in memory.
            let bytes = match written
                .as_ref()
                .ok()
                .and_then(|(file, refs)| Some((file, *refs.get(i)?)))
            {
                Some((file, chunk_ref)) => ChunkBytes::File(file.clone(), chunk_ref),
                None => {
                    let (slab, chunk_ref) = pending::Slab::single(enc, &data);
                    ChunkBytes::Slab(slab, chunk_ref)
                }
            };
            if settle_one(&s, &old, mint, maxt, enc, bytes) {
                p.n += 1;
            }
        }
        p.batch.clear();
    }

    /// Hands the closed chunks a checkpoint names (record type 6) back to series `s`.
    /// Returns (chunks restored, chunks lost: their file is gone or shorter than the ref,
    /// or the encoding is unknown).
    pub(crate) fn restore_chunks(&self, s: &MemSeries, rc: &crate::wal::RefChunks) -> (usize, usize) {
        let Some(files) = &self.chunk_files else {
            return (0, rc.chunks.len());
        };
        let (mut restored, mut lost) = (0, 0);
        let mut d = s.data.lock();
        let last = rc.chunks.len().saturating_sub(1);
        // The newest restored chunk, when it is not the record's last (which was lost): its
        // last value must be read from the chunk.
        let mut newest_unknown = None;
        for (i, c) in rc.chunks.iter().enumerate() {
            let file = files.file(c.file).filter(|f| f.holds(c.chunk_ref));
            let (Some(file), Ok(enc)) = (file, Encoding::from_u8(c.encoding)) else {
                tracing::warn!(
                    tenant = %self.opts.tenant, file = c.file, chunk_ref = c.chunk_ref,
                    "a head chunk named by the WAL checkpoint is missing from chunks_head; its samples are lost"
                );
                lost += 1;
                continue;
            };
            let Some(chunk) = HeadChunk::new(
                c.mint,
                c.maxt,
                enc,
                true,
                ChunkBytes::File(file.clone(), c.chunk_ref),
            ) else {
                tracing::warn!(
                    tenant = %self.opts.tenant, file = c.file, chunk_ref = c.chunk_ref, mint = c.mint, maxt = c.maxt,
                    "a head chunk named by the WAL checkpoint has an impossible time range; its samples are lost"
                );
                lost += 1;
                continue;
            };
            file.note_maxt(c.maxt);
            if c.maxt > d.last_t {
                d.last_t = c.maxt;
                d.last_v = rc.last_v;
                newest_unknown = (i != last).then(|| chunk.clone());
            }
            push_exact(&mut d.closed, chunk);
            self.note_time(c.mint);
            self.note_time(c.maxt);
            restored += 1;
        }
        if let Some(c) = newest_unknown {
            let mut buf = Vec::new();
            if c.decode_into(&mut buf).is_ok()
                && let Some(x) = buf.last()
            {
                d.last_v = x.v.to_bits();
            }
        }
        if !d.closed.is_sorted_by_key(|c| c.mint) {
            d.closed.sort_by_key(|c| c.mint);
        }
        (restored, lost)
    }

    /// Deletes the chunk files that no series refers to and that are not in `named` (the
    /// files the newest checkpoint names: a chunk a replayed delete rewrote into memory
    /// is still needed from its file until a newer checkpoint is published). Returns how
    /// many went.
    pub(crate) fn retain_chunk_files(&self, named: &std::collections::HashSet<u32>) -> usize {
        let Some(files) = &self.chunk_files else { return 0 };
        for &f in named {
            files.bump_next(f);
        }
        let mut keep = named.clone();
        for s in self.all_series() {
            for c in &s.data.lock().closed {
                if let Some((file, _)) = c.file() {
                    keep.insert(file.index);
                }
            }
        }
        files.retain(&keep)
    }

    /// Makes every chunk moved to a chunk file so far durable (before a checkpoint names
    /// them).
    ///
    /// # Errors
    /// I/O errors of the fsyncs.
    pub(crate) fn sync_chunk_files(&self) -> Result<()> {
        self.chunk_files.as_ref().map_or(Ok(()), |f| f.sync())
    }

    /// The head as WAL records, for a head checkpoint ([`crate::Db::checkpoint_head`]): per
    /// batch of series, their series record, a chunks record naming the closed chunks that
    /// are in chunk files, and a samples record with every other sample (closed chunks
    /// still in memory, the open chunk, out-of-order samples). Each series is read under
    /// its lock, so a sample appended meanwhile may be included; replay then meets it again
    /// in a later segment and takes it as a duplicate.
    ///
    /// Returns the chunk files the snapshot names.
    ///
    /// # Errors
    /// What `emit` returns; a chunk in memory that does not decode (a bug).
    pub(crate) fn snapshot(
        &self,
        emit: &mut dyn FnMut(&crate::wal::Record) -> Result<()>,
    ) -> Result<std::collections::HashSet<u32>> {
        use crate::wal::{Record, RefChunk, RefChunks, RefSample, RefSeries};
        const BATCH: usize = 1000;
        let all = self.all_series();
        let mut buf = Vec::new();
        let mut named = std::collections::HashSet::new();
        for group in all.chunks(BATCH) {
            let mut series = Vec::with_capacity(group.len());
            let mut chunks = Vec::new();
            let mut samples = Vec::new();
            for s in group {
                let labels = self.labels_of(s);
                let series_ref = u64::from(s.id);
                let d = s.data.lock();
                let mut files = Vec::new();
                let mut last_file_maxt = i64::MIN;
                // Every sample not in a chunk file, decoded into `buf` (decoding appends).
                buf.clear();
                for c in &d.closed {
                    match c.file() {
                        Some((file, chunk_ref)) => {
                            named.insert(file.index);
                            files.push(RefChunk {
                                file: file.index,
                                chunk_ref,
                                mint: c.mint,
                                maxt: c.maxt(),
                                encoding: c.enc() as u8,
                            });
                            last_file_maxt = last_file_maxt.max(c.maxt());
                        }
                        // Bytes this process encoded; a failure would be a bug, and the
                        // WAL segments are kept then (the error aborts the checkpoint).
                        None => c.decode_into(&mut buf)?,
                    }
                }
                if let Some(o) = &d.open {
                    crate::chunkenc::decode(Encoding::Xor, o.chunk.bytes(), &mut buf)?;
                }
                buf.extend(d.ooo.iter().chain(d.ooo_compacting.iter()));
                samples.extend(buf.iter().map(|x| RefSample {
                    series_ref,
                    t: x.t,
                    v: x.v,
                }));
                if !files.is_empty() {
                    // The newest in-order sample is in the last file chunk unless samples
                    // written above follow it; those set the value on replay themselves.
                    let last_v = if last_file_maxt == d.last_t { d.last_v } else { 0 };
                    chunks.push(RefChunks {
                        series_ref,
                        last_v,
                        chunks: files,
                    });
                }
                drop(d);
                series.push(RefSeries { series_ref, labels });
            }
            emit(&Record::Series(series))?;
            if !chunks.is_empty() {
                emit(&Record::Chunks(chunks))?;
            }
            if !samples.is_empty() {
                emit(&Record::Samples(samples))?;
            }
        }
        Ok(named)
    }

    /// About how many bytes a head checkpoint ([`Head::snapshot`]) would write now: per
    /// series its series record (~17 B in WAL v2, measured by `wal_codecs`) and ~20 B per
    /// chunk-file chunk it names, plus the samples that are only in memory (open chunks,
    /// chunks waiting for the settle pass, out-of-order samples), counted at their
    /// in-memory size, which the WAL's Gorilla-style samples are close to. Visits every
    /// series under its lock.
    pub fn checkpoint_estimate(&self) -> u64 {
        const SERIES_RECORD: u64 = 17;
        const FILE_CHUNK: u64 = 20;
        let mut bytes = 0u64;
        for s in self.all_series() {
            let d = s.data.lock();
            let in_files = d.closed.iter().filter(|c| c.file().is_some()).count() as u64;
            let in_memory: usize = d.closed.iter().map(HeadChunk::mem_bytes).sum::<usize>()
                + d.open.as_ref().map_or(0, |o| o.chunk.bytes().len())
                + (d.ooo.len() + d.ooo_compacting.len()) * 16;
            bytes = bytes
                .saturating_add(SERIES_RECORD + FILE_CHUNK * in_files)
                .saturating_add(in_memory as u64);
        }
        bytes
    }

    /// Approximate bytes of memory held by series data, index and symbols.
    pub fn mem_size(&self) -> usize {
        self.mem_stats().1
    }

    /// Number of chunks and approximate bytes of memory, in one pass over the series.
    pub(crate) fn mem_stats(&self) -> (usize, usize) {
        let (mut chunks, mut bytes) = (0, 0);
        for s in self.all_series() {
            let d = s.data.lock();
            chunks += d.closed.len() + usize::from(d.open.is_some());
            bytes += std::mem::size_of::<MemSeries>() + s.labels.len() * 8 + d.mem_size() + 48;
        }
        let (_, sym_bytes) = self.symbols.stats();
        // Key table: key, pointer and control byte per bucket; a table holds 7/8 of its
        // buckets.
        let keyed: usize = self
            .keyed
            .iter()
            .map(|s| s.read().capacity() * 8 / 7 * (16 + 8 + 1))
            .sum();
        (
            chunks,
            bytes + self.postings.read().mem_size() + sym_bytes + keyed,
        )
    }
}

/// Threads of a settle pass over `series` series: one below 20,000 series (a thread costs
/// more than it saves there), else up to the machine's cores, at most four.
fn settle_threads(series: usize) -> usize {
    if series < 20_000 {
        return 1;
    }
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .clamp(1, 4)
}

/// State of one [`Head::recompress`] pass.
#[derive(Default)]
struct Pass {
    n: usize,
    before: usize,
    after: usize,
    batch: chunk_file::Batch,
    /// Chunks in `batch`: series, old bytes, mint, maxt, new encoding and bytes.
    #[allow(clippy::type_complexity)]
    queued: Vec<(Arc<MemSeries>, ChunkBytes, i64, i64, Encoding, Vec<u8>)>,
}

/// Replaces the in-memory chunk `old` of `s` by `bytes` (settled), if it is still there (a
/// delete may have rewritten it). Returns whether it was.
fn settle_one(
    s: &MemSeries,
    old: &ChunkBytes,
    mint: i64,
    maxt: i64,
    enc: Encoding,
    bytes: ChunkBytes,
) -> bool {
    let mut d = s.data.lock();
    match d.closed.iter_mut().find(|x| x.holds(old)) {
        Some(slot) => match HeadChunk::new(mint, maxt, enc, true, bytes) {
            Some(c) => {
                *slot = c;
                true
            }
            None => false,
        },
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A closed chunk keeps its time range and encoding in 32 bytes; a span beyond 32 bits
    /// (a damaged checkpoint) is refused, not wrapped; closed-chunk lists grow one at a time.
    #[test]
    fn closed_chunks_are_compact_and_lists_grow_exactly() {
        let c = HeadChunk::mem(1_000, 1_000 + i64::from(u32::MAX), Encoding::Pco, &[1, 2, 3]).unwrap();
        assert_eq!(
            (c.mint, c.maxt(), c.enc(), c.settled()),
            (1_000, 1_000 + i64::from(u32::MAX), Encoding::Pco, false)
        );
        assert_eq!(c.mem_bytes(), 4);
        let mut raw = Vec::new();
        assert_eq!(c.load(&mut raw).unwrap(), (Encoding::Pco, &[1u8, 2, 3][..]));
        assert!(HeadChunk::mem(0, i64::from(u32::MAX) + 1, Encoding::Xor, &[0, 0]).is_none());
        assert!(HeadChunk::mem(5, 4, Encoding::Xor, &[0, 0]).is_none());
        assert!(HeadChunk::mem(i64::MIN, i64::MAX, Encoding::Xor, &[0, 0]).is_none());
        let mut v = ThinVec::new();
        for i in 0..13 {
            push_exact(&mut v, HeadChunk::mem(i, i, Encoding::Xor, &[0, 0]).unwrap());
            assert_eq!(v.capacity(), v.len());
        }
    }

    /// A series id read before gc removed the series answers no labels, not an error, so
    /// `/api/v1/labels?match[]=` does not fail while a compaction runs.
    #[test]
    fn labels_of_a_series_gone_since_its_id_was_read_are_empty() {
        use crate::index::IndexReader;
        let head = Head::new(HeadOptions::default());
        let r = head.series_ref(&Labels::from_pairs([("__name__", "m")])).unwrap();
        assert_eq!(head.series_labels(r.id()).unwrap(), *r.labels());
        assert_eq!(head.gc(), 1, "no samples: removed");
        assert_eq!(head.series_labels(r.id()).unwrap(), Labels::empty());
    }

    /// However many keys senders make up for a series, the table stays within its bound.
    #[test]
    fn key_table_is_bounded() {
        let head = Head::new(HeadOptions::default());
        let r = head.series_ref(&Labels::from_pairs([("__name__", "m")])).unwrap();
        let s = head.live(&r).unwrap().clone();
        for k in 0..200_000u128 {
            // Spread over the shards like real hashes.
            head.remember(k.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835), &s);
        }
        let n = head.keyed_len();
        assert!(n <= KEYED_SLACK + 2 * SHARDS, "{n} keys kept");
        // The newest key is always there.
        let last = 199_999u128.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
        assert!(head.keyed(last).is_some());
    }
}
