//! Bit streams: MSB-first bit writing into a `Vec<u8>` and bounds-checked bit reading, plus
//! the Go `encoding/binary` varints the XOR chunk uses. Layout as Prometheus'
//! `tsdb/chunkenc/bstream.go`: bits fill each byte from its most significant bit down.

/// Appends bits to a byte vector. The vector is the whole state except `free`, the number of
/// low bits of the last byte not yet written (0..=7), which the owner keeps (the XOR chunk
/// stores it in a spare byte of its own struct).
///
/// Unwritten bits are always zero, so the vector is a valid, zero-padded stream at any time.
#[inline]
#[allow(
    clippy::indexing_slicing,
    reason = "`free > 0` only while `buf` has a partial last byte, so `buf.len() - 1` is an index of it; `nbytes` is at most 8, the length of `to_be_bytes()`"
)]
pub(crate) fn write_bits(buf: &mut Vec<u8>, free: &mut u8, value: u64, nbits: u32) {
    debug_assert!((1..=64).contains(&nbits));
    // Drop bits above `nbits`: callers pass sign-extended or unmasked values.
    let mut u = value & (u64::MAX >> (64 - nbits));
    let mut nbits = nbits;
    if *free > 0 {
        let f = u32::from(*free);
        // `free > 0` means the buffer has a partial last byte.
        let last = buf.len() - 1;
        if nbits <= f {
            buf[last] |= (u << (f - nbits)) as u8;
            *free = (f - nbits) as u8;
            return;
        }
        nbits -= f;
        buf[last] |= (u >> nbits) as u8;
        u &= u64::MAX >> (64 - nbits);
    }
    // Byte aligned now: left-align the remaining bits and append whole bytes of them.
    let aligned = u << (64 - nbits);
    let nbytes = nbits.div_ceil(8) as usize;
    buf.extend_from_slice(&aligned.to_be_bytes()[..nbytes]);
    *free = ((8 - nbits % 8) % 8) as u8;
}

/// Appends one bit.
#[inline]
#[allow(
    clippy::indexing_slicing,
    reason = "`buf` has a last byte: `free` was > 0 (a partial last byte) or one was just pushed"
)]
pub(crate) fn write_bit(buf: &mut Vec<u8>, free: &mut u8, bit: bool) {
    if *free == 0 {
        buf.push(0);
        *free = 8;
    }
    *free -= 1;
    if bit {
        // `free` was > 0 or a byte was just pushed, so the last byte exists.
        let last = buf.len() - 1;
        buf[last] |= 1 << *free;
    }
}

/// Appends `x` as a Go `binary.PutUvarint` (LEB128) at the current bit position.
pub(crate) fn write_uvarint_bits(buf: &mut Vec<u8>, free: &mut u8, mut x: u64) {
    while x >= 0x80 {
        write_bits(buf, free, (x as u8 | 0x80) as u64, 8);
        x >>= 7;
    }
    write_bits(buf, free, x, 8);
}

/// Appends `x` as a Go `binary.PutVarint` (zig-zag, then LEB128).
pub(crate) fn write_varint_bits(buf: &mut Vec<u8>, free: &mut u8, x: i64) {
    write_uvarint_bits(buf, free, zigzag(x));
}

pub(crate) use crate::encoding::{get_uvarint, put_uvarint, unzigzag, zigzag};

/// Reads bits MSB-first from a byte slice; every read is bounds-checked.
#[derive(Debug, Clone)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Position of the next bit, counted from the first bit of `data`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// A reader at the first bit of `data`.
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    /// Bits not yet read.
    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.data.len() * 8 - self.pos
    }

    /// Bits read so far.
    #[inline]
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// The next 64 bits at the current position, left-aligned, zero past the end.
    #[inline]
    #[allow(
        clippy::indexing_slicing,
        reason = "`s` has 9 bytes (the `get` succeeded, or it is `tmp`), and `rest` fewer than 9 (else the `get` would have succeeded)"
    )]
    fn peek64(&self) -> u64 {
        let byte = self.pos / 8;
        let shift = self.pos % 8;
        // Nine bytes cover any 64-bit window starting inside the first byte; near the end
        // copy what is left into a zero-padded array (slow path, once per chunk).
        let mut tmp = [0u8; 9];
        let s: &[u8] = match self.data.get(byte..byte + 9) {
            Some(s) => s,
            None => {
                let rest = self.data.get(byte..).unwrap_or(&[]);
                tmp[..rest.len()].copy_from_slice(rest);
                &tmp
            }
        };
        let hi = u64::from_be_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]);
        if shift == 0 {
            hi
        } else {
            (hi << shift) | u64::from(s[8]) >> (8 - shift)
        }
    }

    /// Reads `nbits` (1..=64) bits as the low bits of the result; `None` past the end.
    #[inline]
    pub(crate) fn read_bits(&mut self, nbits: u32) -> Option<u64> {
        debug_assert!((1..=64).contains(&nbits));
        if (nbits as usize) > self.remaining() {
            return None;
        }
        let v = self.peek64() >> (64 - nbits);
        self.pos += nbits as usize;
        Some(v)
    }

    /// Reads one bit; `None` past the end.
    #[inline]
    pub(crate) fn read_bit(&mut self) -> Option<bool> {
        let b = *self.data.get(self.pos / 8)?;
        let bit = (b >> (7 - self.pos % 8)) & 1 == 1;
        self.pos += 1;
        Some(bit)
    }

    /// Reads a Go `binary.ReadUvarint` from the bit stream (need not be byte aligned).
    pub(crate) fn read_uvarint(&mut self) -> Option<u64> {
        let mut x = 0u64;
        for i in 0..10 {
            let b = self.read_bits(8)? as u8;
            if i == 9 && b > 1 {
                return None;
            }
            x |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Some(x);
            }
        }
        None
    }

    /// Reads a Go `binary.ReadVarint` (zig-zag) from the bit stream.
    pub(crate) fn read_varint(&mut self) -> Option<i64> {
        self.read_uvarint().map(unzigzag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn bits_round_trip(items in prop::collection::vec((any::<u64>(), 1u32..=64), 0..64)) {
            let mut buf = Vec::new();
            let mut free = 0u8;
            for &(v, n) in &items {
                if n == 1 {
                    write_bit(&mut buf, &mut free, v & 1 == 1);
                } else {
                    write_bits(&mut buf, &mut free, v, n);
                }
            }
            let total: usize = items.iter().map(|&(_, n)| n as usize).sum();
            prop_assert_eq!(buf.len(), total.div_ceil(8));
            let mut r = BitReader::new(&buf);
            for &(v, n) in &items {
                let mask = u64::MAX >> (64 - n);
                let got = if n == 1 { u64::from(r.read_bit().unwrap()) } else { r.read_bits(n).unwrap() };
                prop_assert_eq!(got, v & mask);
            }
            prop_assert_eq!(r.remaining(), buf.len() * 8 - total);
        }

        #[test]
        fn varints_round_trip(x in any::<i64>(), u in any::<u64>()) {
            let mut buf = Vec::new();
            let mut free = 0u8;
            write_bit(&mut buf, &mut free, true);
            write_varint_bits(&mut buf, &mut free, x);
            write_uvarint_bits(&mut buf, &mut free, u);
            let mut r = BitReader::new(&buf);
            prop_assert_eq!(r.read_bit(), Some(true));
            prop_assert_eq!(r.read_varint(), Some(x));
            prop_assert_eq!(r.read_uvarint(), Some(u));
            let mut aligned = Vec::new();
            put_uvarint(&mut aligned, u);
            let mut s = &aligned[..];
            prop_assert_eq!(get_uvarint(&mut s), Some(u));
            prop_assert!(s.is_empty());
        }
    }

    #[test]
    fn reads_past_the_end_fail() {
        let mut r = BitReader::new(&[0xff]);
        assert_eq!(r.read_bits(9), None);
        assert_eq!(r.read_bits(8), Some(0xff));
        assert_eq!(r.read_bit(), None);
        let mut s: &[u8] = &[0x80, 0x80];
        assert_eq!(get_uvarint(&mut s), None);
        let mut s: &[u8] = &[0xff; 10];
        assert_eq!(get_uvarint(&mut s), None);
    }
}
