//! Appending samples to head series: in-order into the open XOR chunk, out-of-order into a
//! sorted buffer, duplicates accepted when bit-identical, conflicts rejected per sample.

use std::sync::atomic::Ordering;

use metricsd_model::Sample;

use super::{Head, HeadChunk, MemSeries, OpenChunk, SeriesData, push_exact};
use crate::chunkenc::{Encoding, XorChunk};
use crate::{Error, Result};

/// Where an accepted sample went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Appended {
    InOrder,
    OutOfOrder,
    /// Same timestamp and bit-identical value as a stored sample: nothing to do.
    Duplicate,
}

enum Route {
    InOrder,
    OutOfOrder,
    Duplicate,
}

impl Head {
    /// Decides where `(t, v)` would go in `d`, or why it is rejected. With `logged`, the
    /// sample is already in the WAL (a commit applying what it checked, or replay): window
    /// and bounds rules were enforced before it was logged, so only a conflicting duplicate
    /// can still refuse it. That keeps "acknowledged" equal to "stored", live and after a
    /// restart, even when a concurrent commit moved the window in between.
    ///
    /// The out-of-order window ends at the series' or the head's newest sample, but never
    /// after `now` (the clock): a sample stamped in the future cannot move the window past
    /// the present and make every later write too old.
    fn route(&self, s: &MemSeries, d: &SeriesData, t: i64, v: f64, logged: bool, now: i64) -> Result<Route> {
        let min_valid = self.min_valid_time();
        if t > d.last_t && t >= min_valid {
            return Ok(Route::InOrder);
        }
        // `last_t == i64::MIN` means "no in-order sample yet" (`last_v` is then no value).
        if t == d.last_t && t >= min_valid && d.last_t != i64::MIN {
            if v.to_bits() == d.last_v {
                return Ok(Route::Duplicate);
            }
            return Err(Error::DuplicateSample {
                series: self.labels_of(s).to_string(),
                t,
                stored: f64::from_bits(d.last_v),
                new: v,
            });
        }
        let window = self.opts.ooo_window_ms;
        let newest = self.max_t.load(Ordering::Acquire).max(d.last_t).min(now);
        let ooo_min = newest.saturating_sub(window);
        if logged || (window > 0 && t >= ooo_min) {
            if let Some(stored) = in_order_value_at(d, t) {
                if stored == v.to_bits() {
                    return Ok(Route::Duplicate);
                }
                return Err(Error::DuplicateSample {
                    series: self.labels_of(s).to_string(),
                    t,
                    stored: f64::from_bits(stored),
                    new: v,
                });
            }
            if let Some(stored) = d
                .ooo
                .binary_search_by_key(&t, |x| x.t)
                .ok()
                .and_then(|i| d.ooo.get(i))
            {
                if stored.v.to_bits() == v.to_bits() {
                    return Ok(Route::Duplicate);
                }
                return Err(Error::DuplicateSample {
                    series: self.labels_of(s).to_string(),
                    t,
                    stored: stored.v,
                    new: v,
                });
            }
            return Ok(Route::OutOfOrder);
        }
        if t < min_valid || window > 0 {
            return Err(Error::OutOfBounds {
                series: self.labels_of(s).to_string(),
                t,
                min_valid: if window > 0 { ooo_min } else { min_valid },
            });
        }
        Err(Error::OutOfOrder {
            series: self.labels_of(s).to_string(),
            t,
            last: d.last_t,
        })
    }

    /// Checks whether `(t, v)` would be accepted, without appending.
    pub(crate) fn check(&self, s: &MemSeries, t: i64, v: f64, now: i64) -> Result<()> {
        let d = s.data.lock();
        self.route(s, &d, t, v, false, now).map(|_| ())
    }

    /// Appends `(t, v)` to series `s`; `logged` and `now` as in [`Head::route`].
    pub(crate) fn append(&self, s: &MemSeries, t: i64, v: f64, logged: bool, now: i64) -> Result<Appended> {
        let mut d = s.data.lock();
        match self.route(s, &d, t, v, logged, now)? {
            Route::Duplicate => Ok(Appended::Duplicate),
            Route::InOrder => {
                self.append_in_order(&mut d, t, v);
                drop(d);
                self.note_time(t);
                self.samples_appended.fetch_add(1, Ordering::Relaxed);
                Ok(Appended::InOrder)
            }
            Route::OutOfOrder => {
                let i = d.ooo.partition_point(|x| x.t < t);
                d.ooo.insert(i, Sample::new(t, v));
                drop(d);
                self.note_time(t);
                self.samples_appended.fetch_add(1, Ordering::Relaxed);
                self.ooo_appended.fetch_add(1, Ordering::Relaxed);
                Ok(Appended::OutOfOrder)
            }
        }
    }

    fn append_in_order(&self, d: &mut SeriesData, t: i64, v: f64) {
        let range = self.opts.block_range_ms.max(1);
        // Chunks never cross a block boundary, so cutting a block never splits one.
        let cut = d
            .open
            .as_ref()
            .is_some_and(|o| t >= o.mint.div_euclid(range).saturating_add(1).saturating_mul(range));
        if cut {
            self.close_open(d);
        }
        let o = d.open.get_or_insert_with(|| OpenChunk {
            chunk: XorChunk::new(),
            mint: t,
            maxt: t,
        });
        o.chunk.append(t, v);
        o.maxt = t;
        let full = o.chunk.num_samples() >= self.opts.chunk_max_samples;
        d.last_t = t;
        d.last_v = v.to_bits();
        // A full chunk is closed at once, not when the next sample comes: it can then
        // leave memory (and the WAL, at the next head checkpoint) while the series is idle.
        if full {
            self.close_open(d);
        }
    }

    /// Closes the open chunk, if any, into the closed chunks: into the pending slab when
    /// the head has chunk files, else an allocation of its own.
    fn close_open(&self, d: &mut SeriesData) {
        let Some(o) = d.open.take() else { return };
        let pending = self
            .pending
            .as_ref()
            .and_then(|p| p.push(Encoding::Xor, o.chunk.bytes()));
        let (slab, chunk_ref) =
            pending.unwrap_or_else(|| super::pending::Slab::single(Encoding::Xor, o.chunk.bytes()));
        // The span fits: a chunk never crosses a block-range boundary, and `Head::new` caps
        // the block range at u32::MAX ms.
        let Some(chunk) = HeadChunk::new(
            o.mint,
            o.maxt,
            Encoding::Xor,
            false,
            super::ChunkBytes::Slab(slab, chunk_ref),
        ) else {
            debug_assert!(false, "a head chunk spans more than u32::MAX ms");
            return;
        };
        push_exact(&mut d.closed, chunk);
        self.unsettled.fetch_add(1, Ordering::Relaxed);
    }
}

/// The bits of the in-order sample at `t`, if the head holds one. Decodes at most one chunk:
/// only out-of-order appends call it, and they are rare.
#[inline(never)]
fn in_order_value_at(d: &SeriesData, t: i64) -> Option<u64> {
    let mut buf = Vec::new();
    let open = d.open.as_ref().filter(|o| o.mint <= t && t <= o.maxt);
    let closed = d.closed.iter().find(|c| c.mint <= t && t <= c.maxt());
    // A chunk that cannot be read (a failing disk) is taken as not holding `t`.
    let decoded = match (closed, open) {
        (Some(c), _) => c.decode_into(&mut buf),
        (None, Some(o)) => crate::chunkenc::decode(Encoding::Xor, o.chunk.bytes(), &mut buf),
        (None, None) => return None,
    };
    decoded.ok()?;
    buf.binary_search_by_key(&t, |x| x.t)
        .ok()
        .and_then(|i| buf.get(i))
        .map(|s| s.v.to_bits())
}

impl Head {
    /// Physically deletes the samples of series `id` in `[mint, maxt]`: the chunks that
    /// overlap are decoded, filtered and re-encoded. Samples appended later, even inside the
    /// range, are kept (unlike a tombstone). Returns whether the series had samples there.
    pub(crate) fn delete_range(&self, id: u32, mint: i64, maxt: i64) -> bool {
        let Some(s) = self.series(id) else { return false };
        let mut d = s.data.lock();
        let mut hit = false;
        let mut buf = Vec::new();
        let mut closed = thin_vec::ThinVec::with_capacity(d.closed.len());
        for c in std::mem::take(&mut d.closed) {
            if c.maxt() < mint || c.mint > maxt {
                closed.push(c);
                continue;
            }
            buf.clear();
            if c.decode_into(&mut buf).is_err() {
                closed.push(c);
                continue;
            }
            let before = buf.len();
            buf.retain(|x| x.t < mint || x.t > maxt);
            hit |= buf.len() != before;
            if let Some(chunk) = encode_xor(&buf) {
                closed.push(chunk);
            }
        }
        d.closed = closed;
        if let Some(o) = d.open.take() {
            if o.maxt < mint || o.mint > maxt {
                d.open = Some(o);
            } else {
                buf.clear();
                let _ = crate::chunkenc::decode(Encoding::Xor, o.chunk.bytes(), &mut buf);
                let before = buf.len();
                buf.retain(|x| x.t < mint || x.t > maxt);
                hit |= buf.len() != before;
                if let (Some(first), Some(last)) = (buf.first(), buf.last()) {
                    let mut chunk = XorChunk::new();
                    for x in &buf {
                        chunk.append(x.t, x.v);
                    }
                    d.open = Some(OpenChunk {
                        chunk,
                        mint: first.t,
                        maxt: last.t,
                    });
                }
            }
        }
        let before = d.ooo.len() + d.ooo_compacting.len();
        d.ooo.retain(|x| x.t < mint || x.t > maxt);
        d.ooo_compacting.retain(|x| x.t < mint || x.t > maxt);
        hit |= d.ooo.len() + d.ooo_compacting.len() != before;
        // The newest remaining in-order sample decides duplicates from now on.
        buf.clear();
        let last = match (&d.open, d.closed.last()) {
            (Some(o), _) => Some(crate::chunkenc::decode(Encoding::Xor, o.chunk.bytes(), &mut buf)),
            (None, Some(c)) => Some(c.decode_into(&mut buf)),
            (None, None) => None,
        };
        if let Some(decoded) = last {
            if decoded.is_ok()
                && let Some(x) = buf.last()
            {
                d.last_t = x.t;
                d.last_v = x.v.to_bits();
            }
        } else if hit {
            d.last_t = i64::MIN;
        }
        hit
    }
}

fn encode_xor(samples: &[Sample]) -> Option<HeadChunk> {
    let (first, last) = (samples.first()?, samples.last()?);
    let mut c = XorChunk::new();
    for x in samples {
        c.append(x.t, x.v);
    }
    HeadChunk::mem(first.t, last.t, Encoding::Xor, c.bytes())
}
