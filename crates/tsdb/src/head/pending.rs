//! Closed head chunks waiting for the settle pass, packed into slabs of 1 MiB.
//!
//! A head with chunk files moves each closed chunk to disk within seconds
//! ([`super::Head::recompress`]). Held as a heap allocation of its own meanwhile, every chunk
//! cut during a burst was a small block freed a few seconds later, among the blocks of
//! the same size class that live on (the open chunks): the allocator could return few of
//! those pages, and RSS stayed far above the live heap after a load (issue 12, measured with
//! heaptrack). Here a cut copies the chunk's bytes to the end of the current slab; a slab is
//! one allocation, freed whole when the last chunk in it has moved to disk (or left the
//! head), which the allocator hands straight back to the OS.
//!
//! Chunks are named like chunk file chunks: `offset << 24 | length` of `encoding byte +
//! bytes` (no checksum: memory). A slab is never reallocated: it is created with its full
//! capacity and a chunk that does not fit starts the next one.

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::chunkenc::Encoding;
use crate::querier::ChunkReader;
use crate::{Error, Result};

/// Capacity of a slab.
const SLAB_BYTES: usize = 1 << 20;
const LEN_BITS: u32 = 24;
const MAX_LEN: usize = (1 << LEN_BITS) - 1;

/// Bytes a pending chunk takes in its slab (encoding byte included), from its ref.
pub(crate) fn chunk_len(chunk_ref: u64) -> usize {
    (chunk_ref & MAX_LEN as u64) as usize
}

/// One slab of closed chunks.
pub(crate) struct Slab {
    buf: RwLock<Vec<u8>>,
}

impl std::fmt::Debug for Slab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Slab({} bytes)", self.buf.read().len())
    }
}

impl ChunkReader for Slab {
    fn read_chunk<'b>(&self, chunk_ref: u64, buf: &'b mut Vec<u8>) -> Result<(Encoding, &'b [u8])> {
        let off = usize::try_from(chunk_ref >> LEN_BITS).unwrap_or(usize::MAX);
        let len = chunk_len(chunk_ref);
        buf.clear();
        {
            let slab = self.buf.read();
            let bytes = off
                .checked_add(len)
                .and_then(|end| slab.get(off..end))
                .filter(|b| !b.is_empty())
                .ok_or_else(|| Error::InvalidChunk(format!("no pending head chunk at {off}+{len}")))?;
            buf.extend_from_slice(bytes);
        }
        let (&enc, data) = buf
            .split_first()
            .ok_or_else(|| Error::InvalidChunk("empty pending head chunk".into()))?;
        Ok((Encoding::from_u8(enc)?, data))
    }
}

impl Slab {
    /// A slab holding one chunk, allocated to its size, and the chunk's ref: for a chunk
    /// that does not wait for the settle pass in a shared slab (a head without chunk files,
    /// a chunk a delete rewrote).
    pub(crate) fn single(enc: Encoding, data: &[u8]) -> (Arc<Slab>, u64) {
        let mut buf = Vec::with_capacity(1 + data.len());
        buf.push(enc as u8);
        buf.extend_from_slice(data);
        // A head chunk is a few KiB (`chunk_max_samples` samples); one beyond 16 MiB would
        // read back cut short, which decoding reports as an invalid chunk, never a panic.
        debug_assert!(buf.len() <= MAX_LEN, "a head chunk of {} bytes", buf.len());
        let len = buf.len().min(MAX_LEN) as u64;
        (
            Arc::new(Slab {
                buf: RwLock::new(buf),
            }),
            len,
        )
    }
}

/// The slab being filled.
#[derive(Default)]
pub(crate) struct Pending {
    current: Mutex<Option<Arc<Slab>>>,
}

impl Pending {
    /// Copies a closed chunk into the current slab (starting a new one when it is full);
    /// returns the slab and the chunk's ref. `None` for a chunk larger than a slab (the
    /// caller keeps it on the heap).
    pub(crate) fn push(&self, enc: Encoding, data: &[u8]) -> Option<(Arc<Slab>, u64)> {
        let len = 1 + data.len();
        if len > SLAB_BYTES {
            return None;
        }
        let mut cur = self.current.lock();
        let slab = match cur.as_ref() {
            Some(s) if s.buf.read().len() + len <= SLAB_BYTES => s.clone(),
            _ => {
                let s = Arc::new(Slab {
                    buf: RwLock::new(Vec::with_capacity(SLAB_BYTES)),
                });
                *cur = Some(s.clone());
                s
            }
        };
        let off = {
            let mut b = slab.buf.write();
            let off = b.len();
            b.push(enc as u8);
            b.extend_from_slice(data);
            off
        };
        drop(cur);
        Some((slab, ((off as u64) << LEN_BITS) | len as u64))
    }

    /// Lets the current slab go when no chunk is in it any more (after a settle pass), so
    /// that a tenant that stopped writing does not keep a slab of moved chunks.
    pub(crate) fn release_if_unused(&self) {
        let mut cur = self.current.lock();
        if cur.as_ref().is_some_and(|s| Arc::strong_count(s) == 1) {
            *cur = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_read_back_and_slabs_fill_up() {
        let p = Pending::default();
        let a = vec![7u8; 300];
        let (s1, r1) = p.push(Encoding::Xor, &a).unwrap();
        let (s2, r2) = p.push(Encoding::Pco, &[1, 2, 3]).unwrap();
        assert!(Arc::ptr_eq(&s1, &s2));
        let mut buf = Vec::new();
        assert_eq!(s1.read_chunk(r1, &mut buf).unwrap(), (Encoding::Xor, &a[..]));
        assert_eq!(
            s2.read_chunk(r2, &mut buf).unwrap(),
            (Encoding::Pco, &[1u8, 2, 3][..])
        );
        // A bad ref is an error, not a panic.
        assert!(s1.read_chunk(u64::MAX, &mut buf).is_err());
        assert!(s1.read_chunk(0, &mut buf).is_err());
        // A chunk that does not fit starts a new slab; one larger than a slab is refused.
        let big = vec![0u8; SLAB_BYTES - 100];
        let (s3, _) = p.push(Encoding::Xor, &big).unwrap();
        assert!(!Arc::ptr_eq(&s1, &s3));
        assert!(p.push(Encoding::Xor, &vec![0u8; SLAB_BYTES]).is_none());
        // The current slab goes only when nothing refers to it.
        let weak = Arc::downgrade(&s3);
        p.release_if_unused();
        assert!(weak.upgrade().is_some(), "a chunk still refers to it");
        drop(s3);
        p.release_if_unused();
        assert!(weak.upgrade().is_none(), "released");
    }
}
