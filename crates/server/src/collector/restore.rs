//! Reloading a series' state from the store (after a restart or an idle eviction).

use super::*;

/// The newest sample of each series matching `matchers` (all time).
pub(super) fn newest(db: &Db, matchers: &[Matcher]) -> metricsd_tsdb::Result<Vec<(Labels, i64, f64)>> {
    let q = db.querier(i64::MIN, i64::MAX)?;
    let mut out = Vec::new();
    for s in q.select(matchers)? {
        let mut last = None;
        for smp in s.iter() {
            if !metricsd_model::is_stale_nan(smp.v) {
                last = Some(smp);
            }
        }
        if let Some(smp) = last {
            out.push((s.labels().clone(), smp.t, smp.v));
        }
    }
    Ok(out)
}

pub(super) fn exact_matchers(base: &Labels, name: &str) -> Vec<Matcher> {
    base.iter()
        .map(|l| {
            if &*l.name == METRIC_NAME {
                Matcher::equal(METRIC_NAME, name)
            } else {
                Matcher::equal(&*l.name, &*l.value)
            }
        })
        .collect()
}

/// Whether `l` is `base` renamed to `name` plus at most the label `extra`.
pub(super) fn same_series(l: &Labels, base: &Labels, name: &str, extra: Option<&str>) -> bool {
    let mut b = l.builder();
    if let Some(e) = extra {
        b.del(e);
    }
    b.set(METRIC_NAME, name);
    let mut want = base.builder();
    want.set(METRIC_NAME, name);
    b.build() == want.build()
}

/// Rebuilds a series' state from the store (after a restart, or after a rejection).
pub(super) fn restore(db: &Db, base: &Labels, kind: MetricKind) -> metricsd_tsdb::Result<Option<State>> {
    let name = base.metric_name().unwrap_or_default().to_owned();
    let one = |n: &str| -> metricsd_tsdb::Result<Option<(i64, f64)>> {
        Ok(newest(db, &exact_matchers(base, n))?
            .into_iter()
            .find(|(l, _, _)| same_series(l, base, n, None))
            .map(|(_, t, v)| (t, v)))
    };
    Ok(match kind {
        MetricKind::Counter => one(&name)?.map(|(t, v)| State::Counter { value: v, last_t: t }),
        MetricKind::Gauge => one(&name)?.map(|(t, _)| State::Gauge { last_t: t }),
        MetricKind::Histogram => {
            let (Some((t, count)), Some((_, sum))) =
                (one(&format!("{name}_count"))?, one(&format!("{name}_sum"))?)
            else {
                return Ok(None);
            };
            let bucket = format!("{name}_bucket");
            let mut bs: Vec<(f64, f64)> = newest(db, &exact_matchers(base, &bucket))?
                .into_iter()
                .filter(|(l, _, _)| same_series(l, base, &bucket, Some("le")))
                .filter_map(|(l, _, v)| {
                    l.get("le")
                        .and_then(|le| le.parse::<f64>().ok())
                        .map(|le| (le, v))
                })
                .filter(|(le, _)| le.is_finite())
                .collect();
            bs.sort_by(|a, b| a.0.total_cmp(&b.0));
            if bs.is_empty() {
                bs = DEFAULT_BUCKETS.iter().map(|b| (*b, 0.0)).collect();
            }
            let bounds: Arc<[f64]> = bs.iter().map(|b| b.0).collect::<Vec<_>>().into();
            let counts = bs.iter().map(|b| b.1).collect();
            Some(State::Histogram {
                bounds,
                counts,
                sum,
                count,
                last_t: t,
            })
        }
        MetricKind::Summary => {
            let (Some((t, count)), Some((_, sum))) =
                (one(&format!("{name}_count"))?, one(&format!("{name}_sum"))?)
            else {
                return Ok(None);
            };
            // The window's observations are not stored; quantiles restart from the next one.
            Some(State::Summary {
                window: VecDeque::new(),
                sum,
                count,
                last_t: t,
            })
        }
    })
}
