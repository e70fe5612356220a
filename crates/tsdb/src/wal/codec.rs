//! WAL format version 2: records compressed against what the same segment already holds.
//!
//! Version 1 (types 1–3, [`super::record`]) stores every sample in about 11 bytes (a ref
//! delta, a time delta and 8 raw value bytes) and every label string in full, so a WAL was
//! ≈ 11–13 B/sample, 8× the blocks it turns into. Version 2 keeps two pieces of state per
//! segment, which the writer and every reader build identically from the segment's first
//! record on:
//!
//! - **A string table** for series records (type 5): a label name or value already seen in
//!   the segment is written as its index; a new one is written in full and appended to the
//!   table (if the table has room: see [`MAX_STRINGS`]). A node_exporter series record drops
//!   from ≈ 190 to ≈ 40 bytes.
//! - **The previous sample of each series** for sample records (type 4): each sample is
//!   written as Gorilla writes chunks (the timestamp's delta-of-delta and the XOR of the
//!   value against the series' previous sample *in this segment*), into one bit stream per
//!   record. A series' first sample in a segment is predicted from the record's previous
//!   sample time and a zero value. Regular scrapes cost a few bits per sample, however the
//!   samples are batched into records (one sample per series per record, as scrapes and
//!   remote_write senders batch, compresses as well as a backfill of long runs).
//!
//! The state starts empty at the start of every segment file (and every checkpoint file), so
//! a segment replays on its own: checkpoints, truncation and repair keep working per segment.
//! The cost is memory while writing: one entry (32 bytes plus the map's overhead) per series
//! that logged a sample in the current segment, and the string table (bounded).
//!
//! The writer must never drop bytes that it has encoded into the state without the reader
//! seeing them: [`super::Wal`] re-encodes what it writes after any cut, and after a failed
//! write it starts a new segment with a fresh state.
//!
//! Tombstone records stay in version 1's encoding (type 3): they are rare.
//!
//! The byte layout is in `docs/format/wal.md` ("Version 2").

use std::sync::Arc;

use hashbrown::HashMap;
use metricsd_model::{Label, Labels};

use super::record::{Decoder as Cursor, RecordRef, RefSample, RefSeries};
use crate::chunkenc::bstream::{BitReader, write_bit, write_bits, write_varint_bits};
use crate::chunkenc::xor::{read_dod, read_xor, write_dod, write_xor};
use crate::encoding::put_uvarint;

/// Type byte of a version 2 samples record.
pub(crate) const TYPE_SAMPLES_V2: u8 = 4;
/// Type byte of a version 2 series record.
pub(crate) const TYPE_SERIES_V2: u8 = 5;

/// The string table holds at most this many strings per segment; later new strings are
/// written in full every time.
pub const MAX_STRINGS: usize = 1 << 18;
/// ... and at most this many bytes of them.
pub const MAX_STRING_BYTES: usize = 8 << 20;
/// Strings longer than this are always written in full (they are rarely repeated: ids).
pub const MAX_TABLE_STRING_LEN: usize = 128;

/// Most bits one sample can take: ref (`11` + a 10-byte varint), delta-of-delta (`1111` +
/// 64) and value (`11` + 5 + 6 + 64).
pub(crate) const MAX_SAMPLE_BITS: usize = 82 + 68 + 77;
/// Fewest bits one sample takes: three `0` control bits.
const MIN_SAMPLE_BITS: usize = 3;

use crate::chunkenc::xor::NO_WINDOW;

/// What the codec remembers of a series' previous sample in the segment.
#[derive(Clone, Copy)]
struct Prev {
    t: i64,
    v: u64,
    /// The previous timestamp delta, 0 when it does not fit 32 bits (both sides agree).
    dt: i32,
    leading: u8,
    trailing: u8,
}

impl Prev {
    /// A series' state before its first sample in the segment: predicted at `t` with value 0.
    /// `leading` is [`NO_WINDOW`] for the writer (its first value opens a window) and 0 for
    /// the reader (the XOR chunk reader's start, so even a malformed `10` decodes safely).
    fn fresh(t: i64, leading: u8) -> Prev {
        Prev {
            t,
            v: 0,
            dt: 0,
            leading,
            trailing: 0,
        }
    }
}

fn table_admits(len: usize, count: usize, bytes: usize) -> bool {
    len <= MAX_TABLE_STRING_LEN && count < MAX_STRINGS && bytes + len <= MAX_STRING_BYTES
}

type Map<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// The writer's side of a segment's state.
#[derive(Default)]
pub struct Encoder {
    strings: Map<Arc<str>, u32>,
    string_bytes: usize,
    prev: Map<u64, Prev>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Encoder({} strings, {} series)",
            self.strings.len(),
            self.prev.len()
        )
    }
}

impl Encoder {
    /// A fresh state, as at the start of a segment.
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Forgets everything: the next record starts a new segment (or file).
    pub fn reset(&mut self) {
        // Keeps the allocations: segments follow each other with about the same series.
        self.strings.clear();
        self.prev.clear();
        self.string_bytes = 0;
    }

    /// Series with state, for memory accounting.
    pub fn series(&self) -> usize {
        self.prev.len()
    }

    /// Appends the payload of `rec` to `dst`, in version 2 (tombstones in version 1). The
    /// records must reach the reader in the order they were encoded, none left out.
    pub fn encode(&mut self, rec: &super::Record, dst: &mut Vec<u8>) {
        self.encode_ref(rec.as_ref(), dst);
    }

    pub(crate) fn encode_ref(&mut self, rec: RecordRef<'_>, dst: &mut Vec<u8>) {
        match rec {
            RecordRef::Series(s) => self.series_record(s, dst),
            RecordRef::Samples(s) => self.samples_record(s, dst),
            RecordRef::Tombstones(_) | RecordRef::Chunks(_) => rec.encode(dst),
        }
    }

    fn string(&mut self, s: &Arc<str>, dst: &mut Vec<u8>) {
        if let Some(&i) = self.strings.get(s) {
            put_uvarint(dst, u64::from(i) + 1);
            return;
        }
        put_uvarint(dst, 0);
        put_uvarint(dst, s.len() as u64);
        dst.extend_from_slice(s.as_bytes());
        if table_admits(s.len(), self.strings.len(), self.string_bytes) {
            self.string_bytes += s.len();
            let i = self.strings.len() as u32;
            self.strings.insert(s.clone(), i);
        }
    }

    fn series_record(&mut self, series: &[RefSeries], dst: &mut Vec<u8>) {
        dst.push(TYPE_SERIES_V2);
        put_uvarint(dst, series.len() as u64);
        for s in series {
            put_uvarint(dst, s.series_ref);
            put_uvarint(dst, s.labels.len() as u64);
            for l in &s.labels {
                self.string(&l.name, dst);
                self.string(&l.value, dst);
            }
        }
    }

    fn samples_record(&mut self, samples: &[RefSample], dst: &mut Vec<u8>) {
        dst.push(TYPE_SAMPLES_V2);
        put_uvarint(dst, samples.len() as u64);
        dst.reserve(samples.len() * 2);
        let mut free = 0u8;
        let (mut prev_ref, mut last_t) = (0u64, 0i64);
        for s in samples {
            let r = s.series_ref;
            if r == prev_ref {
                write_bit(dst, &mut free, false);
            } else if r == prev_ref.wrapping_add(1) {
                write_bits(dst, &mut free, 0b10, 2);
            } else {
                write_bits(dst, &mut free, 0b11, 2);
                write_varint_bits(dst, &mut free, r.wrapping_sub(prev_ref).wrapping_sub(1) as i64);
            }
            prev_ref = r;
            let p = self
                .prev
                .entry(r)
                .or_insert_with(|| Prev::fresh(last_t, NO_WINDOW));
            let dt = s.t.wrapping_sub(p.t);
            write_dod(dst, &mut free, dt.wrapping_sub(i64::from(p.dt)));
            let vbits = s.v.to_bits();
            write_xor(dst, &mut free, vbits ^ p.v, &mut p.leading, &mut p.trailing);
            p.t = s.t;
            p.v = vbits;
            p.dt = i32::try_from(dt).unwrap_or(0);
            last_t = s.t;
        }
    }
}

/// The reader's side of a segment's state.
#[derive(Default)]
pub struct Decoder {
    strings: Vec<Arc<str>>,
    string_bytes: usize,
    prev: Map<u64, Prev>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Decoder({} strings, {} series)",
            self.strings.len(),
            self.prev.len()
        )
    }
}

type Res<T> = std::result::Result<T, String>;

impl Decoder {
    /// A fresh state, as at the start of a segment.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    fn string(&mut self, c: &mut Cursor<'_>, what: &str) -> Res<Arc<str>> {
        let k = c.uvarint(what)?;
        if k > 0 {
            return usize::try_from(k - 1)
                .ok()
                .and_then(|i| self.strings.get(i))
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "{what} refers to string {} of a table of {}",
                        k - 1,
                        self.strings.len()
                    )
                });
        }
        let s: Arc<str> = Arc::from(c.str(what)?);
        if table_admits(s.len(), self.strings.len(), self.string_bytes) {
            self.string_bytes += s.len();
            self.strings.push(s.clone());
        }
        Ok(s)
    }

    /// Decodes the body of a version 2 series record (after its type byte).
    pub(crate) fn series_record(&mut self, c: &mut Cursor<'_>) -> Res<Vec<RefSeries>> {
        let n = c.count_bits("series", 16)?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let series_ref = c.uvarint("series ref")?;
            let nl = c.count_bits("labels", 16)?;
            let mut labels: Vec<Label> = Vec::with_capacity(nl);
            for _ in 0..nl {
                let name = self.string(c, "label name")?;
                let value = self.string(c, "label value")?;
                super::record::check_label(&labels, &name, &value, i, series_ref)?;
                labels.push(Label { name, value });
            }
            out.push(RefSeries {
                series_ref,
                labels: Labels::from_sorted(labels),
            });
        }
        Ok(out)
    }

    /// Decodes the body of a version 2 samples record (after its type byte); consumes the
    /// rest of the payload.
    pub(crate) fn samples_record(&mut self, c: &mut Cursor<'_>) -> Res<Vec<RefSample>> {
        let n = c.count_bits("samples", MIN_SAMPLE_BITS)?;
        let bits = c.rest();
        let mut br = BitReader::new(bits);
        let mut out = Vec::with_capacity(n);
        let (mut prev_ref, mut last_t) = (0u64, 0i64);
        for i in 0..n {
            let cut = |what: &str| format!("sample {i} of {n}: cannot decode its {what}: end of record");
            let r = if !br.read_bit().ok_or_else(|| cut("ref"))? {
                prev_ref
            } else if !br.read_bit().ok_or_else(|| cut("ref"))? {
                prev_ref.wrapping_add(1)
            } else {
                let d = br.read_varint().ok_or_else(|| cut("ref delta"))?;
                prev_ref.wrapping_add(1).wrapping_add(d as u64)
            };
            prev_ref = r;
            let p = self.prev.entry(r).or_insert_with(|| Prev::fresh(last_t, 0));
            let dod = read_dod(&mut br).ok_or_else(|| cut("timestamp"))?;
            let dt = dod.wrapping_add(i64::from(p.dt));
            let t = p.t.wrapping_add(dt);
            let delta = read_xor(&mut br, &mut p.leading, &mut p.trailing)
                .map_err(|e| format!("sample {i} of {n}: cannot decode its value: {e}"))?;
            let vbits = p.v ^ delta;
            p.t = t;
            p.v = vbits;
            p.dt = i32::try_from(dt).unwrap_or(0);
            last_t = t;
            out.push(RefSample {
                series_ref: r,
                t,
                v: f64::from_bits(vbits),
            });
        }
        // Only zero padding may follow, within the last byte.
        let used = br.position().div_ceil(8);
        if used != bits.len() {
            return Err(format!(
                "{} trailing bytes after a samples record of {n} items",
                bits.len() - used
            ));
        }
        c.skip_rest();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::Record;
    use proptest::prelude::*;

    /// Records as comparable strings (sample values by their bits, so NaN payloads count).
    fn key(r: &Record) -> String {
        match r {
            Record::Samples(s) => format!(
                "{:?}",
                s.iter()
                    .map(|x| (x.series_ref, x.t, x.v.to_bits()))
                    .collect::<Vec<_>>()
            ),
            other => format!("{other:?}"),
        }
    }

    /// Encodes `recs` with one encoder (as one segment) and decodes them with one decoder;
    /// returns the total payload bytes.
    fn round_trip(recs: &[Record]) -> usize {
        let mut enc = Encoder::new();
        let mut dec = Decoder::new();
        let mut total = 0;
        for r in recs {
            let mut buf = Vec::new();
            enc.encode(r, &mut buf);
            assert!(
                buf.len() <= r.as_ref().worst_len(),
                "{} > worst {}",
                buf.len(),
                r.as_ref().worst_len()
            );
            total += buf.len();
            let got = Record::decode_in(&buf, &mut dec).unwrap();
            assert_eq!(key(&got), key(r));
        }
        total
    }

    fn sample_strategy() -> impl Strategy<Value = RefSample> {
        let t = prop_oneof![
            4 => (0i64..100).prop_map(|i| 1_700_000_000_000 + i * 15_000),
            1 => any::<i64>(),
            1 => Just(i64::MIN),
            1 => Just(i64::MAX),
        ];
        let v = prop_oneof![
            3 => (0u32..5).prop_map(f64::from),
            2 => any::<f64>(),
            1 => any::<u64>().prop_map(f64::from_bits),
            1 => Just(f64::from_bits(0x7ff0_0000_0000_0002)),
        ];
        let r = prop_oneof![4 => 1u64..6, 1 => any::<u64>()];
        (r, t, v).prop_map(|(series_ref, t, v)| RefSample { series_ref, t, v })
    }

    fn record_strategy() -> impl Strategy<Value = Record> {
        let name = prop_oneof![Just("__name__".to_string()), "[a-z_]{1,6}", "\\PC{1,200}"];
        let value = prop_oneof![Just("node".to_string()), "[a-z0-9]{1,6}", "\\PC{1,200}"];
        let series =
            (any::<u64>(), prop::collection::btree_map(name, value, 0..6)).prop_map(|(r, m)| RefSeries {
                series_ref: r,
                labels: Labels::from_pairs(m.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            });
        prop_oneof![
            prop::collection::vec(series, 0..4).prop_map(Record::Series),
            prop::collection::vec(sample_strategy(), 0..40).prop_map(Record::Samples),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Any sequence of records decodes to itself through one segment's state.
        #[test]
        fn prop_sequences_round_trip(recs in prop::collection::vec(record_strategy(), 0..12)) {
            round_trip(&recs);
        }

        /// Mutated or truncated payloads never panic a decoder that has state, and a
        /// record that still decodes does so within its bounds.
        #[test]
        fn prop_mutated_payloads_never_panic(
            recs in prop::collection::vec(record_strategy(), 1..6),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut enc = Encoder::new();
            let mut dec = Decoder::new();
            for r in &recs {
                let mut buf = Vec::new();
                enc.encode(r, &mut buf);
                let mut bad = buf.clone();
                for (i, x) in &flips {
                    let i = i.index(bad.len());
                    bad[i] ^= x;
                }
                bad.truncate(cut.index(bad.len() + 1));
                let _ = Record::decode_in(&bad, &mut Decoder::new());
                // The clean record still decodes in sequence.
                prop_assert_eq!(key(&Record::decode_in(&buf, &mut dec).unwrap()), key(r));
            }
        }
    }

    /// Scrape-like records (one sample per series per record, regular timestamps, slowly
    /// changing values) cost a few bits per sample after the first; series records a few
    /// bytes per label once the strings are known.
    #[test]
    fn regular_scrapes_compress() {
        let series: Vec<RefSeries> = (1..=1000u64)
            .map(|r| RefSeries {
                series_ref: r,
                labels: Labels::from_pairs([
                    ("__name__", "node_cpu_seconds_total"),
                    ("cpu", &(r % 8).to_string()),
                    ("instance", &format!("host-{}:9100", r / 8)),
                    ("job", "node"),
                    ("mode", ["idle", "user", "system", "iowait"][r as usize % 4]),
                ]),
            })
            .collect();
        let mut recs: Vec<Record> = series.iter().map(|s| Record::Series(vec![s.clone()])).collect();
        let series_bytes = round_trip(&recs);
        assert!(
            series_bytes < 1000 * 40,
            "{series_bytes} bytes for 1000 series records"
        );
        recs.clear();
        for step in 0..100i64 {
            recs.push(Record::Samples(
                (1..=1000u64)
                    .map(|r| RefSample {
                        series_ref: r,
                        t: 1_700_000_000_000 + step * 15_000,
                        v: (step / 4 * r as i64) as f64,
                    })
                    .collect(),
            ));
        }
        let bytes = round_trip(&recs);
        let per_sample = bytes as f64 / 100_000.0;
        assert!(per_sample < 2.0, "{per_sample} B/sample");
    }

    /// Past the string table's bound, both sides stop adding strings at the same point.
    #[test]
    fn string_table_is_bounded_and_agreed() {
        let long = |i: usize| format!("{i:0>120}");
        let n = MAX_STRING_BYTES / 120 + 500;
        let recs: Vec<Record> = (0..n)
            .map(|i| {
                Record::Series(vec![RefSeries {
                    series_ref: i as u64,
                    // Each series names one new string and one seen near the bound.
                    labels: Labels::from_pairs([
                        ("a", long(i).as_str()),
                        ("b", long(n - 600 + i % 200).as_str()),
                    ]),
                }])
            })
            .collect();
        let mut enc = Encoder::new();
        let mut dec = Decoder::new();
        for r in &recs {
            let mut buf = Vec::new();
            enc.encode(r, &mut buf);
            assert_eq!(key(&Record::decode_in(&buf, &mut dec).unwrap()), key(r));
        }
        assert!(enc.string_bytes <= MAX_STRING_BYTES && dec.string_bytes == enc.string_bytes);
        assert_eq!(enc.strings.len(), dec.strings.len());
    }

    /// A reference to a string the table does not have is an error, not a panic.
    #[test]
    fn unknown_string_reference_is_an_error() {
        let bad = [TYPE_SERIES_V2, 1, 7, 1, 5, 0];
        let err = Record::decode_in(&bad, &mut Decoder::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("refers to string 4 of a table of 0"), "{err}");
    }
}
