//! The checks of a track item against its series' state, before anything is stored.

use super::*;

impl Collector {
    /// Every check of an item against its series' state (type, naming policy, timestamp
    /// order, label limits of every series it writes); returns the sample timestamp.
    pub(super) fn check(
        &self,
        item: &TrackItem<'_>,
        key: &Labels,
        cur: Option<&State>,
        known: Option<&Meta>,
        now: i64,
    ) -> Result<i64, ApiError> {
        // A name keeps the type it was first tracked with (and a series the type of its
        // state, should the metadata ever disagree).
        let was = [known.map(|m| m.kind.as_str()), cur.map(State::kind)]
            .into_iter()
            .flatten()
            .find(|k| *k != item.kind.as_str());
        if let Some(was) = was {
            return Err(ApiError::field(
                "type",
                format!("metric {:?} is a {was}, not a {}", item.name, item.kind.as_str()),
            ));
        }
        check_naming(self.opts.naming, item, &self.metrics)?;
        let t = match (item.timestamp_ms, cur) {
            (Some(t), Some(s)) if item.kind != MetricKind::Gauge && t <= s.last_t() => {
                return Err(ApiError::field(
                    "timestamp",
                    format!(
                        "timestamp {t} ms is not after the newest sample of this {} ({} ms); cumulative types need increasing timestamps",
                        item.kind.as_str(),
                        s.last_t()
                    ),
                ));
            }
            (Some(t), _) => t,
            // Strictly increasing per series, so two updates in one millisecond do not
            // collide as duplicate samples.
            (None, Some(s)) => now.max(s.last_t() + 1),
            (None, None) => now,
        };
        if cur.is_some() {
            // A known series was validated when it was created.
            return Ok(t);
        }
        // The widest series the item writes: the longest name plus the extra label.
        let widest = match item.kind {
            MetricKind::Counter | MetricKind::Gauge => key.clone(),
            MetricKind::Histogram => {
                with_name(key, &format!("{}_bucket", item.name), Some(("le", "+Inf".into())))
            }
            MetricKind::Summary => with_name(
                key,
                &format!("{}_count", item.name),
                Some(("quantile", "0.99".into())),
            ),
        };
        metricsd_model::validate_labels(&widest, &self.opts.limits).map_err(|e| {
            let code = match e.kind() {
                metricsd_model::ErrorKind::LimitExceeded => "limit_exceeded",
                metricsd_model::ErrorKind::InvalidInput => "invalid_field",
            };
            ApiError {
                code,
                ..ApiError::field("labels", e.to_string())
            }
        })?;
        Ok(t)
    }
}
