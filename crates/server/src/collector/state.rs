//! A series' cumulative state (counter totals, histogram buckets, summary windows) and how an observation updates it.

use super::*;

/// The state of a series nothing is known of yet.
pub(super) fn initial_state(item: &TrackItem<'_>) -> State {
    match item.kind {
        MetricKind::Counter => State::Counter {
            value: 0.0,
            last_t: i64::MIN,
        },
        MetricKind::Gauge => State::Gauge { last_t: i64::MIN },
        MetricKind::Histogram => {
            let bounds: Arc<[f64]> = item
                .buckets
                .clone()
                .unwrap_or_else(|| DEFAULT_BUCKETS.to_vec())
                .into();
            State::Histogram {
                counts: vec![0.0; bounds.len()],
                bounds,
                sum: 0.0,
                count: 0.0,
                last_t: i64::MIN,
            }
        }
        MetricKind::Summary => State::Summary {
            window: VecDeque::new(),
            sum: 0.0,
            count: 0.0,
            last_t: i64::MIN,
        },
    }
}

/// A slot for a series new to the collector (`state` restored from the store, or none):
/// finds or creates the store series it writes. Called only for an item that passed every
/// check, so no series is created for a rejected item.
pub(super) fn new_slot(
    db: &Db,
    item: &TrackItem<'_>,
    labels: Labels,
    state: Option<State>,
    now: i64,
) -> Result<Slot, ApiError> {
    let state = state.unwrap_or_else(|| initial_state(item));
    let (series, base) = match &state {
        State::Counter { .. } | State::Gauge { .. } => (vec![labels], None),
        State::Histogram { bounds, .. } => (hist_series(&labels, &item.name, bounds), Some(labels)),
        State::Summary { .. } => (summary_series(&labels, &item.name), Some(labels)),
    };
    let refs = series
        .iter()
        .map(|l| db.series_ref(l))
        .collect::<metricsd_tsdb::Result<Box<[SeriesRef]>>>()
        .map_err(|e| {
            let mut err = ApiError::from_store(&e);
            err.field = Some("labels".into());
            err
        })?;
    Ok(Slot {
        refs,
        base,
        state,
        touched_ms: now,
    })
}

/// Applies one observation to a series' state, emitting the samples to write through
/// `emit(i, value)`, `i` indexing [`Slot::refs`] (all at the item's timestamp). Cannot
/// fail: every check is done before, so an item is applied whole or not at all.
pub(super) fn observe(
    cur: State,
    item: &TrackItem<'_>,
    t: i64,
    o: &CollectorOptions,
    mut emit: impl FnMut(usize, f64),
) -> State {
    let v = item.value;
    match cur {
        State::Counter { value, .. } => {
            emit(0, value + v);
            State::Counter {
                value: value + v,
                last_t: t,
            }
        }
        State::Gauge { .. } => {
            emit(0, v);
            State::Gauge { last_t: t }
        }
        State::Histogram {
            bounds,
            mut counts,
            mut sum,
            mut count,
            ..
        } => {
            for (c, b) in counts.iter_mut().zip(bounds.iter()) {
                if v <= *b {
                    *c += 1.0;
                }
            }
            sum += v;
            count += 1.0;
            let n = bounds.len();
            for (i, c) in counts.iter().enumerate() {
                emit(i, *c);
            }
            emit(n, count);
            emit(n + 1, sum);
            emit(n + 2, count);
            State::Histogram {
                bounds,
                counts,
                sum,
                count,
                last_t: t,
            }
        }
        State::Summary {
            mut window,
            mut sum,
            mut count,
            ..
        } => {
            window.push_back((t, v));
            while window.len() > o.summary_max
                || window
                    .front()
                    .is_some_and(|(wt, _)| *wt <= t - o.summary_window_ms)
            {
                window.pop_front();
            }
            sum += v;
            count += 1.0;
            let mut sorted: Vec<f64> = window.iter().map(|(_, v)| *v).collect();
            sorted.sort_by(f64::total_cmp);
            let n = QUANTILES.len();
            for (i, q) in QUANTILES.iter().enumerate() {
                emit(i, quantile(&sorted, *q));
            }
            emit(n, sum);
            emit(n + 1, count);
            State::Summary {
                window,
                sum,
                count,
                last_t: t,
            }
        }
    }
}

/// Nearest-rank quantile of sorted values (NaN when empty).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len()) - 1)
        .copied()
        .unwrap_or(f64::NAN)
}
