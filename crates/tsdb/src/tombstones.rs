//! Deletion intervals ("tombstones"): samples of a series in `[mint, maxt]` that reads skip
//! and compaction drops.

/// A closed time interval `[mint, maxt]` in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    /// First deleted timestamp (inclusive).
    pub mint: i64,
    /// Last deleted timestamp (inclusive).
    pub maxt: i64,
}

impl Interval {
    /// Whether `t` lies in the interval.
    #[inline]
    pub fn contains(&self, t: i64) -> bool {
        self.mint <= t && t <= self.maxt
    }
}

/// Sorted, non-overlapping intervals of one series.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intervals(Vec<Interval>);

impl Intervals {
    /// Adds an interval, merging it with overlapping or adjacent ones.
    pub fn add(&mut self, iv: Interval) {
        if iv.mint > iv.maxt {
            return;
        }
        self.0.push(iv);
        self.0.sort();
        let mut out: Vec<Interval> = Vec::with_capacity(self.0.len());
        for iv in self.0.drain(..) {
            match out.last_mut() {
                Some(last) if iv.mint <= last.maxt.saturating_add(1) => last.maxt = last.maxt.max(iv.maxt),
                _ => out.push(iv),
            }
        }
        self.0 = out;
    }

    /// Whether `t` is deleted.
    #[inline]
    pub fn contains(&self, t: i64) -> bool {
        // Few intervals per series in practice: a linear scan beats a binary search.
        self.0.iter().any(|iv| iv.contains(t))
    }

    /// Whether every timestamp of `[mint, maxt]` is deleted.
    pub fn covers(&self, mint: i64, maxt: i64) -> bool {
        self.0.iter().any(|iv| iv.mint <= mint && maxt <= iv.maxt)
    }

    /// The intervals, sorted.
    pub fn as_slice(&self) -> &[Interval] {
        &self.0
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_merge() {
        let mut iv = Intervals::default();
        iv.add(Interval { mint: 10, maxt: 20 });
        iv.add(Interval { mint: 0, maxt: 5 });
        iv.add(Interval { mint: 21, maxt: 30 });
        iv.add(Interval { mint: 3, maxt: 4 });
        assert_eq!(
            iv.as_slice(),
            &[Interval { mint: 0, maxt: 5 }, Interval { mint: 10, maxt: 30 }]
        );
        assert!(iv.contains(25) && !iv.contains(7));
        assert!(iv.covers(12, 29) && !iv.covers(4, 12));
    }
}
