//! `POST /api/v1/write`: Prometheus remote_write 1.0 into the tenant's store.

use super::*;

pub(super) async fn write(
    State(st): St,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // The body is snappy-compressed whatever the header says (remote_write 1.0); a gzip or
    // deflate layer on top was removed by the decompression layer.
    content_encoding(&headers, &["snappy"])?;
    remote_write_version(&headers)?;
    let b = body(b)?;
    let tenant = crate::tenant::of_request(&headers)?;
    let max = st.cfg.max_body_bytes.saturating_mul(8);
    let st2 = st.clone();
    // Decoding (snappy, protobuf, label validation) runs with the store work.
    let res = ingest_work(
        &st,
        b.len() <= SNAPPY_INLINE_MAX,
        move || -> Result<(usize, usize, Option<String>), ApiError> {
            // Series the tenant's head knows by the key of their label bytes cost no label
            // parsing, validation or lookup; the others are remembered at commit.
            let known = st2.storage.existing_tenant(&tenant);
            let mut batch = KeyedBatch::default();
            RemoteWriteDecoder::new(max, st2.cfg.limits())
                .with_key_seed(st2.rw_key_seed)
                .decode_keyed(&b, &mut batch, |key| known.as_ref()?.keyed_series(key))
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.to_string()))?;
            // The handles are of the store they were found in: append there. A request
            // without samples (metadata only, say) creates no tenant.
            let (db, created) = match known {
                Some(db) => (db, false),
                None if batch.samples.is_empty() => {
                    st2.metrics.points_dropped.add(batch.rejected_samples as u64);
                    let first = batch.rejected.first().map(|(_, e)| e.to_string());
                    return Ok((batch.rejected_samples, batch.rejected_samples, first));
                }
                None => st2
                    .storage
                    .tenant_for_write(&tenant)
                    .map_err(|e| ApiError::from_store(&e))?,
            };
            let mut app = db.appender();
            app.reserve(batch.series.len(), batch.samples.len());
            let mut dropped = batch.rejected_samples;
            let mut first: Option<String> = batch.rejected.first().map(|(_, e)| e.to_string());
            let total = batch.samples.len() + batch.rejected_samples;
            for (id, samples) in batch.drain() {
                match id {
                    SeriesId::Known(series) => app.append_known(series, samples),
                    SeriesId::New { labels, key } => app.append_keyed(key, labels, samples),
                }
            }
            let report = app.commit().map_err(|e| ApiError::from_store(&e))?;
            drop(db);
            // A tenant created for samples that were all refused is not left behind.
            let forgotten = created && report.accepted == 0 && st2.storage.forget_unused(&tenant);
            // Metadata is kept once the request is stored (a failed one is resent with it).
            if !forgotten {
                let lost = st2.rw_meta.record(&tenant, &batch.metadata);
                st2.metrics.metadata_dropped.add(lost as u64);
            }
            dropped += report.rejected.len();
            if first.is_none()
                && let Some((_, e)) = report.rejected.first()
            {
                first = Some(e.to_string());
            }
            st2.metrics.points_stored.add(report.accepted as u64);
            st2.metrics.points_dropped.add(dropped as u64);
            if !forgotten {
                st2.metrics
                    .add_tenant_points(&tenant, report.accepted as u64, dropped as u64);
            }
            Ok((total, dropped, first))
        },
    )
    .await?;
    let (total, dropped, first) = res.inspect_err(|_| st.metrics.errors.inc())?;
    if dropped > 0 {
        st.metrics.errors.inc();
        // 400: the sender drops the request; the valid samples of it are stored.
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "rejected",
            format!(
                "{dropped} of {total} samples rejected; first: {}",
                first.unwrap_or_default()
            ),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
