//! `GET /metrics`: the tenant's newest samples (or their aggregation windows) as Prometheus text, OpenMetrics or JSON, and the self-metrics.

use super::*;

#[derive(Deserialize)]
pub(super) struct ExportQuery {
    format: Option<String>,
    aggregated: Option<String>,
    tenant_id: Option<String>,
}

/// Newest sample of every series in `[mint, maxt]`.
pub(super) fn newest_all(
    db: &metricsd_tsdb::Db,
    mint: i64,
    maxt: i64,
) -> metricsd_tsdb::Result<Vec<(Labels, f64, i64)>> {
    let q = db.querier(mint, maxt)?;
    let all = Matcher::new(MatchOp::Regex, metricsd_model::METRIC_NAME, ".+")?;
    let mut out = Vec::new();
    for s in q.select(&[all])? {
        let last = s.iter().filter(|x| !metricsd_model::is_stale_nan(x.v)).last();
        if let Some(x) = last {
            out.push((s.labels().clone(), x.v, x.t));
        }
    }
    Ok(out)
}

pub(super) fn all_samples(
    db: &metricsd_tsdb::Db,
    mint: i64,
    maxt: i64,
    m: &[Matcher],
) -> metricsd_tsdb::Result<Vec<(Labels, Vec<Sample>)>> {
    let q = db.querier(mint, maxt)?;
    let mut out = Vec::new();
    for s in q.select(m)? {
        let v: Vec<Sample> = s.iter().filter(|x| !metricsd_model::is_stale_nan(x.v)).collect();
        if !v.is_empty() {
            out.push((s.labels().clone(), v));
        }
    }
    Ok(out)
}

/// Series in the head of `tenant`: figures shown to a tenant are its own.
pub(super) fn tenant_series(storage: &Storage, tenant: &str) -> u64 {
    storage
        .existing_tenant(tenant)
        .map_or(0, |db| db.head().num_series() as u64)
}

/// The series of the aggregated export: every series with samples in `[start, ∞)` that
/// [`crate::aggregate::role`] aggregates, with its samples there and, for cumulative ones,
/// its baseline: the newest sample before `start`, looked for in the window before and,
/// for the series without one there, in all earlier data (cheap for a series that has
/// none: it is not selected; a series is read further back only when it was idle for a
/// whole window).
pub(super) fn window_series(
    db: &metricsd_tsdb::Db,
    meta: &HashMap<String, Meta>,
    start: i64,
    window_ms: i64,
) -> metricsd_tsdb::Result<Vec<crate::aggregate::WindowSeries>> {
    use crate::aggregate::{WindowSeries, role};
    let all = Matcher::new(MatchOp::Regex, metricsd_model::METRIC_NAME, ".+")?;
    // Open-ended: timestamps of hot series may run a few ms ahead of the clock (see collector).
    let mut out: Vec<WindowSeries> = Vec::new();
    let mut need: HashMap<Labels, usize> = HashMap::new();
    let mut names: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for (labels, samples) in all_samples(db, start, i64::MAX, &[all])? {
        let Some((_, r)) = labels.metric_name().and_then(|n| role(n, meta)) else {
            continue;
        };
        if r.cumulative() {
            names.insert(labels.metric_name().unwrap_or_default().to_owned());
            need.insert(labels.clone(), out.len());
        }
        out.push(WindowSeries {
            labels,
            baseline: None,
            samples,
        });
    }
    if need.is_empty() {
        return Ok(out);
    }
    // Metric names have no regex metacharacters: the alternation matches them literally.
    let names: Vec<String> = names.into_iter().collect();
    let m = Matcher::new(MatchOp::Regex, metricsd_model::METRIC_NAME, names.join("|"))?;
    let near = start.saturating_sub(window_ms);
    for (lo, hi) in [(near, start - 1), (i64::MIN, near.saturating_sub(1))] {
        if need.is_empty() || hi < lo {
            break;
        }
        let q = db.querier(lo, hi)?;
        for s in q.select(std::slice::from_ref(&m))? {
            let Some(&i) = need.get(s.labels()) else {
                continue;
            };
            if let Some(last) = s.iter().filter(|x| !metricsd_model::is_stale_nan(x.v)).last()
                && let Some(series) = out.get_mut(i)
            {
                series.baseline = Some(last.v);
                need.remove(s.labels());
            }
        }
    }
    Ok(out)
}

pub(super) async fn export(
    State(st): St,
    headers: HeaderMap,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let tenant = read_tenant(&headers, q.tenant_id.as_deref())?;
    let format = q.format.as_deref().unwrap_or("prometheus");
    if !matches!(format, "prometheus" | "openmetrics" | "json") {
        return Err(ApiError::field(
            "format",
            format!("unknown format {format:?}: use prometheus, openmetrics or json"),
        ));
    }
    let aggregated = match q.aggregated.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => {
            return Err(ApiError::field(
                "aggregated",
                format!("{other:?} is not true or false"),
            ));
        }
    };
    let st2 = st.clone();
    let tenant2 = tenant.clone();
    let fams = blocking(move || -> Result<Vec<exposition::Family>, ApiError> {
        let tenant = tenant2;
        let Some(db) = st2.storage.existing_tenant(&tenant) else {
            return Ok(Vec::new());
        };
        let meta = st2.collector.metadata(&tenant);
        let now = now_ms();
        if aggregated {
            let w = st2.cfg.aggregation_window_seconds as i64 * 1000;
            let series = window_series(&db, &meta, now - w, w).map_err(|e| ApiError::from_store(&e))?;
            let fams = crate::aggregate::aggregate(series, &meta, w, &st2.cfg.aggregation_types);
            st2.metrics.windows.inc();
            st2.metrics.aggregated_series.store(
                fams.iter().map(|f| f.samples.len() as u64).sum(),
                Ordering::Relaxed,
            );
            Ok(fams)
        } else {
            let lookback = st2.cfg.export_lookback_seconds as i64 * 1000;
            let series = newest_all(&db, now - lookback, i64::MAX).map_err(|e| ApiError::from_store(&e))?;
            Ok(exposition::group(series, &meta))
        }
    })
    .await??;
    st.metrics.exports.inc();
    st.metrics
        .last_export_ms
        .store(now_ms() as u64, Ordering::Relaxed);
    let now = now_ms();
    if format == "json" {
        let body = json!({ "metrics": exposition::to_json(&fams), "timestamp": rfc3339(now) });
        return Ok(Json(body).into_response());
    }
    // Tracked families, then self-metrics, through the one text writer.
    let own = if aggregated {
        Vec::new()
    } else {
        let user: std::collections::HashSet<&str> = fams.iter().map(|f| f.name.as_str()).collect();
        // One pass over the tenant's head series: off the async threads.
        let st3 = st.clone();
        let tenant3 = tenant.clone();
        let tsdb = blocking(move || {
            let g = st3.storage.existing_tenant(&tenant3).map(|db| db.gauges());
            (g, st3.storage.open_tenants().len())
        })
        .await?;
        st.metrics.families(
            tenant_series(&st.storage, &tenant),
            tsdb.0.as_ref(),
            tsdb.1,
            &|n| user.contains(n),
        )
    };
    let mut all = exposition::to_metric_families(fams);
    all.extend(own);
    let mut s = String::new();
    let content_type = if format == "openmetrics" {
        metricsd_ingest::write_openmetrics(&all, &mut s);
        metricsd_ingest::OPENMETRICS_CONTENT_TYPE
    } else {
        metricsd_ingest::write_prometheus(&all, &mut s);
        metricsd_ingest::PROMETHEUS_CONTENT_TYPE
    };
    let resp = ([(header::CONTENT_TYPE, content_type)], s).into_response();
    Ok(resp)
}
