//! PromQL functions: range functions ("rollups") over range vectors, and instant-vector
//! functions, with Prometheus 2.x semantics.

use std::collections::{HashMap, HashSet};

use metricsd_model::{Labels, Sample, is_valid_label_name};
use promql_parser::parser::{Call, Expr};

use crate::error::QueryError;
use crate::eval::{
    ABSENT, Ev, Grid, Result, Row, SAME_LABELSET, Stop, Val, Window, at_step, drop_name, has,
    merge_same_labels, unparen,
};

/// A function over the samples of one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rollup {
    Rate,
    Increase,
    Delta,
    Irate,
    Idelta,
    Deriv,
    PredictLinear,
    HoltWinters,
    Resets,
    Changes,
    AvgOverTime,
    MinOverTime,
    MaxOverTime,
    SumOverTime,
    CountOverTime,
    LastOverTime,
    PresentOverTime,
    QuantileOverTime,
    StddevOverTime,
    StdvarOverTime,
    MadOverTime,
}

impl Rollup {
    fn from_name(name: &str) -> Option<Rollup> {
        Some(match name {
            "rate" => Rollup::Rate,
            "increase" => Rollup::Increase,
            "delta" => Rollup::Delta,
            "irate" => Rollup::Irate,
            "idelta" => Rollup::Idelta,
            "deriv" => Rollup::Deriv,
            "predict_linear" => Rollup::PredictLinear,
            "holt_winters" | "double_exponential_smoothing" => Rollup::HoltWinters,
            "resets" => Rollup::Resets,
            "changes" => Rollup::Changes,
            "avg_over_time" => Rollup::AvgOverTime,
            "min_over_time" => Rollup::MinOverTime,
            "max_over_time" => Rollup::MaxOverTime,
            "sum_over_time" => Rollup::SumOverTime,
            "count_over_time" => Rollup::CountOverTime,
            "last_over_time" => Rollup::LastOverTime,
            "present_over_time" => Rollup::PresentOverTime,
            "quantile_over_time" => Rollup::QuantileOverTime,
            "stddev_over_time" => Rollup::StddevOverTime,
            "stdvar_over_time" => Rollup::StdvarOverTime,
            "mad_over_time" => Rollup::MadOverTime,
            _ => return None,
        })
    }

    /// The index of the range-vector argument.
    fn range_arg(self) -> usize {
        match self {
            Rollup::QuantileOverTime => 1,
            _ => 0,
        }
    }

    /// How many scalar arguments it takes besides the range vector.
    fn scalar_args(self) -> usize {
        match self {
            Rollup::PredictLinear | Rollup::QuantileOverTime => 1,
            Rollup::HoltWinters => 2,
            _ => 0,
        }
    }
}

/// Whether a call can be streamed series by series: a name-dropping range function of a
/// range selector whose other arguments are literals.
pub(crate) fn streamable(c: &Call) -> bool {
    let Some(r) = Rollup::from_name(c.func.name) else {
        return false;
    };
    r != Rollup::LastOverTime
        && c.args
            .args
            .get(r.range_arg())
            .is_some_and(|a| matches!(unparen(a), Expr::MatrixSelector(_)))
        && c.args
            .args
            .iter()
            .enumerate()
            .all(|(i, a)| i == r.range_arg() || matches!(unparen(a), Expr::NumberLiteral(_)))
}

/// Argument `i` of a call. The parser checks the number of arguments; a call it let through
/// with too few is refused as it refuses one.
fn arg(c: &Call, i: usize) -> Result<&Expr> {
    c.args.args.get(i).map(|a| &**a).ok_or_else(|| {
        QueryError::Parse(format!(
            "parse error: expected at least {} argument(s) in call to \"{}\", got {}",
            i + 1,
            c.func.name,
            c.args.args.len()
        ))
    })
}

/// Evaluates the scalar arguments of a range function, one value per step; checks there
/// are as many as the function reads ([`param`] relies on it).
fn rollup_params(ev: &mut Ev, c: &Call, r: Rollup, g: &Grid) -> Result<Vec<Vec<f64>>> {
    if c.args.args.len() != r.scalar_args() + 1 {
        return Err(QueryError::Parse(format!(
            "parse error: expected {} argument(s) in call to \"{}\", got {}",
            r.scalar_args() + 1,
            c.func.name,
            c.args.args.len()
        )));
    }
    let mut out = Vec::new();
    for (i, a) in c.args.args.iter().enumerate() {
        if i != r.range_arg() {
            out.push(ev.eval_scalar(a, g)?);
        }
    }
    Ok(out)
}

/// Scalar argument `k` of a range function at step `step`.
#[allow(
    clippy::indexing_slicing,
    reason = "`rollup_params` checked the function has its `k`-th scalar argument, and a scalar holds one value per step of the grid `step` is a step of"
)]
#[inline]
fn param(params: &[Vec<f64>], k: usize, step: usize) -> f64 {
    params[k][step]
}

/// holt_winters' factors must lie in (0, 1). Prometheus checks them at each step where the
/// series has samples in its window, so a query over no data does not fail.
fn check_holt_winters(params: &[Vec<f64>], smp: &[Sample], w: &Window, g: &Grid, stop: &Stop) -> Result<()> {
    let bad = |f: f64| f <= 0.0 || f >= 1.0;
    if !params.iter().flatten().any(|f| bad(*f)) {
        return Ok(());
    }
    let mut present = vec![ABSENT; g.n];
    rollup_row(Rollup::PresentOverTime, smp, w, g, &[], &mut present, stop)?;
    for (i, p) in present.iter().enumerate() {
        if !has(*p) {
            continue;
        }
        for (k, what, name) in [(0usize, "smoothing", "sf"), (1, "trend", "tf")] {
            let f = param(params, k, i);
            if bad(f) {
                return Err(QueryError::Execution(format!(
                    "invalid {what} factor. Expected: 0 < {name} < 1, got: {}",
                    go_f(f)
                )));
            }
        }
    }
    Ok(())
}

/// Go's `%f`.
fn go_f(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{f:.6}")
    }
}

/// Computes range function `r` at every step of `g` into `out`; whether any step has a value.
/// Checks `stop` as it goes: one window can hold many samples.
#[allow(
    clippy::indexing_slicing,
    reason = "`lo` and `hi` only advance while they index `smp`, and `lo < hi` where they slice it; `resets` has one entry per sample when read"
)]
fn rollup_row(
    r: Rollup,
    smp: &[Sample],
    w: &Window,
    g: &Grid,
    params: &[Vec<f64>],
    out: &mut [f64],
    stop: &Stop,
) -> Result<bool> {
    let mut any = false;
    // predict_linear depends on the evaluation time even over a fixed window.
    if w.at.is_some() && r != Rollup::PredictLinear {
        // Every step sees the same window: compute once. Prometheus evaluates such a
        // step-invariant expression at the query's first step.
        let v = window_value(r, smp, w, g, 0, params);
        out.fill(v);
        return Ok(has(v));
    }
    if w.at.is_some() {
        for (i, slot) in out.iter_mut().enumerate() {
            stop.at_step(i, "evaluating a range function")?;
            *slot = window_value(r, smp, w, g, i, params);
            any |= has(*slot);
        }
        return Ok(any);
    }
    // For rate and increase: resets[k] counts the counter resets among samples 1..=k, so a
    // window without one skips the reset scan.
    let counts_resets = matches!(r, Rollup::Rate | Rollup::Increase);
    let mut resets: Vec<u32> = Vec::new();
    if counts_resets {
        resets.reserve(smp.len());
        let mut n = 0u32;
        for (k, x) in smp.iter().enumerate() {
            if k > 0 && x.v < smp[k - 1].v {
                n += 1;
            }
            resets.push(n);
        }
    }
    let (mut lo, mut hi) = (0usize, 0usize);
    for (i, slot) in out.iter_mut().enumerate() {
        stop.at_step(i, "evaluating a range function")?;
        let re = w.reference(g, i);
        let rs = re.saturating_sub(w.range);
        while lo < smp.len() && smp[lo].t < rs {
            lo += 1;
        }
        if hi < lo {
            hi = lo;
        }
        while hi < smp.len() && smp[hi].t <= re {
            hi += 1;
        }
        let v = if lo < hi {
            let no_resets = counts_resets && resets[hi - 1] == resets[lo];
            apply(r, &smp[lo..hi], rs, re, w.range, g.ts(i), params, i, no_resets)
        } else {
            ABSENT
        };
        any |= has(v);
        *slot = v;
    }
    Ok(any)
}

fn window_value(r: Rollup, smp: &[Sample], w: &Window, g: &Grid, i: usize, params: &[Vec<f64>]) -> f64 {
    let re = w.reference(g, i);
    let rs = re.saturating_sub(w.range);
    let lo = smp.partition_point(|s| s.t < rs);
    let hi = smp.partition_point(|s| s.t <= re);
    match smp.get(lo..hi) {
        Some(s) if !s.is_empty() => apply(r, s, rs, re, w.range, g.ts(i), params, i, false),
        _ => ABSENT,
    }
}

/// Kahan-Babuška summation step, as Prometheus does it.
#[inline]
fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// One window's value; `ABSENT` when the function yields nothing.
#[allow(clippy::too_many_arguments)]
fn apply(
    r: Rollup,
    s: &[Sample],
    range_start: i64,
    range_end: i64,
    range: i64,
    ts: i64,
    params: &[Vec<f64>],
    step: usize,
    no_resets: bool,
) -> f64 {
    match r {
        Rollup::Rate => extrapolated_rate(s, range_start, range_end, range, true, true, !no_resets),
        Rollup::Increase => extrapolated_rate(s, range_start, range_end, range, true, false, !no_resets),
        Rollup::Delta => extrapolated_rate(s, range_start, range_end, range, false, false, false),
        Rollup::Irate | Rollup::Idelta => {
            let [.., prev, last] = s else {
                return ABSENT;
            };
            let is_rate = r == Rollup::Irate;
            let mut v = if is_rate && last.v < prev.v {
                last.v
            } else {
                last.v - prev.v
            };
            let dt = last.t - prev.t;
            if dt == 0 {
                return ABSENT;
            }
            if is_rate {
                v /= dt as f64 / 1000.0;
            }
            v
        }
        Rollup::Deriv => {
            let [first, _, ..] = s else {
                return ABSENT;
            };
            linear_regression(s, first.t).0
        }
        Rollup::PredictLinear => {
            if s.len() < 2 {
                return ABSENT;
            }
            let (slope, intercept) = linear_regression(s, ts);
            slope * param(params, 0, step) + intercept
        }
        Rollup::HoltWinters => {
            let [first, second, ..] = s else {
                return ABSENT;
            };
            let (sf, tf) = (param(params, 0, step), param(params, 1, step));
            let mut s0 = 0.0;
            let mut s1 = first.v;
            let mut b = second.v - first.v;
            for (i, smp) in s.iter().enumerate().skip(1) {
                let x = sf * smp.v;
                // calcTrendValue(i-1, ...)
                b = if i - 1 == 0 {
                    b
                } else {
                    tf * (s1 - s0) + (1.0 - tf) * b
                };
                let y = (1.0 - sf) * (s1 + b);
                s0 = s1;
                s1 = x + y;
            }
            s1
        }
        Rollup::Resets => {
            let mut n = 0;
            for (prev, cur) in s.iter().zip(s.iter().skip(1)) {
                if cur.v < prev.v {
                    n += 1;
                }
            }
            n as f64
        }
        Rollup::Changes => {
            let mut n = 0;
            for (prev, cur) in s.iter().zip(s.iter().skip(1)) {
                let (p, c) = (prev.v, cur.v);
                if c != p && !(c.is_nan() && p.is_nan()) {
                    n += 1;
                }
            }
            n as f64
        }
        Rollup::AvgOverTime => {
            let (mut mean, mut count, mut c) = (0.0f64, 0.0f64, 0.0f64);
            for smp in s {
                count += 1.0;
                if mean.is_infinite() {
                    if smp.v.is_infinite() && (mean > 0.0) == (smp.v > 0.0) {
                        continue;
                    }
                    if !smp.v.is_infinite() && !smp.v.is_nan() {
                        continue;
                    }
                }
                (mean, c) = kahan_inc(smp.v / count - mean / count, mean, c);
            }
            if mean.is_infinite() { mean } else { mean + c }
        }
        Rollup::MinOverTime => {
            let Some(first) = s.first() else {
                return ABSENT;
            };
            let mut m = first.v;
            for smp in s {
                if smp.v < m || m.is_nan() {
                    m = smp.v;
                }
            }
            m
        }
        Rollup::MaxOverTime => {
            let Some(first) = s.first() else {
                return ABSENT;
            };
            let mut m = first.v;
            for smp in s {
                if smp.v > m || m.is_nan() {
                    m = smp.v;
                }
            }
            m
        }
        Rollup::SumOverTime => {
            let (mut sum, mut c) = (0.0, 0.0);
            for smp in s {
                (sum, c) = kahan_inc(smp.v, sum, c);
            }
            if f64::is_infinite(sum) { sum } else { sum + c }
        }
        Rollup::CountOverTime => s.len() as f64,
        Rollup::LastOverTime => s.last().map_or(ABSENT, |x| x.v),
        Rollup::PresentOverTime => 1.0,
        Rollup::QuantileOverTime => {
            let mut v: Vec<f64> = s.iter().map(|x| x.v).collect();
            quantile(param(params, 0, step), &mut v)
        }
        Rollup::StddevOverTime | Rollup::StdvarOverTime => {
            let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for smp in s {
                count += 1.0;
                let delta = smp.v - (mean + c_mean);
                (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
                (aux, c_aux) = kahan_inc(delta * (smp.v - (mean + c_mean)), aux, c_aux);
            }
            let var = (aux + c_aux) / count;
            if r == Rollup::StddevOverTime {
                var.sqrt()
            } else {
                var
            }
        }
        Rollup::MadOverTime => {
            let mut v: Vec<f64> = s.iter().map(|x| x.v).collect();
            let median = quantile(0.5, &mut v);
            let mut dev: Vec<f64> = s.iter().map(|x| (x.v - median).abs()).collect();
            quantile(0.5, &mut dev)
        }
    }
}

/// rate/increase/delta with Prometheus' extrapolation to the window's edges.
///
/// `scan_resets` is false when the caller knows the window holds no counter reset (the
/// common case), which skips the O(window) scan without changing the result.
#[allow(clippy::too_many_arguments)]
fn extrapolated_rate(
    s: &[Sample],
    range_start: i64,
    range_end: i64,
    range: i64,
    is_counter: bool,
    is_rate: bool,
    scan_resets: bool,
) -> f64 {
    let [first, .., last] = s else {
        return ABSENT;
    };
    let mut result = last.v - first.v;
    if scan_resets {
        let mut prev = first.v;
        for smp in s.iter().skip(1) {
            if smp.v < prev {
                result += prev;
            }
            prev = smp.v;
        }
    }
    let mut duration_to_start = (first.t - range_start) as f64 / 1000.0;
    let duration_to_end = (range_end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg_between = sampled / (s.len() - 1) as f64;
    if is_counter && result > 0.0 && first.v >= 0.0 {
        let duration_to_zero = sampled * (first.v / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    let threshold = avg_between * 1.1;
    let mut interval = sampled;
    interval += if duration_to_start < threshold {
        duration_to_start
    } else {
        avg_between / 2.0
    };
    interval += if duration_to_end < threshold {
        duration_to_end
    } else {
        avg_between / 2.0
    };
    let mut factor = interval / sampled;
    if is_rate {
        factor /= range as f64 / 1000.0;
    }
    result * factor
}

/// Least-squares fit with Kahan sums; `x` in seconds relative to `intercept_time`.
fn linear_regression(s: &[Sample], intercept_time: i64) -> (f64, f64) {
    let (mut n, mut sum_x, mut c_x, mut sum_y, mut c_y) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut c_xy, mut sum_x2, mut c_x2) = (0.0, 0.0, 0.0, 0.0);
    let init_y = s.first().map_or(f64::NAN, |x| x.v);
    let mut const_y = true;
    for (i, smp) in s.iter().enumerate() {
        if const_y && i > 0 && smp.v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (smp.t - intercept_time) as f64 / 1e3;
        (sum_x, c_x) = kahan_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_inc(smp.v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_inc(x * smp.v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sum_x, sum_y, sum_xy, sum_x2) = (sum_x + c_x, sum_y + c_y, sum_xy + c_xy, sum_x2 + c_x2);
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// Prometheus' `quantile`: linear interpolation between closest ranks, NaN sorted first.
pub(crate) fn quantile(q: f64, v: &mut [f64]) -> f64 {
    if v.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    v.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = v.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    match (v.get(lower as usize), v.get(upper as usize)) {
        (Some(lo), Some(hi)) => lo * (1.0 - weight) + hi * weight,
        _ => f64::NAN,
    }
}

/// Streams a name-dropping range function of a range selector, series by series.
pub(crate) fn stream_rollup(
    ev: &mut Ev,
    c: &Call,
    g: &Grid,
    f: &mut crate::eval::SeriesFn<'_>,
) -> Result<()> {
    let r = Rollup::from_name(c.func.name).expect("streamable checked the name");
    let params = rollup_params(ev, c, r, g)?;
    let arg = arg(c, r.range_arg())?;
    // Dropping the name can make two series equal only if the selector may match several
    // names; then remember what was emitted.
    let check_dups = !selects_one_name(arg);
    let mut seen: HashSet<Labels> = HashSet::new();
    let g = *g;
    let stop = ev.stop();
    let work = |smp: &[Sample], w: &Window| -> Result<Option<Vec<f64>>> {
        if r == Rollup::HoltWinters {
            check_holt_winters(&params, smp, w, &g, &stop)?;
        }
        let mut out = vec![ABSENT; g.n];
        Ok(rollup_row(r, smp, w, &g, &params, &mut out, &stop)?.then_some(out))
    };
    ev.map_range_series(arg, &g, &work, &mut |_, labels, out| {
        let l = drop_name(labels);
        if check_dups && !seen.insert(l.clone()) {
            return Err(QueryError::Execution(SAME_LABELSET.into()));
        }
        f(&l, out)
    })
}

fn selects_one_name(e: &Expr) -> bool {
    match unparen(e) {
        Expr::MatrixSelector(ms) => {
            ms.vs.name.is_some()
                || ms.vs.matchers.matchers.iter().any(|m| {
                    m.name == metricsd_model::METRIC_NAME
                        && matches!(m.op, promql_parser::label::MatchOp::Equal)
                })
        }
        _ => false,
    }
}

/// Evaluates a range function over any range-vector argument.
fn eval_rollup(ev: &mut Ev, c: &Call, r: Rollup, g: &Grid) -> Result<Val> {
    let params = rollup_params(ev, c, r, g)?;
    let arg = arg(c, r.range_arg())?;
    let mut rows = Vec::new();
    let keep_name = r == Rollup::LastOverTime;
    let gg = *g;
    let mut budget = ev.budget();
    let stop = ev.stop();
    let work = |smp: &[Sample], w: &Window| -> Result<Option<Vec<f64>>> {
        if r == Rollup::HoltWinters {
            check_holt_winters(&params, smp, w, &gg, &stop)?;
        }
        let mut out = vec![ABSENT; gg.n];
        Ok(rollup_row(r, smp, w, &gg, &params, &mut out, &stop)?.then_some(out))
    };
    ev.map_range_series(arg, g, &work, &mut |ev, labels, vals| {
        let labels = if keep_name {
            labels.clone()
        } else {
            drop_name(labels)
        };
        budget.add_row(&vals)?;
        let row = Row { labels, vals };
        ev.charge(row.present())?;
        rows.push(row);
        Ok(())
    })?;
    // Prometheus rejects equal label sets among a range function's series outright.
    let mut seen: HashSet<&Labels> = HashSet::with_capacity(rows.len());
    for r in &rows {
        if !seen.insert(&r.labels) {
            return Err(QueryError::Execution(SAME_LABELSET.into()));
        }
    }
    Ok(Val::Vector(rows))
}

/// `absent_over_time`: 1 at the steps where no series has a sample in its window.
fn absent_over_time(ev: &mut Ev, c: &Call, g: &Grid) -> Result<Val> {
    let arg = arg(c, 0)?;
    let mut seen = vec![false; g.n];
    let gg = *g;
    let stop = ev.stop();
    let work = |smp: &[Sample], w: &Window| -> Result<Option<Vec<f64>>> {
        let mut out = vec![ABSENT; gg.n];
        rollup_row(Rollup::PresentOverTime, smp, w, &gg, &[], &mut out, &stop)?;
        Ok(Some(out))
    };
    ev.map_range_series(arg, g, &work, &mut |_, _, out| {
        for (s, v) in seen.iter_mut().zip(&out) {
            *s |= has(*v);
        }
        Ok(())
    })?;
    let vals: Vec<f64> = seen.iter().map(|s| if *s { ABSENT } else { 1.0 }).collect();
    if vals.iter().all(|v| !has(*v)) {
        return Ok(Val::Vector(Vec::new()));
    }
    let labels = match unparen(arg) {
        Expr::MatrixSelector(ms) => absent_labels(&ms.vs),
        _ => Labels::empty(),
    };
    Ok(Val::Vector(vec![Row { labels, vals }]))
}

/// The labels `absent()` reports: those of equality matchers; a name matched by another
/// matcher or twice is left out (Prometheus' historic behaviour).
fn absent_labels(vs: &promql_parser::parser::VectorSelector) -> Labels {
    let mut set: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for m in &vs.matchers.matchers {
        if m.name == metricsd_model::METRIC_NAME {
            continue;
        }
        if matches!(m.op, promql_parser::label::MatchOp::Equal) && !seen.contains(m.name.as_str()) {
            set.insert(&m.name, &m.value);
            seen.insert(&m.name);
        } else {
            set.remove(m.name.as_str());
        }
    }
    Labels::from_pairs(set)
}

fn string_arg(e: &Expr) -> Result<&str> {
    match unparen(e) {
        Expr::StringLiteral(s) => Ok(&s.val),
        other => Err(QueryError::Execution(format!(
            "expected a string literal, got {other}"
        ))),
    }
}

/// Applies `f` to every value of every row, dropping the metric name.
fn map_values(rows: Vec<Row>, mut f: impl FnMut(f64, usize) -> f64) -> Result<Vec<Row>> {
    let rows = rows
        .into_iter()
        .map(|mut r| {
            r.labels = drop_name(&r.labels);
            for (i, v) in r.vals.iter_mut().enumerate() {
                if has(*v) {
                    *v = f(*v, i);
                }
            }
            r
        })
        .collect();
    merge_same_labels(rows)
}

fn math_fn(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "rad" => |v| v * std::f64::consts::PI / 180.0,
        "deg" => |v| v * 180.0 / std::f64::consts::PI,
        "sgn" => |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        _ => return None,
    })
}

/// Date parts of a Unix time in seconds, UTC, computed exactly as Go's `time` package does
/// (Prometheus' date functions are Go's), including its wrapping arithmetic for times far
/// outside the representable range (`year(vector(1e308))`).
fn go_date(secs: i64) -> GoDate {
    const SECONDS_PER_DAY: u64 = 86_400;
    const UNIX_TO_INTERNAL: i64 = (1969 * 365 + 1969 / 4 - 1969 / 100 + 1969 / 400) * 86_400;
    const ABSOLUTE_ZERO_YEAR: i64 = -292_277_022_399;
    const ABSOLUTE_TO_INTERNAL: i64 = -9_223_371_966_579_724_800;
    const DAYS_PER_400: u64 = 365 * 400 + 97;
    const DAYS_PER_100: u64 = 365 * 100 + 24;
    const DAYS_PER_4: u64 = 365 * 4 + 1;
    let abs = secs
        .wrapping_add(UNIX_TO_INTERNAL)
        .wrapping_add(-ABSOLUTE_TO_INTERNAL) as u64;
    let mut d = abs / SECONDS_PER_DAY;
    let mut n = d / DAYS_PER_400;
    let mut y = 400 * n;
    d -= DAYS_PER_400 * n;
    n = d / DAYS_PER_100;
    n -= n >> 2;
    y += 100 * n;
    d -= DAYS_PER_100 * n;
    n = d / DAYS_PER_4;
    y += 4 * n;
    d -= DAYS_PER_4 * n;
    n = d / 365;
    n -= n >> 2;
    y += n;
    d -= 365 * n;
    let year = (y as i64).wrapping_add(ABSOLUTE_ZERO_YEAR);
    let yday = d as i64;
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let mut day = yday;
    let (month, mday) = 'm: {
        if leap {
            if day > 31 + 29 - 1 {
                day -= 1;
            } else if day == 31 + 29 - 1 {
                break 'm (2, 29);
            }
        }
        let mut month = (day / 31) as usize;
        let end = days_before(month + 1);
        let begin = if day >= end {
            month += 1;
            end
        } else {
            days_before(month)
        };
        (month as i64 + 1, day - begin + 1)
    };
    let sod = abs % SECONDS_PER_DAY;
    // Go: (abs + Monday*secondsPerDay) % secondsPerWeek / secondsPerDay, Sunday = 0.
    let weekday = (abs.wrapping_add(SECONDS_PER_DAY) % (7 * SECONDS_PER_DAY)) / SECONDS_PER_DAY;
    GoDate {
        year,
        month,
        day: mday,
        yday: yday + 1,
        hour: (sod / 3600) as i64,
        minute: ((sod % 3600) / 60) as i64,
        weekday: weekday as i64,
        leap,
    }
}

/// Days in the months of a non-leap year before month `m` (0-based; 12 is the year's end).
#[allow(
    clippy::indexing_slicing,
    reason = "`go_date`'s day of the year is at most 365 (Go's `absDate` arithmetic), so it asks for `day / 31` <= 11 or the month after it"
)]
fn days_before(m: usize) -> i64 {
    const DAYS_BEFORE: [i64; 13] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365];
    DAYS_BEFORE[m]
}

struct GoDate {
    year: i64,
    month: i64,
    day: i64,
    yday: i64,
    hour: i64,
    minute: i64,
    weekday: i64,
    leap: bool,
}

fn date_fn(name: &str) -> Option<fn(i64) -> f64> {
    Some(match name {
        "minute" => |s| go_date(s).minute as f64,
        "hour" => |s| go_date(s).hour as f64,
        "day_of_week" => |s| go_date(s).weekday as f64,
        "day_of_month" => |s| go_date(s).day as f64,
        "day_of_year" => |s| go_date(s).yday as f64,
        "days_in_month" => |s| {
            let d = go_date(s);
            match d.month {
                2 if d.leap => 29.0,
                2 => 28.0,
                4 | 6 | 9 | 11 => 30.0,
                _ => 31.0,
            }
        },
        "month" => |s| go_date(s).month as f64,
        "year" => |s| go_date(s).year as f64,
        _ => return None,
    })
}

/// Go's `int64(f)` on amd64 for the values the date functions see.
fn go_int64(f: f64) -> i64 {
    if f.is_nan() || !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) {
        i64::MIN
    } else {
        f as i64
    }
}

/// Evaluates a function call.
pub(crate) fn eval_call(ev: &mut Ev, c: &Call, g: &Grid) -> Result<Val> {
    let name = c.func.name;
    let args = &c.args.args;
    if let Some(r) = Rollup::from_name(name) {
        return eval_rollup(ev, c, r, g);
    }
    if let Some(f) = math_fn(name) {
        let rows = ev.eval_vector(arg(c, 0)?, g)?;
        return Ok(Val::Vector(map_values(rows, |v, _| f(v))?));
    }
    if let Some(f) = date_fn(name) {
        if args.is_empty() {
            let vals = (0..g.n).map(|i| f(g.ts(i) / 1000)).collect();
            return Ok(Val::Vector(vec![Row {
                labels: Labels::empty(),
                vals,
            }]));
        }
        let rows = ev.eval_vector(arg(c, 0)?, g)?;
        return Ok(Val::Vector(map_values(rows, |v, _| f(go_int64(v)))?));
    }
    match name {
        "absent_over_time" => absent_over_time(ev, c, g),
        "time" => Ok(Val::Scalar((0..g.n).map(|i| g.ts(i) as f64 / 1000.0).collect())),
        "pi" => Ok(Val::Scalar(vec![std::f64::consts::PI; g.n])),
        "vector" => {
            let vals = ev.eval_scalar(arg(c, 0)?, g)?;
            Ok(Val::Vector(vec![Row {
                labels: Labels::empty(),
                vals,
            }]))
        }
        "scalar" => {
            let rows = ev.eval_vector(arg(c, 0)?, g)?;
            let mut out = vec![f64::NAN; g.n];
            for (i, o) in out.iter_mut().enumerate() {
                let mut it = rows
                    .iter()
                    .filter_map(|r| r.vals.get(i).copied())
                    .filter(|v| has(*v));
                if let (Some(v), None) = (it.next(), it.next()) {
                    *o = v;
                }
            }
            Ok(Val::Scalar(out))
        }
        "timestamp" => {
            if let Expr::VectorSelector(vs) = unparen(arg(c, 0)?) {
                let mut rows = Vec::new();
                ev.select_vector(vs, g, true, &mut |l, v| {
                    rows.push(Row {
                        labels: drop_name(l),
                        vals: v,
                    });
                    Ok(())
                })?;
                ev.charge_rows(&rows)?;
                return Ok(Val::Vector(merge_same_labels(rows)?));
            }
            let rows = ev.eval_vector(arg(c, 0)?, g)?;
            Ok(Val::Vector(map_values(rows, |_, i| g.ts(i) as f64 / 1000.0)?))
        }
        "round" => {
            let rows = ev.eval_vector(arg(c, 0)?, g)?;
            let to = match args.get(1) {
                Some(a) => ev.eval_scalar(a, g)?,
                None => vec![1.0; g.n],
            };
            Ok(Val::Vector(map_values(rows, |v, i| {
                let inv = 1.0 / at_step(&to, i);
                (v * inv + 0.5).floor() / inv
            })?))
        }
        "clamp" => {
            let rows = ev.eval_vector(arg(c, 0)?, g)?;
            let min = ev.eval_scalar(arg(c, 1)?, g)?;
            let max = ev.eval_scalar(arg(c, 2)?, g)?;
            let mut rows = map_values(rows, |v, i| go_max(at_step(&min, i), go_min(at_step(&max, i), v)))?;
            // No output at steps where max < min.
            for r in &mut rows {
                for (v, (lo, hi)) in r.vals.iter_mut().zip(min.iter().zip(&max)) {
                    if hi < lo {
                        *v = ABSENT;
                    }
                }
            }
            rows.retain(|r| r.vals.iter().any(|v| has(*v)));
            Ok(Val::Vector(rows))
        }
        "clamp_min" => {
            let rows = ev.eval_vector(arg(c, 0)?, g)?;
            let min = ev.eval_scalar(arg(c, 1)?, g)?;
            Ok(Val::Vector(map_values(rows, |v, i| go_max(at_step(&min, i), v))?))
        }
        "clamp_max" => {
            let rows = ev.eval_vector(arg(c, 0)?, g)?;
            let max = ev.eval_scalar(arg(c, 1)?, g)?;
            Ok(Val::Vector(map_values(rows, |v, i| go_min(at_step(&max, i), v))?))
        }
        "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" => {
            let mut rows = ev.eval_vector(arg(c, 0)?, g)?;
            if g.n == 1 {
                sort_rows(name, &mut rows, args.get(1..).unwrap_or_default())?;
            }
            Ok(Val::Vector(rows))
        }
        "label_replace" => label_replace(ev, c, g),
        "label_join" => label_join(ev, c, g),
        "absent" => {
            let rows = ev.eval_vector(arg(c, 0)?, g)?;
            let mut vals = vec![1.0; g.n];
            for r in &rows {
                for (o, v) in vals.iter_mut().zip(&r.vals) {
                    if has(*v) {
                        *o = ABSENT;
                    }
                }
            }
            if vals.iter().all(|v| !has(*v)) {
                return Ok(Val::Vector(Vec::new()));
            }
            let labels = match unparen(arg(c, 0)?) {
                Expr::VectorSelector(vs) => absent_labels(vs),
                _ => Labels::empty(),
            };
            Ok(Val::Vector(vec![Row { labels, vals }]))
        }
        "histogram_quantile" => histogram_quantile(ev, c, g),
        // Native-histogram functions: float series have no native histograms, so these
        // return nothing, as in Prometheus.
        "histogram_count" | "histogram_sum" | "histogram_fraction" | "histogram_stddev"
        | "histogram_stdvar" | "histogram_avg" => {
            for a in args {
                ev.eval(a, g)?;
            }
            Ok(Val::Vector(Vec::new()))
        }
        other => Err(QueryError::Execution(format!(
            "function \"{other}\" is not supported"
        ))),
    }
}

/// Go's `math.Max` (NaN wins, +0 > -0).
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Go's `math.Min` (NaN wins).
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn sort_rows(name: &str, rows: &mut [Row], label_args: &[Box<Expr>]) -> Result<()> {
    use std::cmp::Ordering;
    // Rows of an instant query: one step.
    let value = |r: &Row| r.vals.first().copied().unwrap_or(ABSENT);
    match name {
        // sort: ascending, NaN last; sort_desc: descending, NaN last.
        "sort" => rows.sort_by(|a, b| {
            let (x, y) = (value(a), value(b));
            match (x.is_nan(), y.is_nan()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                _ => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
            }
        }),
        "sort_desc" => rows.sort_by(|a, b| {
            let (x, y) = (value(a), value(b));
            match (x.is_nan(), y.is_nan()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                _ => y.partial_cmp(&x).unwrap_or(Ordering::Equal),
            }
        }),
        _ => {
            let names: Vec<&str> = label_args.iter().map(|a| string_arg(a)).collect::<Result<_>>()?;
            rows.sort_by(|a, b| {
                for n in &names {
                    let o = a.labels.get(n).unwrap_or("").cmp(b.labels.get(n).unwrap_or(""));
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                a.labels.cmp(&b.labels)
            });
            if name == "sort_by_label_desc" {
                rows.reverse();
            }
        }
    }
    Ok(())
}

fn label_replace(ev: &mut Ev, c: &Call, g: &Grid) -> Result<Val> {
    let dst = string_arg(arg(c, 1)?)?;
    let repl = string_arg(arg(c, 2)?)?;
    let src = string_arg(arg(c, 3)?)?;
    let re_text = string_arg(arg(c, 4)?)?;
    let re = regex::Regex::new(&format!("^(?:{re_text})$")).map_err(|_| {
        QueryError::Execution(format!(
            "invalid regular expression in label_replace(): {re_text}"
        ))
    })?;
    if !is_valid_label_name(dst) {
        return Err(QueryError::Execution(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let rows = ev.eval_vector(arg(c, 0)?, g)?;
    let rows = rows
        .into_iter()
        .map(|mut r| {
            let src_val = r.labels.get(src).unwrap_or("");
            if let Some(caps) = re.captures(src_val) {
                let mut res = String::new();
                caps.expand(repl, &mut res);
                let mut b = r.labels.builder();
                b.del(dst);
                if !res.is_empty() {
                    b.set(dst.to_owned(), res);
                }
                r.labels = b.build();
            }
            r
        })
        .collect();
    Ok(Val::Vector(merge_same_labels(rows)?))
}

fn label_join(ev: &mut Ev, c: &Call, g: &Grid) -> Result<Val> {
    let args = &c.args.args;
    let dst = string_arg(arg(c, 1)?)?;
    let sep = string_arg(arg(c, 2)?)?;
    let mut srcs = Vec::new();
    for a in args.get(3..).unwrap_or_default() {
        let s = string_arg(a)?;
        if !is_valid_label_name(s) {
            return Err(QueryError::Execution(format!(
                "invalid source label name in label_join(): {s}"
            )));
        }
        srcs.push(s);
    }
    if !is_valid_label_name(dst) {
        return Err(QueryError::Execution(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let rows = ev.eval_vector(arg(c, 0)?, g)?;
    let rows = rows
        .into_iter()
        .map(|mut r| {
            let joined = srcs
                .iter()
                .map(|s| r.labels.get(s).unwrap_or(""))
                .collect::<Vec<_>>()
                .join(sep);
            let mut b = r.labels.builder();
            if joined.is_empty() {
                b.del(dst);
            } else {
                b.set(dst.to_owned(), joined);
            }
            r.labels = b.build();
            r
        })
        .collect();
    Ok(Val::Vector(merge_same_labels(rows)?))
}

/// `histogram_quantile` over classic `le` buckets.
fn histogram_quantile(ev: &mut Ev, c: &Call, g: &Grid) -> Result<Val> {
    let q = ev.eval_scalar(arg(c, 0)?, g)?;
    let rows = ev.eval_vector(arg(c, 1)?, g)?;
    // Group by all labels but `le` (the name included, as Prometheus keys it); the output
    // drops `le` and the name.
    let mut groups: Vec<(Labels, Vec<(f64, &Row)>)> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for r in &rows {
        let Some(le) = r.labels.get("le") else {
            continue;
        };
        let Some(ub) = parse_go_float(le) else {
            continue;
        };
        let mut b = r.labels.builder();
        b.del("le");
        let key = b.build();
        match index.get(&key) {
            Some(&gi) => {
                if let Some((_, members)) = groups.get_mut(gi) {
                    members.push((ub, r));
                }
            }
            None => {
                index.insert(key.clone(), groups.len());
                groups.push((key, vec![(ub, r)]));
            }
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for (key, members) in &groups {
        let mut vals = vec![ABSENT; g.n];
        for (i, slot) in vals.iter_mut().enumerate() {
            buckets.clear();
            for &(ub, r) in members {
                let v = at_step(&r.vals, i);
                if has(v) {
                    buckets.push((ub, v));
                }
            }
            if !buckets.is_empty() {
                *slot = bucket_quantile(at_step(&q, i), &mut buckets);
            }
        }
        out.push(Row {
            labels: drop_name(key),
            vals,
        });
    }
    out.retain(|r| r.vals.iter().any(|v| has(*v)));
    Ok(Val::Vector(merge_same_labels(out)?))
}

/// Go's `strconv.ParseFloat` for label values (Rust's parser accepts the same spellings of
/// infinities and NaN, case-insensitively, plus a few Go rejects, like a trailing `.`).
fn parse_go_float(s: &str) -> Option<f64> {
    s.parse::<f64>().ok()
}

/// Prometheus' `bucketQuantile` over `(upper bound, cumulative count)` pairs.
fn bucket_quantile(q: f64, b: &mut Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // A NaN bound (`le="NaN"`) sorts above all others, so a group with one has no +Inf
    // bound last and yields NaN. `partial_cmp` alone orders no NaN, and a sort given a
    // comparison that is not an order may panic.
    b.sort_by(|x, y| {
        x.0.partial_cmp(&y.0)
            .unwrap_or_else(|| x.0.is_nan().cmp(&y.0.is_nan()))
    });
    if !b.last().is_some_and(|last| last.0.is_infinite() && last.0 > 0.0) {
        return f64::NAN;
    }
    // Coalesce equal bounds.
    b.dedup_by(|x, kept| {
        let same = x.0 == kept.0;
        if same {
            kept.1 += x.1;
        }
        same
    });
    // Make counts monotonic.
    let mut max = b.first().map_or(f64::NAN, |x| x.1);
    for x in b.iter_mut().skip(1) {
        if x.1 > max {
            max = x.1;
        } else if x.1 < max {
            x.1 = max;
        }
    }
    if b.len() < 2 {
        return f64::NAN;
    }
    let observations = b.last().map_or(f64::NAN, |x| x.1);
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let n = b.len() - 1;
    // Go's sort.Search, literally: with NaN counts the predicate is not monotonic and any
    // other binary search could land elsewhere.
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let h = (lo + hi) >> 1;
        if b.get(h).is_some_and(|x| x.1 >= rank) {
            hi = h;
        } else {
            lo = h + 1;
        }
    }
    let k = lo;
    if k == n {
        return b.get(n - 1).map_or(f64::NAN, |x| x.0);
    }
    let Some(&(end, mut count)) = b.get(k) else {
        return f64::NAN;
    };
    if k == 0 && end <= 0.0 {
        return end;
    }
    let mut start = 0.0;
    if let Some(&(prev_bound, prev_count)) = k.checked_sub(1).and_then(|p| b.get(p)) {
        start = prev_bound;
        count -= prev_count;
        rank -= prev_count;
    }
    start + (end - start) * (rank / count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_dates() {
        // 2024-02-29T13:45:00Z, a Thursday, day 60 of a leap year.
        let d = go_date(1_709_214_300);
        assert_eq!((d.year, d.month, d.day, d.yday), (2024, 2, 29, 60));
        assert_eq!((d.hour, d.minute, d.weekday), (13, 45, 4));
        // 1969-12-31T23:59:59Z
        let d = go_date(-1);
        assert_eq!((d.year, d.month, d.day, d.hour, d.weekday), (1969, 12, 31, 23, 3));
        // What Prometheus answers for int64(NaN) and int64(1e308) on amd64 (i64::MIN).
        let d = go_date(i64::MIN);
        assert_eq!((d.hour, d.minute, d.year), (15, 30, 292_277_026_596));
    }
}
