//! Closed head chunks on disk: `chunks_head/` files that hold the head's closed chunks so
//! that they leave anonymous memory (issue 12). Prometheus has done the same since 2.19
//! ("m-mapped head chunks"); we read them with `pread` like block chunks (no mmap: a file
//! truncated under a mapping kills the process with SIGBUS), so they cost page cache, which
//! the kernel reclaims under pressure, instead of RSS.
//!
//! **A recovery source since head checkpoints** (`Db::checkpoint_head`): a WAL checkpoint
//! may name chunks here (record type 6, `docs/format/wal.md`) instead of repeating their
//! samples, and then drops the WAL segments that held them. The files are therefore kept
//! across restarts: [`ChunkFiles::open`] opens what it finds (new chunks go to a new file,
//! so a torn tail is never appended to), replay hands the chunks the checkpoint names back
//! to the head, and [`ChunkFiles::retain`] deletes the files nobody names. A checkpoint
//! names a chunk only after [`ChunkFiles::sync`] made it durable; nothing else here is
//! fsynced, so the tail of a file written after the last sync may be torn or missing, and
//! no checkpoint refers to it.
//!
//! Layout of a file `chunks_head/<index:06>`: chunks back to back, each `encoding <1 byte>`,
//! `bytes`, `crc32c(encoding, bytes) <4 bytes LE>`. A chunk is named by its file's index and
//! a `u64` ref: offset << 24 | length of encoding + bytes (a chunk is at most 16 MiB; head
//! chunks are a few hundred bytes). The CRC is checked on every read.
//!
//! Lifetimes: a chunk holds an `Arc` of its file, so a file removed by
//! [`ChunkFiles::remove_before`] stays readable (its descriptor open) until the last chunk
//! or query that refers to it is gone.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::Mutex;

use crate::chunkenc::Encoding;
use crate::querier::ChunkReader;
use crate::{Error, Result};

/// A file is closed for writing and a new one started past this size.
const FILE_SIZE: u64 = 128 << 20;
const LEN_BITS: u32 = 24;
const MAX_LEN: usize = (1 << LEN_BITS) - 1;

/// One `chunks_head` file.
pub(crate) struct ChunkFile {
    /// The number in its name.
    pub(crate) index: u32,
    file: File,
    path: PathBuf,
    /// Its length when it was opened (files found at open), or `u64::MAX` for a file this
    /// process writes: a ref read from a checkpoint must lie inside it.
    len_at_open: u64,
    /// Newest sample time of any chunk written to it: the file can go once the head is
    /// truncated past it.
    maxt: AtomicI64,
}

impl std::fmt::Debug for ChunkFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkFile({})", self.path.display())
    }
}

impl ChunkFile {
    /// Whether `chunk_ref` (from a checkpoint) lies inside the file as it was found.
    pub(crate) fn holds(&self, chunk_ref: u64) -> bool {
        let off = chunk_ref >> LEN_BITS;
        let len = chunk_ref & MAX_LEN as u64;
        len > 0 && off.saturating_add(len).saturating_add(4) <= self.len_at_open
    }

    /// Raises the newest sample time the file holds (replay, for [`ChunkFiles::remove_before`]).
    pub(crate) fn note_maxt(&self, t: i64) {
        self.maxt.fetch_max(t, Ordering::Relaxed);
    }
}

impl ChunkReader for ChunkFile {
    fn read_chunk<'b>(&self, chunk_ref: u64, buf: &'b mut Vec<u8>) -> Result<(Encoding, &'b [u8])> {
        let off = chunk_ref >> LEN_BITS;
        let len = (chunk_ref & MAX_LEN as u64) as usize;
        let bad = |why: String| Error::Corruption {
            path: self.path.clone(),
            offset: off,
            reason: why,
        };
        if len == 0 {
            return Err(bad("empty head chunk reference".into()));
        }
        buf.clear();
        buf.resize(len + 4, 0);
        self.file
            .read_exact_at(buf, off)
            .map_err(|e| Error::io("read head chunk from", &self.path, e))?;
        let buf: &'b [u8] = buf;
        // `buf` is `len + 4` bytes with `len > 0`: both splits succeed.
        let Some((body, crc)) = buf.split_last_chunk::<4>() else {
            return Err(bad(format!("head chunk of {} bytes has no checksum", buf.len())));
        };
        if crc32c::crc32c(body) != u32::from_le_bytes(*crc) {
            return Err(bad("head chunk checksum mismatch".into()));
        }
        let Some((&enc, data)) = body.split_first() else {
            return Err(bad("head chunk has no encoding byte".into()));
        };
        let enc = Encoding::from_u8(enc).map_err(|e| bad(e.to_string()))?;
        Ok((enc, data))
    }
}

struct Writer {
    file: Arc<ChunkFile>,
    size: u64,
}

/// The `chunks_head` directory of one head: the file being appended to and the older ones.
pub(crate) struct ChunkFiles {
    dir: PathBuf,
    state: Mutex<State>,
    /// Set when an fsync failed: Linux may have dropped the dirty pages and reports that
    /// once, so a later fsync's success proves nothing. No checkpoint may name a chunk
    /// written by this process from then on (the WAL keeps their samples); a restart clears it.
    poisoned: std::sync::atomic::AtomicBool,
}

struct State {
    current: Option<Writer>,
    /// Every file still present, oldest first.
    files: Vec<Arc<ChunkFile>>,
    next_index: u32,
    /// Files written to since the last [`ChunkFiles::sync`].
    unsynced: Vec<Arc<ChunkFile>>,
    /// Whether a file was created or removed since the last sync (the directory needs one).
    dir_dirty: bool,
}

/// A batch of chunks to append with one write: the bytes, then each chunk's ref once
/// [`ChunkFiles::write`] has put them in a file.
#[derive(Default)]
pub(crate) struct Batch {
    buf: Vec<u8>,
    /// (offset in `buf`, length) of each chunk, in order.
    parts: Vec<(usize, usize)>,
    maxt: i64,
}

impl Batch {
    /// Adds a chunk; returns its position in the batch. `None` if it is too big for a ref.
    pub(crate) fn push(&mut self, enc: Encoding, data: &[u8], maxt: i64) -> Option<usize> {
        let len = 1 + data.len();
        if len > MAX_LEN {
            return None;
        }
        if self.parts.is_empty() {
            self.maxt = i64::MIN;
        }
        let start = self.buf.len();
        self.buf.push(enc as u8);
        self.buf.extend_from_slice(data);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&[enc as u8]), data);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.parts.push((start, len));
        self.maxt = self.maxt.max(maxt);
        Some(self.parts.len() - 1)
    }

    pub(crate) fn len(&self) -> usize {
        self.parts.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.parts.clear();
    }
}

impl ChunkFiles {
    /// Opens `dir` (creating it) and the files a previous process left, for replay to hand
    /// their chunks back; new chunks go to a new file.
    ///
    /// # Errors
    /// I/O errors creating or listing the directory or opening a file.
    pub(crate) fn open(dir: &Path) -> Result<ChunkFiles> {
        fs::create_dir_all(dir).map_err(|e| Error::io("create dir", dir, e))?;
        let mut files = Vec::new();
        let entries = fs::read_dir(dir).map_err(|e| Error::io("read dir", dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read dir", dir, e))?;
            let name = entry.file_name();
            let Some(index) = name
                .to_str()
                .filter(|n| n.len() >= 6 && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let path = entry.path();
            let file = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
            let len = file.metadata().map_err(|e| Error::io("stat", &path, e))?.len();
            files.push(Arc::new(ChunkFile {
                index,
                file,
                path,
                len_at_open: len,
                maxt: AtomicI64::new(i64::MIN),
            }));
        }
        files.sort_by_key(|f| f.index);
        let next_index = files.last().map_or(1, |f| f.index.saturating_add(1));
        Ok(ChunkFiles {
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                current: None,
                files,
                next_index,
                unsynced: Vec::new(),
                dir_dirty: false,
            }),
            poisoned: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Makes new files numbered above `index` (a number a checkpoint names, present or not):
    /// a new file must never take the name of one an old checkpoint still refers to.
    pub(crate) fn bump_next(&self, index: u32) {
        let mut st = self.state.lock();
        st.next_index = st.next_index.max(index.saturating_add(1));
    }

    /// The file numbered `index`, if it is present.
    pub(crate) fn file(&self, index: u32) -> Option<Arc<ChunkFile>> {
        let st = self.state.lock();
        st.files
            .binary_search_by_key(&index, |f| f.index)
            .ok()
            .and_then(|i| st.files.get(i).cloned())
    }

    /// Deletes the files that none of `keep` names and that are not being written (after
    /// replay: the chunks no checkpoint refers to). Returns how many went.
    pub(crate) fn retain(&self, keep: &std::collections::HashSet<u32>) -> usize {
        let mut st = self.state.lock();
        let writing = st.current.as_ref().map(|w| w.file.index);
        let (kept, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut st.files)
            .into_iter()
            .partition(|f| keep.contains(&f.index) || Some(f.index) == writing);
        st.files = kept;
        st.dir_dirty |= !gone.is_empty();
        for f in &gone {
            if let Err(e) = fs::remove_file(&f.path) {
                tracing::warn!(path = %f.path.display(), error = %e, "cannot remove head chunk file");
            }
        }
        gone.len()
    }

    /// Makes every chunk written so far durable: fsyncs the files written since the last
    /// call, and the directory if files came or went.
    ///
    /// # Errors
    /// I/O errors of the fsyncs; after one, every later call fails too (see `poisoned`).
    pub(crate) fn sync(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Unavailable(
                "a head chunk file fsync failed earlier; head checkpoints are off until a restart".into(),
            ));
        }
        let (files, dir_dirty) = {
            let mut st = self.state.lock();
            (
                std::mem::take(&mut st.unsynced),
                std::mem::take(&mut st.dir_dirty),
            )
        };
        let res = (|| {
            for f in &files {
                f.file.sync_data().map_err(|e| Error::io("fsync", &f.path, e))?;
            }
            if dir_dirty {
                crate::wal::segment::sync_dir(&self.dir)?;
            }
            Ok(())
        })();
        if res.is_err() {
            self.poisoned.store(true, Ordering::Release);
        }
        res
    }

    /// Appends the batch's chunks to the current file (starting a new one when it is full)
    /// with one write; returns the file and each chunk's ref, in batch order.
    pub(crate) fn write(&self, batch: &Batch) -> Result<(Arc<ChunkFile>, Vec<u64>)> {
        let mut st = self.state.lock();
        let full = st
            .current
            .as_ref()
            .is_none_or(|w| w.size > 0 && w.size + batch.buf.len() as u64 > FILE_SIZE);
        if full {
            let index = st.next_index;
            let path = self.dir.join(format!("{index:06}"));
            let file = OpenOptions::new()
                .create_new(true)
                .read(true)
                .append(true)
                .open(&path)
                .map_err(|e| Error::io("create", &path, e))?;
            let file = Arc::new(ChunkFile {
                index,
                file,
                path,
                len_at_open: u64::MAX,
                maxt: AtomicI64::new(i64::MIN),
            });
            st.next_index = st
                .next_index
                .checked_add(1)
                .ok_or_else(|| Error::Unavailable("head chunk file numbers are exhausted".into()))?;
            st.files.push(file.clone());
            st.dir_dirty = true;
            st.current = Some(Writer { file, size: 0 });
        }
        let Some(w) = st.current.as_mut() else {
            return Err(Error::Unavailable("no head chunk file".into()));
        };
        if let Err(e) = (&w.file.file).write_all(&batch.buf) {
            // Whatever was written is garbage nobody refers to; continue in a new file.
            let path = w.file.path.clone();
            st.current = None;
            return Err(Error::io("write", path, e));
        }
        let base = w.size;
        w.size += batch.buf.len() as u64;
        w.file.maxt.fetch_max(batch.maxt, Ordering::Relaxed);
        let file = w.file.clone();
        if !st.unsynced.iter().any(|f| Arc::ptr_eq(f, &file)) {
            st.unsynced.push(file.clone());
        }
        let Some(w) = st.current.as_ref() else {
            return Err(Error::Unavailable("no head chunk file".into()));
        };
        let refs = batch
            .parts
            .iter()
            .map(|&(off, len)| ((base + off as u64) << LEN_BITS) | len as u64)
            .collect();
        tracing::trace!(
            file = w.file.index,
            chunks = batch.parts.len(),
            "head chunks written"
        );
        Ok((w.file.clone(), refs))
    }

    /// Removes the files whose chunks all end before `t` (the head was truncated there).
    /// Chunks still held by readers keep their file's descriptor open.
    pub(crate) fn remove_before(&self, t: i64) -> usize {
        let mut st = self.state.lock();
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut st.files)
            .into_iter()
            .partition(|f| f.maxt.load(Ordering::Relaxed) < t);
        st.files = kept;
        st.dir_dirty |= !gone.is_empty();
        if st
            .current
            .as_ref()
            .is_some_and(|w| gone.iter().any(|f| Arc::ptr_eq(f, &w.file)))
        {
            st.current = None;
        }
        for f in &gone {
            if let Err(e) = fs::remove_file(&f.path) {
                tracing::warn!(path = %f.path.display(), error = %e, "cannot remove head chunk file");
            }
        }
        gone.len()
    }

    /// (files, bytes) on disk.
    pub(crate) fn stats(&self) -> (usize, u64) {
        let st = self.state.lock();
        let bytes = st
            .files
            .iter()
            .map(|f| f.file.metadata().map(|m| m.len()).unwrap_or(0))
            .sum();
        (st.files.len(), bytes)
    }
}
