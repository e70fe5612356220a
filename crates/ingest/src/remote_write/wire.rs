//! A zero-copy reader of `prometheus.WriteRequest` protobuf: the hot half of remote_write.
//!
//! prost decodes every label into two owned `String`s, about twenty allocations per series,
//! only for most of them to be dropped once the series is known. This reader instead walks the
//! wire format in place: a series' label fields stay byte slices of the request until
//! someone asks for them, so a caller can recognise a series it has seen before by a hash of
//! those bytes ([`SeriesFields::key`]) and never parse its labels at all. Samples are read
//! straight into the caller's vector.
//!
//! # Acceptance is prost's
//! The reader accepts exactly the bodies the derived prost messages accept, and reads the
//! same values from them (a property test and the `remote_write` fuzz target compare the
//! two): varints of at most ten bytes, keys within `u32` with a wire type of 0–5 and a
//! non-zero tag, wire types checked for known fields, unknown fields (groups included)
//! skipped, the last occurrence of a singular field winning, strings checked for UTF-8, and
//! prost's recursion limit of 100 nested messages and groups. Exemplars, native histograms and
//! metadata, which are rare and not on the hot path, are handed to prost on their own bytes.
//! prost would count its recursion limit from there, so the reader first walks their fields
//! itself with the budget they have in place ([`depth_check`]). A body is rejected when
//! either of the two rejects it, which is exactly when prost rejects it as a whole.
//!
//! Label contents are checked lazily: [`SeriesFields::labels`] parses them and reports any
//! malformation. A caller that skips that call for a series it knows must only do so when the
//! label bytes are identical to ones that parsed before, which is what keying by their hash
//! means; the framing of every field, label or not, is checked in the first pass.

use std::borrow::Cow;

use metricsd_model::Sample as ModelSample;
use prost::Message;
use smallvec::SmallVec;

use super::{Exemplar, Histogram, MetricMetadata};

/// Why a body is not a `WriteRequest`, in prost's words where prost has some.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WireError(pub Cow<'static, str>);

impl WireError {
    fn new(s: &'static str) -> Self {
        WireError(Cow::Borrowed(s))
    }

    /// The same error, prefixed with where it happened.
    pub fn at(self, place: impl std::fmt::Display) -> Self {
        WireError(Cow::Owned(format!("{place}: {}", self.0)))
    }
}

impl From<prost::DecodeError> for WireError {
    fn from(e: prost::DecodeError) -> Self {
        WireError(Cow::Owned(e.to_string()))
    }
}

type Result<T> = std::result::Result<T, WireError>;

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const SGROUP: u8 = 3;
const EGROUP: u8 = 4;
const I32: u8 = 5;

/// prost's `RECURSION_LIMIT`: how many nested messages and groups a decode may enter.
const RECURSION_LIMIT: u32 = 100;

#[inline(always)]
fn varint(b: &mut &[u8]) -> Result<u64> {
    match b.split_first() {
        Some((&x, rest)) if x < 0x80 => {
            *b = rest;
            Ok(u64::from(x))
        }
        _ => varint_long(b),
    }
}

/// Two to ten bytes; the tenth may only carry the top bit of a `u64`.
#[inline(never)]
fn varint_long(b: &mut &[u8]) -> Result<u64> {
    let s = *b;
    let mut v = 0u64;
    for (i, &byte) in s.iter().take(10).enumerate() {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            if i == 9 && byte >= 0x02 {
                break;
            }
            *b = s.get(i + 1..).unwrap_or_default();
            return Ok(v);
        }
    }
    Err(WireError::new("invalid varint"))
}

/// A field key: (tag, wire type).
#[inline(always)]
fn key(b: &mut &[u8]) -> Result<(u32, u8)> {
    let k = varint(b)?;
    if k > u64::from(u32::MAX) {
        return Err(WireError(Cow::Owned(format!("invalid key value: {k}"))));
    }
    let wire = (k & 7) as u8;
    if wire > I32 {
        return Err(WireError(Cow::Owned(format!("invalid wire type value: {wire}"))));
    }
    let tag = (k as u32) >> 3;
    if tag == 0 {
        return Err(WireError::new("invalid tag value: 0"));
    }
    Ok((tag, wire))
}

#[inline(always)]
fn take<'b>(b: &mut &'b [u8], n: u64) -> Result<&'b [u8]> {
    if n > b.len() as u64 {
        return Err(WireError::new("buffer underflow"));
    }
    let (head, tail) = b.split_at(n as usize);
    *b = tail;
    Ok(head)
}

#[inline(always)]
fn expect_wire(actual: u8, expected: u8) -> Result<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(WireError(Cow::Owned(format!(
            "invalid wire type: {actual} (expected {expected})"
        ))))
    }
}

/// The body of an embedded message field; `depth` is the recursion budget left where the
/// field appears.
#[inline(always)]
fn message<'b>(wire: u8, b: &mut &'b [u8], depth: u32) -> Result<&'b [u8]> {
    expect_wire(wire, LEN)?;
    if depth == 0 {
        return Err(WireError::new("recursion limit reached"));
    }
    let n = varint(b)?;
    take(b, n)
}

fn string<'b>(wire: u8, b: &mut &'b [u8]) -> Result<&'b str> {
    expect_wire(wire, LEN)?;
    let n = varint(b)?;
    std::str::from_utf8(take(b, n)?)
        .map_err(|_| WireError::new("invalid string value: data is not UTF-8 encoded"))
}

/// Skips an unknown field (prost's `skip_field`).
fn skip(wire: u8, tag: u32, b: &mut &[u8], depth: u32) -> Result<()> {
    if depth == 0 {
        return Err(WireError::new("recursion limit reached"));
    }
    match wire {
        VARINT => {
            varint(b)?;
        }
        I64 => {
            take(b, 8)?;
        }
        I32 => {
            take(b, 4)?;
        }
        LEN => {
            let n = varint(b)?;
            take(b, n)?;
        }
        SGROUP => loop {
            let (t, w) = key(b)?;
            if w == EGROUP {
                if t != tag {
                    return Err(WireError::new("unexpected end group tag"));
                }
                break;
            }
            skip(w, t, b, depth - 1)?;
        },
        _ => return Err(WireError::new("unexpected end group tag")),
    }
    Ok(())
}

/// Checks the recursion limit inside a message that is then decoded by prost on its own:
/// unknown fields (groups) are skipped with the budget `depth` they have in place, and
/// fields with a tag in `nested` are embedded messages whose own fields get one less.
/// (prost checks the budget for embedded messages and skipped fields only, as here.)
fn depth_check(mut b: &[u8], depth: u32, nested: &[u32]) -> Result<()> {
    while !b.is_empty() {
        let (tag, wire) = key(&mut b)?;
        if wire == LEN && nested.contains(&tag) {
            let body = message(wire, &mut b, depth)?;
            depth_check(body, depth - 1, &[])?;
        } else {
            skip(wire, tag, &mut b, depth)?;
        }
    }
    Ok(())
}

/// One `TimeSeries` of a request, its labels still unparsed.
#[derive(Debug, Default)]
pub(super) struct SeriesFields<'b> {
    /// The series' message body.
    body: &'b [u8],
    /// Byte ranges of `body` holding label fields (key, length and label), in order;
    /// adjacent fields share one range, so a sender that writes its labels together (every
    /// known one does) gives exactly one.
    label_runs: SmallVec<[std::ops::Range<usize>; 2]>,
    /// Exemplars, each checked.
    pub exemplars: usize,
    /// Native histogram samples, each checked.
    pub histograms: usize,
}

impl<'b> SeriesFields<'b> {
    fn push_label_field(&mut self, field: std::ops::Range<usize>) {
        match self.label_runs.last_mut() {
            Some(last) if last.end == field.start => last.end = field.end,
            _ => self.label_runs.push(field),
        }
    }

    /// A 128-bit hash of the series' label fields exactly as sent. Equal keys mean
    /// byte-identical labels, hence the same label set and the same verdict on it, but for
    /// a collision. Inputs from different senders collide by chance with probability 2^-128.
    /// xxh3 is not a keyed pseudo-random function, though: seed-independent collisions can
    /// be constructed for pairs of specially structured inputs (xxHash issue #1127). Both
    /// inputs of such a pair carry the construction, so only a sender that writes both
    /// can misfile its own crafted samples, in its own tenant, which its write access
    /// allows anyway. Real senders' encodings are not affected. Different encodings of
    /// one label set (another order, an unknown field) give different keys for the same
    /// series.
    #[allow(
        clippy::indexing_slicing,
        reason = "the runs are ranges of `body` recorded while parsing it"
    )]
    pub fn key(&self, seed: u64) -> u128 {
        match self.label_runs.as_slice() {
            [one] => xxhash_rust::xxh3::xxh3_128_with_seed(&self.body[one.clone()], seed),
            runs => {
                // The concatenation of the runs: the same value one slice would give.
                let mut h = xxhash_rust::xxh3::Xxh3::with_seed(seed);
                for r in runs {
                    h.update(&self.body[r.clone()]);
                }
                h.digest128()
            }
        }
    }

    /// Parses the labels into `out` as (name, value) pairs in the order sent, a missing
    /// name or value being empty.
    #[allow(
        clippy::indexing_slicing,
        reason = "the runs are ranges of `body` recorded while parsing it"
    )]
    pub fn labels(&self, out: &mut SmallVec<[(&'b str, &'b str); 16]>) -> Result<()> {
        const DEPTH: u32 = RECURSION_LIMIT - 1; // where a TimeSeries' fields are
        for run in &self.label_runs {
            let mut b: &'b [u8] = &self.body[run.clone()];
            while !b.is_empty() {
                // Only label fields are in a run; the first pass checked their framing.
                let (_, wire) = key(&mut b)?;
                let mut body = message(wire, &mut b, DEPTH)?;
                let (mut name, mut value) = ("", "");
                while !body.is_empty() {
                    let (tag, wire) = key(&mut body)?;
                    match tag {
                        1 => {
                            name = string(wire, &mut body)
                                .map_err(|e| e.at(format_args!("labels[{}].name", out.len())))?
                        }
                        2 => {
                            value = string(wire, &mut body)
                                .map_err(|e| e.at(format_args!("labels[{}].value", out.len())))?
                        }
                        _ => skip(wire, tag, &mut body, DEPTH - 1)?,
                    }
                }
                out.push((name, value));
            }
        }
        Ok(())
    }
}

/// Reads a `Sample` message: a fast path for the layout every sender writes (value, then
/// timestamp, both present), the general loop for anything else.
#[inline(always)]
fn sample(body: &[u8], depth: u32) -> Result<ModelSample> {
    if let [0x09, a, b, c, d, e, f, g, h, 0x10, rest @ ..] = body
        && !rest.is_empty()
    {
        let v = f64::from_le_bytes([*a, *b, *c, *d, *e, *f, *g, *h]);
        let mut rest = rest;
        if let Ok(t) = varint(&mut rest)
            && rest.is_empty()
        {
            return Ok(ModelSample::new(t as i64, v));
        }
    }
    sample_general(body, depth)
}

#[inline(never)]
fn sample_general(mut body: &[u8], depth: u32) -> Result<ModelSample> {
    let (mut t, mut v) = (0i64, 0f64);
    while !body.is_empty() {
        let (tag, wire) = key(&mut body)?;
        match tag {
            1 => {
                expect_wire(wire, I64)?;
                v = f64::from_le_bytes(take(&mut body, 8)?.try_into().expect("8 bytes"));
            }
            2 => {
                expect_wire(wire, VARINT)?;
                t = varint(&mut body)? as i64;
            }
            _ => skip(wire, tag, &mut body, depth)?,
        }
    }
    Ok(ModelSample::new(t, v))
}

/// Reads one `TimeSeries`: its samples are appended to `samples`, its other fields
/// returned.
fn series<'b>(mut b: &'b [u8], samples: &mut Vec<ModelSample>) -> Result<SeriesFields<'b>> {
    const DEPTH: u32 = RECURSION_LIMIT - 1; // budget where a TimeSeries' fields are
    let mut f = SeriesFields {
        body: b,
        ..SeriesFields::default()
    };
    let len = b.len();
    while !b.is_empty() {
        let start = len - b.len();
        let (tag, wire) = key(&mut b)?;
        match tag {
            1 => {
                message(wire, &mut b, DEPTH)?;
                f.push_label_field(start..len - b.len());
            }
            2 => {
                let body = message(wire, &mut b, DEPTH)?;
                samples.push(sample(body, DEPTH - 1).map_err(|e| e.at("samples"))?);
            }
            3 => {
                let body = message(wire, &mut b, DEPTH)?;
                // Exemplar: labels (1) are Label messages.
                depth_check(body, DEPTH - 1, &[1]).map_err(|e| e.at("exemplars"))?;
                Exemplar::decode(body).map_err(|e| WireError::from(e).at("exemplars"))?;
                f.exemplars += 1;
            }
            4 => {
                let body = message(wire, &mut b, DEPTH)?;
                // Histogram: negative (8) and positive (11) spans are BucketSpan messages.
                depth_check(body, DEPTH - 1, &[8, 11]).map_err(|e| e.at("histograms"))?;
                Histogram::decode(body).map_err(|e| WireError::from(e).at("histograms"))?;
                f.histograms += 1;
            }
            _ => skip(wire, tag, &mut b, DEPTH)?,
        }
    }
    Ok(f)
}

/// Walks a `WriteRequest`: each series' samples are appended to `samples` and then
/// `on_series(index, fields, first_sample)` is called (it may truncate `samples` back to
/// `first_sample` to drop them); metadata entries are decoded into `metadata`. An error
/// anywhere makes the whole body invalid; callers discard what was delivered before it.
pub(super) fn read_request<'b>(
    mut b: &'b [u8],
    samples: &mut Vec<ModelSample>,
    metadata: &mut Vec<MetricMetadata>,
    mut on_series: impl FnMut(usize, SeriesFields<'b>, &mut Vec<ModelSample>, usize) -> Result<()>,
) -> Result<()> {
    let mut index = 0;
    while !b.is_empty() {
        let (tag, wire) = key(&mut b)?;
        match tag {
            1 => {
                let body = message(wire, &mut b, RECURSION_LIMIT)?;
                let first = samples.len();
                let fields = series(body, samples).map_err(|e| e.at(format_args!("timeseries[{index}]")))?;
                on_series(index, fields, samples, first)
                    .map_err(|e| e.at(format_args!("timeseries[{index}]")))?;
                index += 1;
            }
            3 => {
                let body = message(wire, &mut b, RECURSION_LIMIT)?;
                depth_check(body, RECURSION_LIMIT - 1, &[]).map_err(|e| e.at("metadata"))?;
                metadata.push(MetricMetadata::decode(body).map_err(|e| WireError::from(e).at("metadata"))?);
            }
            _ => skip(wire, tag, &mut b, RECURSION_LIMIT)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_as_prost_reads_them() {
        let cases: &[&[u8]] = &[
            &[0x00],
            &[0x7f],
            &[0x80, 0x01],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], // u64::MAX
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02], // overflow
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00], // 11 bytes
            &[0x80, 0x00],                                                 // overlong, valid
            &[0x80],                                                       // truncated
            &[],
        ];
        for &c in cases {
            let mut ours = c;
            let mut theirs = c;
            let a = varint(&mut ours).ok();
            let b = prost::encoding::decode_varint(&mut theirs).ok();
            assert_eq!(a, b, "{c:x?}");
            if a.is_some() {
                assert_eq!(ours.len(), theirs.len(), "{c:x?}");
            }
        }
    }

    #[test]
    fn adjacent_label_fields_are_one_run_and_hash_like_it() {
        // labels {a="1"}, a sample, labels {b="2"}: two runs; then the same labels together.
        let split: &[u8] = &[
            0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'1', // label a=1
            0x12, 0x00, // empty sample
            0x0a, 0x06, 0x0a, 0x01, b'b', 0x12, 0x01, b'2', // label b=2
        ];
        let together: &[u8] = &[
            0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'1', 0x0a, 0x06, 0x0a, 0x01, b'b', 0x12, 0x01, b'2',
            0x12, 0x00,
        ];
        let mut samples = Vec::new();
        let s = series(split, &mut samples).unwrap();
        let t = series(together, &mut samples).unwrap();
        assert_eq!((s.label_runs.len(), t.label_runs.len()), (2, 1));
        assert_eq!(s.key(7), t.key(7));
        assert_ne!(t.key(7), t.key(8), "the seed changes the key");
        let mut ls = SmallVec::new();
        s.labels(&mut ls).unwrap();
        assert_eq!(ls.as_slice(), [("a", "1"), ("b", "2")]);
        assert_eq!(samples, [ModelSample::new(0, 0.0); 2]);
    }

    #[test]
    fn recursion_limit_counts_like_prost() {
        // An unknown group field in a Label, nested `n` deep.
        fn body(n: usize) -> Vec<u8> {
            let mut label = Vec::new();
            label.extend(std::iter::repeat_n(0x1b, n)); // field 3, start group
            label.extend(std::iter::repeat_n(0x1c, n)); // field 3, end group
            let mut ts = vec![0x0a];
            prost::encoding::encode_varint(label.len() as u64, &mut ts);
            ts.extend(label);
            let mut req = vec![0x0a];
            prost::encoding::encode_varint(ts.len() as u64, &mut req);
            req.extend(ts);
            req
        }
        for n in [1, 50, 96, 97, 98, 99, 150] {
            let b = body(n);
            check(&b, n);
        }
        // The same inside the parts handed to prost: an exemplar's and a histogram's unknown
        // fields, a histogram's span, a metadata entry (which sits one level higher).
        fn ld(tag: u8, body: &[u8]) -> Vec<u8> {
            let mut v = vec![(tag << 3) | 2];
            prost::encoding::encode_varint(body.len() as u64, &mut v);
            v.extend_from_slice(body);
            v
        }
        fn groups(tag: u8, n: usize) -> Vec<u8> {
            let mut g = vec![(tag << 3) | 3; n];
            g.extend(std::iter::repeat_n((tag << 3) | 4, n));
            g
        }
        for n in 94..=102 {
            let label = ld(1, &[ld(1, b"__name__"), ld(2, b"a")].concat());
            let in_series = |part: Vec<u8>| ld(1, &[label.clone(), part].concat());
            check(&in_series(ld(3, &groups(5, n))), n); // exemplar
            check(&in_series(ld(3, &ld(1, &groups(5, n)))), n); // exemplar's label
            check(&in_series(ld(4, &groups(17, n))), n); // histogram
            check(&in_series(ld(4, &ld(8, &groups(5, n)))), n); // histogram span
            check(&ld(3, &groups(6, n)), n); // metadata
        }
        fn check(b: &[u8], n: usize) {
            let theirs = super::super::WriteRequest::decode(b).is_ok();
            let mut samples = Vec::new();
            let mut md = Vec::new();
            let ours = read_request(b, &mut samples, &mut md, |_, f, _, _| {
                f.labels(&mut SmallVec::new())
            })
            .is_ok();
            assert_eq!(ours, theirs, "depth {n}: {b:x?}");
        }
    }
}
