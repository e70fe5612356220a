//! Prometheus' XOR chunk (Gorilla): the head's appendable chunk and the decoder of XOR chunks
//! in blocks. Byte-identical to Prometheus' `tsdb/chunkenc/xor.go`; layout in
//! `docs/format/chunks.md`.

use metricsd_model::Sample;

use super::bstream::{BitReader, write_bit, write_bits, write_uvarint_bits, write_varint_bits};
use crate::{Error, Result};

/// The most samples one XOR chunk holds: its header counts them in a `u16`.
pub const XOR_MAX_SAMPLES: usize = u16::MAX as usize;

/// Initial buffer capacity: header + first sample (≤ 10 + 8 bytes) + a few more. The head
/// keeps up to a million open chunks, so start small and let `Vec` double.
const INITIAL_CAPACITY: usize = 32;

/// `leading` before the first XOR'd value: "no leading/trailing window yet", so the first
/// changed value always writes a new window (control bits `11`).
pub(crate) const NO_WINDOW: u8 = 0xff;

/// An appendable Prometheus XOR chunk.
///
/// Invariants: `buf` is a complete, zero-padded XOR chunk after every `append` (its first two
/// bytes are the big-endian sample count), so [`XorChunk::bytes`] can be read at any time;
/// the other fields are the appender state Prometheus' `xorAppender` keeps (the previous
/// timestamp, value bits and timestamp delta, the current leading/trailing window) plus the
/// number of unwritten low bits of the last byte. 56 bytes on 64-bit targets.
#[derive(Debug, Clone)]
pub struct XorChunk {
    buf: Vec<u8>,
    t: i64,
    v: u64,
    /// The previous timestamp delta as Go keeps it: a `uint64` that wraps.
    t_delta: u64,
    leading: u8,
    trailing: u8,
    /// Unwritten low bits of the last byte of `buf` (0..=7).
    free: u8,
}

impl Default for XorChunk {
    fn default() -> Self {
        Self::new()
    }
}

impl XorChunk {
    /// An empty chunk (a valid chunk of 0 samples: two zero header bytes).
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(INITIAL_CAPACITY);
        buf.extend_from_slice(&[0, 0]);
        XorChunk {
            buf,
            t: 0,
            v: 0,
            t_delta: 0,
            leading: NO_WINDOW,
            trailing: 0,
            free: 0,
        }
    }

    /// Appends a sample. The caller keeps timestamps non-decreasing (equal allowed); others
    /// are encoded as Prometheus would (its Go arithmetic wraps, and so does ours), but
    /// decreasing timestamps are not a valid series.
    ///
    /// # Panics
    ///
    /// When the chunk already holds [`XOR_MAX_SAMPLES`] samples, as Prometheus does.
    #[inline]
    #[allow(clippy::panic, reason = "documented contract, as Prometheus' XOR appender")]
    #[allow(
        clippy::indexing_slicing,
        reason = "`buf` starts with the 2-byte sample count (`new` writes it, nothing shrinks `buf`)"
    )]
    pub fn append(&mut self, t: i64, v: f64) {
        // Grow by a quarter (at least 32 bytes, more than a sample's worst case of 23)
        // instead of doubling: every series' open chunk lives in memory, and doubling
        // leaves a quarter of it unused on average.
        if self.buf.capacity() - self.buf.len() < 24 {
            self.buf.reserve_exact(self.buf.len() / 4 + 32);
        }
        let n = self.count();
        let vbits = v.to_bits();
        let mut t_delta = 0;
        match n {
            0 => {
                write_varint_bits(&mut self.buf, &mut self.free, t);
                write_bits(&mut self.buf, &mut self.free, vbits, 64);
            }
            1 => {
                t_delta = t.wrapping_sub(self.t) as u64;
                write_uvarint_bits(&mut self.buf, &mut self.free, t_delta);
                self.write_value(vbits);
            }
            u16::MAX => panic!("XOR chunk capacity of {XOR_MAX_SAMPLES} samples exceeded"),
            _ => {
                t_delta = t.wrapping_sub(self.t) as u64;
                let dod = t_delta.wrapping_sub(self.t_delta) as i64;
                if dod == 0 && vbits == self.v {
                    // Regular scrape of an unchanged value, the most common sample: two 0
                    // bits in one write.
                    write_bits(&mut self.buf, &mut self.free, 0, 2);
                } else {
                    self.write_dod(dod);
                    self.write_value(vbits);
                }
            }
        }
        self.t = t;
        self.v = vbits;
        self.t_delta = t_delta;
        self.buf[..2].copy_from_slice(&(n + 1).to_be_bytes());
    }

    #[inline]
    #[allow(
        clippy::indexing_slicing,
        reason = "`buf` starts with the 2-byte sample count (`new` writes it, nothing shrinks `buf`)"
    )]
    fn count(&self) -> u16 {
        u16::from_be_bytes([self.buf[0], self.buf[1]])
    }

    #[inline]
    fn write_dod(&mut self, dod: i64) {
        write_dod(&mut self.buf, &mut self.free, dod);
    }

    #[inline]
    fn write_value(&mut self, vbits: u64) {
        write_xor(
            &mut self.buf,
            &mut self.free,
            vbits ^ self.v,
            &mut self.leading,
            &mut self.trailing,
        );
    }

    /// Number of samples.
    pub fn num_samples(&self) -> usize {
        usize::from(self.count())
    }

    /// The encoded chunk: a valid Prometheus XOR chunk after any append.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Bytes of memory the chunk holds: buffer capacity plus the struct itself.
    pub fn mem_size(&self) -> usize {
        self.buf.capacity() + std::mem::size_of::<Self>()
    }

    /// The bytes with spare capacity dropped, for a chunk that will not grow again.
    pub fn into_bytes(self) -> Box<[u8]> {
        self.buf.into_boxed_slice()
    }

    /// A lazy iterator over the chunk's samples.
    pub fn iter(&self) -> XorIter<'_> {
        XorIter::new(&self.buf)
    }
}

/// Encodes `samples` (sorted by timestamp) as one XOR chunk.
///
/// Fails with [`Error::InvalidArgument`] for more than [`XOR_MAX_SAMPLES`] samples.
pub fn encode_xor(samples: &[Sample]) -> Result<Vec<u8>> {
    if samples.len() > XOR_MAX_SAMPLES {
        return Err(Error::InvalidArgument(format!(
            "an XOR chunk holds at most {XOR_MAX_SAMPLES} samples, got {}",
            samples.len()
        )));
    }
    let mut c = XorChunk::new();
    // Roughly 1.4 bytes/sample on real data; one reservation avoids most regrowth.
    c.buf.reserve(samples.len() * 2);
    for s in samples {
        c.append(s.t, s.v);
    }
    Ok(c.buf)
}

/// A lazy iterator over the samples of an XOR chunk.
///
/// It stops at the declared sample count or at the first malformed bit; then [`XorIter::err`]
/// tells which. Reuse one with [`XorIter::reset`] to decode many chunks without allocating.
#[derive(Debug, Clone)]
pub struct XorIter<'a> {
    br: BitReader<'a>,
    total: u16,
    read: u16,
    t: i64,
    v: u64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
    err: Option<String>,
}

impl<'a> XorIter<'a> {
    /// An iterator over the XOR chunk `data` (header included).
    pub fn new(data: &'a [u8]) -> Self {
        let mut it = XorIter {
            br: BitReader::new(&[]),
            total: 0,
            read: 0,
            t: 0,
            v: 0,
            t_delta: 0,
            leading: 0,
            trailing: 0,
            err: None,
        };
        it.reset(data);
        it
    }

    /// Starts over on another chunk.
    pub fn reset(&mut self, data: &'a [u8]) {
        // Start state as Prometheus' iterator: a window of 0 leading/trailing zeros, so a
        // (malformed) `10` before any `11` reads 64 bits, as Go does.
        *self = XorIter {
            br: BitReader::new(data.get(2..).unwrap_or(&[])),
            total: 0,
            read: 0,
            t: 0,
            v: 0,
            t_delta: 0,
            leading: 0,
            trailing: 0,
            err: None,
        };
        match data {
            [a, b, ..] => self.total = u16::from_be_bytes([*a, *b]),
            _ => {
                self.err = Some(format!(
                    "XOR chunk of {} bytes is shorter than its 2-byte header",
                    data.len()
                ))
            }
        }
    }

    /// The number of samples the chunk declares.
    pub fn declared_len(&self) -> usize {
        usize::from(self.total)
    }

    /// Why iteration stopped early, if it did.
    pub fn err(&self) -> Option<Error> {
        self.err.as_ref().map(|m| Error::InvalidChunk(m.clone()))
    }

    #[cold]
    #[inline(never)]
    fn fail(&mut self, what: &str) -> Option<Sample> {
        self.err = Some(format!(
            "XOR chunk declares {} samples but ends after {} (reading {what} at bit {} of {})",
            self.total,
            self.read,
            self.br.position(),
            self.br.position() + self.br.remaining()
        ));
        None
    }

    /// Reads a value; `Err` names the part that was cut off or malformed.
    #[inline]
    fn read_value(&mut self) -> std::result::Result<(), &'static str> {
        self.v ^= read_xor(&mut self.br, &mut self.leading, &mut self.trailing)?;
        Ok(())
    }

    #[inline]
    fn read_dod(&mut self) -> Option<i64> {
        read_dod(&mut self.br)
    }
}

impl Iterator for XorIter<'_> {
    type Item = Sample;

    #[inline]
    fn next(&mut self) -> Option<Sample> {
        if self.read == self.total || self.err.is_some() {
            return None;
        }
        match self.read {
            0 => {
                let Some(t) = self.br.read_varint() else {
                    return self.fail("first timestamp");
                };
                let Some(v) = self.br.read_bits(64) else {
                    return self.fail("first value");
                };
                self.t = t;
                self.v = v;
            }
            1 => {
                let Some(d) = self.br.read_uvarint() else {
                    return self.fail("second timestamp delta");
                };
                self.t_delta = d;
                self.t = self.t.wrapping_add(d as i64);
                if let Err(what) = self.read_value() {
                    return self.fail(what);
                }
            }
            _ => {
                let Some(dod) = self.read_dod() else {
                    return self.fail("timestamp delta of delta");
                };
                self.t_delta = (self.t_delta as i64).wrapping_add(dod) as u64;
                self.t = self.t.wrapping_add(self.t_delta as i64);
                if let Err(what) = self.read_value() {
                    return self.fail(what);
                }
            }
        }
        self.read += 1;
        Some(Sample::new(self.t, f64::from_bits(self.v)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(usize::from(self.total - self.read)))
    }
}

/// Appends the samples of XOR chunk `data` to `dst`; on error `dst` is left as it was.
pub(crate) fn decode_xor(data: &[u8], dst: &mut Vec<Sample>) -> Result<()> {
    let start = dst.len();
    let mut it = XorIter::new(data);
    // Every sample after the second takes at least 2 bits: reserve no more than the bytes
    // can hold, so a garbage count cannot make us allocate.
    let bound = 2 + data.len() * 4;
    dst.reserve(it.declared_len().min(bound));
    dst.extend(&mut it);
    if let Some(e) = it.err() {
        dst.truncate(start);
        return Err(e);
    }
    Ok(())
}

// Gorilla's bit coding, shared by the XOR chunk and the WAL's v2 records (`wal::codec`).

/// Writes a delta-of-delta in Prometheus' buckets (`0`, `10`+14, `110`+17, `1110`+20,
/// `1111`+64 bits). A bucket of `n` bits holds `-(2^(n-1) - 1) ..= 2^(n-1)` (Prometheus'
/// `bitRange`), written as the low `n` bits of the two's complement. Ranges are compared in
/// i64, which cannot overflow.
#[inline]
pub(crate) fn write_dod(buf: &mut Vec<u8>, free: &mut u8, dod: i64) {
    let (code, nbits) = if dod == 0 {
        (0, 1)
    } else if (-8191..=8192).contains(&dod) {
        (0b10 << 14 | (dod as u64 & 0x3fff), 16)
    } else if (-65535..=65536).contains(&dod) {
        (0b110 << 17 | (dod as u64 & 0x1_ffff), 20)
    } else if (-524_287..=524_288).contains(&dod) {
        (0b1110 << 20 | (dod as u64 & 0xf_ffff), 24)
    } else {
        write_bits(buf, free, 0b1111, 4);
        (dod as u64, 64)
    };
    write_bits(buf, free, code, nbits);
}

/// Writes the XOR of a value with the previous one as Prometheus' `xorWrite`: `0` if
/// unchanged; `10` + the significant bits if they fit the current leading/trailing window;
/// else `11`, 5 bits of leading zeros (capped at 31 to fit), 6 bits of significant-bit count
/// (64 written as 0: a changed value never has 0) and the significant bits, which sets the
/// window. `leading` is [`NO_WINDOW`] before the first window.
#[inline]
pub(crate) fn write_xor(buf: &mut Vec<u8>, free: &mut u8, delta: u64, leading: &mut u8, trailing: &mut u8) {
    if delta == 0 {
        write_bit(buf, free, false);
        return;
    }
    let lead = delta.leading_zeros().min(31);
    let trail = delta.trailing_zeros();
    if *leading != NO_WINDOW && lead >= u32::from(*leading) && trail >= u32::from(*trailing) {
        let sig = 64 - u32::from(*leading) - u32::from(*trailing);
        let bits = delta >> *trailing;
        if sig <= 62 {
            write_bits(buf, free, 0b10 << sig | bits, sig + 2);
        } else {
            write_bits(buf, free, 0b10, 2);
            write_bits(buf, free, bits, sig);
        }
        return;
    }
    *leading = lead as u8;
    *trailing = trail as u8;
    let sig = 64 - lead - trail;
    let head = 0b11 << 11 | u64::from(lead) << 6 | u64::from(sig & 63);
    let bits = delta >> trail;
    if sig <= 64 - 13 {
        write_bits(buf, free, head << sig | bits, 13 + sig);
    } else {
        write_bits(buf, free, head, 13);
        write_bits(buf, free, bits, sig);
    }
}

/// Reads what [`write_dod`] wrote; `None` past the end.
#[inline]
pub(crate) fn read_dod(br: &mut BitReader<'_>) -> Option<i64> {
    // Control prefix: 0, 10, 110, 1110, 1111.
    let mut ones = 0;
    while ones < 4 && br.read_bit()? {
        ones += 1;
    }
    let sz = match ones {
        0 => return Some(0),
        1 => 14,
        2 => 17,
        3 => 20,
        _ => return br.read_bits(64).map(|b| b as i64),
    };
    let mut bits = br.read_bits(sz)?;
    // Values above 2^(sz-1) are negative (see `write_dod`).
    if bits > 1 << (sz - 1) {
        bits = bits.wrapping_sub(1 << sz);
    }
    Some(bits as i64)
}

/// Reads what [`write_xor`] wrote: the XOR with the previous value, updating the window.
/// The window starts at 0 leading and 0 trailing zeros, as Prometheus' iterator, so a
/// malformed `10` before any `11` reads 64 bits as Go does. `Err` names the part that was
/// cut off or malformed.
#[inline]
pub(crate) fn read_xor(
    br: &mut BitReader<'_>,
    leading: &mut u8,
    trailing: &mut u8,
) -> std::result::Result<u64, &'static str> {
    if !br.read_bit().ok_or("value control bit")? {
        return Ok(0);
    }
    if br.read_bit().ok_or("value control bit")? {
        let lead = br.read_bits(5).ok_or("leading zero count")? as u32;
        let mut sig = br.read_bits(6).ok_or("significant bit count")? as u32;
        if sig == 0 {
            sig = 64;
        }
        // Prometheus' encoder never writes this; Go would wrap its uint8 arithmetic and
        // decode garbage, we refuse it.
        if lead + sig > 64 {
            return Err("leading zeros plus significant bits, over 64");
        }
        *leading = lead as u8;
        *trailing = (64 - lead - sig) as u8;
    }
    let sig = 64 - u32::from(*leading) - u32::from(*trailing);
    let bits = br.read_bits(sig).ok_or("significant bits")?;
    Ok(bits << *trailing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkenc::tests::{assert_same, samples_strategy};
    use proptest::prelude::*;

    fn decode_all(data: &[u8]) -> Result<Vec<Sample>> {
        let mut v = Vec::new();
        decode_xor(data, &mut v)?;
        Ok(v)
    }

    /// Samples rusty-chunkenc can write: it refuses decreasing deltas and overflows on huge
    /// ones, both of which Prometheus handles by wrapping.
    fn oracle_samples() -> impl Strategy<Value = Vec<Sample>> {
        (
            1usize..300,
            any::<i32>(),
            prop::collection::vec((0i64..3, 0u32..1_000_000, any::<u64>(), 0u8..6), 300),
        )
            .prop_map(|(n, t0, steps)| {
                let mut t = i64::from(t0);
                let mut v = 0.0f64;
                steps
                    .into_iter()
                    .take(n)
                    .map(|(kind, jitter, bits, vk)| {
                        t += match kind {
                            0 => 15_000,
                            1 => i64::from(jitter),
                            _ => 15_000 + i64::from(jitter % 10) - 5,
                        };
                        v = match vk {
                            0 => v,
                            1 => v + 1.0,
                            2 => f64::from_bits(bits),
                            3 => f64::from_bits(metricsd_model::STALE_NAN),
                            4 => (bits % 100_000) as f64 / 100.0,
                            _ => -0.0,
                        };
                        Sample::new(t, v)
                    })
                    .collect()
            })
    }

    fn oracle_encode(samples: &[Sample]) -> Vec<u8> {
        let xs = samples
            .iter()
            .map(|s| rusty_chunkenc::XORSample {
                timestamp: s.t,
                value: s.v,
            })
            .collect();
        let mut out = Vec::new();
        rusty_chunkenc::xor::XORChunk::new(xs).write(&mut out).unwrap();
        out
    }

    proptest! {
        #[test]
        fn round_trip(samples in samples_strategy()) {
            prop_assume!(samples.len() <= XOR_MAX_SAMPLES);
            let mut c = XorChunk::new();
            for (i, s) in samples.iter().enumerate() {
                c.append(s.t, s.v);
                // Valid at any time: the prefix decodes.
                if i < 3 || i + 1 == samples.len() {
                    assert_same(&decode_all(c.bytes()).unwrap(), &samples[..=i]);
                }
            }
            prop_assert_eq!(c.num_samples(), samples.len());
            let lazy: Vec<Sample> = c.iter().collect();
            assert_same(&lazy, &samples);
            prop_assert_eq!(encode_xor(&samples).unwrap(), c.bytes().to_vec());
            assert_same(&decode_all(&c.into_bytes()).unwrap(), &samples);
        }

        #[test]
        fn matches_oracle(samples in oracle_samples()) {
            let ours = encode_xor(&samples).unwrap();
            prop_assert_eq!(&ours, &oracle_encode(&samples));
            let (_, theirs) = rusty_chunkenc::xor::read_xor_chunk_data(&ours).unwrap();
            let theirs: Vec<Sample> = theirs.samples().iter().map(|s| Sample::new(s.timestamp, s.value)).collect();
            assert_same(&theirs, &samples);
            assert_same(&decode_all(&ours).unwrap(), &samples);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut dst = vec![Sample::new(1, 1.0)];
            if decode_xor(&data, &mut dst).is_err() {
                prop_assert_eq!(dst.len(), 1);
            }
        }

        #[test]
        fn truncation_is_an_error(samples in oracle_samples(), cut in any::<prop::sample::Index>()) {
            let bytes = encode_xor(&samples).unwrap();
            // Cutting whole bytes off may leave only padding missing; cut at least the
            // last sample's first byte.
            let keep = cut.index(bytes.len());
            let r = decode_all(&bytes[..keep]);
            if keep < 2 {
                prop_assert!(r.is_err());
            } else if let Ok(got) = r {
                prop_assert_eq!(got.len(), samples.len());
            }
        }
    }

    #[test]
    fn extremes_do_not_overflow() {
        let seqs: [&[i64]; 4] = [
            &[i64::MIN, i64::MAX, i64::MIN, i64::MAX],
            &[i64::MIN, i64::MIN, i64::MIN + 1, i64::MAX],
            &[i64::MAX, i64::MAX, i64::MAX],
            &[0, 8192, 16384 + 8192, 16384 + 8192 - 8191 + 16384, -5],
        ];
        for ts in seqs {
            let samples: Vec<Sample> = ts.iter().map(|&t| Sample::new(t, t as f64)).collect();
            let bytes = encode_xor(&samples).unwrap();
            assert_same(&decode_all(&bytes).unwrap(), &samples);
        }
    }

    #[test]
    fn errors_say_how_much() {
        let mut c = XorChunk::new();
        for i in 0..120 {
            c.append(i * 15_000, i as f64 * 1.5);
        }
        let b = c.bytes();
        let err = decode_all(&b[..b.len() / 2]).unwrap_err().to_string();
        assert!(err.contains("declares 120 samples but ends after"), "{err}");
        assert!(
            decode_all(&[0])
                .unwrap_err()
                .to_string()
                .contains("shorter than its 2-byte header")
        );
        assert_eq!(decode_all(&[0, 0]).unwrap(), vec![]);
        assert!(decode_all(&[0xff, 0xff, 1]).is_err());
    }

    #[test]
    fn small_struct_and_buffer() {
        assert!(std::mem::size_of::<XorChunk>() <= 56);
        let c = XorChunk::new();
        assert!(c.mem_size() <= 56 + INITIAL_CAPACITY);
        assert_eq!(c.bytes(), &[0, 0]);
        assert_eq!(XorChunk::default().bytes(), &[0, 0]);
    }

    /// The golden sequence: regular and jittered scrapes, every dod bucket, a counter, a
    /// gauge, a stale marker, NaN, ±Inf, -0.0, a subnormal, a 64-significant-bit change.
    fn golden_samples() -> Vec<Sample> {
        let vals = [
            0.0,
            1.0,
            1.0,
            2.5,
            0.37,
            f64::from_bits(metricsd_model::STALE_NAN),
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            f64::from_bits(1),
            f64::from_bits(0x8000_0000_0000_0001),
            12345.67,
            12345.67,
            1e300,
            -1e-300,
        ];
        let deltas = [
            15_000,
            15_000,
            15_005,
            14_995,
            15_000,
            0,
            30_000,
            95_000,
            600_000,
            1,
            15_000,
            15_000,
            15_000,
            1 << 40,
            15_000,
        ];
        let mut t = 1_700_000_000_000i64;
        let mut out = vec![Sample::new(t, vals[0])];
        for (i, d) in deltas.iter().enumerate() {
            t += d;
            out.push(Sample::new(t, vals[i + 1]));
        }
        out
    }

    const GOLDEN_HEX: &str = concat!(
        "001080a0abfef96200000000000000009875c457fe4002e137ffb7fed87effa75c28f5c28f5e0016",
        "804f5c28f5c28f5b715a200100000000000071d4c200100000000000033f7a3003e7b4a8c25fffff",
        "ffffffffff6d841c004000000000000000e1d4bd0000000000000000b032073570a3d70a0f000000",
        "ffffffc5688fbffe3a52a3ca6d7ffffffc000000ea62ff928a234af886c5",
    );

    #[test]
    fn golden() {
        let samples = golden_samples();
        let ours = encode_xor(&samples).unwrap();
        // Written once by our encoder, checked against rusty-chunkenc; never regenerate
        // once shipped: blocks on disk hold these bytes.
        let golden: &[u8] = include_bytes!("../../testdata/chunkenc/xor_golden.bin");
        let hex: String = golden.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, GOLDEN_HEX.trim());
        assert_eq!(ours, golden);
        assert_eq!(ours, oracle_encode(&samples));
        assert_same(&decode_all(golden).unwrap(), &samples);
    }
}
