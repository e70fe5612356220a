//! Windows and trends over sample slices: pure functions.
//!
//! A trend is decided by an ordinary least-squares line through the bucket values
//! (x = bucket index in hours): it is `increasing`/`decreasing` when the slope's t statistic
//! (slope / its standard error, n − 2 degrees of freedom) exceeds the two-sided 95% critical
//! value of Student's t, else `stable`. `change_percent` is the change of the fitted line
//! from the first to the last bucket, relative to the fitted first value (or to the mean of
//! the values when the fitted first value is 0).

use metricsd_model::Sample;

/// Sum over series of each series' counter increase within each bucket
/// `[start + i*step, start + (i+1)*step)`; a decrease counts as a reset (the new value is
/// the increase). `None` for buckets where no series had two samples.
pub fn counter_increase(series: &[Vec<Sample>], start: i64, step: i64, n: usize) -> Vec<Option<f64>> {
    let mut out = vec![None; n];
    for s in series {
        for (p, c) in s.iter().zip(s.iter().skip(1)) {
            let Some(slot) = bucket_of(c.t, start, step, n).and_then(|i| out.get_mut(i)) else {
                continue;
            };
            let d = if c.v >= p.v { c.v - p.v } else { c.v };
            *slot.get_or_insert(0.0) += d;
        }
    }
    out
}

/// Mean of all samples (across series) in each bucket.
pub fn mean(series: &[Vec<Sample>], start: i64, step: i64, n: usize) -> Vec<Option<f64>> {
    let mut acc = vec![(0.0, 0u64); n];
    for s in series {
        for smp in s {
            if let Some(a) = bucket_of(smp.t, start, step, n).and_then(|i| acc.get_mut(i)) {
                a.0 += smp.v;
                a.1 += 1;
            }
        }
    }
    acc.into_iter()
        .map(|(s, c)| (c > 0).then(|| s / c as f64))
        .collect()
}

fn bucket_of(t: i64, start: i64, step: i64, n: usize) -> Option<usize> {
    if t < start || step <= 0 {
        return None;
    }
    // Samples at or after the end count in the last bucket: timestamps of hot series may
    // run a few ms ahead of the clock (see the collector).
    let i = ((t - start) / step) as usize;
    (n > 0).then(|| i.min(n - 1))
}

/// Two-sided 95% critical values of Student's t by degrees of freedom.
fn t_critical(df: usize) -> f64 {
    const T: &[f64] = &[
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    ];
    match df {
        0 => f64::INFINITY,
        1..=10 => T.get(df - 1).copied().unwrap_or(f64::INFINITY),
        11..=15 => 2.131,
        16..=20 => 2.086,
        21..=30 => 2.042,
        31..=60 => 2.000,
        _ => 1.960,
    }
}

/// The verdict on a series of points.
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    /// increasing, decreasing or stable.
    pub trend: &'static str,
    /// Change of the fitted line over the points, in percent (one decimal).
    pub change_percent: f64,
    /// Slope per x unit.
    pub slope: f64,
    /// The slope's t statistic (infinite for a perfect fit).
    pub t_stat: f64,
}

/// Fits a least-squares line through `(x, y)` and decides the trend (see the module docs).
pub fn trend(points: &[(f64, f64)]) -> Trend {
    let n = points.len();
    let [first, .., last] = points else {
        return Trend {
            trend: "stable",
            change_percent: 0.0,
            slope: 0.0,
            t_stat: 0.0,
        };
    };
    let nf = n as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / nf;
    let my = points.iter().map(|p| p.1).sum::<f64>() / nf;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx == 0.0 {
        return Trend {
            trend: "stable",
            change_percent: 0.0,
            slope: 0.0,
            t_stat: 0.0,
        };
    }
    let slope = sxy / sxx;
    let icept = my - slope * mx;
    let sse: f64 = points.iter().map(|p| (p.1 - (icept + slope * p.0)).powi(2)).sum();
    let t_stat = if n > 2 {
        let se = (sse / (nf - 2.0) / sxx).sqrt();
        if se == 0.0 {
            if slope == 0.0 {
                0.0
            } else {
                f64::INFINITY.copysign(slope)
            }
        } else {
            slope / se
        }
    } else {
        0.0
    };
    let first = icept + slope * first.0;
    let last = icept + slope * last.0;
    let base = if first != 0.0 { first.abs() } else { my.abs() };
    let change = if base == 0.0 {
        0.0
    } else {
        (last - first) / base * 100.0
    };
    let significant = n > 2 && t_stat.abs() >= t_critical(n - 2);
    let trend = match (significant, slope) {
        (true, s) if s > 0.0 => "increasing",
        (true, s) if s < 0.0 => "decreasing",
        _ => "stable",
    };
    Trend {
        trend,
        change_percent: (change * 10.0).round() / 10.0,
        slope,
        t_stat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let up: Vec<(f64, f64)> = (0..24)
            .map(|i| (i as f64, 100.0 + i as f64 + if i % 2 == 0 { 0.5 } else { -0.5 }))
            .collect();
        assert_eq!(trend(&up).trend, "increasing");
        let down: Vec<(f64, f64)> = up.iter().map(|&(x, y)| (x, 300.0 - y)).collect();
        assert_eq!(trend(&down).trend, "decreasing");
        let noise: Vec<(f64, f64)> = (0..24)
            .map(|i| (i as f64, if i % 2 == 0 { 10.0 } else { 12.0 }))
            .collect();
        assert_eq!(trend(&noise).trend, "stable");
        // A first-vs-last comparison would call this increasing; the fit does not.
        let spike = [
            (0.0, 10.0),
            (1.0, 50.0),
            (2.0, 10.0),
            (3.0, 50.0),
            (4.0, 10.0),
            (5.0, 11.0),
        ];
        assert_eq!(trend(&spike).trend, "stable");
        let exact = [(0.0, 85.0), (1.0, 92.0), (2.0, 99.0)];
        let t = trend(&exact);
        assert_eq!((t.trend, t.change_percent), ("increasing", 16.5));
    }

    #[test]
    fn buckets() {
        let s = vec![vec![
            Sample::new(0, 1.0),
            Sample::new(10, 3.0),
            Sample::new(20, 1.0),
            Sample::new(35, 4.0),
        ]];
        assert_eq!(counter_increase(&s, 0, 20, 2), vec![Some(2.0), Some(4.0)]);
        assert_eq!(mean(&s, 0, 20, 3), vec![Some(2.0), Some(2.5), None]);
        assert_eq!(mean(&s, 0, 10, 2), vec![Some(1.0), Some(8.0 / 3.0)]);
    }
}
