//! Decoding of the JSON track API (`POST /metrics/track`, `/metrics/track/batch`): pure
//! functions from bytes to [`TrackItem`]s, each error naming the field at fault. (To be
//! replaced by `metricsd-ingest`'s `parse_track`/`parse_batch` once that crate lands.)

use serde_json::{Map, Value};

use crate::error::ApiError;

/// Label that carries the item's `service` field (see `docs/api.md`, "The service field").
pub const SERVICE_LABEL: &str = "service_name";

/// Most buckets a histogram may declare.
pub const MAX_BUCKETS: usize = 128;

/// A metric type of the track API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `value` is a non-negative increment of a cumulative counter.
    Counter,
    /// `value` is the new value.
    Gauge,
    /// `value` is an observation counted into buckets, `_sum` and `_count`.
    Histogram,
    /// `value` is an observation for sliding-window quantiles, `_sum` and `_count`.
    Summary,
}

impl Kind {
    /// The name used in JSON and in `# TYPE` lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        }
    }

    /// Parses a JSON/metadata type name.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "counter" => Some(Kind::Counter),
            "gauge" => Some(Kind::Gauge),
            "histogram" => Some(Kind::Histogram),
            "summary" => Some(Kind::Summary),
            _ => None,
        }
    }
}

/// One decoded track item.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackItem {
    /// Metric name (validated).
    pub name: String,
    /// The increment, value or observation (finite).
    pub value: f64,
    /// Metric type.
    pub kind: Kind,
    /// User labels, names validated, `service_name` not among them unless equal to `service`.
    pub labels: Vec<(String, String)>,
    /// The `service` field.
    pub service: Option<String>,
    /// The `tenant_id` field.
    pub tenant_id: Option<String>,
    /// Explicit timestamp in ms.
    pub timestamp_ms: Option<i64>,
    /// `# HELP` text.
    pub help: Option<String>,
    /// Histogram bucket upper bounds (strictly increasing, finite), used on first use.
    pub buckets: Option<Vec<f64>>,
}

/// Decodes the body of `POST /metrics/track`.
pub fn parse_track(body: &[u8]) -> Result<TrackItem, ApiError> {
    let v: Value = parse_json(body)?;
    parse_item(&v)
}

/// Decodes the body of `POST /metrics/track/batch`: a JSON array (or `{"metrics": [...]}`).
/// The outer error is for the whole body; each element is decoded on its own.
pub fn parse_batch(body: &[u8], max_items: usize) -> Result<Vec<Result<TrackItem, ApiError>>, ApiError> {
    let v: Value = parse_json(body)?;
    let items = match v {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("metrics") {
            Some(Value::Array(a)) => a,
            _ => return Err(ApiError::field("body", "expected a JSON array of metric items")),
        },
        _ => return Err(ApiError::field("body", "expected a JSON array of metric items")),
    };
    if items.is_empty() {
        return Err(ApiError::field("body", "the batch is empty"));
    }
    if items.len() > max_items {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_items",
            format!(
                "the batch has {} items, more than the limit of {max_items} (max_batch_items)",
                items.len()
            ),
        )
        .with_field("body"));
    }
    Ok(items
        .iter()
        .enumerate()
        .map(|(i, v)| parse_item(v).map_err(|e| e.at_index(i)))
        .collect())
}

impl ApiError {
    fn with_field(mut self, f: &str) -> Self {
        self.field = Some(f.to_owned());
        self
    }
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_json",
            "the request body is empty",
        )
        .with_field("body"));
    }
    // serde_json refuses nesting deeper than 128 levels, so deep bodies fail here, cheaply.
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("invalid JSON: {e}"),
        )
        .with_field("body")
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn opt_str<'a>(o: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ApiError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(ApiError::field(
            key,
            format!("{key} must be a string, got {}", type_name(v)),
        )),
    }
}

/// Decodes one item object.
pub fn parse_item(v: &Value) -> Result<TrackItem, ApiError> {
    let Value::Object(o) = v else {
        return Err(ApiError::field(
            "body",
            format!("a metric item must be a JSON object, got {}", type_name(v)),
        ));
    };
    let name = opt_str(o, "name")?.ok_or_else(|| ApiError::field("name", "name is required"))?;
    if name.is_empty() {
        return Err(ApiError::field("name", "name must not be empty"));
    }
    if !metricsd_model::is_valid_metric_name(name) {
        return Err(ApiError::field(
            "name",
            format!(
                "invalid metric name {:?}: must match [a-zA-Z_:][a-zA-Z0-9_:]*",
                abbreviate(name)
            ),
        ));
    }
    let kind_s = opt_str(o, "type")?.ok_or_else(|| ApiError::field("type", "type is required"))?;
    let kind = Kind::parse(kind_s).ok_or_else(|| {
        ApiError::field(
            "type",
            format!(
                "unknown type {:?}: use counter, gauge, histogram or summary",
                abbreviate(kind_s)
            ),
        )
    })?;
    let value = match o.get("value") {
        None | Some(Value::Null) => return Err(ApiError::field("value", "value is required")),
        Some(Value::Number(n)) => n.as_f64().filter(|f| f.is_finite()),
        Some(v) => {
            return Err(ApiError::field(
                "value",
                format!("value must be a number, got {}", type_name(v)),
            ));
        }
    }
    .ok_or_else(|| ApiError::field("value", "value must be a finite number"))?;
    if kind == Kind::Counter && value < 0.0 {
        return Err(ApiError::field(
            "value",
            format!(
                "counter increments must not be negative, got {value} (use a gauge for values that go down)"
            ),
        ));
    }
    let service = opt_str(o, "service")?.map(str::to_owned);
    if service.as_deref() == Some("") {
        return Err(ApiError::field("service", "service must not be empty when given"));
    }
    let tenant_id = opt_str(o, "tenant_id")?.map(str::to_owned);
    if let Some(t) = &tenant_id
        && !metricsd_tsdb::is_valid_tenant(t)
    {
        return Err(ApiError::field(
            "tenant_id",
            format!(
                "invalid tenant id {:?}: use 1 to 128 characters of [a-zA-Z0-9_.-]",
                abbreviate(t)
            ),
        ));
    }
    let mut labels = Vec::new();
    match o.get("labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let field = format!("labels.{}", abbreviate(k));
                let Value::String(s) = v else {
                    return Err(ApiError::field(
                        field,
                        format!("label values must be strings, got {}", type_name(v)),
                    ));
                };
                if !metricsd_model::is_valid_label_name(k) {
                    return Err(ApiError::field(
                        field,
                        format!(
                            "invalid label name {:?}: must match [a-zA-Z_][a-zA-Z0-9_]*",
                            abbreviate(k)
                        ),
                    ));
                }
                if k.starts_with("__") {
                    return Err(ApiError::field(
                        field,
                        "label names starting with __ are reserved",
                    ));
                }
                if (kind == Kind::Histogram && k == "le") || (kind == Kind::Summary && k == "quantile") {
                    return Err(ApiError::field(
                        field,
                        format!("label {k:?} is reserved for {} series", kind.as_str()),
                    ));
                }
                if k == SERVICE_LABEL && service.as_deref().is_some_and(|svc| svc != s) {
                    return Err(ApiError::field(
                        field,
                        format!("label {SERVICE_LABEL:?} carries the service field and differs from it"),
                    ));
                }
                labels.push((k.clone(), s.clone()));
            }
        }
        Some(v) => {
            return Err(ApiError::field(
                "labels",
                format!("labels must be an object, got {}", type_name(v)),
            ));
        }
    }
    let timestamp_ms = match o.get("timestamp") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_timestamp(v).map_err(|m| ApiError::field("timestamp", m))?),
    };
    let help = opt_str(o, "help")?.map(str::to_owned);
    if help.as_ref().is_some_and(|h| h.len() > 4096) {
        return Err(ApiError::field("help", "help must be at most 4096 bytes"));
    }
    let buckets = match o.get("buckets") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => {
            if kind != Kind::Histogram {
                return Err(ApiError::field("buckets", "buckets are only for histograms"));
            }
            if a.is_empty() || a.len() > MAX_BUCKETS {
                return Err(ApiError::field(
                    "buckets",
                    format!("give 1 to {MAX_BUCKETS} bucket bounds"),
                ));
            }
            let mut b = Vec::with_capacity(a.len());
            for (i, x) in a.iter().enumerate() {
                let f = x.as_f64().filter(|f| f.is_finite()).ok_or_else(|| {
                    ApiError::field(format!("buckets[{i}]"), "bucket bounds must be finite numbers")
                })?;
                if b.last().is_some_and(|&p| f <= p) {
                    return Err(ApiError::field(
                        format!("buckets[{i}]"),
                        "bucket bounds must be strictly increasing",
                    ));
                }
                b.push(f);
            }
            Some(b)
        }
        Some(v) => {
            return Err(ApiError::field(
                "buckets",
                format!("buckets must be an array of numbers, got {}", type_name(v)),
            ));
        }
    };
    Ok(TrackItem {
        name: name.to_owned(),
        value,
        kind,
        labels,
        service,
        tenant_id,
        timestamp_ms,
        help,
        buckets,
    })
}

/// Parses a timestamp: an RFC 3339 string, or a number of Unix seconds (below 1e11) or
/// milliseconds (from 1e11 on; 1e11 s is the year 5138, 1e11 ms is 1973).
pub fn parse_timestamp(v: &Value) -> Result<i64, String> {
    let ms = match v {
        Value::String(s) => {
            let ts: jiff::Timestamp = s
                .parse()
                .map_err(|e| format!("{:?} is not an RFC 3339 timestamp: {e}", abbreviate(s)))?;
            ts.as_millisecond()
        }
        Value::Number(n) => {
            let f = n
                .as_f64()
                .filter(|f| f.is_finite())
                .ok_or("timestamp must be a finite number")?;
            if f < 0.0 {
                return Err("timestamp must not be negative".into());
            }
            let ms = if f < 1e11 { f * 1000.0 } else { f };
            if ms > 1e14 {
                return Err(format!("timestamp {f} is too far in the future"));
            }
            ms.round() as i64
        }
        other => {
            return Err(format!(
                "timestamp must be an RFC 3339 string or a number, got {}",
                type_name(other)
            ));
        }
    };
    Ok(ms)
}

fn abbreviate(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_item_decodes() {
        let it = parse_track(
            br#"{"name":"api_requests_total","value":1,"type":"counter",
                 "labels":{"service":"gateway","method":"GET"},"service":"gateway-service","tenant_id":"tenant-1"}"#,
        )
        .unwrap();
        assert_eq!(it.name, "api_requests_total");
        assert_eq!(it.kind, Kind::Counter);
        assert_eq!(it.service.as_deref(), Some("gateway-service"));
        assert_eq!(it.tenant_id.as_deref(), Some("tenant-1"));
        assert_eq!(it.labels.len(), 2);
    }

    #[test]
    fn bad_items_name_their_field() {
        let field = |body: &str| {
            parse_track(body.as_bytes())
                .unwrap_err()
                .field
                .unwrap_or_default()
        };
        assert_eq!(field("{"), "body");
        assert_eq!(field("[]"), "body");
        assert_eq!(field(r#"{"value":1,"type":"gauge"}"#), "name");
        assert_eq!(field(r#"{"name":"","value":1,"type":"gauge"}"#), "name");
        assert_eq!(field(r#"{"name":"1x","value":1,"type":"gauge"}"#), "name");
        assert_eq!(field(r#"{"name":"x","value":"1","type":"gauge"}"#), "value");
        assert_eq!(field(r#"{"name":"x","value":"NaN","type":"gauge"}"#), "value");
        assert_eq!(field(r#"{"name":"x","value":-1,"type":"counter"}"#), "value");
        assert_eq!(field(r#"{"name":"x","value":1,"type":"meter"}"#), "type");
        assert_eq!(
            field(r#"{"name":"x","value":1,"type":"gauge","labels":{"a-b":"c"}}"#),
            "labels.a-b"
        );
        assert_eq!(
            field(r#"{"name":"x","value":1,"type":"gauge","labels":{"a":1}}"#),
            "labels.a"
        );
        assert_eq!(
            field(r#"{"name":"x","value":1,"type":"gauge","timestamp":"yesterday"}"#),
            "timestamp"
        );
        assert_eq!(
            field(r#"{"name":"x","value":1,"type":"histogram","buckets":[1,1]}"#),
            "buckets[1]"
        );
        assert_eq!(
            field(r#"{"name":"x","value":1,"type":"gauge","tenant_id":"../x"}"#),
            "tenant_id"
        );
        let deep = "[".repeat(10_000);
        assert_eq!(field(&deep), "body");
    }

    #[test]
    fn timestamps() {
        use serde_json::json;
        assert_eq!(
            parse_timestamp(&json!("2024-01-15T10:30:00Z")).unwrap(),
            1_705_314_600_000
        );
        assert_eq!(parse_timestamp(&json!(1_705_314_600)).unwrap(), 1_705_314_600_000);
        assert_eq!(
            parse_timestamp(&json!(1_705_314_600_123i64)).unwrap(),
            1_705_314_600_123
        );
        assert!(parse_timestamp(&json!(true)).is_err());
    }

    #[test]
    fn batch_reports_each_item() {
        let r = parse_batch(
            br#"[{"name":"a","value":1,"type":"gauge"},{"name":"b","type":"gauge"}]"#,
            10,
        )
        .unwrap();
        assert!(r[0].is_ok());
        assert_eq!(r[1].as_ref().unwrap_err().field.as_deref(), Some("[1].value"));
        assert_eq!(
            parse_batch(b"[1,2,3]", 2).unwrap_err().status,
            axum::http::StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
