//! Persisted, immutable blocks: a time range of series and their compressed chunks.
//!
//! A block is a directory `<parent>/<ULID>/`:
//!
//! ```text
//! 01JC3Z7V1ZQ5K8YV3M2E6X9N4T/
//! ├── meta.json      BlockMeta: time range, stats, compaction history   (block/meta.rs)
//! ├── index          symbols, series, postings, postings offset table   (block/index.rs)
//! ├── chunks/
//! │   ├── 000001     chunk records, ≤ 512 MiB per segment               (block/chunks.rs)
//! │   └── 000002
//! └── tombstones     optional: deleted intervals per series             (block/tombstones_file.rs)
//! ```
//!
//! Byte layouts: [`docs/format/index.md`](../../../docs/format/index.md) (index, tombstones,
//! meta.json) and [`docs/format/chunks_file.md`](../../../docs/format/chunks_file.md)
//! (chunk segments; the chunk codecs are in `docs/format/chunks.md`).
//!
//! [`BlockWriter`] writes into `<ULID>.tmp/` and renames it into place after fsyncing
//! everything, so a crash leaves either no block or a complete one; [`cleanup_tmp`] removes
//! the leftovers. [`write_block`] cuts and encodes samples for compaction and tests.
//! [`Block::open`] reads the index into memory and opens the chunk segments, verifies every
//! checksum of the index (fatal) and of every chunk (recorded in [`Block::corrupt_chunks`],
//! not fatal). Nothing is memory-mapped: chunks are read with `pread`, so a file truncated
//! underneath (by another process) is a corruption error on read, never a SIGBUS.

mod chunks;
mod index;
mod meta;
mod tombstones_file;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use metricsd_model::{Labels, Sample};

use crate::chunkenc::{self, Encoding};
use crate::tombstones::{Interval, Intervals};
use crate::{Error, Result};

pub use index::{BlockIndex, INDEX_FILENAME};
pub use meta::{BlockMeta, BlockStats, CompactionMeta, META_FILENAME, META_VERSION, Ulid};
pub use tombstones_file::TOMBSTONES_FILENAME;

use chunks::{ChunkSegments, ChunkWriter, DEFAULT_SEGMENT_SIZE};
use index::ChunkRec;

/// Name of the directory of chunk segments in a block.
pub const CHUNKS_DIRNAME: &str = "chunks";
/// Suffix of a block directory being written.
pub const TMP_SUFFIX: &str = ".tmp";
/// [`write_block`] cuts a chunk after this many samples.
pub const MAX_SAMPLES_PER_CHUNK: usize = 1920;
/// [`write_block`] cuts a chunk when a sample is this far (ms) after the chunk's first.
pub const MAX_CHUNK_SPAN_MS: i64 = 2 * 3600 * 1000;

/// Where a series' chunk is and which samples it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    /// Timestamp of the chunk's first sample (inclusive).
    pub mint: i64,
    /// Timestamp of the chunk's last sample (inclusive).
    pub maxt: i64,
    /// `(segment file number << 32) | byte offset` of the chunk record; see [`Block::chunk`].
    pub chunk_ref: u64,
}

/// Writes one block. Series are added in strictly increasing label order with their encoded
/// chunks; [`BlockWriter::finish`] writes the index and `meta.json` and moves the block into
/// place. Dropping an unfinished writer removes its temporary directory.
pub struct BlockWriter {
    parent: PathBuf,
    ulid: Ulid,
    tmp_dir: PathBuf,
    min_time: i64,
    max_time: i64,
    chunks: Option<ChunkWriter>,
    series: Vec<(Labels, Vec<ChunkRec>)>,
    num_samples: u64,
    num_chunks: u64,
    finished: bool,
}

impl BlockWriter {
    /// Starts writing a block covering `[min_time, max_time)` into `<parent>/<ulid>.tmp/`
    /// (creating `parent` if needed).
    pub fn new(parent: &Path, min_time: i64, max_time: i64) -> Result<BlockWriter> {
        Self::with_options(parent, min_time, max_time, Ulid::new(), DEFAULT_SEGMENT_SIZE)
    }

    /// [`BlockWriter::new`] with a chosen ULID and segment size (golden files, tests).
    pub(crate) fn with_options(
        parent: &Path,
        min_time: i64,
        max_time: i64,
        ulid: Ulid,
        max_segment_size: u64,
    ) -> Result<BlockWriter> {
        if min_time > max_time {
            return Err(Error::InvalidArgument(format!(
                "block min_time {min_time} after max_time {max_time}"
            )));
        }
        fs::create_dir_all(parent).map_err(|e| Error::io("create dir", parent, e))?;
        let tmp_dir = parent.join(format!("{ulid}{TMP_SUFFIX}"));
        fs::create_dir(&tmp_dir).map_err(|e| Error::io("create dir", &tmp_dir, e))?;
        let chunks_dir = tmp_dir.join(CHUNKS_DIRNAME);
        let mut w = BlockWriter {
            parent: parent.to_path_buf(),
            ulid,
            tmp_dir,
            min_time,
            max_time,
            chunks: None,
            series: Vec::new(),
            num_samples: 0,
            num_chunks: 0,
            finished: false,
        };
        // From here on, Drop removes the temporary directory on error.
        fs::create_dir(&chunks_dir).map_err(|e| Error::io("create dir", &chunks_dir, e))?;
        w.chunks = Some(ChunkWriter::new(&chunks_dir, max_segment_size)?);
        Ok(w)
    }

    /// The ULID the block will have.
    pub fn ulid(&self) -> Ulid {
        self.ulid
    }

    /// Adds one series with its encoded chunks `(mint, maxt, num samples, encoding, data)`.
    ///
    /// Series must come in strictly increasing [`Labels`] order; chunks sorted by time,
    /// non-overlapping, with `mint <= maxt` inside the block's `[min_time, max_time)`.
    /// Violations are [`Error::InvalidArgument`] and leave the writer unchanged.
    pub fn add_series(&mut self, labels: &Labels, chunks: &[(i64, i64, u16, Encoding, &[u8])]) -> Result<()> {
        if let Some((last, _)) = self.series.last()
            && last >= labels
        {
            return Err(Error::InvalidArgument(format!(
                "series {labels} added after {last}: series must be added in strictly increasing label order"
            )));
        }
        let mut prev_maxt: Option<i64> = None;
        for (i, &(mint, maxt, _, _, _)) in chunks.iter().enumerate() {
            if mint > maxt
                || mint < self.min_time
                || maxt >= self.max_time
                || prev_maxt.is_some_and(|p| mint <= p)
            {
                return Err(Error::InvalidArgument(format!(
                    "chunk {i} of {labels} spans [{mint}, {maxt}]: chunks must be sorted, non-overlapping and inside the block's [{}, {})",
                    self.min_time, self.max_time
                )));
            }
            prev_maxt = Some(maxt);
        }
        let Some(w) = self.chunks.as_mut() else {
            return Err(Error::Unavailable("block writer failed earlier".into()));
        };
        let mut recs = Vec::with_capacity(chunks.len());
        for &(mint, maxt, n, enc, data) in chunks {
            let chunk_ref = w.write(enc, data)?;
            recs.push(ChunkRec {
                mint,
                maxt,
                chunk_ref,
                num_samples: n,
            });
            self.num_samples += u64::from(n);
        }
        self.num_chunks += recs.len() as u64;
        self.series.push((labels.clone(), recs));
        Ok(())
    }

    /// Writes the index and `meta.json`, fsyncs every file and directory, renames
    /// `<ulid>.tmp` to `<ulid>` and fsyncs the parent. Returns the block's meta.
    pub fn finish(mut self, compaction: CompactionMeta) -> Result<BlockMeta> {
        let Some(w) = self.chunks.take() else {
            return Err(Error::Unavailable("block writer failed earlier".into()));
        };
        let chunk_bytes = w.finish()?;
        let series = std::mem::take(&mut self.series);
        let index_bytes = index::write_index(&self.tmp_dir.join(INDEX_FILENAME), &series)?;
        let meta = BlockMeta {
            ulid: self.ulid.to_string(),
            min_time: self.min_time,
            max_time: self.max_time,
            stats: BlockStats {
                num_series: series.len() as u64,
                num_samples: self.num_samples,
                num_chunks: self.num_chunks,
                num_bytes: chunk_bytes + index_bytes,
            },
            compaction,
            version: META_VERSION,
            downsample_resolution_ms: 0,
        };
        drop(series);
        meta::write_meta(&self.tmp_dir, &meta)?;
        sync_dir(&self.tmp_dir.join(CHUNKS_DIRNAME))?;
        sync_dir(&self.tmp_dir)?;
        let dst = self.parent.join(self.ulid.to_string());
        fs::rename(&self.tmp_dir, &dst).map_err(|e| Error::io("rename", &self.tmp_dir, e))?;
        self.finished = true;
        sync_dir(&self.parent)?;
        Ok(meta)
    }
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        if !self.finished {
            // Best effort: cleanup_tmp removes what is left after a crash.
            let _ = fs::remove_dir_all(&self.tmp_dir);
        }
    }
}

/// Removes `<ULID>.tmp` directories (blocks whose writing never finished) from `parent`.
/// Call it before opening the blocks of `parent`. Returns how many were removed.
pub fn cleanup_tmp(parent: &Path) -> Result<usize> {
    let mut removed = 0;
    let rd = match fs::read_dir(parent) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("read dir", parent, e)),
    };
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("read dir", parent, e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(TMP_SUFFIX)) else {
            continue;
        };
        // Only our own leftovers: other components may keep `.tmp` directories here.
        if stem.parse::<Ulid>().is_err() {
            continue;
        }
        let path = entry.path();
        tracing::info!(path = %path.display(), "removing unfinished block");
        fs::remove_dir_all(&path).map_err(|e| Error::io("remove dir", &path, e))?;
        removed += 1;
    }
    if removed > 0 {
        sync_dir(parent)?;
    }
    Ok(removed)
}

/// Writes a block of `series` (sorted by labels, samples sorted by time): each series'
/// samples are cut into chunks of at most [`MAX_SAMPLES_PER_CHUNK`] samples spanning less
/// than [`MAX_CHUNK_SPAN_MS`], each encoded with [`chunkenc::encode_best`]. Series without
/// samples are left out.
pub fn write_block(
    parent: &Path,
    min_time: i64,
    max_time: i64,
    series: impl Iterator<Item = (Labels, Vec<Sample>)>,
    compaction: CompactionMeta,
) -> Result<BlockMeta> {
    write_block_with(BlockWriter::new(parent, min_time, max_time)?, series, compaction)
}

fn write_block_with(
    mut w: BlockWriter,
    series: impl Iterator<Item = (Labels, Vec<Sample>)>,
    compaction: CompactionMeta,
) -> Result<BlockMeta> {
    let mut encoded: Vec<(i64, i64, u16, Encoding, Vec<u8>)> = Vec::new();
    for (labels, samples) in series {
        if let Some((i, [a, b])) = samples.array_windows().enumerate().find(|(_, [a, b])| a.t >= b.t) {
            return Err(Error::InvalidArgument(format!(
                "samples of {labels} not strictly increasing in time at index {}: {} then {}",
                i + 1,
                a.t,
                b.t
            )));
        }
        encoded.clear();
        let mut rest = &samples[..];
        while let Some(first) = rest.first() {
            let n = rest
                .iter()
                .take(MAX_SAMPLES_PER_CHUNK)
                .take_while(|s| s.t - first.t < MAX_CHUNK_SPAN_MS)
                .count();
            let (chunk, tail) = rest.split_at(n);
            // `n >= 1`: `first` is in its own chunk, so `last` is `first` at worst.
            let last = chunk.last().unwrap_or(first);
            let (enc, data) = chunkenc::encode_best(chunk);
            encoded.push((first.t, last.t, n as u16, enc, data));
            rest = tail;
        }
        if encoded.is_empty() {
            continue;
        }
        let refs: Vec<(i64, i64, u16, Encoding, &[u8])> = encoded
            .iter()
            .map(|(a, b, n, e, d)| (*a, *b, *n, *e, &d[..]))
            .collect();
        w.add_series(&labels, &refs)?;
    }
    w.finish(compaction)
}

/// The open files of a block, shared between [`Block`] views with different tombstones.
struct BlockData {
    index: BlockIndex,
    chunks: ChunkSegments,
}

/// An open block: its meta, in-memory index, open chunk segments, and tombstones. `Send + Sync`; share it
/// as `Arc<Block>`.
///
/// # Invariants
/// - Series ids are `0..n` in strictly increasing label order: a postings bitmap iterates
///   series in label order (the querier's merge relies on this).
/// - The index's checksums were verified at open. Chunk checksums were verified at open
///   (failures are in [`Block::corrupt_chunks`]) and are verified again by every
///   [`Block::chunk`], so no unverified chunk byte is ever returned.
/// - The files are not expected to change while open (a chunk file changed or truncated
///   underneath reads as corrupt chunks, never a crash; the index is in memory); tombstones are replaced by a new view
///   ([`Block::with_tombstones`]), never mutated in place.
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    data: Arc<BlockData>,
    tombstones: HashMap<u32, Intervals>,
    tombstones_bytes: u64,
    meta_bytes: u64,
}

impl Block {
    /// Opens the block in `dir`: parses `meta.json`, reads the index, opens the chunk segments,
    /// verifies the index's checksums (a mismatch is [`Error::Corruption`] naming the index
    /// file and offset) and every chunk's crc32c (bad chunks are logged and recorded in
    /// [`Block::corrupt_chunks`]; the rest of the block stays readable).
    pub fn open(dir: &Path) -> Result<Block> {
        let meta = meta::read_meta(dir)?;
        let meta_bytes = fs::metadata(dir.join(META_FILENAME))
            .map(|m| m.len())
            .unwrap_or(0);
        let index = BlockIndex::open(&dir.join(INDEX_FILENAME))?;
        let chunks = ChunkSegments::open(&dir.join(CHUNKS_DIRNAME))?;
        if !chunks.corrupt().is_empty() {
            tracing::warn!(
                block = %dir.display(),
                corrupt_chunks = chunks.corrupt().len(),
                "block has corrupt chunks; reading them fails, the rest of the block is readable"
            );
        }
        let (tombstones, tombstones_bytes) = tombstones_file::read_tombstones(dir)?;
        Ok(Block {
            dir: dir.to_path_buf(),
            meta,
            data: Arc::new(BlockData { index, chunks }),
            tombstones,
            tombstones_bytes,
            meta_bytes,
        })
    }

    /// The block's `meta.json`.
    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    /// The block's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The block's index (label names and values, postings, series labels).
    pub fn index(&self) -> &BlockIndex {
        &self.data.index
    }

    /// Replaces `dst`'s content with the chunk metas of series `id`, in time order.
    pub fn series_chunks(&self, id: u32, dst: &mut Vec<ChunkMeta>) -> Result<()> {
        self.data.index.series(id, None, Some(dst))
    }

    /// The encoding and bytes of chunk `chunk_ref`, read into `buf` (reuse it across calls)
    /// and verified against their crc32c on every call. A corrupt chunk, or one whose read
    /// fails or comes back short (a file truncated underneath), is [`Error::Corruption`].
    pub fn chunk<'b>(&self, chunk_ref: u64, buf: &'b mut Vec<u8>) -> Result<(Encoding, &'b [u8])> {
        self.data.chunks.chunk(chunk_ref, buf)
    }

    /// Refs of chunks that failed verification at open, sorted (a ref with offset 0 means a
    /// segment's header was bad).
    pub fn corrupt_chunks(&self) -> &[u64] {
        self.data.chunks.corrupt()
    }

    /// Deleted intervals by series id.
    pub fn tombstones(&self) -> &HashMap<u32, Intervals> {
        &self.tombstones
    }

    /// Adds deletion intervals, writing the merged tombstones file atomically (temporary
    /// file, fsync, rename, fsync of the directory), and returns a new view of the block
    /// with them; the open files are shared, so this is cheap. `self` keeps its old
    /// tombstones: callers swap their `Arc<Block>` for the returned one. Calls on the same
    /// block must be serialized by the caller (the file is rewritten whole from this view's
    /// tombstones, so concurrent calls would lose one another's intervals).
    pub fn with_tombstones(&self, add: &[(u32, Interval)]) -> Result<Block> {
        let n = self.data.index.num_series();
        let mut tombstones = self.tombstones.clone();
        for &(id, iv) in add {
            if id >= n {
                return Err(Error::InvalidArgument(format!(
                    "tombstone for series {id}: the block has {n} series"
                )));
            }
            tombstones.entry(id).or_default().add(iv);
        }
        tombstones.retain(|_, v| !v.is_empty());
        let tombstones_bytes = tombstones_file::write_tombstones(&self.dir, &tombstones)?;
        Ok(Block {
            dir: self.dir.clone(),
            meta: self.meta.clone(),
            data: self.data.clone(),
            tombstones,
            tombstones_bytes,
            meta_bytes: self.meta_bytes,
        })
    }

    /// Bytes of the block's files on disk (index, chunks, meta.json, tombstones).
    pub fn size_bytes(&self) -> u64 {
        self.data.index.size_bytes() + self.data.chunks.size_bytes() + self.meta_bytes + self.tombstones_bytes
    }
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("dir", &self.dir)
            .field("meta", &self.meta)
            .field("corrupt_chunks", &self.corrupt_chunks().len())
            .field("tombstoned_series", &self.tombstones.len())
            .finish()
    }
}

/// fsyncs directory `dir` so that entries created or renamed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let f = fs::File::open(dir).map_err(|e| Error::io("open dir", dir, e))?;
    f.sync_all().map_err(|e| Error::io("fsync dir", dir, e))
}

pub(crate) fn corruption(path: impl Into<PathBuf>, offset: u64, reason: String) -> Error {
    Error::Corruption {
        path: path.into(),
        offset,
        reason,
    }
}

pub(crate) use crate::encoding::{put_uvarint, put_varint, uvarint_len};

/// Why decoding stopped: the position (relative to the decoder's buffer) and what was read.
#[derive(Debug)]
pub(crate) struct DecErr {
    pub(crate) pos: usize,
    pub(crate) what: &'static str,
}

/// A bounds-checked reader of little-endian integers and varints over bytes from disk.
pub(crate) struct Dec<'a> {
    b: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Dec<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Dec { b, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.b.len()
    }

    fn take<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecErr> {
        let s = self
            .b
            .get(self.pos..self.pos + N)
            .ok_or(DecErr { pos: self.pos, what })?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        self.pos += N;
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecErr> {
        Ok(self.take::<1>("truncated u8")?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecErr> {
        Ok(u32::from_le_bytes(self.take("truncated u32")?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecErr> {
        Ok(u64::from_le_bytes(self.take("truncated u64")?))
    }

    pub(crate) fn uvarint(&mut self) -> Result<u64, DecErr> {
        let start = self.pos;
        let mut rest = self.b.get(start..).unwrap_or(&[]);
        let before = rest.len();
        match crate::encoding::get_uvarint(&mut rest) {
            Some(v) => {
                self.pos += before - rest.len();
                Ok(v)
            }
            None => Err(DecErr {
                pos: start,
                // Ten bytes read and still no end: too long for 64 bits.
                what: if before - rest.len() >= 10 {
                    "varint overflows 64 bits"
                } else {
                    "truncated varint"
                },
            }),
        }
    }

    pub(crate) fn varint(&mut self) -> Result<i64, DecErr> {
        self.uvarint().map(crate::encoding::unzigzag)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::OnceLock;

    use metricsd_model::{MatchOp, Matcher};
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    use super::*;
    use crate::index::{IndexReader, postings_for_matchers};

    const HOUR: i64 = 3600 * 1000;

    /// `n` random series (sorted, unique), some without samples, some long enough to be cut.
    fn random_series(seed: u64, n: usize) -> BTreeMap<Labels, Vec<Sample>> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut out = BTreeMap::new();
        while out.len() < n {
            let mut pairs = vec![
                (
                    "__name__".to_string(),
                    format!("metric_{}", rng.random_range(0..8)),
                ),
                (
                    "instance".to_string(),
                    format!("host-{}", rng.random_range(0..300)),
                ),
            ];
            if rng.random_bool(0.6) {
                pairs.push(("job".into(), ["api", "db", "web"][rng.random_range(0..3)].into()));
            }
            if rng.random_bool(0.3) {
                pairs.push(("zone".into(), format!("z{}", rng.random_range(0..4))));
            }
            if rng.random_bool(0.05) {
                pairs.push(("unicode".into(), "ünï€ode ✓".into()));
            }
            let labels = Labels::from_pairs(pairs);
            let len = match rng.random_range(0..20) {
                0 => 0,
                1 => rng.random_range(1900..5000),
                _ => rng.random_range(1..200),
            };
            let mut t = rng.random_range(0..HOUR);
            let mut samples = Vec::with_capacity(len);
            for _ in 0..len {
                samples.push(Sample::new(t, f64::from_bits(rng.random::<u64>())));
                t += rng.random_range(1..2000);
            }
            out.insert(labels, samples);
        }
        out
    }

    fn read_samples(b: &Block, id: u32) -> Vec<Sample> {
        let mut metas = Vec::new();
        b.series_chunks(id, &mut metas).unwrap();
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for m in &metas {
            let (enc, data) = b.chunk(m.chunk_ref, &mut buf).unwrap();
            let before = out.len();
            chunkenc::decode(enc, data, &mut out).unwrap();
            let got = &out[before..];
            assert_eq!(
                (got[0].t, got[got.len() - 1].t),
                (m.mint, m.maxt),
                "chunk meta of series {id}"
            );
        }
        out
    }

    fn assert_same_samples(got: &[Sample], want: &[Sample]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.t, g.v.to_bits()), (w.t, w.v.to_bits()));
        }
    }

    #[test]
    fn write_open_read_1000_series() {
        let dir = tempfile::tempdir().unwrap();
        let series = random_series(1, 1000);
        let written: Vec<(&Labels, &Vec<Sample>)> = series.iter().filter(|(_, s)| !s.is_empty()).collect();
        let meta = write_block(
            dir.path(),
            0,
            4 * HOUR,
            series.clone().into_iter(),
            CompactionMeta {
                level: 1,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "only the block, no .tmp"
        );
        let b = Block::open(&dir.path().join(&meta.ulid)).unwrap();
        assert_eq!(b.meta(), &meta);
        assert_eq!(meta.stats.num_series, written.len() as u64);
        assert_eq!(
            meta.stats.num_samples,
            written.iter().map(|(_, s)| s.len() as u64).sum::<u64>()
        );
        assert!(
            meta.stats.num_chunks > meta.stats.num_series,
            "long series were cut"
        );
        assert!(b.corrupt_chunks().is_empty());
        assert!(b.size_bytes() > meta.stats.num_bytes);
        let ix = b.index();
        assert_eq!(ix.num_series() as usize, written.len());
        for (id, (labels, samples)) in written.iter().enumerate() {
            assert_eq!(&ix.series_labels(id as u32).unwrap(), *labels);
            assert_same_samples(&read_samples(&b, id as u32), samples);
        }
        // Label names and values agree with the series list.
        let mut names: BTreeMap<&str, std::collections::BTreeSet<&str>> = BTreeMap::new();
        for (l, _) in &written {
            for l in l.iter() {
                names.entry(&l.name).or_default().insert(&l.value);
            }
        }
        let got_names = ix.label_names().unwrap();
        assert_eq!(
            got_names.iter().map(|s| &**s).collect::<Vec<_>>(),
            names.keys().copied().collect::<Vec<_>>()
        );
        for (name, values) in &names {
            let got = ix.label_values(name).unwrap();
            assert_eq!(
                got.iter().map(|s| &**s).collect::<Vec<_>>(),
                values.iter().copied().collect::<Vec<_>>()
            );
            for v in values {
                let p = ix.postings(name, v).unwrap();
                let want: Vec<u32> = (0..written.len() as u32)
                    .filter(|&i| written[i as usize].0.get(name) == Some(*v))
                    .collect();
                assert_eq!(p.iter().collect::<Vec<_>>(), want, "{name}={v}");
            }
        }
        assert!(ix.postings("instance", "nope").unwrap().is_empty());
        assert!(ix.postings("nope", "x").unwrap().is_empty());
        assert!(ix.label_values("nope").unwrap().is_empty());
        assert_eq!(ix.all_postings().unwrap().len(), written.len() as u64);
        assert!(matches!(
            ix.series_labels(ix.num_series()),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn many_segments() {
        let dir = tempfile::tempdir().unwrap();
        let series = random_series(2, 50);
        let w = BlockWriter::with_options(dir.path(), 0, 4 * HOUR, Ulid::new(), 4096).unwrap();
        let meta = write_block_with(w, series.clone().into_iter(), CompactionMeta::default()).unwrap();
        let bdir = dir.path().join(&meta.ulid);
        assert!(fs::read_dir(bdir.join(CHUNKS_DIRNAME)).unwrap().count() > 5);
        let b = Block::open(&bdir).unwrap();
        let written: Vec<_> = series.values().filter(|s| !s.is_empty()).collect();
        for (id, samples) in written.iter().enumerate() {
            assert_same_samples(&read_samples(&b, id as u32), samples);
        }
    }

    #[test]
    fn empty_block() {
        let dir = tempfile::tempdir().unwrap();
        let meta = write_block(dir.path(), 0, 10, std::iter::empty(), CompactionMeta::default()).unwrap();
        let b = Block::open(&dir.path().join(&meta.ulid)).unwrap();
        assert_eq!(b.index().num_series(), 0);
        assert!(b.index().label_names().unwrap().is_empty());
        assert!(b.index().all_postings().unwrap().is_empty());
    }

    /// A block of 400 series built once for the matcher proptest.
    fn matcher_fixture() -> &'static (tempfile::TempDir, Block, Vec<Labels>) {
        static F: OnceLock<(tempfile::TempDir, Block, Vec<Labels>)> = OnceLock::new();
        F.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let series: Vec<(Labels, Vec<Sample>)> = random_series(3, 400)
                .into_keys()
                .map(|l| (l, vec![Sample::new(1, 1.0)]))
                .collect();
            let labels = series.iter().map(|(l, _)| l.clone()).collect();
            let meta = write_block(dir.path(), 0, 10, series.into_iter(), CompactionMeta::default()).unwrap();
            let b = Block::open(&dir.path().join(&meta.ulid)).unwrap();
            (dir, b, labels)
        })
    }

    fn matcher_strategy() -> impl Strategy<Value = Matcher> {
        let names = prop::sample::select(vec!["__name__", "instance", "job", "zone", "missing"]);
        let ops = prop::sample::select(vec![
            MatchOp::Equal,
            MatchOp::NotEqual,
            MatchOp::Regex,
            MatchOp::NotRegex,
        ]);
        let values = prop::sample::select(vec![
            "",
            "metric_1",
            "metric_3",
            "host-1",
            "host-12",
            "api",
            "db",
            "z2",
            "nope",
            "host-1.*",
            ".*",
            ".+",
            "api|db",
            "metric_[0-3]",
            "z.*|",
            "h.*-2.",
            "(?i)API",
        ]);
        (names, ops, values).prop_map(|(n, op, v)| Matcher::new(op, n, v).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn postings_for_matchers_agrees_with_naive_filter(ms in prop::collection::vec(matcher_strategy(), 1..4)) {
            let (_, b, labels) = matcher_fixture();
            let got: Vec<u32> = postings_for_matchers(b.index(), &ms).unwrap().iter().collect();
            let want: Vec<u32> = (0..labels.len() as u32)
                .filter(|&i| ms.iter().all(|m| m.matches(labels[i as usize].get(&m.name).unwrap_or(""))))
                .collect();
            prop_assert_eq!(got, want, "matchers {:?}", ms);
        }
    }

    fn small_block(dir: &Path) -> (PathBuf, Vec<(Labels, Vec<Sample>)>) {
        let series: Vec<(Labels, Vec<Sample>)> = (0..10)
            .map(|i| {
                let l = Labels::from_pairs([("__name__", "m"), ("i", &*format!("{i:02}"))]);
                (l, (0..30).map(|t| Sample::new(t * 10 + i, t as f64)).collect())
            })
            .collect();
        let meta = write_block(
            dir,
            0,
            1000,
            series.clone().into_iter(),
            CompactionMeta::default(),
        )
        .unwrap();
        (dir.join(meta.ulid), series)
    }

    #[test]
    fn tombstones_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (bdir, _) = small_block(dir.path());
        let b = Block::open(&bdir).unwrap();
        assert!(b.tombstones().is_empty());
        let iv = |mint, maxt| Interval { mint, maxt };
        let b2 = b.with_tombstones(&[(1, iv(0, 10)), (3, iv(5, 5))]).unwrap();
        assert!(b.tombstones().is_empty(), "the old view is unchanged");
        let b3 = b2.with_tombstones(&[(1, iv(11, 20)), (4, iv(-3, 2))]).unwrap();
        let want: HashMap<u32, Intervals> = [(1, vec![iv(0, 20)]), (3, vec![iv(5, 5)]), (4, vec![iv(-3, 2)])]
            .into_iter()
            .map(|(id, ivs)| {
                let mut x = Intervals::default();
                ivs.into_iter().for_each(|i| x.add(i));
                (id, x)
            })
            .collect();
        assert_eq!(b3.tombstones(), &want);
        assert!(b3.size_bytes() > b.size_bytes());
        let reopened = Block::open(&bdir).unwrap();
        assert_eq!(reopened.tombstones(), &want);
        assert_eq!(reopened.size_bytes(), b3.size_bytes());
        assert!(matches!(
            b3.with_tombstones(&[(10, iv(0, 1))]),
            Err(Error::InvalidArgument(_))
        ));
        assert!(!bdir.join("tombstones.tmp").exists());
    }

    #[test]
    fn corrupt_chunk_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let (bdir, series) = small_block(dir.path());
        let mut metas = Vec::new();
        Block::open(&bdir).unwrap().series_chunks(4, &mut metas).unwrap();
        let bad = metas[0].chunk_ref;
        let seg = bdir.join(CHUNKS_DIRNAME).join("000001");
        let mut bytes = fs::read(&seg).unwrap();
        bytes[(bad & 0xffff_ffff) as usize + 10] ^= 0xff;
        fs::write(&seg, &bytes).unwrap();

        let b = Block::open(&bdir).unwrap();
        assert_eq!(b.corrupt_chunks(), &[bad]);
        match b.chunk(bad, &mut Vec::new()) {
            Err(Error::Corruption { path, offset, .. }) => {
                assert_eq!((path, offset), (seg, bad & 0xffff_ffff));
            }
            r => panic!("want corruption, got {r:?}"),
        }
        for (id, (_, samples)) in series.iter().enumerate() {
            if id != 4 {
                assert_same_samples(&read_samples(&b, id as u32), samples);
            }
        }
    }

    #[test]
    fn block_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Block>();
        check::<BlockIndex>();
    }

    /// Whatever single byte of a chunk segment is damaged, open succeeds and every chunk
    /// reads back either its original bytes or Error::Corruption: never wrong data.
    #[test]
    fn any_flipped_chunk_byte_never_yields_wrong_data() {
        let dir = tempfile::tempdir().unwrap();
        let series: Vec<(Labels, Vec<Sample>)> = (0..4)
            .map(|i| {
                let l = Labels::from_pairs([("i", format!("{i}"))]);
                (l, (0..(3 + i)).map(|t| Sample::new(t, t as f64)).collect())
            })
            .collect();
        let meta = write_block(dir.path(), 0, 100, series.into_iter(), CompactionMeta::default()).unwrap();
        let bdir = dir.path().join(&meta.ulid);
        let b = Block::open(&bdir).unwrap();
        let mut want = Vec::new();
        let mut metas = Vec::new();
        let mut buf = Vec::new();
        for id in 0..b.index().num_series() {
            b.series_chunks(id, &mut metas).unwrap();
            for m in &metas {
                let (enc, data) = b.chunk(m.chunk_ref, &mut buf).unwrap();
                want.push((m.chunk_ref, enc, data.to_vec()));
            }
        }
        let seg = bdir.join(CHUNKS_DIRNAME).join("000001");
        let bytes = fs::read(&seg).unwrap();
        for i in 0..bytes.len() {
            for bit in [0x01, 0x80] {
                let mut c = bytes.clone();
                c[i] ^= bit;
                fs::write(&seg, &c).unwrap();
                let b = Block::open(&bdir).unwrap();
                let mut failed = 0;
                for (r, enc, data) in &want {
                    match b.chunk(*r, &mut buf) {
                        Ok((e, d)) => assert_eq!((e, d), (*enc, &data[..]), "flip {bit:#x} at {i}"),
                        Err(Error::Corruption { path, .. }) => {
                            assert_eq!(path, seg);
                            failed += 1;
                        }
                        Err(e) => panic!("flip at {i}: {e}"),
                    }
                }
                if i >= chunks::HEADER_LEN {
                    assert!(failed >= 1, "flip {bit:#x} at {i} went unnoticed");
                    assert!(
                        !b.corrupt_chunks().is_empty(),
                        "flip {bit:#x} at {i} not reported"
                    );
                }
            }
        }
        fs::remove_file(&seg).unwrap();
        assert!(
            matches!(Block::open(&bdir), Err(Error::Corruption { .. })),
            "no segment"
        );
        fs::write(bdir.join(CHUNKS_DIRNAME).join("000002"), &bytes).unwrap();
        assert!(
            matches!(Block::open(&bdir), Err(Error::Corruption { .. })),
            "gap in segment numbers"
        );
    }

    #[test]
    fn any_flipped_index_byte_fails_open() {
        let dir = tempfile::tempdir().unwrap();
        let (bdir, _) = small_block(dir.path());
        let path = bdir.join(INDEX_FILENAME);
        let bytes = fs::read(&path).unwrap();
        for i in 0..bytes.len() {
            let mut c = bytes.clone();
            c[i] ^= 0x10;
            fs::write(&path, &c).unwrap();
            match Block::open(&bdir) {
                Err(Error::Corruption { path: p, .. }) => assert_eq!(p, path),
                r => panic!("flip at {i}: want corruption, got {r:?}"),
            }
        }
        fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(matches!(Block::open(&bdir), Err(Error::Corruption { .. })));
        fs::write(&path, &bytes).unwrap();
        Block::open(&bdir).unwrap();
    }

    #[test]
    fn truncated_meta_fails_open() {
        let dir = tempfile::tempdir().unwrap();
        let (bdir, _) = small_block(dir.path());
        let path = bdir.join(META_FILENAME);
        let bytes = fs::read(&path).unwrap();
        for len in [0, 1, bytes.len() / 2, bytes.len() - 3] {
            fs::write(&path, &bytes[..len]).unwrap();
            match Block::open(&bdir) {
                Err(Error::Corruption { path: p, .. }) => assert_eq!(p, path),
                r => panic!("truncated to {len}: want corruption, got {r:?}"),
            }
        }
        fs::remove_file(&path).unwrap();
        assert!(matches!(Block::open(&bdir), Err(Error::Io { .. })));
    }

    #[test]
    fn unfinished_blocks_are_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let (bdir, _) = small_block(dir.path());
        // A crash mid-write: the writer is never finished nor dropped.
        let mut w = BlockWriter::new(dir.path(), 0, 100).unwrap();
        w.add_series(
            &Labels::from_pairs([("a", "b")]),
            &[(1, 2, 2, Encoding::Xor, &[1, 2, 3])],
        )
        .unwrap();
        let tmp = dir.path().join(format!("{}{TMP_SUFFIX}", w.ulid()));
        std::mem::forget(w);
        let foreign = dir.path().join("checkpoint.tmp");
        fs::create_dir(&foreign).unwrap();
        assert!(tmp.exists());
        assert_eq!(cleanup_tmp(dir.path()).unwrap(), 1);
        assert!(!tmp.exists() && foreign.exists() && bdir.exists());
        assert_eq!(cleanup_tmp(&dir.path().join("absent")).unwrap(), 0);
        // Dropping an unfinished writer removes its directory.
        let w = BlockWriter::new(dir.path(), 0, 100).unwrap();
        let tmp = dir.path().join(format!("{}{TMP_SUFFIX}", w.ulid()));
        assert!(tmp.exists());
        drop(w);
        assert!(!tmp.exists());
    }

    #[test]
    fn writer_rejects_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::new(dir.path(), 0, 100).unwrap();
        let (a, b) = (Labels::from_pairs([("a", "1")]), Labels::from_pairs([("a", "2")]));
        let c: &[u8] = &[0, 0];
        let check = |r: Result<()>, ok: bool| assert_eq!(r.is_ok(), ok, "{r:?}");
        check(w.add_series(&b, &[(0, 5, 1, Encoding::Xor, c)]), true);
        check(w.add_series(&a, &[(0, 5, 1, Encoding::Xor, c)]), false); // unsorted
        check(w.add_series(&b, &[(0, 5, 1, Encoding::Xor, c)]), false); // duplicate
        let d = Labels::from_pairs([("a", "3")]);
        check(
            w.add_series(&d, &[(0, 5, 1, Encoding::Xor, c), (5, 6, 1, Encoding::Xor, c)]),
            false,
        );
        check(w.add_series(&d, &[(6, 5, 1, Encoding::Xor, c)]), false);
        check(w.add_series(&d, &[(-1, 5, 1, Encoding::Xor, c)]), false);
        check(w.add_series(&d, &[(0, 100, 1, Encoding::Xor, c)]), false);
        check(
            w.add_series(&d, &[(0, 5, 1, Encoding::Xor, c), (6, 99, 1, Encoding::Xor, c)]),
            true,
        );
        let meta = w.finish(CompactionMeta::default()).unwrap();
        assert_eq!(meta.stats.num_series, 2);
        let unsorted = vec![(a.clone(), vec![Sample::new(2, 0.0), Sample::new(2, 1.0)])];
        assert!(matches!(
            write_block(
                dir.path(),
                0,
                100,
                unsorted.into_iter(),
                CompactionMeta::default()
            ),
            Err(Error::InvalidArgument(_))
        ));
        assert!(BlockWriter::new(dir.path(), 10, 0).is_err());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "failed writers leave nothing"
        );
    }

    #[test]
    fn varints() {
        let mut buf = Vec::new();
        let cases = [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX - 1, u64::MAX];
        for &v in &cases {
            buf.clear();
            put_uvarint(&mut buf, v);
            assert_eq!(buf.len() as u64, uvarint_len(v), "{v}");
            assert_eq!(Dec::new(&buf).uvarint().unwrap(), v);
            assert!(Dec::new(&buf[..buf.len() - 1]).uvarint().is_err());
        }
        for &v in &[0i64, -1, 1, i64::MIN, i64::MAX, -300] {
            buf.clear();
            put_varint(&mut buf, v);
            assert_eq!(Dec::new(&buf).varint().unwrap(), v);
        }
        assert!(Dec::new(&[0xff; 11]).uvarint().is_err(), "overlong");
        assert!(
            Dec::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])
                .uvarint()
                .is_err()
        );
    }

    // --- Golden block: the v1 format as shipped. Never regenerate once committed. ---

    const GOLDEN_ULID: &str = "01JC0000000000000000000000";

    fn golden_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/block_v1")
    }

    /// Series with their chunks' `(t, v)` samples.
    type GoldenSeries = Vec<(Labels, Vec<Vec<(i64, f64)>>)>;

    /// The golden series: real Prometheus XOR chunks (via rusty-chunkenc), so the test does
    /// not depend on this crate's codecs.
    fn golden_series() -> GoldenSeries {
        vec![
            (
                Labels::from_pairs([("__name__", "up"), ("instance", "a:9100"), ("job", "node")]),
                vec![vec![(1000, 1.0), (16000, 1.0), (31000, 0.0)], vec![(46000, 1.0)]],
            ),
            (
                Labels::from_pairs([("__name__", "up"), ("instance", "b:9100"), ("job", "node")]),
                vec![vec![(1000, 1.0), (16000, 1.0)]],
            ),
            (
                Labels::from_pairs([
                    ("__name__", "http_requests_total"),
                    ("code", "200"),
                    ("path", "/ü"),
                ]),
                vec![vec![(2000, 10.0), (17000, 12.5), (32000, 1e300)]],
            ),
        ]
    }

    fn xor_bytes(samples: &[(i64, f64)]) -> Vec<u8> {
        let c = rusty_chunkenc::xor::XORChunk::new(
            samples
                .iter()
                .map(|&(timestamp, value)| rusty_chunkenc::XORSample { timestamp, value })
                .collect(),
        );
        let mut buf = Vec::new();
        c.write(&mut buf).unwrap();
        buf
    }

    fn write_golden(parent: &Path) -> BlockMeta {
        let ulid: Ulid = GOLDEN_ULID.parse().unwrap();
        let mut w = BlockWriter::with_options(parent, 0, 7_200_000, ulid, DEFAULT_SEGMENT_SIZE).unwrap();
        let mut series = golden_series();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        for (labels, chunks) in &series {
            let bytes: Vec<Vec<u8>> = chunks.iter().map(|c| xor_bytes(c)).collect();
            let recs: Vec<(i64, i64, u16, Encoding, &[u8])> = chunks
                .iter()
                .zip(&bytes)
                .map(|(c, b)| (c[0].0, c[c.len() - 1].0, c.len() as u16, Encoding::Xor, &b[..]))
                .collect();
            w.add_series(labels, &recs).unwrap();
        }
        w.finish(CompactionMeta {
            level: 1,
            sources: vec![GOLDEN_ULID.into()],
            parents: vec![],
        })
        .unwrap()
    }

    /// Writes `testdata/block_v1/`. Run once, by hand, when the format version changes:
    /// `cargo test -p metricsd-tsdb write_golden_block -- --ignored`.
    #[test]
    #[ignore = "writes the checked-in golden block"]
    fn write_golden_block() {
        let dir = golden_dir();
        let _ = fs::remove_dir_all(dir.join(GOLDEN_ULID));
        write_golden(&dir);
    }

    #[test]
    fn golden_block_v1() {
        let bdir = golden_dir().join(GOLDEN_ULID);
        let b = Block::open(&bdir).unwrap();
        assert_eq!(b.meta().ulid, GOLDEN_ULID);
        assert_eq!((b.meta().min_time, b.meta().max_time), (0, 7_200_000));
        assert_eq!(
            (
                b.meta().stats.num_series,
                b.meta().stats.num_chunks,
                b.meta().stats.num_samples
            ),
            (3, 4, 9)
        );
        assert!(b.corrupt_chunks().is_empty());
        let mut want = golden_series();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        let ix = b.index();
        assert_eq!(ix.num_series(), 3);
        let mut metas = Vec::new();
        for (id, (labels, chunks)) in want.iter().enumerate() {
            assert_eq!(&ix.series_labels(id as u32).unwrap(), labels);
            b.series_chunks(id as u32, &mut metas).unwrap();
            assert_eq!(metas.len(), chunks.len());
            for (m, c) in metas.iter().zip(chunks) {
                assert_eq!((m.mint, m.maxt), (c[0].0, c[c.len() - 1].0));
                let mut buf = Vec::new();
                let (enc, data) = b.chunk(m.chunk_ref, &mut buf).unwrap();
                assert_eq!(enc, Encoding::Xor);
                let (_, x) = rusty_chunkenc::xor::read_xor_chunk_data(data).unwrap();
                let got: Vec<(i64, f64)> = x.samples().iter().map(|s| (s.timestamp, s.value)).collect();
                assert_eq!(&got, c);
            }
        }
        let up = postings_for_matchers(ix, &[Matcher::equal("__name__", "up")]).unwrap();
        assert_eq!(up.iter().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(ix.label_values("path").unwrap(), vec![Arc::from("/ü")]);

        // Today's writer still produces exactly these bytes.
        let tmp = tempfile::tempdir().unwrap();
        write_golden(tmp.path());
        for f in [META_FILENAME, INDEX_FILENAME, "chunks/000001"] {
            assert_eq!(
                fs::read(tmp.path().join(GOLDEN_ULID).join(f)).unwrap(),
                fs::read(bdir.join(f)).unwrap(),
                "{f} differs from the golden block"
            );
        }
    }
}
