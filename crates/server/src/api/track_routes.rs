//! The JSON track API: `POST /metrics/track` and `/metrics/track/batch` (seed 000).

use super::*;

pub(super) fn resolve<'a>(
    item: track::TrackItem<'a>,
    header: Option<&'a str>,
    index: usize,
) -> Result<Resolved<'a>, ApiError> {
    let tenant = match (&item.tenant_id, header) {
        (Some(t), Some(h)) if t != h => return Err(crate::tenant::TenantError::Mismatch.into()),
        (Some(t), _) => t.clone(),
        (None, Some(h)) => Cow::Borrowed(h),
        (None, None) => Cow::Borrowed(metricsd_tsdb::DEFAULT_TENANT),
    };
    Ok(Resolved { index, tenant, item })
}

pub(super) async fn track_one(
    State(st): St,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    content_encoding(&headers, &[])?;
    let b = body(b)?;
    let header = header_tenant(&headers)?;
    let st2 = st.clone();
    // Decoding runs with the store work, so items can borrow the body.
    let r = ingest_work(
        &st,
        b.len() <= JSON_INLINE_MAX,
        move || -> Result<(), ApiError> {
            let item = track::parse_track(&b).inspect_err(|_| st2.metrics.errors.inc())?;
            let r = resolve(item, header.as_deref(), 0).inspect_err(|_| st2.metrics.errors.inc())?;
            let name = r.item.name.to_string();
            let service = r.item.service.as_deref().map(str::to_owned);
            let mut out = st2.collector.track(vec![r]);
            let res = out.results.pop().unwrap_or(Ok(()));
            if res.is_ok() {
                collected(tracing::Level::INFO, &name, service.as_deref());
            }
            res
        },
    )
    .await?;
    r?;
    Ok(Json(json!({ "success": true, "message": "Metric tracked successfully" })).into_response())
}

/// Seed 000's log event for a stored track item: `"message": "Metric collected
/// successfully"`, `metric_name`, and the item's `service` (which, as in the seed's example,
/// is the line's `service`; see docs/api.md, Logs). Info for `/metrics/track`, debug per
/// item of a batch (a batch logs one info event with its counts).
pub(super) fn collected(level: tracing::Level, name: &str, service: Option<&str>) {
    macro_rules! event {
        ($lvl:expr) => {
            match service {
                Some(service) => tracing::event!(
                    $lvl,
                    event = "metric_collected",
                    metric_name = name,
                    service,
                    "Metric collected successfully"
                ),
                None => tracing::event!(
                    $lvl,
                    event = "metric_collected",
                    metric_name = name,
                    "Metric collected successfully"
                ),
            }
        };
    }
    if level == tracing::Level::INFO {
        event!(tracing::Level::INFO);
    } else {
        event!(tracing::Level::DEBUG);
    }
}

pub(super) async fn track_batch(
    State(st): St,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    content_encoding(&headers, &[])?;
    let b = body(b)?;
    let header = header_tenant(&headers)?;
    let st2 = st.clone();
    let (total, mut errors) = ingest_work(
        &st,
        b.len() <= JSON_INLINE_MAX,
        move || -> Result<(usize, Vec<(usize, ApiError)>), ApiError> {
            let parsed = track::parse_batch(&b, st2.cfg.max_batch_items)?;
            let total = parsed.len();
            let mut errors: Vec<(usize, ApiError)> = Vec::new();
            let mut ok: Vec<Resolved<'_>> = Vec::with_capacity(total);
            for (i, p) in parsed.into_iter().enumerate() {
                match p
                    .map_err(ApiError::from)
                    .and_then(|it| resolve(it, header.as_deref(), i).map_err(|e| e.at_index(i)))
                {
                    Ok(r) => ok.push(r),
                    Err(e) => errors.push((i, e)),
                }
            }
            st2.metrics.errors.add(errors.len() as u64);
            let indices: Vec<usize> = ok.iter().map(|r| r.index).collect();
            // Per-item events only at debug: their names are kept only when they are logged.
            let names: Option<Vec<(String, Option<String>)>> =
                tracing::enabled!(tracing::Level::DEBUG).then(|| {
                    ok.iter()
                        .map(|r| {
                            (
                                r.item.name.to_string(),
                                r.item.service.as_deref().map(str::to_owned),
                            )
                        })
                        .collect()
                });
            let out = st2.collector.track(ok);
            let stored = out.results.iter().filter(|r| r.is_ok()).count();
            if let Some(names) = &names {
                for ((name, service), r) in names.iter().zip(&out.results) {
                    if r.is_ok() {
                        collected(tracing::Level::DEBUG, name, service.as_deref());
                    }
                }
            }
            if stored > 0 {
                tracing::info!(
                    event = "metric_collected",
                    total,
                    successful = stored,
                    failed = total - stored,
                    "Metric batch collected successfully"
                );
            }
            for (i, r) in indices.into_iter().zip(out.results) {
                if let Err(e) = r {
                    let e = if e.field.as_deref().is_some_and(|f| f.starts_with('[')) {
                        e
                    } else {
                        e.at_index(i)
                    };
                    errors.push((i, e));
                }
            }
            Ok((total, errors))
        },
    )
    .await??;
    errors.sort_by_key(|e| e.0);
    let failed = errors.len();
    let mut resp =
        json!({ "success": failed == 0, "total": total, "successful": total - failed, "failed": failed });
    if failed > 0
        && let Some(o) = resp.as_object_mut()
    {
        o.insert(
            "errors".into(),
            errors
                .iter()
                .map(|(i, e)| json!({ "index": i, "error": e.body() }))
                .collect(),
        );
    }
    // All items failed: answer with the first error's status (5xx tells the client to retry).
    let status = match errors.first() {
        Some((_, e)) if failed == total => e.status,
        _ => StatusCode::OK,
    };
    Ok((status, Json(resp)).into_response())
}
