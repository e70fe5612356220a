//! The read API: [`Queryable`] opens a [`Querier`] over a time range; [`Querier::select`]
//! returns the matching series, whose samples are decoded lazily, chunk by chunk, merged
//! across the head, the out-of-order buffer and blocks, deduplicated and clipped.

use std::sync::Arc;

use metricsd_model::{Labels, Matcher, Sample};

use crate::chunkenc::{self, Encoding};
use crate::tombstones::Intervals;
use crate::{Error, Result};

/// Something that can be queried over a time range: a tenant's store.
pub trait Queryable: Send + Sync {
    /// A querier over `[mint, maxt]` (inclusive, ms). It sees a consistent set of blocks;
    /// head data appended after this call may or may not be visible.
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier + '_>>;
}

/// Selects series and label metadata within the querier's time range.
pub trait Querier: Send + Sync {
    /// Series matching all `matchers` with at least one chunk in range, sorted by labels.
    /// An empty matcher list selects nothing.
    fn select(&self, matchers: &[Matcher]) -> Result<Vec<Series>>;
    /// Label names of the series matching `matchers` (all series when empty), sorted.
    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<Arc<str>>>;
    /// Values of label `name` among series matching `matchers` (all when empty), sorted.
    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<Arc<str>>>;
    /// The range `[mint, maxt]` this querier reads.
    fn range(&self) -> (i64, i64);
}

/// Random access to the chunks of a persisted block.
pub(crate) trait ChunkReader: Send + Sync {
    /// The chunk's encoding and bytes, read into `buf` (reused across calls).
    fn read_chunk<'b>(&self, chunk_ref: u64, buf: &'b mut Vec<u8>) -> Result<(Encoding, &'b [u8])>;
}

/// Where a chunk's bytes are.
#[derive(Clone)]
pub(crate) enum ChunkData {
    /// Bytes in memory (head chunks).
    Bytes { enc: Encoding, data: Arc<[u8]> },
    /// A chunk of a block, read from its file (`pread`) on demand.
    Block {
        reader: Arc<dyn ChunkReader>,
        chunk_ref: u64,
    },
    /// Plain samples (the out-of-order buffer).
    Samples(Arc<[Sample]>),
}

/// One chunk of a series from one source.
#[derive(Clone)]
pub(crate) struct ChunkSource {
    pub mint: i64,
    pub maxt: i64,
    /// On equal timestamps in overlapping chunks, the higher priority (newer source) wins.
    pub prio: u8,
    pub data: ChunkData,
    /// Deleted intervals of this source's series.
    pub tombstones: Option<Arc<Intervals>>,
}

impl ChunkSource {
    /// Decodes the chunk into `dst`; a block's chunk is read into `raw` first.
    fn decode_into(&self, dst: &mut Vec<Sample>, raw: &mut Vec<u8>) -> Result<()> {
        match &self.data {
            ChunkData::Bytes { enc, data } => chunkenc::decode(*enc, data, dst),
            ChunkData::Block { reader, chunk_ref } => {
                let (enc, data) = reader.read_chunk(*chunk_ref, raw)?;
                chunkenc::decode(enc, data, dst)
            }
            ChunkData::Samples(s) => {
                dst.extend_from_slice(s);
                Ok(())
            }
        }
    }
}

/// A series of one source before merging.
pub(crate) struct SeriesEntry {
    pub labels: Labels,
    pub chunks: Vec<ChunkSource>,
}

/// Merges per-source series lists (each sorted by labels) into one sorted list, joining
/// the chunks of series with equal labels.
pub(crate) fn merge_entries(lists: Vec<Vec<SeriesEntry>>) -> Vec<SeriesEntry> {
    let mut lists: Vec<Vec<SeriesEntry>> = lists.into_iter().filter(|l| !l.is_empty()).collect();
    match lists.len() {
        0 => return Vec::new(),
        1 => return lists.pop().unwrap_or_default(),
        _ => {}
    }
    let mut all: Vec<SeriesEntry> = lists.into_iter().flatten().collect();
    all.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut out: Vec<SeriesEntry> = Vec::with_capacity(all.len());
    for e in all {
        match out.last_mut() {
            Some(last) if last.labels == e.labels => last.chunks.extend(e.chunks),
            _ => out.push(e),
        }
    }
    out
}

/// A selected series: its labels and lazily decoded samples in the querier's range.
#[derive(Clone)]
pub struct Series {
    labels: Labels,
    chunks: Arc<[ChunkSource]>,
    mint: i64,
    maxt: i64,
}

impl std::fmt::Debug for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Series")
            .field("labels", &self.labels)
            .field("chunks", &self.chunks.len())
            .finish()
    }
}

impl Series {
    pub(crate) fn new(e: SeriesEntry, mint: i64, maxt: i64) -> Series {
        let mut chunks = e.chunks;
        chunks.sort_by_key(|c| (c.mint, c.maxt));
        Series {
            labels: e.labels,
            chunks: chunks.into(),
            mint,
            maxt,
        }
    }

    /// The series' labels.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// Number of chunks the samples come from (before merging).
    pub fn num_chunks(&self) -> usize {
        self.chunks.len()
    }

    /// A lazy iterator over the samples in range, in time order, without duplicates.
    pub fn iter(&self) -> SampleIter<'_> {
        SampleIter {
            series: self,
            next_chunk: 0,
            buf: Vec::new(),
            pos: 0,
            scratch: Vec::new(),
            raw: Vec::new(),
            err: None,
        }
    }

    /// All samples in range (convenience over [`Series::iter`]); fails on a corrupt chunk.
    pub fn samples(&self) -> Result<Vec<Sample>> {
        let mut it = self.iter();
        let v: Vec<Sample> = it.by_ref().collect();
        match it.err.take() {
            Some(e) => Err(e),
            None => Ok(v),
        }
    }
}

/// Iterates a [`Series`]' samples. Decodes one group of overlapping chunks at a time into a
/// reused buffer. A chunk that fails to decode is skipped and its error kept in
/// [`SampleIter::err`], so one corrupt chunk costs its samples, not the query.
pub struct SampleIter<'a> {
    series: &'a Series,
    next_chunk: usize,
    buf: Vec<Sample>,
    pos: usize,
    scratch: Vec<(i64, u8, f64)>,
    /// A block chunk's bytes, read from its file.
    raw: Vec<u8>,
    err: Option<Error>,
}

impl SampleIter<'_> {
    /// The first decode error met, if any.
    pub fn err(&self) -> Option<&Error> {
        self.err.as_ref()
    }

    /// Decodes the next group of overlapping chunks into `buf`. Returns false at the end.
    fn fill(&mut self) -> bool {
        let chunks = &self.series.chunks;
        let (mint, maxt) = (self.series.mint, self.series.maxt);
        while self.next_chunk < chunks.len() {
            let start = self.next_chunk;
            let mut end = start + 1;
            let mut group_maxt = chunks[start].maxt;
            while end < chunks.len() && chunks[end].mint <= group_maxt {
                group_maxt = group_maxt.max(chunks[end].maxt);
                end += 1;
            }
            self.next_chunk = end;
            self.buf.clear();
            self.pos = 0;
            if end - start == 1 {
                let c = &chunks[start];
                if let Err(e) = c.decode_into(&mut self.buf, &mut self.raw) {
                    self.err.get_or_insert(e);
                    self.buf.clear();
                    continue;
                }
                retain_range(&mut self.buf, mint, maxt, c.tombstones.as_deref());
            } else {
                // Overlapping chunks (out-of-order data, overlapping blocks): merge by time,
                // the newer source winning on equal timestamps.
                self.scratch.clear();
                let mut tmp = Vec::new();
                for c in &chunks[start..end] {
                    tmp.clear();
                    if let Err(e) = c.decode_into(&mut tmp, &mut self.raw) {
                        self.err.get_or_insert(e);
                        continue;
                    }
                    retain_range(&mut tmp, mint, maxt, c.tombstones.as_deref());
                    self.scratch.extend(tmp.iter().map(|s| (s.t, c.prio, s.v)));
                }
                self.scratch.sort_by_key(|&(t, p, _)| (t, p));
                for i in 0..self.scratch.len() {
                    let (t, _, v) = self.scratch[i];
                    if i + 1 < self.scratch.len() && self.scratch[i + 1].0 == t {
                        continue; // a higher-priority sample with the same timestamp follows
                    }
                    self.buf.push(Sample::new(t, v));
                }
            }
            if !self.buf.is_empty() {
                return true;
            }
        }
        false
    }
}

fn retain_range(buf: &mut Vec<Sample>, mint: i64, maxt: i64, tomb: Option<&Intervals>) {
    match tomb {
        Some(iv) if !iv.is_empty() => buf.retain(|s| s.t >= mint && s.t <= maxt && !iv.contains(s.t)),
        _ => {
            let fully_inside =
                buf.first().is_none_or(|s| s.t >= mint) && buf.last().is_none_or(|s| s.t <= maxt);
            if !fully_inside {
                buf.retain(|s| s.t >= mint && s.t <= maxt);
            }
        }
    }
}

impl SampleIter<'_> {
    /// Appends every remaining sample to `out`, a chunk group at a time (a copy per group
    /// instead of one call per sample). Returns the first decode error, if any.
    pub fn drain_into(&mut self, out: &mut Vec<Sample>) -> Option<&Error> {
        loop {
            if self.pos < self.buf.len() {
                out.extend_from_slice(&self.buf[self.pos..]);
                self.pos = self.buf.len();
            }
            if !self.fill() {
                return self.err.as_ref();
            }
        }
    }
}

impl Iterator for SampleIter<'_> {
    type Item = Sample;

    #[inline]
    fn next(&mut self) -> Option<Sample> {
        if self.pos >= self.buf.len() && !self.fill() {
            return None;
        }
        let s = self.buf[self.pos];
        self.pos += 1;
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(samples: &[(i64, f64)], prio: u8) -> ChunkSource {
        let s: Vec<Sample> = samples.iter().map(|&(t, v)| Sample::new(t, v)).collect();
        ChunkSource {
            mint: s.first().map_or(0, |x| x.t),
            maxt: s.last().map_or(0, |x| x.t),
            prio,
            data: ChunkData::Samples(s.into()),
            tombstones: None,
        }
    }

    #[test]
    fn drain_into_equals_iteration() {
        let e = SeriesEntry {
            labels: Labels::from_pairs([("__name__", "x")]),
            chunks: vec![
                src(&[(1, 1.0), (3, 3.0)], 1),
                src(&[(2, 2.0), (3, 30.0)], 2),
                src(&[(10, 10.0), (11, 11.0)], 1),
            ],
        };
        let s = Series::new(e, 2, 10);
        let want: Vec<Sample> = s.iter().collect();
        let mut it = s.iter();
        it.next();
        let mut got = vec![Sample::new(-1, 0.0)];
        assert!(it.drain_into(&mut got).is_none());
        assert_eq!(got[0], Sample::new(-1, 0.0));
        assert_eq!(&got[1..], &want[1..]);
        assert_eq!(want.len(), 3);
    }

    #[test]
    fn overlapping_chunks_merge_and_newer_wins() {
        let e = SeriesEntry {
            labels: Labels::from_pairs([("__name__", "x")]),
            chunks: vec![
                src(&[(1, 1.0), (3, 3.0), (5, 5.0)], 1),
                src(&[(2, 2.0), (3, 30.0)], 2),
                src(&[(9, 9.0)], 1),
            ],
        };
        let s = Series::new(e, 2, 9);
        let got: Vec<(i64, f64)> = s.iter().map(|x| (x.t, x.v)).collect();
        assert_eq!(got, [(2, 2.0), (3, 30.0), (5, 5.0), (9, 9.0)]);
    }

    #[test]
    fn tombstones_hide_samples_of_their_source_only() {
        let mut iv = Intervals::default();
        iv.add(crate::tombstones::Interval { mint: 2, maxt: 3 });
        let mut a = src(&[(1, 1.0), (2, 2.0), (3, 3.0)], 1);
        a.tombstones = Some(Arc::new(iv));
        let e = SeriesEntry {
            labels: Labels::from_pairs([("__name__", "x")]),
            chunks: vec![a, src(&[(3, 7.0)], 2)],
        };
        let got: Vec<(i64, f64)> = Series::new(e, i64::MIN, i64::MAX)
            .iter()
            .map(|x| (x.t, x.v))
            .collect();
        assert_eq!(got, [(1, 1.0), (3, 7.0)]);
    }
}
