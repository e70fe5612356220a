//! The read side: the store implements the storage seam's [`Queryable`] (`metricsd-storage`);
//! [`Querier::select`] returns series whose samples a [`ChunkSeries`] decodes lazily, chunk
//! by chunk, merged across the head, the out-of-order buffer and blocks, deduplicated and
//! clipped.

use std::sync::Arc;

use metricsd_model::{Labels, Sample};

use crate::chunkenc::{self, Encoding};
use crate::tombstones::Intervals;
use crate::{Error, Result};

pub use metricsd_storage::{Querier, Queryable, SampleIterator, Series, SeriesData};

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

/// The samples of a selected series: its chunks in the querier's range, decoded lazily.
pub(crate) struct ChunkSeries {
    chunks: Box<[ChunkSource]>,
    mint: i64,
    maxt: i64,
}

impl ChunkSeries {
    /// The samples of `chunks` in `[mint, maxt]`.
    pub(crate) fn new(mut chunks: Vec<ChunkSource>, mint: i64, maxt: i64) -> ChunkSeries {
        chunks.sort_by_key(|c| (c.mint, c.maxt));
        ChunkSeries {
            chunks: chunks.into(),
            mint,
            maxt,
        }
    }

    /// The storage seam's series for `e`, clipped to `[mint, maxt]`.
    pub(crate) fn series(e: SeriesEntry, mint: i64, maxt: i64) -> Series {
        Series::new(e.labels, Arc::new(ChunkSeries::new(e.chunks, mint, maxt)))
    }

    fn samples_iter(&self) -> SampleIter<'_> {
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

    /// Every readable sample, and the first error (with its file path, for logs).
    pub(crate) fn read_all(&self) -> (Vec<Sample>, Option<Error>) {
        let mut it = self.samples_iter();
        let v: Vec<Sample> = it.by_ref().collect();
        (v, it.err.take())
    }
}

impl SeriesData for ChunkSeries {
    fn iter(&self) -> Box<dyn SampleIterator + '_> {
        Box::new(self.samples_iter())
    }

    fn num_chunks(&self) -> usize {
        self.chunks.len()
    }
}

/// Iterates a [`ChunkSeries`]' samples. Decodes one group of overlapping chunks at a time into a
/// reused buffer. A chunk that fails to decode is skipped and its error kept in
/// [`SampleIter::err`], so one corrupt chunk costs its samples, not the query.
pub(crate) struct SampleIter<'a> {
    series: &'a ChunkSeries,
    next_chunk: usize,
    buf: Vec<Sample>,
    pos: usize,
    scratch: Vec<(i64, u8, f64)>,
    /// A block chunk's bytes, read from its file.
    raw: Vec<u8>,
    err: Option<Error>,
}

impl SampleIter<'_> {
    /// Decodes the next group of overlapping chunks into `buf`. Returns false at the end.
    fn fill(&mut self) -> bool {
        let chunks = &self.series.chunks;
        let (mint, maxt) = (self.series.mint, self.series.maxt);
        while let Some(rest) = chunks.get(self.next_chunk..)
            && let Some(first) = rest.first()
        {
            // The group: `first` and the chunks that overlap it or each other.
            let mut group_maxt = first.maxt;
            let n = 1 + rest
                .iter()
                .skip(1)
                .take_while(|c| {
                    let overlaps = c.mint <= group_maxt;
                    if overlaps {
                        group_maxt = group_maxt.max(c.maxt);
                    }
                    overlaps
                })
                .count();
            let group = rest.get(..n).unwrap_or(rest);
            self.next_chunk += n;
            self.buf.clear();
            self.pos = 0;
            if let [c] = group {
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
                for c in group {
                    tmp.clear();
                    if let Err(e) = c.decode_into(&mut tmp, &mut self.raw) {
                        self.err.get_or_insert(e);
                        continue;
                    }
                    retain_range(&mut tmp, mint, maxt, c.tombstones.as_deref());
                    self.scratch.extend(tmp.iter().map(|s| (s.t, c.prio, s.v)));
                }
                self.scratch.sort_by_key(|&(t, p, _)| (t, p));
                let mut it = self.scratch.iter().peekable();
                while let Some(&(t, _, v)) = it.next() {
                    if it.peek().is_some_and(|next| next.0 == t) {
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

impl SampleIterator for SampleIter<'_> {
    fn err(&self) -> Option<metricsd_storage::Error> {
        self.err.as_ref().map(metricsd_storage::Error::from)
    }

    /// A chunk group at a time (a copy per group instead of one call per sample).
    fn drain_into(&mut self, out: &mut Vec<Sample>) -> Option<metricsd_storage::Error> {
        loop {
            if let Some(rest) = self.buf.get(self.pos..) {
                out.extend_from_slice(rest);
                self.pos = self.buf.len();
            }
            if !self.fill() {
                return self.err();
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
        let s = *self.buf.get(self.pos)?;
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
        let s = ChunkSeries::series(e, 2, 10);
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
        let s = ChunkSeries::series(e, 2, 9);
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
        let got: Vec<(i64, f64)> = ChunkSeries::series(e, i64::MIN, i64::MAX)
            .iter()
            .map(|x| (x.t, x.v))
            .collect();
        assert_eq!(got, [(1, 1.0), (3, 7.0)]);
    }
}
