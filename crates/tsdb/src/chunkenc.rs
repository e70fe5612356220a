//! Chunk codecs (no I/O). STUB: the contract only; the real codecs replace this file.
//!
//! Contract (kept by the real implementation):
//! - [`Encoding`]: `Xor = 1` (Prometheus-compatible XOR chunk, byte-identical to Prometheus'
//!   `chunkenc.XORChunk`), `Pco = 2` (our columnar block encoding).
//! - [`XorChunk`]: an appendable XOR chunk for the head. `bytes()` is a valid chunk at any time.
//! - [`decode`]: any encoding into a caller's buffer, appending.
//! - [`encode_best`]: encodes a sorted run of samples for a persisted block with whichever
//!   encoding is smaller.

use metricsd_model::Sample;

use crate::{Error, Result};

/// How a chunk's bytes are encoded; stored as one byte beside each persisted chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Encoding {
    /// Prometheus' XOR chunk (Gorilla timestamps and values).
    Xor = 1,
    /// Columnar: pco-compressed timestamps and values.
    Pco = 2,
}

impl Encoding {
    /// The encoding of byte `b`.
    pub fn from_u8(b: u8) -> Result<Self> {
        match b {
            1 => Ok(Encoding::Xor),
            2 => Ok(Encoding::Pco),
            _ => Err(Error::InvalidChunk(format!("unknown chunk encoding {b}"))),
        }
    }
}

/// An appendable XOR chunk.
#[derive(Debug, Clone, Default)]
pub struct XorChunk {
    buf: Vec<u8>,
    n: u16,
}

impl XorChunk {
    /// An empty chunk.
    pub fn new() -> Self {
        XorChunk {
            buf: vec![0, 0],
            n: 0,
        }
    }
    /// Appends a sample; the caller keeps timestamps non-decreasing and stops at 65535 samples.
    pub fn append(&mut self, t: i64, v: f64) {
        self.buf.extend_from_slice(&t.to_le_bytes());
        self.buf.extend_from_slice(&v.to_bits().to_le_bytes());
        self.n += 1;
        self.buf[0..2].copy_from_slice(&self.n.to_be_bytes());
    }
    /// Number of samples.
    pub fn num_samples(&self) -> usize {
        self.n as usize
    }
    /// The encoded chunk.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
    /// Bytes of memory the chunk holds (capacity included).
    pub fn mem_size(&self) -> usize {
        self.buf.capacity() + std::mem::size_of::<Self>()
    }
    /// The bytes, capacity trimmed, for a chunk that will not grow again.
    pub fn into_bytes(self) -> Box<[u8]> {
        self.buf.into_boxed_slice()
    }
}

/// Appends the samples of `data` (encoded as `enc`) to `dst`.
pub fn decode(enc: Encoding, data: &[u8], dst: &mut Vec<Sample>) -> Result<()> {
    let _ = enc;
    if data.len() < 2 {
        return Err(Error::InvalidChunk("short".into()));
    }
    for c in data[2..].chunks_exact(16) {
        let t = i64::from_le_bytes(c[0..8].try_into().unwrap_or_default());
        let v = f64::from_bits(u64::from_le_bytes(c[8..16].try_into().unwrap_or_default()));
        dst.push(Sample::new(t, v));
    }
    Ok(())
}

/// Encodes sorted samples for a block with the smaller encoding.
pub fn encode_best(samples: &[Sample]) -> (Encoding, Vec<u8>) {
    let mut c = XorChunk::new();
    for s in samples {
        c.append(s.t, s.v);
    }
    (Encoding::Xor, c.buf)
}
