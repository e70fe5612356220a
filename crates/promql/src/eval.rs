//! The evaluator core: the step grid, intermediate values, selectors and subqueries.
//!
//! # How a query is evaluated
//! Every node is evaluated once for *all* steps of the query (a grid `start, start+step, ...,
//! end`; an instant query is a grid of one step), not step by step. An instant vector is a
//! list of [`Row`]s, one per series, each holding a dense array with one value per step;
//! a step where the series has no value holds the [`ABSENT`] marker, a NaN payload that no
//! input or arithmetic produces (inputs carrying it are normalised to the canonical NaN).
//! Storage is read once per selector: each series is decoded into a reused buffer and walked
//! with two pointers across the steps, so a range query costs one pass over its samples, not
//! one per step.
//!
//! Aggregations over selectors and over range functions of selectors consume series one at a
//! time ([`Ev::stream`]) and never hold the per-series intermediate result, which is what
//! makes `sum by (job) (rate(x[5m]))` over many series cheap in memory.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metricsd_model::{Labels, MatchOp, Matcher, Sample, is_stale_nan};
use metricsd_storage::{Queryable, Series};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{AtModifier, Expr, MatrixSelector, Offset, SubqueryExpr, VectorSelector};

use crate::engine::{EngineOptions, QueryContext};
use crate::error::QueryError;
use crate::value::{QueryResult, QueryStats, RangeSeries, Value, VectorSample};
use crate::{aggregate, binary, functions};

pub(crate) type Result<T> = std::result::Result<T, QueryError>;

/// Bits of the "no value at this step" marker: a quiet NaN with a payload of our own.
pub(crate) const ABSENT_BITS: u64 = 0x7ff8_0000_dead_0001;
/// The "no value at this step" marker.
pub(crate) const ABSENT: f64 = f64::from_bits(ABSENT_BITS);

/// Whether a step holds a value.
#[inline]
pub(crate) fn has(v: f64) -> bool {
    v.to_bits() != ABSENT_BITS
}

/// The value at step `i` of a row or scalar: the evaluator's one width invariant.
#[allow(
    clippy::indexing_slicing,
    reason = "every row and scalar holds one value per step of the grid it was evaluated over (`Row`), and callers pass a step of that grid"
)]
#[inline]
pub(crate) fn at_step(vals: &[f64], i: usize) -> f64 {
    vals[i]
}

/// A stored value as the evaluator sees it: our marker's bit pattern, should a client ever
/// send it, becomes the canonical NaN.
#[inline]
pub(crate) fn norm(v: f64) -> f64 {
    if v.to_bits() == ABSENT_BITS { f64::NAN } else { v }
}

/// The evaluation timestamps: `start, start + step, ..., <= end`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    pub start: i64,
    pub step: i64,
    pub n: usize,
}

impl Grid {
    /// The grid `start, start + step, ..., <= end`. `step` is positive. Computed in wide
    /// arithmetic: any `start` and `end` give the true count (which may be far more than can
    /// be allocated: [`Ev::charge_grid`] is called before a row of it is).
    pub fn new(start: i64, end: i64, step: i64) -> Grid {
        debug_assert!(step > 0);
        let n = if end < start {
            0
        } else {
            let n = (i128::from(end) - i128::from(start)) / i128::from(step.max(1)) + 1;
            usize::try_from(n).unwrap_or(usize::MAX)
        };
        Grid { start, step, n }
    }

    /// The `i`-th step's time. For `i < n` it lies in `[start, end]`, so the wrapping
    /// arithmetic is exact even where `i * step` alone would overflow.
    #[inline]
    pub fn ts(&self, i: usize) -> i64 {
        self.start.wrapping_add((i as i64).wrapping_mul(self.step))
    }

    pub fn end(&self) -> i64 {
        self.ts(self.n.saturating_sub(1))
    }
}

/// One series of an instant vector across the grid: `vals` holds one value per step of the
/// grid (as a scalar does), whatever produced it.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub labels: Labels,
    pub vals: Vec<f64>,
}

impl Row {
    pub fn present(&self) -> u64 {
        self.vals.iter().filter(|v| has(**v)).count() as u64
    }
}

/// An intermediate value.
pub(crate) enum Val {
    Scalar(Vec<f64>),
    Str(String),
    Vector(Vec<Row>),
    /// Only at the top of an instant query (a range selector or subquery).
    Matrix(Vec<RangeSeries>),
}

/// The window of a range selector or subquery: `[ref - range, ref]` with
/// `ref = (at or step time) - offset`, both ends inclusive (Prometheus 2.x).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub range: i64,
    pub offset: i64,
    pub at: Option<i64>,
}

impl Window {
    #[inline]
    pub fn reference(&self, g: &Grid, i: usize) -> i64 {
        self.at.unwrap_or_else(|| g.ts(i)).saturating_sub(self.offset)
    }

    /// The earliest time a window of this grid reaches back to (for selecting samples).
    pub fn earliest(&self, g: &Grid, lookback: i64) -> i64 {
        self.reference(g, 0)
            .saturating_sub(self.range)
            .saturating_sub(lookback)
    }
}

/// A duration in ms; durations beyond the `i64` range (`x[300000000y]`) saturate, which
/// selects the same samples as the true value would.
pub(crate) fn dur_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => dur_ms(d),
        Some(Offset::Neg(d)) => -dur_ms(d),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// Strips any number of parentheses.
pub(crate) fn unparen(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

/// Receives an instant vector one series at a time: its labels and its value per step.
pub(crate) type SeriesFn<'f> = dyn FnMut(&Labels, Vec<f64>) -> Result<()> + 'f;

/// Per-series work on a range-vector argument's samples, run on the query threads.
pub(crate) type RangeWork<'w, T> = dyn Fn(&[Sample], &Window) -> Result<Option<T>> + Sync + 'w;

/// The evaluation state of one query.
pub(crate) struct Ev<'a> {
    pub opts: &'a EngineOptions,
    store: &'a dyn Queryable,
    ctx: &'a QueryContext,
    deadline: Instant,
    pub q_start: i64,
    pub q_end: i64,
    pub stats: QueryStats,
    pub warnings: Vec<String>,
    /// Points held by values still alive while a sibling is evaluated (binary operators).
    pub pinned: u64,
    /// The same values' dense slots (one `f64` per step of each row; see [`Ev::charge_slots`]).
    pub pinned_slots: u64,
    buf: Vec<Sample>,
}

/// The query's cancellation flag and deadline, for loops that run where the evaluator is
/// out of reach (the query threads' per-series work): they check it every
/// [`Stop::EVERY`] steps, so a query ends within about its timeout however long each series
/// takes (a window of 30 days sorted at each of 11,000 steps, say).
#[derive(Clone, Copy)]
pub(crate) struct Stop<'a> {
    cancel: Option<&'a std::sync::atomic::AtomicBool>,
    deadline: Instant,
}

impl Stop<'_> {
    /// Steps between two checks: a check costs a clock read.
    pub const EVERY: usize = 256;

    /// Fails when the query is cancelled or past its deadline.
    pub fn check(&self, what: &'static str) -> Result<()> {
        if self
            .cancel
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        {
            return Err(QueryError::Canceled(what));
        }
        if Instant::now() > self.deadline {
            return Err(QueryError::Timeout(what));
        }
        Ok(())
    }

    /// Checks at every [`Stop::EVERY`]th step `i`.
    #[inline]
    pub fn at_step(&self, i: usize, what: &'static str) -> Result<()> {
        if i % Self::EVERY == Self::EVERY - 1 {
            self.check(what)
        } else {
            Ok(())
        }
    }
}

/// See [`Ev::budget`].
pub(crate) struct Budget {
    points: u64,
    slots: u64,
    max_points: u64,
    max_slots: u64,
}

impl Budget {
    /// Adds `points` present values in `slots` dense slots; fails over either limit.
    pub fn add(&mut self, points: u64, slots: u64) -> Result<()> {
        self.points = self.points.saturating_add(points);
        self.slots = self.slots.saturating_add(slots);
        if self.points > self.max_points || self.slots > self.max_slots {
            return Err(QueryError::Execution(TOO_MANY_SAMPLES.into()));
        }
        Ok(())
    }

    /// Adds the rows of a value held while another is built from it.
    pub fn add_rows(&mut self, rows: &[Row]) -> Result<()> {
        rows.iter().try_for_each(|r| self.add_row(&r.vals))
    }

    /// Adds a row of `vals`.
    pub fn add_row(&mut self, vals: &[f64]) -> Result<()> {
        let present = vals.iter().filter(|v| has(**v)).count() as u64;
        self.add(present, vals.len() as u64)
    }
}

const TOO_MANY_SAMPLES: &str = "query processing would load too many samples into memory in query execution";

impl<'a> Ev<'a> {
    /// The cancellation flag and deadline, for the query threads.
    pub fn stop(&self) -> Stop<'a> {
        Stop {
            cancel: self.ctx.cancel.as_deref(),
            deadline: self.deadline,
        }
    }

    /// Fails when the query is cancelled or past its deadline.
    pub fn check(&self, what: &'static str) -> Result<()> {
        self.stop().check(what)
    }

    /// Accounts for `points` more points held at once; fails over `max_samples`.
    pub fn charge(&mut self, points: u64) -> Result<()> {
        let held = self.pinned + points;
        self.stats.peak_points = self.stats.peak_points.max(held);
        if held > self.opts.max_samples {
            return Err(QueryError::Execution(TOO_MANY_SAMPLES.into()));
        }
        Ok(())
    }

    /// Accounts for `slots` more dense slots held at once: the memory estimate.
    ///
    /// Prometheus' `max_samples` counts points present; our rows hold one 8-byte slot per
    /// step whether a value is present or not, so a sparse result costs more memory here than
    /// its points say. Slots are charged against twice `max_samples`: a Prometheus point
    /// (timestamp and value) is 16 bytes, so both bound a query to the same bytes.
    pub fn charge_slots(&mut self, slots: u64) -> Result<()> {
        if self.pinned_slots.saturating_add(slots) > self.slot_limit() {
            return Err(QueryError::Execution(TOO_MANY_SAMPLES.into()));
        }
        Ok(())
    }

    /// The most dense slots a query may hold.
    pub fn slot_limit(&self) -> u64 {
        self.opts.max_samples.saturating_mul(2)
    }

    /// Charged before anything is evaluated over `g`: one row of it must fit (a subquery
    /// `x[30d:1ms]` has 2.6 billion steps, and is refused here, before a row is allocated).
    pub fn charge_grid(&mut self, g: &Grid) -> Result<()> {
        let n = u64::try_from(g.n).unwrap_or(u64::MAX);
        self.charge(n)?;
        self.charge_slots(n)
    }

    pub fn charge_rows(&mut self, rows: &[Row]) -> Result<()> {
        let n = rows.iter().map(Row::present).sum();
        self.charge(n)?;
        self.charge_slots(rows.iter().map(|r| r.vals.len() as u64).sum())
    }

    /// A running count of the rows of a value being built, for code that cannot reach the
    /// evaluator while it builds (it is borrowed by the series stream).
    pub fn budget(&self) -> Budget {
        Budget {
            points: self.pinned,
            slots: self.pinned_slots,
            max_points: self.opts.max_samples,
            max_slots: self.slot_limit(),
        }
    }

    pub fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        at.as_ref().map(|a| match a {
            AtModifier::Start => self.q_start,
            AtModifier::End => self.q_end,
            AtModifier::At(t) => system_time_ms(t),
        })
    }

    /// Evaluates `e` over `g`. Recursion grows the stack as it goes
    /// ([`crate::syntax::grow`]); the tree's depth is bounded at parse time.
    pub fn eval(&mut self, e: &Expr, g: &Grid) -> Result<Val> {
        crate::syntax::grow(|| self.eval_node(e, g))
    }

    fn eval_node(&mut self, e: &Expr, g: &Grid) -> Result<Val> {
        self.check("expression evaluation")?;
        match e {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; g.n])),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, g),
            Expr::Unary(u) => match self.eval(&u.expr, g)? {
                Val::Scalar(mut v) => {
                    v.iter_mut().for_each(|x| *x = -*x);
                    Ok(Val::Scalar(v))
                }
                Val::Vector(mut rows) => {
                    for r in &mut rows {
                        r.labels = drop_name(&r.labels);
                        for x in &mut r.vals {
                            if has(*x) {
                                *x = -*x;
                            }
                        }
                    }
                    Ok(Val::Vector(merge_same_labels(rows)?))
                }
                _ => Err(QueryError::Execution(
                    "unary expression only allowed on expressions of type scalar or instant vector".into(),
                )),
            },
            Expr::VectorSelector(vs) => {
                let mut rows = Vec::new();
                let mut budget = self.budget();
                self.select_vector(vs, g, false, &mut |l, v| {
                    budget.add_row(&v)?;
                    rows.push(Row {
                        labels: l.clone(),
                        vals: v,
                    });
                    Ok(())
                })?;
                self.charge_rows(&rows)?;
                Ok(Val::Vector(rows))
            }
            Expr::MatrixSelector(ms) => self.matrix_selector_raw(ms, g),
            Expr::Subquery(sq) => {
                let (start, end) = match self.at_ms(&sq.at) {
                    Some(at) => (at, at),
                    None => (g.start, g.end()),
                };
                let series = self.subquery_series(sq, start, end)?;
                Ok(Val::Matrix(
                    series
                        .into_iter()
                        .filter(|(_, p)| !p.is_empty())
                        .map(|(labels, points)| RangeSeries { labels, points })
                        .collect(),
                ))
            }
            Expr::Aggregate(a) => aggregate::eval(self, a, g),
            Expr::Binary(b) => binary::eval(self, b, g),
            Expr::Call(c) => functions::eval_call(self, c, g),
            Expr::Extension(_) => Err(QueryError::Execution(
                "extension expressions are not supported".into(),
            )),
        }
    }

    /// Evaluates an expression that must be a scalar (function and aggregation parameters).
    pub fn eval_scalar(&mut self, e: &Expr, g: &Grid) -> Result<Vec<f64>> {
        match self.eval(e, g)? {
            Val::Scalar(v) => Ok(v),
            _ => Err(QueryError::Execution(format!(
                "expected a scalar, got another type: {e}"
            ))),
        }
    }

    /// Evaluates an expression that must be an instant vector.
    pub fn eval_vector(&mut self, e: &Expr, g: &Grid) -> Result<Vec<Row>> {
        match self.eval(e, g)? {
            Val::Vector(v) => Ok(v),
            _ => Err(QueryError::Execution(format!(
                "expected an instant vector, got another type: {e}"
            ))),
        }
    }

    /// Calls `f` with each series of an instant-vector expression, one at a time where the
    /// expression allows (selectors, range functions of selectors), else after evaluating it.
    pub fn stream(&mut self, e: &Expr, g: &Grid, f: &mut SeriesFn<'_>) -> Result<()> {
        match unparen(e) {
            Expr::VectorSelector(vs) => self.select_vector(vs, g, false, f),
            Expr::Call(c) if functions::streamable(c) => functions::stream_rollup(self, c, g, f),
            other => {
                for r in self.eval_vector(other, g)? {
                    f(&r.labels, r.vals)?;
                }
                Ok(())
            }
        }
    }

    /// Opens a querier over `[mint, maxt]` and selects the series of `vs`.
    fn select(&mut self, vs: &VectorSelector, mint: i64, maxt: i64) -> Result<Vec<Series>> {
        let groups = selector_matchers(vs)?;
        let querier = self.store.querier(mint, maxt)?;
        let mut out: Vec<Series> = Vec::new();
        for (i, ms) in groups.iter().enumerate() {
            let mut s = querier.select(ms)?;
            if i == 0 {
                out = s;
            } else {
                out.append(&mut s);
            }
        }
        if groups.len() > 1 {
            out.sort_by(|a, b| a.labels().cmp(b.labels()));
            out.dedup_by(|a, b| a.labels() == b.labels());
        }
        if self.opts.max_series > 0 && out.len() as u64 > self.opts.max_series {
            return Err(QueryError::Execution(format!(
                "the selector {vs} matches {} series, more than the limit of {}",
                out.len(),
                self.opts.max_series
            )));
        }
        self.stats.series_selected += out.len() as u64;
        Ok(out)
    }

    /// The instant-vector selector: for each step the newest sample within the lookback
    /// delta, unless it is a staleness marker. With `timestamps`, the sample's timestamp in
    /// seconds instead of its value (`timestamp(x)`).
    pub fn select_vector(
        &mut self,
        vs: &VectorSelector,
        g: &Grid,
        timestamps: bool,
        f: &mut SeriesFn<'_>,
    ) -> Result<()> {
        if g.n == 0 {
            return Ok(());
        }
        let offset = offset_ms(&vs.offset);
        let at = self.at_ms(&vs.at);
        let lookback = self.opts.lookback_delta_ms;
        let w = Window { range: 0, offset, at };
        let (first, last) = (w.earliest(g, lookback), w.reference(g, g.n - 1));
        let series = self.select(vs, first, last)?;
        let g = *g;
        let stop = self.stop();
        let work = move |buf: &[Sample]| -> Result<Option<Vec<f64>>> {
            let value_at = |j: usize, r: i64| -> f64 {
                let Some(smp) = j.checked_sub(1).and_then(|k| buf.get(k)) else {
                    return ABSENT;
                };
                if smp.t < r.saturating_sub(lookback) || is_stale_nan(smp.v) {
                    ABSENT
                } else if timestamps {
                    smp.t as f64 / 1000.0
                } else {
                    norm(smp.v)
                }
            };
            let mut vals = vec![ABSENT; g.n];
            let mut any = false;
            if at.is_some() {
                let r = w.reference(&g, 0);
                let v = value_at(buf.partition_point(|s| s.t <= r), r);
                vals.fill(v);
                any = has(v);
            } else {
                let mut j = 0usize;
                for (i, slot) in vals.iter_mut().enumerate() {
                    stop.at_step(i, "selecting series")?;
                    let r = w.reference(&g, i);
                    while buf.get(j).is_some_and(|s| s.t <= r) {
                        j += 1;
                    }
                    let v = value_at(j, r);
                    any |= has(v);
                    *slot = v;
                }
            }
            Ok(any.then_some(vals))
        };
        self.par_map(&series, g.n, false, &work, &mut |_, s, vals| f(s.labels(), vals))
    }

    /// Runs `work` on the decoded samples of every series, on up to `query_threads`
    /// threads, and hands the results to `sink` on this thread in series order (so output
    /// order does not depend on scheduling). `sink` errors stop the workers.
    ///
    /// `row_slots` is the width of the row `work` allocates per series (0 if none): rows in
    /// flight between the workers and `sink` are not yet charged, so wide rows (subquery
    /// grids) are made one at a time on this thread, each charged by `sink` before the next.
    pub fn par_map<T: Send>(
        &mut self,
        series: &[Series],
        row_slots: usize,
        drop_stale: bool,
        work: &(dyn Fn(&[Sample]) -> Result<Option<T>> + Sync),
        sink: &mut dyn FnMut(&mut Self, &Series, T) -> Result<()>,
    ) -> Result<()> {
        const CHUNK: usize = 32;
        let threads = self.opts.query_threads.max(1);
        // Batches in flight: one per thread being filled, and the channel's.
        let in_flight = (threads * 5 * CHUNK) as u64;
        let wide = (row_slots as u64).saturating_mul(in_flight) > self.slot_limit() / 8;
        if threads == 1 || series.len() < 4 * CHUNK || wide {
            let mut buf = std::mem::take(&mut self.buf);
            let r = (|| {
                for s in series {
                    self.check("selecting series")?;
                    let w = decode(s, drop_stale, &mut buf);
                    self.stats.samples_loaded += buf.len() as u64;
                    if let Some(w) = w {
                        self.warnings.push(w);
                    }
                    self.charge(buf.len() as u64)?;
                    if let Some(t) = work(&buf)? {
                        sink(self, s, t)?;
                    }
                }
                Ok(())
            })();
            self.buf = buf;
            return r;
        }
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        type Batch<T> = (usize, Result<Vec<(usize, T)>>, Vec<String>, u64, u64);
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let nchunks = series.len().div_ceil(CHUNK);
        let query_stop = self.stop();
        let check = |what| query_stop.check(what);
        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Batch<T>>(threads * 4);
            for _ in 0..threads {
                let tx = tx.clone();
                let (next, stop, check) = (&next, &stop, &check);
                scope.spawn(move || {
                    let mut buf = Vec::new();
                    loop {
                        let c = next.fetch_add(1, Ordering::Relaxed);
                        if c >= nchunks || stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let (mut warnings, mut loaded, mut peak) = (Vec::new(), 0u64, 0u64);
                        let res = (|| {
                            check("selecting series")?;
                            let mut out = Vec::new();
                            let lo = c * CHUNK;
                            for (k, s) in series.iter().skip(lo).take(CHUNK).enumerate() {
                                if let Some(w) = decode(s, drop_stale, &mut buf) {
                                    warnings.push(w);
                                }
                                loaded += buf.len() as u64;
                                peak = peak.max(buf.len() as u64);
                                if let Some(t) = work(&buf)? {
                                    out.push((lo + k, t));
                                }
                            }
                            Ok(out)
                        })();
                        if tx.send((c, res, warnings, loaded, peak)).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(tx);
            let mut pending: std::collections::BTreeMap<usize, Batch<T>> = Default::default();
            let mut want = 0usize;
            let result = (|| -> Result<()> {
                for batch in rx.iter() {
                    pending.insert(batch.0, batch);
                    while let Some((_, res, warnings, loaded, peak)) = pending.remove(&want) {
                        want += 1;
                        self.warnings.extend(warnings);
                        self.stats.samples_loaded += loaded;
                        self.charge(peak * threads as u64)?;
                        for (i, t) in res? {
                            if let Some(s) = series.get(i) {
                                sink(self, s, t)?;
                            }
                        }
                    }
                }
                Ok(())
            })();
            if result.is_err() {
                stop.store(true, Ordering::Relaxed);
                drop(rx);
            }
            result
        })
    }

    /// Runs `work` on each series of a range-vector argument (a range selector or a
    /// subquery) — its samples covering every window of the grid, staleness markers
    /// removed, and the window definition — and hands the results to `sink` in series order.
    /// Range selectors run on the query threads ([`Ev::par_map`]).
    pub fn map_range_series<T: Send>(
        &mut self,
        arg: &Expr,
        g: &Grid,
        work: &RangeWork<'_, T>,
        sink: &mut dyn FnMut(&mut Self, &Labels, T) -> Result<()>,
    ) -> Result<()> {
        match unparen(arg) {
            Expr::MatrixSelector(ms) => {
                let vs = &ms.vs;
                let w = Window {
                    range: dur_ms(&ms.range),
                    offset: offset_ms(&vs.offset),
                    at: self.at_ms(&vs.at),
                };
                if g.n == 0 {
                    return Ok(());
                }
                let (first, last) = (w.earliest(g, 0), w.reference(g, g.n - 1));
                let series = self.select(vs, first, last)?;
                self.par_map(
                    &series,
                    g.n,
                    true,
                    &|smp: &[Sample]| work(smp, &w),
                    &mut |ev, s, t| sink(ev, s.labels(), t),
                )
            }
            Expr::Subquery(sq) => {
                let at = self.at_ms(&sq.at);
                let w = Window {
                    range: dur_ms(&sq.range),
                    offset: offset_ms(&sq.offset),
                    at,
                };
                let (start, end) = match at {
                    Some(a) => (a, a),
                    None => (g.start, g.end()),
                };
                let series = self.subquery_series(sq, start, end)?;
                for (labels, points) in &series {
                    self.check("evaluating a subquery")?;
                    if let Some(t) = work(points, &w)? {
                        sink(self, labels, t)?;
                    }
                }
                Ok(())
            }
            other => Err(QueryError::Execution(format!(
                "expected a range vector, got {other}"
            ))),
        }
    }

    /// A range selector at the top of an instant query: the raw samples of each series in
    /// `[t - offset - range, t - offset]`.
    fn matrix_selector_raw(&mut self, ms: &MatrixSelector, g: &Grid) -> Result<Val> {
        if g.n != 1 {
            return Err(QueryError::BadParam(
                "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector"
                    .into(),
            ));
        }
        let mut out = Vec::new();
        let work = |smp: &[Sample], w: &Window| -> Result<Option<Vec<Sample>>> {
            let r = w.reference(g, 0);
            let lo = smp.partition_point(|s| s.t < r.saturating_sub(w.range));
            let hi = smp.partition_point(|s| s.t <= r);
            Ok(smp
                .get(lo..hi)
                .filter(|s| !s.is_empty())
                .map(|s| s.iter().map(|s| Sample::new(s.t, norm(s.v))).collect()))
        };
        self.map_range_series(
            &Expr::MatrixSelector(ms.clone()),
            g,
            &work,
            &mut |ev, l, points| {
                ev.charge(points.len() as u64)?;
                out.push(RangeSeries {
                    labels: l.clone(),
                    points,
                });
                Ok(())
            },
        )?;
        Ok(Val::Matrix(out))
    }

    /// Evaluates a subquery's inner expression for outer evaluation times `start..=end` and
    /// returns each resulting series as samples on the subquery's own grid: from the first
    /// multiple of the step at or after `start - offset - range` to `end - offset`.
    pub fn subquery_series(
        &mut self,
        sq: &SubqueryExpr,
        start: i64,
        end: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>> {
        let offset = offset_ms(&sq.offset);
        let range = dur_ms(&sq.range);
        let step = match &sq.step {
            Some(s) => dur_ms(s),
            None => self.opts.default_subquery_step_ms,
        };
        if step <= 0 {
            return Err(QueryError::Execution("subquery step must be positive".into()));
        }
        let lo = start.saturating_sub(offset).saturating_sub(range);
        let mut sub_start = lo.div_euclid(step).saturating_mul(step);
        if sub_start < lo {
            sub_start = sub_start.saturating_add(step);
        }
        let sub = Grid::new(sub_start, end.saturating_sub(offset), step);
        if sub.n == 0 {
            return Ok(Vec::new());
        }
        // Before the inner expression allocates a row of the subquery's grid.
        self.charge_grid(&sub)?;
        let to_samples = |vals: &[f64]| -> Vec<Sample> {
            vals.iter()
                .enumerate()
                .filter(|(_, v)| has(**v))
                .map(|(i, v)| Sample::new(sub.ts(i), *v))
                .collect()
        };
        match self.eval(&sq.expr, &sub)? {
            Val::Vector(rows) => Ok(rows
                .into_iter()
                .map(|r| {
                    let s = to_samples(&r.vals);
                    (r.labels, s)
                })
                .collect()),
            Val::Scalar(v) => Ok(vec![(Labels::empty(), to_samples(&v))]),
            _ => Err(QueryError::Execution(
                "subquery is only allowed on instant vector".into(),
            )),
        }
    }
}

/// Decodes a series into `buf`; a chunk that fails to decode becomes a warning (its
/// samples are missing), as a storage warning does in Prometheus.
fn decode(s: &Series, drop_stale: bool, buf: &mut Vec<Sample>) -> Option<String> {
    buf.clear();
    let mut it = s.iter();
    let w = it.drain_into(buf).map(|e| format!("{}: {e}", s.labels()));
    if drop_stale {
        buf.retain(|x| !is_stale_nan(x.v));
    }
    w
}

/// The selector's matchers as our matcher type: one group, or several for Prometheus 3's
/// `{a="1" or b="2"}`. The metric name becomes a `__name__` matcher.
pub fn selector_matchers(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>> {
    let conv = |m: &promql_parser::label::Matcher| -> Result<Matcher> {
        let op = match m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::Regex,
            PMatchOp::NotRe(_) => MatchOp::NotRegex,
        };
        Matcher::new(op, m.name.clone(), m.value.clone())
            .map_err(|e| QueryError::Parse(format!("parse error: {e}")))
    };
    let name = vs
        .name
        .as_ref()
        .map(|n| Matcher::equal(metricsd_model::METRIC_NAME, n.clone()));
    let mut groups = Vec::new();
    let base: Vec<Matcher> = vs.matchers.matchers.iter().map(conv).collect::<Result<_>>()?;
    if vs.matchers.or_matchers.is_empty() {
        groups.push(base);
    } else {
        for g in &vs.matchers.or_matchers {
            let mut ms: Vec<Matcher> = base.clone();
            for m in g {
                ms.push(conv(m)?);
            }
            groups.push(ms);
        }
    }
    if let Some(n) = name {
        for g in &mut groups {
            g.push(n.clone());
        }
    }
    Ok(groups)
}

/// The labels without `__name__`.
pub(crate) fn drop_name(l: &Labels) -> Labels {
    if l.metric_name().is_none() {
        return l.clone();
    }
    let mut b = l.builder();
    b.del(metricsd_model::METRIC_NAME);
    b.build()
}

pub(crate) const SAME_LABELSET: &str = "vector cannot contain metrics with the same labelset";

/// Merges rows with equal labels (they hold values at different steps); two values at the
/// same step are Prometheus' "vector cannot contain metrics with the same labelset".
pub(crate) fn merge_same_labels(rows: Vec<Row>) -> Result<Vec<Row>> {
    if rows.len() < 2 {
        return Ok(rows);
    }
    let mut idx: HashMap<Labels, usize> = HashMap::with_capacity(rows.len());
    let mut out: Vec<Row> = Vec::with_capacity(rows.len());
    for r in rows {
        match idx.get(&r.labels).and_then(|&i| out.get_mut(i)) {
            Some(dst) => {
                for (d, s) in dst.vals.iter_mut().zip(&r.vals) {
                    if has(*s) {
                        if has(*d) {
                            return Err(QueryError::Execution(SAME_LABELSET.into()));
                        }
                        *d = *s;
                    }
                }
            }
            None => {
                idx.insert(r.labels.clone(), out.len());
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// Runs a query over the grid `start..=end` by `step`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    opts: &EngineOptions,
    store: &dyn Queryable,
    expr: &Expr,
    start: i64,
    end: i64,
    step: i64,
    instant: bool,
    ctx: &QueryContext,
) -> Result<QueryResult> {
    let mut deadline = Instant::now() + opts.timeout;
    if let Some(d) = ctx.deadline {
        deadline = deadline.min(d);
    }
    let mut ev = Ev {
        opts,
        store,
        ctx,
        deadline,
        q_start: start,
        q_end: end,
        stats: QueryStats::default(),
        warnings: Vec::new(),
        pinned: 0,
        pinned_slots: 0,
        buf: Vec::new(),
    };
    if step <= 0 {
        return Err(QueryError::BadParam("the query step must be positive".into()));
    }
    let g = Grid::new(start, end, step);
    ev.charge_grid(&g)?;
    let v = ev.eval(expr, &g)?;
    let value = match v {
        Val::Scalar(vals) => {
            if instant {
                Value::Scalar {
                    t: start,
                    v: vals.first().copied().unwrap_or(f64::NAN),
                }
            } else {
                Value::Matrix(vec![RangeSeries {
                    labels: Labels::empty(),
                    points: vals
                        .iter()
                        .enumerate()
                        .map(|(i, v)| Sample::new(g.ts(i), *v))
                        .collect(),
                }])
            }
        }
        Val::Str(s) => Value::String { t: start, s },
        Val::Vector(rows) => {
            if instant {
                Value::Vector(
                    rows.into_iter()
                        .filter_map(|r| {
                            let v = r.vals.first().copied().filter(|v| has(*v))?;
                            Some(VectorSample {
                                t: start,
                                v,
                                labels: r.labels,
                            })
                        })
                        .collect(),
                )
            } else {
                let mut m: Vec<RangeSeries> = rows
                    .into_iter()
                    .filter_map(|r| {
                        let points: Vec<Sample> = r
                            .vals
                            .iter()
                            .enumerate()
                            .filter(|(_, v)| has(**v))
                            .map(|(i, v)| Sample::new(g.ts(i), *v))
                            .collect();
                        (!points.is_empty()).then_some(RangeSeries {
                            labels: r.labels,
                            points,
                        })
                    })
                    .collect();
                m.sort_by(|a, b| a.labels.cmp(&b.labels));
                Value::Matrix(m)
            }
        }
        Val::Matrix(mut m) => {
            m.sort_by(|a, b| a.labels.cmp(&b.labels));
            Value::Matrix(m)
        }
    };
    Ok(QueryResult {
        value,
        warnings: ev.warnings,
        stats: ev.stats,
    })
}
