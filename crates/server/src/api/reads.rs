//! The JSON API's reads: `/metrics/series`, `/metrics/trends/{name}`, `/metrics/stats`, `/health`.

use super::*;

#[derive(Deserialize)]
pub(super) struct SeriesQuery {
    service: Option<String>,
    name: Option<String>,
    limit: Option<String>,
    tenant_id: Option<String>,
    start: Option<String>,
    end: Option<String>,
}

pub(super) fn time_param(field: &str, v: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    let j = match v.parse::<f64>() {
        Ok(f) => json!(f),
        Err(_) => json!(v),
    };
    track::parse_timestamp(&j)
        .map(Some)
        .map_err(|m| ApiError::field(field, m))
}

pub(super) fn kind_of(name: &str, meta: &HashMap<String, Meta>) -> String {
    if let Some(m) = meta.get(name) {
        return m.kind.as_str().to_owned();
    }
    for suf in ["_bucket", "_sum", "_count"] {
        if let Some(m) = name.strip_suffix(suf).and_then(|b| meta.get(b)) {
            return m.kind.as_str().to_owned();
        }
    }
    "untyped".into()
}

pub(super) async fn series(
    State(st): St,
    headers: HeaderMap,
    Query(q): Query<SeriesQuery>,
) -> Result<Response, ApiError> {
    let tenant = read_tenant(&headers, q.tenant_id.as_deref())?;
    let limit = match q.limit.as_deref() {
        None => 100,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| ApiError::field("limit", "limit must be an integer from 1 to 10000"))?,
    };
    let end = time_param("end", q.end.as_deref())?.unwrap_or(i64::MAX);
    let start = time_param("start", q.start.as_deref())?.unwrap_or(i64::MIN);
    if start > end {
        return Err(ApiError::field("start", "start is after end"));
    }
    let mut matchers = vec![match &q.name {
        Some(n) if !metricsd_model::is_valid_metric_name(n) => {
            return Err(ApiError::field("name", "invalid metric name"));
        }
        Some(n) => Matcher::equal(metricsd_model::METRIC_NAME, n),
        None => Matcher::new(MatchOp::Regex, metricsd_model::METRIC_NAME, ".+")
            .map_err(|e| ApiError::field("name", e.to_string()))?,
    }];
    if let Some(s) = &q.service {
        matchers.push(Matcher::equal(SERVICE_LABEL, s));
    }
    let max_points = st.cfg.max_points_per_series;
    let st2 = st.clone();
    let tenant2 = tenant.clone();
    let (total, out) = blocking(move || -> Result<(usize, Vec<serde_json::Value>), ApiError> {
        let Some(db) = st2.storage.existing_tenant(&tenant2) else {
            return Ok((0, Vec::new()));
        };
        let meta = st2.collector.metadata(&tenant2);
        let q = db.querier(start, end).map_err(|e| ApiError::from_read(&e))?;
        let sel = q.select(&matchers).map_err(|e| ApiError::from_read(&e))?;
        let total = sel.len();
        let mut out = Vec::new();
        for s in sel.iter() {
            if out.len() >= limit {
                break;
            }
            let mut pts: std::collections::VecDeque<Sample> = std::collections::VecDeque::new();
            for x in s.iter() {
                if metricsd_model::is_stale_nan(x.v) {
                    continue;
                }
                if pts.len() == max_points {
                    pts.pop_front();
                }
                pts.push_back(x);
            }
            if pts.is_empty() {
                continue;
            }
            let l = s.labels();
            let name = l.metric_name().unwrap_or_default();
            let labels: serde_json::Map<String, serde_json::Value> = l
                .iter()
                .filter(|x| &*x.name != metricsd_model::METRIC_NAME && &*x.name != SERVICE_LABEL)
                .map(|x| (x.name.to_string(), json!(&*x.value)))
                .collect();
            let points: Vec<serde_json::Value> = pts
                .iter()
                .map(|p| json!({ "value": num(p.v), "timestamp": rfc3339(p.t) }))
                .collect();
            out.push(json!({
                "name": name,
                "type": kind_of(name, &meta),
                "labels": labels,
                "service": l.get(SERVICE_LABEL),
                "tenant_id": tenant2,
                "points": points,
            }));
        }
        Ok((total, out))
    })
    .await??;
    let _ = total;
    Ok(Json(json!({ "series": out, "total": out.len(), "timestamp": rfc3339(now_ms()) })).into_response())
}

#[derive(Deserialize)]
pub(super) struct TrendQuery {
    hours: Option<String>,
    tenant_id: Option<String>,
}

pub(super) async fn trend(
    State(st): St,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<TrendQuery>,
) -> Result<Response, ApiError> {
    let tenant = read_tenant(&headers, q.tenant_id.as_deref())?;
    if !metricsd_model::is_valid_metric_name(&name) {
        return Err(ApiError::field("name", format!("invalid metric name {name:?}")));
    }
    let hours = match q.hours.as_deref() {
        None => st.cfg.trend_hours as i64,
        Some(h) => h
            .parse::<i64>()
            .ok()
            .filter(|h| (1..=24 * 31).contains(h))
            .ok_or_else(|| ApiError::field("hours", "hours must be an integer from 1 to 744"))?,
    };
    let st2 = st.clone();
    let name2 = name.clone();
    let (points, kind) = blocking(move || -> Result<(Vec<(i64, f64)>, String), ApiError> {
        let Some(db) = st2.storage.existing_tenant(&tenant) else {
            return Ok((Vec::new(), "untyped".into()));
        };
        let meta = st2.collector.metadata(&tenant);
        let kind = kind_of(&name2, &meta);
        const H: i64 = 3_600_000;
        let end = now_ms();
        let start = end - hours * H;
        let n = hours as usize;
        let get = |n: &str| -> Result<Vec<Vec<Sample>>, ApiError> {
            Ok(all_samples(
                &db,
                start - H,
                i64::MAX,
                &[Matcher::equal(metricsd_model::METRIC_NAME, n)],
            )
            .map_err(|e| ApiError::from_store(&e))?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
        };
        let values = match kind.as_str() {
            "counter" => trends::counter_increase(&get(&name2)?, start, H, n),
            "histogram" | "summary" => {
                let s = trends::counter_increase(&get(&format!("{name2}_sum"))?, start, H, n);
                let c = trends::counter_increase(&get(&format!("{name2}_count"))?, start, H, n);
                s.into_iter()
                    .zip(c)
                    .map(|(s, c)| match (s, c) {
                        (Some(s), Some(c)) if c > 0.0 => Some(s / c),
                        _ => None,
                    })
                    .collect()
            }
            _ => trends::mean(&get(&name2)?, start, H, n),
        };
        Ok((
            values
                .into_iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (start + i as i64 * H, v)))
                .collect(),
            kind,
        ))
    })
    .await??;
    let xy: Vec<(f64, f64)> = points
        .iter()
        .map(|(t, v)| (*t as f64 / 3_600_000.0, *v))
        .collect();
    let t = trends::trend(&xy);
    let data_points: Vec<serde_json::Value> = points
        .iter()
        .map(|(t, v)| json!({ "timestamp": rfc3339(*t), "value": num(*v) }))
        .collect();
    Ok(Json(json!({
        "metric_name": name,
        "trend": t.trend,
        "change_percent": t.change_percent,
        "data_points": data_points,
        "type": kind,
        "slope_per_hour": if t.slope.is_finite() { json!(t.slope) } else { json!(null) },
        "t_statistic": if t.t_stat.is_finite() { json!(t.t_stat) } else { json!(null) },
    }))
    .into_response())
}

pub(super) async fn health(State(st): St) -> Response {
    let st2 = st.clone();
    let store_ok = blocking(move || {
        // Open tenants only: a closed (idle) one closed its WAL cleanly, and checking must
        // not reopen it.
        let dbs_ok = st2.storage.open_tenants().iter().all(|db| db.healthy());
        // A write probe catches a read-only or full data directory before a client does.
        let probe = st2.storage.root().join(".health-probe");
        let writable = std::fs::write(&probe, b"ok").is_ok();
        let _ = std::fs::remove_file(&probe);
        dbs_ok && writable
    })
    .await
    .unwrap_or(false);
    // Shedding load is degraded service, but the process is alive: still 200, so an
    // orchestrator does not restart an instance that is merely busy.
    let shedding = crate::protect::shedding();
    let status = if store_ok && !shedding { "ok" } else { "degraded" };
    let body = json!({
        "service": "metrics",
        "status": status,
        "uptime_seconds": st.started.elapsed().as_secs(),
        // The seed's shape: shedding shows as the collector's state.
        "dependencies": {
            "collector": if !store_ok { "failing" } else if shedding { "shedding" } else { "ok" },
            "aggregator": "ok",
        },
        "version": env!("CARGO_PKG_VERSION"),
        // The build's git revision, or `unknown` when built outside git (see build.rs).
        "commit": env!("METRICSD_COMMIT"),
    });
    let code = if store_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

#[derive(Deserialize)]
pub(super) struct StatsQuery {
    tenant_id: Option<String>,
}

pub(super) async fn stats(
    State(st): St,
    headers: HeaderMap,
    Query(q): Query<StatsQuery>,
) -> Result<Response, ApiError> {
    let tenant = read_tenant(&headers, q.tenant_id.as_deref())?;
    let m = &st.metrics;
    let last = m.last_export_ms.load(Ordering::Relaxed);
    let (points, dropped) = m.tenant_points(&tenant);
    let st2 = st.clone();
    let series = blocking(move || tenant_series(&st2.storage, &tenant)).await?;
    Ok(Json(json!({
        "collector": {
            "total_points": points,
            "total_series": series,
            "dropped_points": dropped,
        },
        "aggregator": {
            "total_windows": m.windows.get(),
            "aggregated_series": m.aggregated_series.load(Ordering::Relaxed),
        },
        "exporter": {
            "total_exports": m.exports.get(),
            "last_export": if last == 0 { json!(null) } else { json!(rfc3339(last as i64)) },
        },
        "timestamp": rfc3339(now_ms()),
    }))
    .into_response())
}
