//! WAL record payloads: pure encode/decode over bytes, no I/O.
//!
//! The byte layout is in `docs/format/wal.md` ("Record payloads"). In short: a type byte, a
//! uvarint item count, then the items. Samples and tombstones store the first item's ref and
//! time as a base and every item as zigzag-varint deltas against it (as Prometheus'
//! `tsdb/record`), values as 8 raw little-endian bytes so every NaN payload (the staleness
//! marker included) survives bit-exact.
//!
//! Decoding never panics on arbitrary bytes: every length is checked against what is left
//! before anything is allocated, and the error says what and how much.

use std::path::PathBuf;
use std::sync::Arc;

use metricsd_model::{Label, Labels};

use crate::{Error, Result};

/// Type byte of a [`Record::Series`] payload.
const TYPE_SERIES: u8 = 1;
/// Type byte of a [`Record::Samples`] payload.
const TYPE_SAMPLES: u8 = 2;
/// Type byte of a [`Record::Tombstones`] payload.
const TYPE_TOMBSTONES: u8 = 3;
/// Type byte of a [`Record::Chunks`] payload (checkpoints only; see `docs/format/wal.md`).
const TYPE_CHUNKS: u8 = 6;

// The smallest encoding of one item, used to reject a count that cannot fit in what is left
// before reserving memory for it.
/// ref (1) + label count (1).
const MIN_SERIES_BYTES: usize = 2;
/// name len (1) + value len (1); a stored value is never empty but the name length may be 0.
const MIN_LABEL_BYTES: usize = 2;
/// ref delta (1) + t delta (1) + value (8).
const MIN_SAMPLE_BYTES: usize = 10;
/// ref delta (1) + mint delta (1) + length (1).
const MIN_TOMBSTONE_BYTES: usize = 3;
/// ref (1) + last value (8) + chunk count (1).
const MIN_CHUNKS_BYTES: usize = 10;
/// file (1) + chunk ref (1) + mint delta (1) + length (1) + encoding (1).
const MIN_CHUNK_BYTES: usize = 5;
/// Worst encoding of one chunk of a [`RefChunks`]: four varints and the encoding byte.
const WORST_CHUNK_BYTES: usize = 4 * 10 + 1;

/// A series created in the head: its WAL-local reference and its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefSeries {
    /// The head's reference for the series; samples and tombstones refer to it.
    pub series_ref: u64,
    /// The series' labels.
    pub labels: Labels,
}

/// One sample of a series named by reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefSample {
    /// The series' reference (from an earlier [`RefSeries`]).
    pub series_ref: u64,
    /// Timestamp in milliseconds.
    pub t: i64,
    /// The value; stored bit-exact.
    pub v: f64,
}

/// A deletion of the samples of a series in `[mint, maxt]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefTombstone {
    /// The series' reference.
    pub series_ref: u64,
    /// First deleted timestamp (inclusive).
    pub mint: i64,
    /// Last deleted timestamp (inclusive).
    pub maxt: i64,
}

/// One closed head chunk in a `chunks_head` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefChunk {
    /// The `chunks_head` file's number.
    pub file: u32,
    /// The chunk's reference in that file (offset and length).
    pub chunk_ref: u64,
    /// Oldest sample time.
    pub mint: i64,
    /// Newest sample time.
    pub maxt: i64,
    /// The chunk encoding byte ([`crate::chunkenc::Encoding`]).
    pub encoding: u8,
}

/// The closed head chunks of one series that a checkpoint hands over to `chunks_head`
/// files instead of repeating their samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefChunks {
    /// The series' reference.
    pub series_ref: u64,
    /// Bits of the value of the newest sample of the last chunk (the head needs it to tell
    /// a duplicate from a conflict without reading the chunk).
    pub last_v: u64,
    /// The chunks, oldest first.
    pub chunks: Vec<RefChunk>,
}

/// One WAL record: a batch of items of one kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// New series.
    Series(Vec<RefSeries>),
    /// Samples.
    Samples(Vec<RefSample>),
    /// Deletions.
    Tombstones(Vec<RefTombstone>),
    /// Closed head chunks persisted in `chunks_head` files (written by head checkpoints).
    Chunks(Vec<RefChunks>),
}

/// A borrowed record, so that the WAL can encode halves of an oversized record without
/// cloning it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RecordRef<'a> {
    Series(&'a [RefSeries]),
    Samples(&'a [RefSample]),
    Tombstones(&'a [RefTombstone]),
    Chunks(&'a [RefChunks]),
}

impl<'a> RecordRef<'a> {
    /// Number of items.
    pub(crate) fn len(&self) -> usize {
        match self {
            RecordRef::Series(s) => s.len(),
            RecordRef::Samples(s) => s.len(),
            RecordRef::Tombstones(s) => s.len(),
            RecordRef::Chunks(s) => s.len(),
        }
    }

    /// The most bytes the record can encode to, in either version: what
    /// [`super::segment::append_framed`] splits by, before encoding anything.
    pub(crate) fn worst_len(&self) -> usize {
        const HEAD: usize = 1 + 10;
        match self {
            RecordRef::Series(s) => HEAD + s.iter().map(series_worst_len).sum::<usize>(),
            RecordRef::Samples(s) => HEAD + (s.len() * super::codec::MAX_SAMPLE_BITS).div_ceil(8),
            RecordRef::Tombstones(t) => HEAD + 20 + t.len() * 30,
            RecordRef::Chunks(c) => HEAD + c.iter().map(chunks_worst_len).sum::<usize>(),
        }
    }

    /// The worst encoded length of the record's largest single item (as a record of its
    /// own), if the record has items. Only series can be large: their labels are.
    pub(crate) fn largest_item_len(&self) -> Option<usize> {
        match self {
            RecordRef::Series(s) => s.iter().map(|x| 11 + series_worst_len(x)).max(),
            RecordRef::Chunks(c) => c.iter().map(|x| 11 + chunks_worst_len(x)).max(),
            _ if self.len() == 0 => None,
            _ => Some(
                RecordRef::Samples(&[RefSample {
                    series_ref: 0,
                    t: 0,
                    v: 0.0,
                }])
                .worst_len()
                .max(61),
            ),
        }
    }

    /// The two halves (the first holds `len / 2` items).
    pub(crate) fn split(&self) -> (RecordRef<'a>, RecordRef<'a>) {
        match *self {
            RecordRef::Series(s) => {
                let (a, b) = s.split_at(s.len() / 2);
                (RecordRef::Series(a), RecordRef::Series(b))
            }
            RecordRef::Samples(s) => {
                let (a, b) = s.split_at(s.len() / 2);
                (RecordRef::Samples(a), RecordRef::Samples(b))
            }
            RecordRef::Tombstones(s) => {
                let (a, b) = s.split_at(s.len() / 2);
                (RecordRef::Tombstones(a), RecordRef::Tombstones(b))
            }
            RecordRef::Chunks(s) => {
                let (a, b) = s.split_at(s.len() / 2);
                (RecordRef::Chunks(a), RecordRef::Chunks(b))
            }
        }
    }

    /// Appends the payload to `dst`.
    pub(crate) fn encode(&self, dst: &mut Vec<u8>) {
        match *self {
            RecordRef::Series(series) => {
                dst.push(TYPE_SERIES);
                put_uvarint(dst, series.len() as u64);
                for s in series {
                    put_uvarint(dst, s.series_ref);
                    put_uvarint(dst, s.labels.len() as u64);
                    for l in &s.labels {
                        put_bytes(dst, l.name.as_bytes());
                        put_bytes(dst, l.value.as_bytes());
                    }
                }
            }
            RecordRef::Samples(samples) => {
                dst.push(TYPE_SAMPLES);
                put_uvarint(dst, samples.len() as u64);
                let Some(first) = samples.first() else { return };
                put_uvarint(dst, first.series_ref);
                put_varint(dst, first.t);
                dst.reserve(samples.len() * MIN_SAMPLE_BYTES);
                for s in samples {
                    // Wrapping deltas: refs and times far from the base still round-trip.
                    put_varint(dst, s.series_ref.wrapping_sub(first.series_ref) as i64);
                    put_varint(dst, s.t.wrapping_sub(first.t));
                    dst.extend_from_slice(&s.v.to_bits().to_le_bytes());
                }
            }
            RecordRef::Tombstones(tombs) => {
                dst.push(TYPE_TOMBSTONES);
                put_uvarint(dst, tombs.len() as u64);
                let Some(first) = tombs.first() else { return };
                put_uvarint(dst, first.series_ref);
                put_varint(dst, first.mint);
                for s in tombs {
                    put_varint(dst, s.series_ref.wrapping_sub(first.series_ref) as i64);
                    put_varint(dst, s.mint.wrapping_sub(first.mint));
                    put_varint(dst, s.maxt.wrapping_sub(s.mint));
                }
            }
            RecordRef::Chunks(items) => {
                dst.push(TYPE_CHUNKS);
                put_uvarint(dst, items.len() as u64);
                for s in items {
                    put_uvarint(dst, s.series_ref);
                    dst.extend_from_slice(&s.last_v.to_le_bytes());
                    put_uvarint(dst, s.chunks.len() as u64);
                    let mut prev_maxt = 0i64;
                    for c in &s.chunks {
                        put_uvarint(dst, u64::from(c.file));
                        put_uvarint(dst, c.chunk_ref);
                        put_varint(dst, c.mint.wrapping_sub(prev_maxt));
                        put_varint(dst, c.maxt.wrapping_sub(c.mint));
                        dst.push(c.encoding);
                        prev_maxt = c.maxt;
                    }
                }
            }
        }
    }
}

impl Record {
    /// Appends the encoded payload to `dst` (which is not cleared).
    pub fn encode(&self, dst: &mut Vec<u8>) {
        self.as_ref().encode(dst);
    }

    /// Decodes one payload as written by [`Record::encode`].
    ///
    /// # Errors
    /// [`Error::Corruption`] with an empty `path` and `offset` = the byte offset in `src`
    /// where decoding failed; the WAL replaces both with the segment and the record's offset.
    pub fn decode(src: &[u8]) -> Result<Record> {
        Record::decode_in(src, &mut super::codec::Decoder::new())
    }

    /// Decodes one payload of a segment whose earlier records `state` has decoded (version 2
    /// records depend on them; see [`super::codec`]).
    ///
    /// # Errors
    /// As [`Record::decode`].
    pub fn decode_in(src: &[u8], state: &mut super::codec::Decoder) -> Result<Record> {
        let mut d = Decoder { src, pos: 0 };
        let rec = d.record(state).map_err(|reason| Error::Corruption {
            path: PathBuf::new(),
            offset: d.pos as u64,
            reason,
        })?;
        if d.pos != src.len() {
            return Err(Error::Corruption {
                path: PathBuf::new(),
                offset: d.pos as u64,
                reason: format!(
                    "{} trailing bytes after a {} record of {} items",
                    src.len() - d.pos,
                    rec.kind(),
                    rec.len()
                ),
            });
        }
        Ok(rec)
    }

    /// Number of items in the record.
    pub fn len(&self) -> usize {
        self.as_ref().len()
    }

    /// Whether the record has no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// "series", "samples" or "tombstones", for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Series(_) => "series",
            Record::Samples(_) => "samples",
            Record::Tombstones(_) => "tombstones",
            Record::Chunks(_) => "chunks",
        }
    }

    pub(crate) fn as_ref(&self) -> RecordRef<'_> {
        match self {
            Record::Series(s) => RecordRef::Series(s),
            Record::Samples(s) => RecordRef::Samples(s),
            Record::Tombstones(s) => RecordRef::Tombstones(s),
            Record::Chunks(s) => RecordRef::Chunks(s),
        }
    }
}

use crate::encoding::{put_uvarint, put_varint};

/// Checks a decoded label against the labels of its series so far: a non-empty value,
/// names strictly sorted (so none repeated). Both record formats check the same.
pub(crate) fn check_label(
    labels: &[Label],
    name: &str,
    value: &str,
    i: usize,
    series_ref: u64,
) -> std::result::Result<(), String> {
    if value.is_empty() {
        return Err(format!(
            "series {i} (ref {series_ref}): empty value for label {name:?}"
        ));
    }
    if let Some(prev) = labels.last()
        && *prev.name >= *name
    {
        return Err(format!(
            "series {i} (ref {series_ref}): label {name:?} after {:?}, labels not sorted or repeated",
            prev.name
        ));
    }
    Ok(())
}

/// A series item's most bytes: ref and count varints, and each label string written in full.
fn chunks_worst_len(s: &RefChunks) -> usize {
    10 + 8 + 10 + s.chunks.len() * WORST_CHUNK_BYTES
}

fn series_worst_len(s: &RefSeries) -> usize {
    20 + s
        .labels
        .iter()
        .map(|l| 22 + l.name.len() + l.value.len())
        .sum::<usize>()
}

fn put_bytes(dst: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(dst, b.len() as u64);
    dst.extend_from_slice(b);
}

/// A cursor over an untrusted payload; every read is bounds-checked and errors are messages
/// (the caller attaches the offset).
pub(crate) struct Decoder<'a> {
    src: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub(crate) fn left(&self) -> usize {
        self.src.len() - self.pos
    }

    /// The unread bytes.
    pub(crate) fn rest(&self) -> &'a [u8] {
        let src: &'a [u8] = self.src;
        src.get(self.pos..).unwrap_or_default()
    }

    /// Marks every byte read.
    pub(crate) fn skip_rest(&mut self) {
        self.pos = self.src.len();
    }

    /// Reads an item count and checks that `count` items of at least `min_bits` bits each
    /// fit in what is left.
    pub(crate) fn count_bits(&mut self, what: &str, min_bits: usize) -> std::result::Result<usize, String> {
        let n = self.uvarint(what)?;
        let left = self.left();
        match usize::try_from(n) {
            Ok(n)
                if n.checked_mul(min_bits)
                    .is_some_and(|need| need <= left.saturating_mul(8)) =>
            {
                Ok(n)
            }
            _ => Err(format!("cannot decode {n} {what} from {left} bytes")),
        }
    }

    fn record(&mut self, state: &mut super::codec::Decoder) -> std::result::Result<Record, String> {
        let typ = self.byte("record type")?;
        match typ {
            super::codec::TYPE_SAMPLES_V2 => state.samples_record(self).map(Record::Samples),
            super::codec::TYPE_SERIES_V2 => state.series_record(self).map(Record::Series),
            TYPE_SERIES => self.series().map(Record::Series),
            TYPE_SAMPLES => self.samples().map(Record::Samples),
            TYPE_TOMBSTONES => self.tombstones().map(Record::Tombstones),
            TYPE_CHUNKS => self.chunks().map(Record::Chunks),
            t => Err(format!("unknown record type {t}")),
        }
    }

    /// Reads an item count and checks that `count` items of at least `min` bytes each fit.
    fn count(&mut self, what: &str, min: usize) -> std::result::Result<usize, String> {
        let n = self.uvarint(what)?;
        let left = self.left();
        match usize::try_from(n) {
            Ok(n) if n.checked_mul(min).is_some_and(|need| need <= left) => Ok(n),
            _ => Err(format!("cannot decode {n} {what} from {left} bytes")),
        }
    }

    fn series(&mut self) -> std::result::Result<Vec<RefSeries>, String> {
        let n = self.count("series", MIN_SERIES_BYTES)?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let series_ref = self.uvarint("series ref")?;
            let nl = self.count("labels", MIN_LABEL_BYTES)?;
            let mut labels: Vec<Label> = Vec::with_capacity(nl);
            for _ in 0..nl {
                let name = self.str("label name")?;
                let value = self.str("label value")?;
                check_label(&labels, name, value, i, series_ref)?;
                labels.push(Label {
                    name: Arc::from(name),
                    value: Arc::from(value),
                });
            }
            out.push(RefSeries {
                series_ref,
                labels: Labels::from_sorted(labels),
            });
        }
        Ok(out)
    }

    fn samples(&mut self) -> std::result::Result<Vec<RefSample>, String> {
        let n = self.count("samples", MIN_SAMPLE_BYTES)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let base_ref = self.uvarint("base ref")?;
        let base_t = self.varint("base timestamp")?;
        if n.saturating_mul(MIN_SAMPLE_BYTES) > self.left() {
            return Err(format!("cannot decode {n} samples from {} bytes", self.left()));
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let dref = self.varint("sample ref delta")?;
            let dt = self.varint("sample timestamp delta")?;
            let v = f64::from_bits(u64::from_le_bytes(self.array::<8>("sample value")?));
            out.push(RefSample {
                series_ref: base_ref.wrapping_add(dref as u64),
                t: base_t.wrapping_add(dt),
                v,
            });
        }
        Ok(out)
    }

    fn tombstones(&mut self) -> std::result::Result<Vec<RefTombstone>, String> {
        let n = self.count("tombstones", MIN_TOMBSTONE_BYTES)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let base_ref = self.uvarint("base ref")?;
        let base_mint = self.varint("base mint")?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let dref = self.varint("tombstone ref delta")?;
            let dmint = self.varint("tombstone mint delta")?;
            let len = self.varint("tombstone length")?;
            let mint = base_mint.wrapping_add(dmint);
            out.push(RefTombstone {
                series_ref: base_ref.wrapping_add(dref as u64),
                mint,
                maxt: mint.wrapping_add(len),
            });
        }
        Ok(out)
    }

    fn chunks(&mut self) -> std::result::Result<Vec<RefChunks>, String> {
        // Capacities are capped: an item is 4-8 times larger in memory than its smallest
        // encoding, and a bad count must not reserve that much before decoding fails.
        let n = self.count("chunk lists", MIN_CHUNKS_BYTES)?;
        let mut out = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            let series_ref = self.uvarint("chunk list ref")?;
            let last_v = u64::from_le_bytes(self.array::<8>("last value")?);
            let nc = self.count("chunks", MIN_CHUNK_BYTES)?;
            let mut chunks = Vec::with_capacity(nc.min(4096));
            let mut prev_maxt = 0i64;
            for _ in 0..nc {
                let file = self.uvarint("chunk file")?;
                let file =
                    u32::try_from(file).map_err(|_| format!("chunk file number {file} is out of range"))?;
                let chunk_ref = self.uvarint("chunk ref")?;
                let mint = prev_maxt.wrapping_add(self.varint("chunk mint delta")?);
                let maxt = mint.wrapping_add(self.varint("chunk length")?);
                let encoding = self.byte("chunk encoding")?;
                prev_maxt = maxt;
                chunks.push(RefChunk {
                    file,
                    chunk_ref,
                    mint,
                    maxt,
                    encoding,
                });
            }
            out.push(RefChunks {
                series_ref,
                last_v,
                chunks,
            });
        }
        Ok(out)
    }

    pub(crate) fn byte(&mut self, what: &str) -> std::result::Result<u8, String> {
        let b = *self
            .src
            .get(self.pos)
            .ok_or_else(|| format!("cannot decode {what}: end of record"))?;
        self.pos += 1;
        Ok(b)
    }

    fn array<const N: usize>(&mut self, what: &str) -> std::result::Result<[u8; N], String> {
        let b = self
            .src
            .get(self.pos..self.pos + N)
            .ok_or_else(|| format!("cannot decode {what}: need {N} bytes, {} left", self.left()))?;
        self.pos += N;
        // The slice has exactly N bytes.
        Ok(b.try_into().unwrap_or([0; N]))
    }

    pub(crate) fn uvarint(&mut self, what: &str) -> std::result::Result<u64, String> {
        let mut rest = self.rest();
        let before = rest.len();
        match crate::encoding::get_uvarint(&mut rest) {
            Some(x) => {
                self.pos += before - rest.len();
                Ok(x)
            }
            // Ten bytes read and still no end: too long for 64 bits.
            None if before - rest.len() >= 10 => {
                Err(format!("cannot decode {what}: varint overflows 64 bits"))
            }
            None => Err(format!("cannot decode {what}: end of record")),
        }
    }

    fn varint(&mut self, what: &str) -> std::result::Result<i64, String> {
        self.uvarint(what).map(crate::encoding::unzigzag)
    }

    pub(crate) fn str(&mut self, what: &str) -> std::result::Result<&'a str, String> {
        let len = self.uvarint(what)?;
        let left = self.left();
        let Some(b) = usize::try_from(len).ok().and_then(|l| self.rest().get(..l)) else {
            return Err(format!("cannot decode {what} of {len} bytes from {left} bytes"));
        };
        let s = std::str::from_utf8(b).map_err(|e| format!("{what} is not valid UTF-8: {e}"))?;
        self.pos += b.len();
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(r: &Record) -> Record {
        let mut buf = Vec::new();
        r.encode(&mut buf);
        Record::decode(&buf).unwrap()
    }

    /// Compares samples with `to_bits` so NaN payloads count.
    fn assert_same(a: &Record, b: &Record) {
        match (a, b) {
            (Record::Samples(x), Record::Samples(y)) => {
                assert_eq!(x.len(), y.len());
                for (p, q) in x.iter().zip(y) {
                    assert_eq!(
                        (p.series_ref, p.t, p.v.to_bits()),
                        (q.series_ref, q.t, q.v.to_bits())
                    );
                }
            }
            _ => assert_eq!(a, b),
        }
    }

    #[test]
    fn records_round_trip() {
        let cases = [
            Record::Series(vec![]),
            Record::Samples(vec![]),
            Record::Tombstones(vec![]),
            Record::Series(vec![
                RefSeries {
                    series_ref: 1,
                    labels: Labels::from_pairs([("__name__", "up"), ("job", "node")]),
                },
                RefSeries {
                    series_ref: u64::MAX,
                    labels: Labels::empty(),
                },
            ]),
            Record::Samples(vec![
                RefSample {
                    series_ref: 7,
                    t: 1000,
                    v: f64::from_bits(metricsd_model::STALE_NAN),
                },
                RefSample {
                    series_ref: 0,
                    t: i64::MIN,
                    v: f64::from_bits(0xfff8_dead_beef_0001),
                },
                RefSample {
                    series_ref: u64::MAX,
                    t: i64::MAX,
                    v: -0.0,
                },
            ]),
            Record::Tombstones(vec![
                RefTombstone {
                    series_ref: 3,
                    mint: i64::MIN,
                    maxt: i64::MAX,
                },
                RefTombstone {
                    series_ref: 1,
                    mint: 5,
                    maxt: 4,
                },
            ]),
            Record::Chunks(vec![]),
            Record::Chunks(vec![
                RefChunks {
                    series_ref: 9,
                    last_v: metricsd_model::STALE_NAN,
                    chunks: vec![
                        RefChunk {
                            file: 1,
                            chunk_ref: (4096 << 24) | 181,
                            mint: 1_700_000_000_000,
                            maxt: 1_700_001_785_000,
                            encoding: 2,
                        },
                        RefChunk {
                            file: u32::MAX,
                            chunk_ref: u64::MAX,
                            mint: i64::MIN,
                            maxt: i64::MAX,
                            encoding: 1,
                        },
                    ],
                },
                RefChunks {
                    series_ref: u64::MAX,
                    last_v: 0,
                    chunks: vec![],
                },
            ]),
        ];
        for r in &cases {
            assert_same(r, &round_trip(r));
        }
    }

    #[test]
    fn bad_payloads_are_errors_that_say_what() {
        let err = |b: &[u8]| Record::decode(b).unwrap_err().to_string();
        assert!(err(&[]).contains("record type"), "{}", err(&[]));
        assert!(err(&[9]).contains("unknown record type 9"));
        // 5 samples, but only 12 bytes follow.
        let mut b = vec![TYPE_SAMPLES, 5];
        b.extend_from_slice(&[0; 12]);
        assert!(
            err(&b).contains("cannot decode 5 samples from 12 bytes"),
            "{}",
            err(&b)
        );
        // A huge count must not allocate.
        let mut b = vec![TYPE_SERIES];
        put_uvarint(&mut b, u64::MAX);
        assert!(err(&b).contains("cannot decode 18446744073709551615 series from 0 bytes"));
        // Invalid UTF-8 in a label.
        let b = [TYPE_SERIES, 1, 1, 1, 1, b'a', 1, 0xff];
        assert!(err(&b).contains("not valid UTF-8"), "{}", err(&b));
        // Unsorted labels.
        let b = [TYPE_SERIES, 1, 1, 2, 1, b'b', 1, b'x', 1, b'a', 1, b'y'];
        assert!(err(&b).contains("not sorted"), "{}", err(&b));
        // Empty value.
        let b = [TYPE_SERIES, 1, 1, 1, 1, b'a', 0];
        assert!(err(&b).contains("empty value"), "{}", err(&b));
        // Trailing bytes.
        let b = [TYPE_SAMPLES, 0, 0];
        assert!(err(&b).contains("1 trailing bytes"), "{}", err(&b));
        // A chunk list claiming more chunks than its bytes can hold.
        let mut b = vec![TYPE_CHUNKS, 1, 7];
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&[200, 1, 0, 0, 0]);
        assert!(
            err(&b).contains("cannot decode 200 chunks from 3 bytes"),
            "{}",
            err(&b)
        );
        // Overlong varint.
        let b = [
            TYPE_SAMPLES,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0x7f,
        ];
        assert!(err(&b).contains("overflows"), "{}", err(&b));
    }

    fn label_str() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("__name__".to_string()),
            "[a-z_]{1,8}",
            "\\PC{1,12}", // any printable Unicode
        ]
    }

    fn f64_bits() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<u64>().prop_map(f64::from_bits),
            Just(f64::from_bits(metricsd_model::STALE_NAN)),
            Just(f64::NAN),
            Just(0.0),
            any::<f64>(),
        ]
    }

    fn edge_i64() -> impl Strategy<Value = i64> {
        prop_oneof![
            any::<i64>(),
            Just(i64::MIN),
            Just(i64::MAX),
            Just(0),
            1_600_000_000_000i64..1_700_000_000_000
        ]
    }

    fn edge_u64() -> impl Strategy<Value = u64> {
        prop_oneof![any::<u64>(), Just(u64::MAX), Just(0), 0u64..1000]
    }

    pub(crate) fn arb_record() -> impl Strategy<Value = Record> {
        prop_oneof![
            prop::collection::vec(
                (
                    edge_u64(),
                    prop::collection::vec((label_str(), "\\PC{1,10}"), 0..6)
                ),
                0..8
            )
            .prop_map(|v| Record::Series(
                v.into_iter()
                    .map(|(r, pairs)| RefSeries {
                        series_ref: r,
                        labels: Labels::from_pairs(pairs),
                    })
                    .collect()
            )),
            prop::collection::vec((edge_u64(), edge_i64(), f64_bits()), 0..64).prop_map(|v| Record::Samples(
                v.into_iter()
                    .map(|(series_ref, t, v)| RefSample { series_ref, t, v })
                    .collect()
            )),
            prop::collection::vec((edge_u64(), edge_i64(), edge_i64()), 0..16).prop_map(|v| {
                Record::Tombstones(
                    v.into_iter()
                        .map(|(series_ref, mint, maxt)| RefTombstone {
                            series_ref,
                            mint,
                            maxt,
                        })
                        .collect(),
                )
            }),
            prop::collection::vec(
                (
                    edge_u64(),
                    any::<u64>(),
                    prop::collection::vec(
                        (any::<u32>(), edge_u64(), edge_i64(), edge_i64(), any::<u8>()),
                        0..6
                    )
                ),
                0..6
            )
            .prop_map(|v| Record::Chunks(
                v.into_iter()
                    .map(|(series_ref, last_v, cs)| RefChunks {
                        series_ref,
                        last_v,
                        chunks: cs
                            .into_iter()
                            .map(|(file, chunk_ref, mint, maxt, encoding)| RefChunk {
                                file,
                                chunk_ref,
                                mint,
                                maxt,
                                encoding,
                            })
                            .collect(),
                    })
                    .collect()
            )),
        ]
    }

    proptest! {
        #[test]
        fn prop_round_trip(r in arb_record()) {
            assert_same(&r, &round_trip(&r));
        }

        #[test]
        fn prop_arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = Record::decode(&b);
        }

        #[test]
        fn prop_mutated_records_never_panic(r in arb_record(), idx in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
            let mut b = Vec::new();
            r.encode(&mut b);
            let i = idx % b.len();
            b[i] = byte;
            let _ = Record::decode(&b);
            b.truncate(cut % (b.len() + 1));
            let _ = Record::decode(&b);
        }
    }
}
