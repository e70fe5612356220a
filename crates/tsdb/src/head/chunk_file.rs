//! Closed head chunks on disk: `chunks_head/` files that hold the head's closed chunks so
//! that they leave anonymous memory (issue 12). Prometheus has done the same since 2.19
//! ("m-mapped head chunks"); we read them with `pread` like block chunks (no mmap: a file
//! truncated under a mapping kills the process with SIGBUS), so they cost page cache, which
//! the kernel reclaims under pressure, instead of RSS.
//!
//! The files are **not** a recovery source: the WAL holds every sample of the head, replay
//! rebuilds the head from it alone, and [`ChunkFiles::open`] deletes what a previous process
//! left. So nothing here is fsynced, a torn file is harmless, and WAL replay speed is what it
//! was. (Prometheus replays m-mapped chunks to skip WAL samples; the cost here is that the
//! re-encoding pass moves chunks out again after a restart.)
//!
//! Layout of a file `chunks_head/<index:06>`: chunks back to back, each `encoding <1 byte>`,
//! `bytes`, `crc32c(encoding, bytes) <4 bytes LE>`. A chunk is named by a `u64` ref:
//! offset << 24 | length of encoding + bytes (a chunk is at most 16 MiB; head chunks are
//! a few KiB).
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
    file: File,
    path: PathBuf,
    /// Newest sample time of any chunk written to it: the file can go once the head is
    /// truncated past it.
    maxt: AtomicI64,
}

impl std::fmt::Debug for ChunkFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkFile({})", self.path.display())
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
        let (body, crc) = buf.split_at(len);
        let want = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32c::crc32c(body) != want {
            return Err(bad("head chunk checksum mismatch".into()));
        }
        let enc = Encoding::from_u8(body[0]).map_err(|e| bad(e.to_string()))?;
        Ok((enc, &buf[1..len]))
    }
}

struct Writer {
    index: u64,
    file: Arc<ChunkFile>,
    size: u64,
}

/// The `chunks_head` directory of one head: the file being appended to and the older ones.
pub(crate) struct ChunkFiles {
    dir: PathBuf,
    state: Mutex<State>,
}

struct State {
    current: Option<Writer>,
    /// Every file still present, oldest first.
    files: Vec<Arc<ChunkFile>>,
    next_index: u64,
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
        let crc = crc32c::crc32c(&self.buf[start..]);
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
    /// Opens `dir`, deleting the files a previous process left (the WAL rebuilds the head).
    pub(crate) fn open(dir: &Path) -> Result<ChunkFiles> {
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(|e| Error::io("remove", dir, e))?;
        }
        fs::create_dir_all(dir).map_err(|e| Error::io("create dir", dir, e))?;
        Ok(ChunkFiles {
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                current: None,
                files: Vec::new(),
                next_index: 1,
            }),
        })
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
                file,
                path,
                maxt: AtomicI64::new(i64::MIN),
            });
            st.next_index += 1;
            st.files.push(file.clone());
            st.current = Some(Writer { index, file, size: 0 });
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
        let refs = batch
            .parts
            .iter()
            .map(|&(off, len)| ((base + off as u64) << LEN_BITS) | len as u64)
            .collect();
        tracing::trace!(file = w.index, chunks = batch.parts.len(), "head chunks written");
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
