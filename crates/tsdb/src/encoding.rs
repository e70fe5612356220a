//! Byte-level primitives shared by every on-disk format of the store: LEB128 varints and
//! zig-zag signed varints, bit-compatible with Go's `encoding/binary` (`PutUvarint`,
//! `PutVarint`, `Uvarint`), which Prometheus' formats use.

/// Appends `x` as a LEB128 varint.
#[inline]
pub(crate) fn put_uvarint(dst: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        dst.push(x as u8 | 0x80);
        x >>= 7;
    }
    dst.push(x as u8);
}

/// Appends `x` zig-zag encoded as a LEB128 varint (Go's `binary.PutVarint`).
#[inline]
pub(crate) fn put_varint(dst: &mut Vec<u8>, x: i64) {
    put_uvarint(dst, zigzag(x));
}

/// Encoded length of `x` as a LEB128 varint.
#[inline]
pub(crate) fn uvarint_len(x: u64) -> u64 {
    u64::from(64 - (x | 1).leading_zeros()).div_ceil(7)
}

/// Reads a LEB128 uvarint from the front of `src`, advancing it. `None` when `src` ends
/// inside it or it overflows 64 bits (Go's `binary.Uvarint` rules: at most 10 bytes, the
/// 10th at most 1).
pub(crate) fn get_uvarint(src: &mut &[u8]) -> Option<u64> {
    let mut x = 0u64;
    for i in 0..10 {
        let (&b, rest) = src.split_first()?;
        *src = rest;
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

/// Zig-zag encoding: small magnitudes become small unsigned ints.
#[inline]
pub(crate) fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

/// The inverse of [`zigzag`].
#[inline]
pub(crate) fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_go() {
        let case = |x: u64, want: &[u8]| {
            let mut b = Vec::new();
            put_uvarint(&mut b, x);
            assert_eq!(b, want, "{x}");
            assert_eq!(uvarint_len(x), want.len() as u64);
        };
        case(0, &[0]);
        case(127, &[0x7f]);
        case(128, &[0x80, 0x01]);
        case(
            u64::MAX,
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        );
        for x in [0i64, -1, 1, i64::MIN, i64::MAX, -64, 63] {
            assert_eq!(unzigzag(zigzag(x)), x);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }
}
