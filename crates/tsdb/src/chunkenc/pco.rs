//! The Pco block encoding: timestamps and values as two columns, each in the smallest of a
//! few layouts (constant, varints, decimal mantissas, pco). Layout in
//! `docs/format/chunks.md`.
//!
//! pco alone costs a few dozen bytes of metadata per column, as much as 120 samples of a
//! regular series need in total; so the special cases that real series hit (regular scrapes,
//! constant gauges, integer counters, decimal gauges) get compact layouts, and pco is one
//! candidate among them. Every layout is lossless to the bit: a layout that does not hold for
//! every sample is not used.

use metricsd_model::Sample;
use pco::wrapped::{FileCompressor, FileDecompressor};
use pco::{ChunkConfig, PagingSpec};

use super::bstream::{get_uvarint, put_uvarint, unzigzag, zigzag};
use crate::{Error, Result};

/// The most samples one Pco chunk holds. Bounds what a decoder allocates: pco can describe
/// a million equal numbers in a few bytes, so the byte length bounds nothing.
pub const PCO_MAX_SAMPLES: usize = 1 << 20;

// Timestamp layouts (high nibble of the layout byte).
/// `t0` (zig-zag varint) and one delta (uvarint, wrapping): `t[i] = t0 + i * delta`.
const TS_REGULAR: u8 = 0;
/// `t0`, then each delta-of-delta as a zig-zag varint (wrapping arithmetic).
const TS_DOD_VARINT: u8 = 1;
/// pco of the raw `i64` timestamps (pco chooses its own delta order).
const TS_PCO: u8 = 2;

// Value layouts (low nibble of the layout byte).
/// One bit pattern for all samples: 8 bytes little-endian.
const V_CONST: u8 = 0;
/// Integers: `v = i as f64`; zig-zag varints of the first value and the deltas.
const V_INT_VARINT: u8 = 1;
/// Integers as pco `i64`.
const V_INT_PCO: u8 = 2;
/// Decimals `v = m / 10^e`: one byte `e`, then the mantissas as in `V_INT_VARINT`.
const V_DEC_VARINT: u8 = 3;
/// Decimals: one byte `e`, then the mantissas as pco `i64`.
const V_DEC_PCO: u8 = 4;
/// pco of the raw `f64` values (lossless for every bit pattern).
const V_F64_PCO: u8 = 5;
/// 8 bytes little-endian per value, when nothing else is smaller.
const V_RAW: u8 = 6;

/// Largest decimal exponent tried: `10^e` must be exact in f64 (e ≤ 22) and mantissas of
/// real gauges rarely need more than 9 digits after the point.
const MAX_DEC_EXP: u8 = 9;
/// Integers whose every value is exactly representable in f64 and as i64.
const MAX_EXACT_INT: f64 = 9_007_199_254_740_992.0; // 2^53

fn invalid(msg: String) -> Error {
    Error::InvalidChunk(msg)
}

/// How hard the encoder searches. The bytes decode the same either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effort {
    /// Every layout, pco at its default level: blocks, written once and kept for long.
    Full,
    /// For the head's chunks, re-encoded by the settle pass within seconds of being cut:
    /// pco at level 4 (its default level's search is most of the cost on short columns and
    /// gains nothing there), and pco of the raw floats only when the values are neither
    /// integers nor decimals (it almost never beats those). 2.3× faster, 0.1% larger on
    /// 120-sample node_exporter-like chunks (`wal_codecs --hosts 150`, "best 120" and "fast
    /// 120" rows, in `docs/benchmarks.md`).
    Fast,
}

/// Encodes sorted samples in the Pco block encoding with [`Effort::Full`].
///
/// Fails with [`Error::InvalidArgument`] for more than [`PCO_MAX_SAMPLES`] samples.
pub fn encode_pco(samples: &[Sample]) -> Result<Vec<u8>> {
    encode_pco_with(samples, Effort::Full)
}

/// Encodes sorted samples in the Pco block encoding.
///
/// Fails with [`Error::InvalidArgument`] for more than [`PCO_MAX_SAMPLES`] samples.
pub fn encode_pco_with(samples: &[Sample], effort: Effort) -> Result<Vec<u8>> {
    let n = samples.len();
    if n > PCO_MAX_SAMPLES {
        return Err(Error::InvalidArgument(format!(
            "a Pco chunk holds at most {PCO_MAX_SAMPLES} samples, got {n}"
        )));
    }
    let Some(first) = samples.first() else {
        // Layout byte 0 and a count of 0.
        return Ok(vec![0, 0]);
    };
    let ts: Vec<i64> = samples.iter().map(|s| s.t).collect();
    let vs: Vec<u64> = samples.iter().map(|s| s.v.to_bits()).collect();
    let (tk, tcol) = encode_timestamps(first.t, &ts, effort);
    let (vk, vcol) = encode_values(first.v.to_bits(), &vs, effort);
    let mut out = vec![tk << 4 | vk];
    put_uvarint(&mut out, n as u64);
    out.reserve(tcol.len() + vcol.len());
    out.extend_from_slice(&tcol);
    out.extend_from_slice(&vcol);
    Ok(out)
}

/// The smallest of the timestamp layouts that hold; `t0` is the first of `ts`.
fn encode_timestamps(t0: i64, ts: &[i64], effort: Effort) -> (u8, Vec<u8>) {
    let mut out = Vec::new();
    put_uvarint(&mut out, zigzag(t0));
    let Some(&[_, t1]) = ts.first_chunk::<2>() else {
        return (TS_REGULAR, out);
    };
    let delta = t1.wrapping_sub(t0);
    if ts.array_windows().all(|[a, b]| b.wrapping_sub(*a) == delta) {
        put_uvarint(&mut out, delta as u64);
        return (TS_REGULAR, out);
    }
    let mut prev_delta = 0i64;
    for [a, b] in ts.array_windows() {
        let d = b.wrapping_sub(*a);
        put_uvarint(&mut out, zigzag(d.wrapping_sub(prev_delta)));
        prev_delta = d;
    }
    let mut best = (TS_DOD_VARINT, out);
    if let Some(p) = pco_column(ts, effort)
        && p.len() < best.1.len()
    {
        best = (TS_PCO, p);
    }
    best
}

/// The smallest of the value layouts that hold; `v0` is the first of `vs`.
fn encode_values(v0: u64, vs: &[u64], effort: Effort) -> (u8, Vec<u8>) {
    if vs.iter().all(|&v| v == v0) {
        return (V_CONST, v0.to_le_bytes().to_vec());
    }
    let mut best = (
        V_RAW,
        vs.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
    );
    let mut consider = |kind: u8, col: Option<Vec<u8>>| {
        if let Some(col) = col
            && col.len() < best.1.len()
        {
            best = (kind, col);
        }
    };
    let mut exact = false;
    if let Some(ints) = as_integers(vs) {
        exact = true;
        consider(V_INT_VARINT, Some(varint_deltas(&[], &ints)));
        consider(V_INT_PCO, pco_column(&ints, effort));
    } else if let Some((e, mantissas)) = as_decimals(v0, vs) {
        exact = true;
        consider(V_DEC_VARINT, Some(varint_deltas(&[e], &mantissas)));
        consider(
            V_DEC_PCO,
            pco_column(&mantissas, effort).map(|p| [&[e][..], &p].concat()),
        );
    }
    if !exact || effort == Effort::Full {
        let fs: Vec<f64> = vs.iter().map(|&v| f64::from_bits(v)).collect();
        consider(V_F64_PCO, pco_column(&fs, effort));
    }
    best
}

/// The values as integers, if every one is an integer that f64 and i64 both hold exactly
/// (and not -0.0, whose sign an integer loses).
fn as_integers(vs: &[u64]) -> Option<Vec<i64>> {
    vs.iter()
        .map(|&b| {
            let v = f64::from_bits(b);
            (v.fract() == 0.0 && v.abs() <= MAX_EXACT_INT && (v as i64 as f64).to_bits() == b)
                .then_some(v as i64)
        })
        .collect()
}

/// The smallest exponent `e` (1..=MAX_DEC_EXP) with every value exactly `m / 10^e` for an
/// integer `m`, and the mantissas. Checked by decoding each value as the decoder will
/// (an exact division, correctly rounded), so the round trip is bit-exact by construction.
/// `v0` is the first of `vs`.
fn as_decimals(v0: u64, vs: &[u64]) -> Option<(u8, Vec<i64>)> {
    let first = f64::from_bits(v0);
    if !first.is_finite() {
        return None;
    }
    'exp: for e in 1..=MAX_DEC_EXP {
        let p = 10f64.powi(i32::from(e));
        let mut ms = Vec::with_capacity(vs.len());
        for &b in vs {
            let m = (f64::from_bits(b) * p).round();
            // Check the i64 the decoder will see: NaN and -0.0 would survive an f64 check.
            if !(m.is_finite() && m.abs() <= MAX_EXACT_INT) || ((m as i64) as f64 / p).to_bits() != b {
                continue 'exp;
            }
            ms.push(m as i64);
        }
        return Some((e, ms));
    }
    None
}

/// `prefix`, then zig-zag varints of the first value and the (wrapping) deltas.
fn varint_deltas(prefix: &[u8], xs: &[i64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + xs.len() * 2);
    out.extend_from_slice(prefix);
    let mut prev = 0i64;
    for &x in xs {
        put_uvarint(&mut out, zigzag(x.wrapping_sub(prev)));
        prev = x;
    }
    out
}

/// A pco column: uvarint length, then pco's wrapped format (header, chunk meta, one page).
/// `None` if pco refuses (it should not for these types and sizes).
fn pco_column<T: pco::data_types::Number>(xs: &[T], effort: Effort) -> Option<Vec<u8>> {
    let fc = FileCompressor::default();
    let mut body = Vec::new();
    fc.write_header(&mut body).ok()?;
    let cfg = ChunkConfig::default()
        .with_compression_level(match effort {
            Effort::Full => pco::DEFAULT_COMPRESSION_LEVEL,
            Effort::Fast => 4,
        })
        .with_paging_spec(PagingSpec::Exact(vec![xs.len()]));
    let mut cc = fc.chunk_compressor(xs, &cfg).ok()?;
    cc.write_meta(&mut body).ok()?;
    cc.write_page(0, &mut body).ok()?;
    let mut out = Vec::with_capacity(body.len() + 3);
    put_uvarint(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    Some(out)
}

/// Reads a pco column of exactly `n` numbers from the front of `src`, advancing it.
fn read_pco_column<T: pco::data_types::Number>(src: &mut &[u8], n: usize, what: &str) -> Result<Vec<T>> {
    let len =
        get_uvarint(src).ok_or_else(|| invalid(format!("Pco chunk ends inside the length of its {what}")))?;
    let (body, rest) = usize::try_from(len)
        .ok()
        .and_then(|len| src.split_at_checked(len))
        .ok_or_else(|| {
            invalid(format!(
                "Pco chunk declares {len} bytes of {what} but has {}",
                src.len()
            ))
        })?;
    *src = rest;
    let err =
        |e: pco::errors::PcoError| invalid(format!("Pco chunk: {n} {what} in {} bytes: {e}", body.len()));
    let (fd, rest) = FileDecompressor::new(body).map_err(err)?;
    let (mut cd, rest) = fd.chunk_decompressor::<T, _>(rest).map_err(err)?;
    let mut pd = cd.page_decompressor(rest, n).map_err(err)?;
    let mut xs = vec![T::default(); n];
    let progress = pd.read(&mut xs).map_err(err)?;
    if progress.n_processed != n || !progress.finished {
        return Err(invalid(format!(
            "Pco chunk declares {n} {what} but its pco page holds {}",
            progress.n_processed
        )));
    }
    Ok(xs)
}

/// Reads `n` zig-zag varints from the front of `src`.
fn read_varints(src: &mut &[u8], n: usize, what: &str) -> Result<impl Iterator<Item = i64>> {
    // Each varint takes at least one byte: check before allocating.
    if src.len() < n {
        return Err(invalid(format!(
            "Pco chunk declares {n} {what} but has {} bytes for them",
            src.len()
        )));
    }
    let mut xs = Vec::with_capacity(n);
    for i in 0..n {
        let x = get_uvarint(src)
            .ok_or_else(|| invalid(format!("Pco chunk declares {n} {what} but ends after {i}")))?;
        xs.push(unzigzag(x));
    }
    Ok(xs.into_iter())
}

fn read_u64_le(src: &mut &[u8], what: &str) -> Result<u64> {
    let (b, rest) = src
        .split_first_chunk::<8>()
        .ok_or_else(|| invalid(format!("Pco chunk needs 8 bytes of {what} but has {}", src.len())))?;
    *src = rest;
    Ok(u64::from_le_bytes(*b))
}

fn read_u8(src: &mut &[u8], what: &str) -> Result<u8> {
    let (&b, rest) = src
        .split_first()
        .ok_or_else(|| invalid(format!("Pco chunk ends before its {what}")))?;
    *src = rest;
    Ok(b)
}

/// Appends the samples of Pco chunk `data` to `dst`; on error `dst` is left as it was.
pub(crate) fn decode_pco(data: &[u8], dst: &mut Vec<Sample>) -> Result<()> {
    let mut src = data;
    let layout = read_u8(&mut src, "layout byte")?;
    let count =
        get_uvarint(&mut src).ok_or_else(|| invalid("Pco chunk ends inside its sample count".into()))?;
    let n = usize::try_from(count)
        .ok()
        .filter(|&n| n <= PCO_MAX_SAMPLES)
        .ok_or_else(|| {
            invalid(format!(
                "Pco chunk declares {count} samples, more than {PCO_MAX_SAMPLES}"
            ))
        })?;
    if n == 0 {
        return if layout == 0 && src.is_empty() {
            Ok(())
        } else {
            Err(invalid(format!(
                "empty Pco chunk has layout {layout:#04x} and {} more bytes",
                src.len()
            )))
        };
    }
    let ts = decode_timestamps(layout >> 4, &mut src, n)?;
    let vs = decode_values(layout & 0xf, &mut src, n)?;
    if !src.is_empty() {
        return Err(invalid(format!(
            "Pco chunk of {n} samples has {} bytes left over",
            src.len()
        )));
    }
    dst.extend(
        ts.into_iter()
            .zip(vs)
            .map(|(t, v)| Sample::new(t, f64::from_bits(v))),
    );
    Ok(())
}

fn read_t0(src: &mut &[u8]) -> Result<i64> {
    let u = get_uvarint(src).ok_or_else(|| invalid("Pco chunk ends inside its first timestamp".into()))?;
    Ok(unzigzag(u))
}

fn decode_timestamps(kind: u8, src: &mut &[u8], n: usize) -> Result<Vec<i64>> {
    match kind {
        TS_REGULAR => {
            let t0 = read_t0(src)?;
            let delta = if n > 1 {
                get_uvarint(src).ok_or_else(|| invalid("Pco chunk ends inside its timestamp delta".into()))?
                    as i64
            } else {
                0
            };
            let mut t = t0;
            Ok((0..n)
                .map(|_| {
                    let cur = t;
                    t = t.wrapping_add(delta);
                    cur
                })
                .collect())
        }
        TS_DOD_VARINT => {
            let t0 = read_t0(src)?;
            let mut ts = Vec::with_capacity(n);
            ts.push(t0);
            let (mut t, mut d) = (t0, 0i64);
            for dod in read_varints(src, n - 1, "timestamp deltas of delta")? {
                d = d.wrapping_add(dod);
                t = t.wrapping_add(d);
                ts.push(t);
            }
            Ok(ts)
        }
        TS_PCO => read_pco_column::<i64>(src, n, "timestamps"),
        _ => Err(invalid(format!("Pco chunk has unknown timestamp layout {kind}"))),
    }
}

fn decode_values(kind: u8, src: &mut &[u8], n: usize) -> Result<Vec<u64>> {
    let undelta = |it: &mut dyn Iterator<Item = i64>| -> Vec<i64> {
        let mut prev = 0i64;
        it.map(|d| {
            prev = prev.wrapping_add(d);
            prev
        })
        .collect()
    };
    let decimals = |e: u8, ms: Vec<i64>| -> Result<Vec<u64>> {
        if !(1..=MAX_DEC_EXP).contains(&e) {
            return Err(invalid(format!(
                "Pco chunk has decimal exponent {e}, not 1..={MAX_DEC_EXP}"
            )));
        }
        let p = 10f64.powi(i32::from(e));
        Ok(ms.into_iter().map(|m| (m as f64 / p).to_bits()).collect())
    };
    match kind {
        V_CONST => Ok(vec![read_u64_le(src, "constant value")?; n]),
        V_INT_VARINT => {
            let ints = undelta(&mut read_varints(src, n, "integer values")?);
            Ok(ints.into_iter().map(|i| (i as f64).to_bits()).collect())
        }
        V_INT_PCO => Ok(read_pco_column::<i64>(src, n, "integer values")?
            .into_iter()
            .map(|i| (i as f64).to_bits())
            .collect()),
        V_DEC_VARINT => {
            let e = read_u8(src, "decimal exponent")?;
            let ms = undelta(&mut read_varints(src, n, "decimal mantissas")?);
            decimals(e, ms)
        }
        V_DEC_PCO => {
            let e = read_u8(src, "decimal exponent")?;
            decimals(e, read_pco_column::<i64>(src, n, "decimal mantissas")?)
        }
        V_F64_PCO => Ok(read_pco_column::<f64>(src, n, "float values")?
            .into_iter()
            .map(f64::to_bits)
            .collect()),
        V_RAW => (0..n).map(|_| read_u64_le(src, "raw values")).collect(),
        _ => Err(invalid(format!("Pco chunk has unknown value layout {kind}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkenc::tests::{assert_same, samples_strategy};
    use proptest::prelude::*;

    fn round_trip(samples: &[Sample]) -> Vec<u8> {
        let bytes = encode_pco(samples).unwrap();
        let mut got = Vec::new();
        decode_pco(&bytes, &mut got).unwrap();
        assert_same(&got, samples);
        bytes
    }

    fn layout(samples: &[Sample]) -> (u8, u8) {
        let b = encode_pco(samples).unwrap();
        (b[0] >> 4, b[0] & 0xf)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn pco_round_trips(samples in samples_strategy()) {
            round_trip(&samples);
        }

        #[test]
        fn pco_arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut dst = Vec::new();
            if decode_pco(&data, &mut dst).is_err() {
                prop_assert!(dst.is_empty());
            }
        }

        #[test]
        fn pco_mutated_chunks_never_panic(samples in samples_strategy(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
            let mut bytes = encode_pco(&samples).unwrap();
            let i = at.index(bytes.len());
            bytes[i] ^= byte;
            let _ = decode_pco(&bytes, &mut Vec::new());
            let keep = cut.index(bytes.len());
            let _ = decode_pco(&bytes[..keep], &mut Vec::new());
        }
    }

    #[test]
    fn layouts_chosen() {
        let reg = |i: i64| 1_700_000_000_000 + i * 15_000;
        let constant: Vec<Sample> = (0..480).map(|i| Sample::new(reg(i), 1.0)).collect();
        assert_eq!(layout(&constant), (TS_REGULAR, V_CONST));
        assert!(round_trip(&constant).len() < 25);
        let counter: Vec<Sample> = (0..480).map(|i| Sample::new(reg(i), (i * 3) as f64)).collect();
        assert_eq!(layout(&counter).0, TS_REGULAR);
        assert!(matches!(layout(&counter).1, V_INT_VARINT | V_INT_PCO));
        let dec: Vec<Sample> = (0..480)
            .map(|i| Sample::new(reg(i), 0.37 + (i % 7) as f64 / 100.0))
            .collect();
        assert!(
            matches!(layout(&dec).1, V_DEC_VARINT | V_DEC_PCO),
            "{:?}",
            layout(&dec)
        );
        let specials = [
            f64::from_bits(metricsd_model::STALE_NAN),
            -0.0,
            f64::NAN,
            f64::INFINITY,
            f64::from_bits(1),
            f64::from_bits(0xfff8_0000_dead_beef),
        ];
        let odd: Vec<Sample> = (0..480)
            .map(|i| Sample::new(reg(i) + i % 3, specials[i as usize % 6]))
            .collect();
        round_trip(&odd);
        let neg_zero_ints: Vec<Sample> = (0..10)
            .map(|i| Sample::new(i, if i == 5 { -0.0 } else { i as f64 }))
            .collect();
        round_trip(&neg_zero_ints);
        round_trip(&[]);
        round_trip(&[Sample::new(i64::MIN, f64::from_bits(metricsd_model::STALE_NAN))]);
        round_trip(&[
            Sample::new(i64::MAX, 1.0),
            Sample::new(i64::MIN, 2.0),
            Sample::new(0, 2.5),
        ]);
    }

    #[test]
    fn errors_say_what() {
        let s: Vec<Sample> = (0..100)
            .map(|i| Sample::new(i * 1000 + i % 3, i as f64 * 1.25))
            .collect();
        let b = encode_pco(&s).unwrap();
        let e = decode_pco(&b[..b.len() - 3], &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("declares"), "{e}");
        let e = decode_pco(&[0, 0xff, 0xff, 0xff, 0x7f], &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than"), "{e}");
        assert!(encode_pco(&vec![Sample::new(0, 0.0); PCO_MAX_SAMPLES + 1]).is_err());
    }
}
