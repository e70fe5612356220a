//! Reading the head: its index, series snapshots for queries, and the cut for a block.

use std::sync::Arc;

use metricsd_model::{Labels, Matcher, Sample};
use roaring::RoaringBitmap;

use super::{Head, MemSeries};
use crate::Result;
use crate::chunkenc::Encoding;
use crate::index::{IndexReader, postings_for_matchers};
use crate::querier::{ChunkData, ChunkSource, SeriesEntry};

/// Priority of head data when timestamps collide with block data: the head is newer.
const PRIO_HEAD: u8 = 200;
const PRIO_OOO: u8 = 190;

impl IndexReader for Head {
    fn label_names(&self) -> Result<Vec<Arc<str>>> {
        Ok(self.postings.read().names())
    }
    fn for_each_label_value(&self, name: &str, f: &mut dyn FnMut(&str)) -> Result<()> {
        self.postings.read().for_each_value(name, f);
        Ok(())
    }
    fn postings(&self, name: &str, value: &str) -> Result<RoaringBitmap> {
        Ok(self.postings.read().get(name, value))
    }
    fn all_postings(&self) -> Result<RoaringBitmap> {
        Ok(self.postings.read().all())
    }
    fn series_labels(&self, id: u32) -> Result<Labels> {
        // Gone since the caller read its id from the postings: it has no labels to add.
        Ok(self.series(id).map_or_else(Labels::empty, |s| self.labels_of(&s)))
    }
}

impl Head {
    /// Series matching `matchers` that have samples in `[mint, maxt]`, sorted by labels.
    pub(crate) fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<SeriesEntry>> {
        let ids = postings_for_matchers(self, matchers)?;
        let mut out = Vec::with_capacity(ids.len() as usize);
        for id in &ids {
            let Some(s) = self.series(id) else { continue };
            let mut chunks = Vec::new();
            self.series_chunks(&s, mint, maxt, &mut chunks, false);
            if chunks.is_empty() {
                continue;
            }
            out.push(SeriesEntry {
                labels: self.labels_of(&s),
                chunks,
            });
        }
        out.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    /// Chunk sources of `s` overlapping `[mint, maxt]`. With `take_ooo`, out-of-order samples
    /// in the range move to `ooo_compacting` (a compaction is taking them).
    fn series_chunks(&self, s: &MemSeries, mint: i64, maxt: i64, out: &mut Vec<ChunkSource>, take_ooo: bool) {
        let mut d = s.data.lock();
        for c in &d.closed {
            if c.maxt() >= mint && c.mint <= maxt {
                let (reader, chunk_ref) = c.reader();
                out.push(ChunkSource {
                    mint: c.mint,
                    maxt: c.maxt(),
                    prio: PRIO_HEAD,
                    tombstones: None,
                    data: ChunkData::Block { reader, chunk_ref },
                });
            }
        }
        if let Some(o) = &d.open
            && o.maxt >= mint
            && o.mint <= maxt
        {
            out.push(ChunkSource {
                mint: o.mint,
                maxt: o.maxt,
                prio: PRIO_HEAD,
                tombstones: None,
                data: ChunkData::Bytes {
                    enc: Encoding::Xor,
                    data: Arc::from(o.chunk.bytes()),
                },
            });
        }
        if take_ooo {
            let lo = d.ooo.partition_point(|x| x.t < mint);
            let hi = d.ooo.partition_point(|x| x.t <= maxt);
            if lo < hi {
                let taken: Vec<Sample> = d.ooo.drain(lo..hi).collect();
                d.ooo_compacting.extend(taken);
                d.ooo_compacting.sort_by_key(|x| x.t);
            }
        }
        for buf in [&d.ooo, &d.ooo_compacting] {
            let lo = buf.partition_point(|x| x.t < mint);
            let hi = buf.partition_point(|x| x.t <= maxt);
            let part = buf.get(lo..hi).unwrap_or_default();
            if let (Some(first), Some(last)) = (part.first(), part.last()) {
                out.push(ChunkSource {
                    mint: first.t,
                    maxt: last.t,
                    prio: PRIO_OOO,
                    tombstones: None,
                    data: ChunkData::Samples(Arc::from(part)),
                });
            }
        }
    }

    /// Everything in `[mint, maxt]` for a block, sorted by labels; moves the range's
    /// out-of-order samples aside so they stay readable until [`Head::truncate`].
    pub(crate) fn snapshot_range(&self, mint: i64, maxt: i64) -> Vec<SeriesEntry> {
        let mut out = Vec::new();
        for s in self.all_series() {
            let mut chunks = Vec::new();
            self.series_chunks(&s, mint, maxt, &mut chunks, true);
            if chunks.is_empty() {
                continue;
            }
            out.push(SeriesEntry {
                labels: self.labels_of(&s),
                chunks,
            });
        }
        out.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// Drops data before `before` (now in a block): closed chunks, open chunks that end
    /// before it, and out-of-order samples a compaction took. Recomputes the head's min time.
    pub(crate) fn truncate(&self, before: i64) {
        let mut min_t = i64::MAX;
        for s in self.all_series() {
            let mut d = s.data.lock();
            d.closed.retain(|c| c.maxt() >= before);
            d.closed.shrink_to_fit();
            if d.open.as_ref().is_some_and(|o| o.maxt < before) {
                d.open = None;
            }
            d.ooo_compacting.retain(|x| x.t >= before);
            if d.ooo_compacting.is_empty() {
                d.ooo_compacting = thin_vec::ThinVec::new();
            }
            let first = [
                d.closed.first().map(|c| c.mint),
                d.open.as_ref().map(|o| o.mint),
                d.ooo.first().map(|x| x.t),
                d.ooo_compacting.first().map(|x| x.t),
            ];
            for t in first.into_iter().flatten() {
                min_t = min_t.min(t);
            }
        }
        // An empty head keeps its max time: out-of-order windows are relative to it.
        self.set_min_time(min_t);
    }
}
