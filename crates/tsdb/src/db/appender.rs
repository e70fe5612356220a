//! Batched appends: validate, write the WAL once, apply to the head.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use metricsd_model::{Labels, Sample};

use super::Db;
use crate::head::append::Appended;
use crate::head::{KeyedSeries, MemSeries, SeriesRef};
use crate::wal::{Record, RefSample, RefSeries};
use crate::{Error, MIN_TIMESTAMP, Result};

/// Collects samples and stores them in one [`Appender::commit`]: one WAL write per batch.
///
/// Items are numbered in the order they were added (one number per sample); the
/// [`CommitReport`] names rejected samples by that number, so a batch API can answer
/// per item while storing the valid ones.
pub struct Appender<'a> {
    db: &'a Db,
    series: Vec<Target>,
    /// (index into `series`, sample)
    samples: Vec<(u32, Sample)>,
}

/// The series a sample goes to: by labels (looked up at commit), a ref from
/// [`Db::series_ref`] (checked at commit, looked up by its labels only if stale), a series
/// found by its key (likewise), or labels to remember under a key once resolved.
enum Target {
    Labels(Labels),
    Ref(SeriesRef),
    Known(KeyedSeries),
    Keyed(Labels, u128),
}

/// What a commit did.
#[derive(Debug, Default)]
pub struct CommitReport {
    /// Samples stored (in-order or out-of-order).
    pub accepted: usize,
    /// Of those, out-of-order samples.
    pub out_of_order: usize,
    /// Samples identical to stored ones (accepted, nothing written).
    pub duplicates: usize,
    /// Series created by this commit.
    pub series_created: usize,
    /// Rejected samples: their number in the batch and why.
    pub rejected: Vec<(usize, Error)>,
}

impl<'a> Appender<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Appender {
            db,
            series: Vec::new(),
            samples: Vec::new(),
        }
    }

    /// Makes room for `series` more series and `samples` more samples (a caller that knows
    /// its batch saves the growth of both vectors).
    pub fn reserve(&mut self, series: usize, samples: usize) {
        self.series.reserve(series);
        self.samples.reserve(samples);
    }

    /// Adds one sample of the series `labels`.
    pub fn append(&mut self, labels: Labels, t: i64, v: f64) {
        self.append_many(labels, &[Sample::new(t, v)]);
    }

    /// Adds several samples of one series (cheaper than one `append` each).
    pub fn append_many(&mut self, labels: Labels, samples: &[Sample]) {
        let idx = match self.series.last() {
            Some(Target::Labels(last)) if *last == labels => self.series.len() - 1,
            _ => {
                self.series.push(Target::Labels(labels));
                self.series.len() - 1
            }
        } as u32;
        self.samples.extend(samples.iter().map(|s| (idx, *s)));
    }

    /// Adds one sample of the series `series` refers to: no label lookup at commit while
    /// the ref is live.
    pub fn append_ref(&mut self, series: &SeriesRef, t: i64, v: f64) {
        let idx = match self.series.last() {
            Some(Target::Ref(last)) if last.same(series) => self.series.len() - 1,
            _ => {
                self.series.push(Target::Ref(series.clone()));
                self.series.len() - 1
            }
        } as u32;
        self.samples.push((idx, Sample::new(t, v)));
    }

    /// Adds samples of a series found by its key ([`Db::keyed_series`]): no label lookup at
    /// commit while the series is in the head.
    pub fn append_known(&mut self, series: KeyedSeries, samples: &[Sample]) {
        let idx = self.series.len() as u32;
        self.series.push(Target::Known(series));
        self.samples.extend(samples.iter().map(|s| (idx, *s)));
    }

    /// Adds samples of the series `labels`, and remembers the series under `key` when the
    /// commit has found or created it, for [`Db::keyed_series`]. See [`KeyedSeries`] for what
    /// a key must be.
    pub fn append_keyed(&mut self, key: u128, labels: Labels, samples: &[Sample]) {
        let idx = self.series.len() as u32;
        self.series.push(Target::Keyed(labels, key));
        self.samples.extend(samples.iter().map(|s| (idx, *s)));
    }

    /// Number of samples added.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no sample was added.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Validates every sample, writes the accepted ones to the WAL in one write, then to
    /// the head. Rejected samples are reported, not stored; an `Err` means the WAL write
    /// failed and nothing of the batch was acknowledged.
    pub fn commit(self) -> Result<CommitReport> {
        let db = self.db;
        let head = &db.head;
        let mut report = CommitReport::default();
        if self.samples.is_empty() {
            return Ok(report);
        }
        // Time is the clock's: read once per commit. Samples outside [MIN_TIMESTAMP,
        // now + max_future_ms] are rejected before their series are resolved, so a batch of
        // only such samples creates no series.
        let now = db.opts.clock.now_ms();
        let max_t = now.saturating_add(db.opts.max_future_ms.max(0));
        let in_range = |t: i64| (MIN_TIMESTAMP..=max_t).contains(&t);
        let mut wanted: Option<Vec<bool>> = None;
        if !self.samples.iter().all(|(_, s)| in_range(s.t)) {
            let mut w = vec![false; self.series.len()];
            for &(si, s) in &self.samples {
                if let Some(wanted) = w.get_mut(si as usize) {
                    *wanted |= in_range(s.t);
                }
            }
            wanted = Some(w);
        }
        let _gate = db.gate.read();
        // Resolve series (live refs directly, the others by their labels).
        let mut resolved: Vec<Option<Arc<MemSeries>>> = Vec::with_capacity(self.series.len());
        let mut errors: Vec<Option<Error>> = Vec::new();
        for (ti, target) in self.series.iter().enumerate() {
            if wanted.as_ref().is_some_and(|w| w.get(ti) == Some(&false)) {
                // Every sample of it is out of range: reported below, nothing created.
                resolved.push(None);
                errors.push(None);
                continue;
            }
            let r = match target {
                Target::Ref(r) => match head.live(r) {
                    Some(s) => Ok((s.clone(), false)),
                    None => db.get_or_create(r.labels()),
                },
                Target::Labels(labels) => db.get_or_create(labels),
                Target::Known(k) => match head.live_keyed(k) {
                    Ok(Some(s)) => Ok((s.clone(), false)),
                    // Removed since it was found: gc left its labels in the series (`tomb`).
                    Ok(None) => db.get_or_create(&head.labels_of(&k.series)),
                    Err(e) => Err(e),
                },
                Target::Keyed(labels, key) => {
                    db.get_or_create(labels).inspect(|(s, _)| head.remember(*key, s))
                }
            };
            match r {
                Ok((s, created)) => {
                    report.series_created += usize::from(created);
                    resolved.push(Some(s));
                    errors.push(None);
                }
                Err(e) => {
                    resolved.push(None);
                    errors.push(Some(e));
                }
            }
        }
        let mut accepted: Vec<(usize, RefSample)> = Vec::with_capacity(self.samples.len());
        for (i, &(si, s)) in self.samples.iter().enumerate() {
            let si = si as usize;
            if !in_range(s.t) {
                report.rejected.push((i, self.time_error(si, s.t, now, max_t)));
                continue;
            }
            let Some(series) = resolved.get(si).and_then(Option::as_ref) else {
                let e = errors
                    .get(si)
                    .and_then(Option::as_ref)
                    .map_or_else(|| Error::Unavailable("series".into()), clone_error);
                report.rejected.push((i, e));
                continue;
            };
            match head.check(series, s.t, s.v, now) {
                Ok(()) => accepted.push((
                    i,
                    RefSample {
                        series_ref: series.id as u64,
                        t: s.t,
                        v: s.v,
                    },
                )),
                Err(e) => report.rejected.push((i, e)),
            }
        }
        if !accepted.is_empty() {
            let rec = Record::Samples(accepted.iter().map(|(_, r)| *r).collect());
            if let Err(e) = db.wal.log(&[rec]) {
                db.counters.wal_failures.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
            db.counters.wal_failures.store(0, Ordering::Relaxed);
        } else {
            // Flush new series records even when every sample was rejected.
            db.wal.flush()?;
        }
        for (i, r) in accepted {
            let Some(series) = self
                .samples
                .get(i)
                .and_then(|&(si, _)| resolved.get(si as usize))
                .and_then(Option::as_ref)
            else {
                continue;
            };
            match head.append(series, r.t, r.v, true, now) {
                Ok(Appended::InOrder) => report.accepted += 1,
                Ok(Appended::OutOfOrder) => {
                    report.accepted += 1;
                    report.out_of_order += 1;
                }
                Ok(Appended::Duplicate) => {
                    report.accepted += 1;
                    report.duplicates += 1;
                }
                // A concurrent commit wrote another value for this timestamp in between.
                Err(e) => report.rejected.push((i, e)),
            }
        }
        db.counters.commits.fetch_add(1, Ordering::Relaxed);
        db.counters
            .samples_rejected
            .fetch_add(report.rejected.len() as u64, Ordering::Relaxed);
        report.rejected.sort_by_key(|(i, _)| *i);
        Ok(report)
    }
}

impl Appender<'_> {
    /// The error of a sample at `t` of `self.series[si]` outside the accepted time range.
    #[cold]
    fn time_error(&self, si: usize, t: i64, now: i64, max_t: i64) -> Error {
        let series = match self.series.get(si) {
            Some(Target::Labels(l) | Target::Keyed(l, _)) => l.to_string(),
            Some(Target::Ref(r)) => r.labels().to_string(),
            Some(Target::Known(k)) => self.db.head.labels_of(&k.series).to_string(),
            None => format!("series {si} of the batch"),
        };
        if t > max_t {
            Error::TooFarInFuture {
                series,
                t,
                now,
                max_future_ms: self.db.opts.max_future_ms,
            }
        } else {
            Error::OutOfBounds {
                series,
                t,
                min_valid: MIN_TIMESTAMP,
            }
        }
    }
}

impl Db {
    /// The head series remembered under `key` by an earlier [`Appender::append_keyed`], if
    /// it is still in the head. See [`KeyedSeries`].
    pub fn keyed_series(&self, key: u128) -> Option<KeyedSeries> {
        self.head.keyed(key)
    }

    /// Finds or creates the series `labels` in the head and returns a ref to it, for
    /// [`Appender::append_ref`]. A new series is logged to the WAL (flushed with the next
    /// commit) and holds no samples until one is committed.
    pub fn series_ref(&self, labels: &Labels) -> Result<SeriesRef> {
        let _gate = self.gate.read();
        let (s, _) = self.get_or_create(labels)?;
        Ok(self.head.make_ref(s, labels))
    }

    /// Finds or creates a head series; a new one logs its series record into the WAL's
    /// pending buffer under the head's shard lock, before anyone can append to it.
    /// Callers hold the append gate.
    fn get_or_create(&self, labels: &Labels) -> Result<(Arc<MemSeries>, bool)> {
        self.head.get_or_create(labels, |id, l| {
            self.wal.log_buffered(&Record::Series(vec![RefSeries {
                series_ref: id as u64,
                labels: l.clone(),
            }]));
        })
    }
}

/// Errors are not `Clone` (they may hold `io::Error`); series-level errors are model or limit
/// errors, which are re-created here for each sample of the series.
fn clone_error(e: &Error) -> Error {
    match e {
        Error::Model(m) => Error::Model(m.clone()),
        Error::TooManySeries {
            tenant,
            limit,
            series,
        } => Error::TooManySeries {
            tenant: tenant.clone(),
            limit: *limit,
            series: series.clone(),
        },
        other => Error::Unavailable(other.to_string()),
    }
}

/// The store's appender through the storage seam (what rules and importers write with).
struct SeamAppender<'a>(Appender<'a>);

impl metricsd_storage::Appender for SeamAppender<'_> {
    fn append(&mut self, labels: &Labels, t: i64, v: f64) {
        self.0.append(labels.clone(), t, v);
    }

    fn commit(self: Box<Self>) -> metricsd_storage::Result<metricsd_storage::AppendReport> {
        let r = self.0.commit()?;
        Ok(metricsd_storage::AppendReport {
            appended: r.accepted + r.duplicates,
            rejected: r
                .rejected
                .into_iter()
                .map(|(i, e)| (i, e.without_paths()))
                .collect(),
        })
    }
}

impl metricsd_storage::Appendable for Db {
    fn appender(&self) -> Box<dyn metricsd_storage::Appender + '_> {
        Box::new(SeamAppender(Db::appender(self)))
    }
}
