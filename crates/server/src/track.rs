//! Decoding of the JSON track API (`POST /metrics/track`, `/metrics/track/batch`): pure
//! functions from bytes to [`TrackItem`]s, each error naming the field at fault. (To be
//! replaced by `metricsd-ingest`'s `parse_track`/`parse_batch` once that crate lands.)

use std::borrow::Cow;

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

/// One decoded track item. Strings borrow from the request body where they need no
/// unescaping (the fast path), so a batch costs few allocations.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackItem<'a> {
    /// Metric name (validated).
    pub name: Cow<'a, str>,
    /// The increment, value or observation (finite).
    pub value: f64,
    /// Metric type.
    pub kind: Kind,
    /// User labels, names validated, `service_name` not among them unless equal to `service`.
    pub labels: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// The `service` field.
    pub service: Option<Cow<'a, str>>,
    /// The `tenant_id` field.
    pub tenant_id: Option<Cow<'a, str>>,
    /// Explicit timestamp in ms.
    pub timestamp_ms: Option<i64>,
    /// `# HELP` text.
    pub help: Option<Cow<'a, str>>,
    /// Histogram bucket upper bounds (strictly increasing, finite), used on first use.
    pub buckets: Option<Vec<f64>>,
}

fn owned(c: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(c.into_owned())
}

impl TrackItem<'_> {
    /// A copy that borrows nothing.
    pub fn into_owned(self) -> TrackItem<'static> {
        TrackItem {
            name: owned(self.name),
            value: self.value,
            kind: self.kind,
            labels: self
                .labels
                .into_iter()
                .map(|(k, v)| (owned(k), owned(v)))
                .collect(),
            service: self.service.map(owned),
            tenant_id: self.tenant_id.map(owned),
            timestamp_ms: self.timestamp_ms,
            help: self.help.map(owned),
            buckets: self.buckets,
        }
    }
}

/// Decodes the body of `POST /metrics/track`.
pub fn parse_track(body: &[u8]) -> Result<TrackItem<'_>, ApiError> {
    if let Ok(raw) = serde_json::from_slice::<RawItem<'_>>(body) {
        return raw.into_item();
    }
    let v: Value = parse_json(body)?;
    parse_item(&v)
}

/// Decodes the body of `POST /metrics/track/batch`: a JSON array (or `{"metrics": [...]}`).
/// The outer error is for the whole body; each element is decoded on its own.
pub fn parse_batch(body: &[u8], max_items: usize) -> Result<Vec<Result<TrackItem<'_>, ApiError>>, ApiError> {
    // Fast path: a well-formed array decodes straight into borrowed items; anything else
    // (a type error anywhere, an object wrapper, too many items) takes the slow path.
    if let Ok(raw) = serde_json::from_slice::<Vec<RawItem<'_>>>(body)
        && !raw.is_empty()
        && raw.len() <= max_items
    {
        return Ok(raw
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.into_item().map_err(|e| e.at_index(i)))
            .collect());
    }
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

/// The fields of an item, borrowed from the body, before the checks of [`build`].
struct Fields<'a, 'k> {
    name: Cow<'a, str>,
    kind: &'k str,
    value: f64,
    labels: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    service: Option<Cow<'a, str>>,
    tenant_id: Option<Cow<'a, str>>,
    timestamp: Option<&'k Value>,
    help: Option<Cow<'a, str>>,
    buckets: Option<Vec<f64>>,
}

/// An item as serde decodes it on the fast path (no intermediate `Value` tree). Any
/// decoding error sends the body to the slow path, [`parse_item`], for a precise message.
#[derive(serde::Deserialize)]
struct RawItem<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    value: f64,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    labels: Option<pairs::Pairs<'a>>,
    #[serde(default, borrow)]
    service: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tenant_id: Option<Cow<'a, str>>,
    #[serde(default)]
    timestamp: Option<Value>,
    #[serde(default, borrow)]
    help: Option<Cow<'a, str>>,
    #[serde(default)]
    buckets: Option<Vec<f64>>,
}

impl<'a> RawItem<'a> {
    fn into_item(self) -> Result<TrackItem<'a>, ApiError> {
        let ts = self
            .timestamp
            .as_ref()
            .map(|v| parse_timestamp(v).map_err(|m| ApiError::field("timestamp", m)));
        let mut item = build(Fields {
            name: self.name,
            kind: &self.kind,
            value: self.value,
            labels: self.labels.map(|p| p.0).unwrap_or_default(),
            service: self.service,
            tenant_id: self.tenant_id,
            timestamp: None,
            help: self.help,
            buckets: self.buckets,
        })?;
        item.timestamp_ms = ts.transpose()?;
        Ok(item)
    }
}

/// Labels arrive as a JSON object; serde gives them to the fast path as pairs.
mod pairs {
    use std::borrow::Cow;

    use serde::de::{Deserializer, MapAccess, Visitor};

    pub struct Pairs<'a>(pub Vec<(Cow<'a, str>, Cow<'a, str>)>);

    impl<'de: 'a, 'a> serde::Deserialize<'de> for Pairs<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Pairs<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object of string label values")
                }
                fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Pairs<'de>, M::Error> {
                    let mut v = Vec::with_capacity(m.size_hint().unwrap_or(4).min(64));
                    while let Some((k, val)) = m.next_entry::<Cow<'de, str>, Cow<'de, str>>()? {
                        v.push((k, val));
                    }
                    Ok(Pairs(v))
                }
            }
            d.deserialize_map(V)
        }
    }
}

/// Decodes one item object (the slow path: every type error names its field).
pub fn parse_item(v: &Value) -> Result<TrackItem<'static>, ApiError> {
    let Value::Object(o) = v else {
        return Err(ApiError::field(
            "body",
            format!("a metric item must be a JSON object, got {}", type_name(v)),
        ));
    };
    let name = opt_str(o, "name")?.ok_or_else(|| ApiError::field("name", "name is required"))?;
    let kind = opt_str(o, "type")?.ok_or_else(|| ApiError::field("type", "type is required"))?;
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
    let mut labels = Vec::new();
    match o.get("labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let Value::String(s) = v else {
                    return Err(ApiError::field(
                        format!("labels.{}", abbreviate(k)),
                        format!("label values must be strings, got {}", type_name(v)),
                    ));
                };
                labels.push((k.as_str(), s.as_str()));
            }
        }
        Some(v) => {
            return Err(ApiError::field(
                "labels",
                format!("labels must be an object, got {}", type_name(v)),
            ));
        }
    }
    let buckets = match o.get("buckets") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => {
            let mut b = Vec::with_capacity(a.len().min(MAX_BUCKETS + 1));
            for (i, x) in a.iter().enumerate().take(MAX_BUCKETS + 1) {
                b.push(x.as_f64().filter(|f| f.is_finite()).ok_or_else(|| {
                    ApiError::field(format!("buckets[{i}]"), "bucket bounds must be finite numbers")
                })?);
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
    build(Fields {
        name: Cow::Borrowed(name),
        kind,
        value,
        labels: labels
            .into_iter()
            .map(|(k, v)| (Cow::Borrowed(k), Cow::Borrowed(v)))
            .collect(),
        service: opt_str(o, "service")?.map(Cow::Borrowed),
        tenant_id: opt_str(o, "tenant_id")?.map(Cow::Borrowed),
        timestamp: o.get("timestamp").filter(|v| !v.is_null()),
        help: opt_str(o, "help")?.map(Cow::Borrowed),
        buckets,
    })
    .map(TrackItem::into_owned)
}

/// The checks shared by both paths: names, types, limits of the track API.
fn build<'a>(f: Fields<'a, '_>) -> Result<TrackItem<'a>, ApiError> {
    let name = f.name;
    let n: &str = &name;
    if n.is_empty() {
        return Err(ApiError::field("name", "name must not be empty"));
    }
    if !metricsd_model::is_valid_metric_name(n) {
        return Err(ApiError::field(
            "name",
            format!(
                "invalid metric name {:?}: must match [a-zA-Z_:][a-zA-Z0-9_:]*",
                abbreviate(n)
            ),
        ));
    }
    let kind = Kind::parse(f.kind).ok_or_else(|| {
        ApiError::field(
            "type",
            format!(
                "unknown type {:?}: use counter, gauge, histogram or summary",
                abbreviate(f.kind)
            ),
        )
    })?;
    let value = f.value;
    if !value.is_finite() {
        return Err(ApiError::field("value", "value must be a finite number"));
    }
    if kind == Kind::Counter && value < 0.0 {
        return Err(ApiError::field(
            "value",
            format!(
                "counter increments must not be negative, got {value} (use a gauge for values that go down)"
            ),
        ));
    }
    let service = f.service;
    if service.as_deref() == Some("") {
        return Err(ApiError::field("service", "service must not be empty when given"));
    }
    if let Some(t) = f.tenant_id.as_deref()
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
    let mut labels = Vec::with_capacity(f.labels.len());
    for (kc, sc) in f.labels {
        let (k, s): (&str, &str) = (&kc, &sc);
        if !metricsd_model::is_valid_label_name(k) || k.starts_with("__") {
            let field = format!("labels.{}", abbreviate(k));
            if k.starts_with("__") {
                return Err(ApiError::field(
                    field,
                    "label names starting with __ are reserved",
                ));
            }
            return Err(ApiError::field(
                field,
                format!(
                    "invalid label name {:?}: must match [a-zA-Z_][a-zA-Z0-9_]*",
                    abbreviate(k)
                ),
            ));
        }
        if (kind == Kind::Histogram && k == "le") || (kind == Kind::Summary && k == "quantile") {
            return Err(ApiError::field(
                format!("labels.{k}"),
                format!("label {k:?} is reserved for {} series", kind.as_str()),
            ));
        }
        if k == SERVICE_LABEL && service.as_deref().is_some_and(|svc| svc != s) {
            return Err(ApiError::field(
                format!("labels.{k}"),
                format!("label {SERVICE_LABEL:?} carries the service field and differs from it"),
            ));
        }
        labels.push((kc, sc));
    }
    let timestamp_ms = match f.timestamp {
        None => None,
        Some(v) => Some(parse_timestamp(v).map_err(|m| ApiError::field("timestamp", m))?),
    };
    if f.help.as_ref().is_some_and(|h| h.len() > 4096) {
        return Err(ApiError::field("help", "help must be at most 4096 bytes"));
    }
    let buckets = match f.buckets {
        None => None,
        Some(b) => {
            if kind != Kind::Histogram {
                return Err(ApiError::field("buckets", "buckets are only for histograms"));
            }
            if b.is_empty() || b.len() > MAX_BUCKETS {
                return Err(ApiError::field(
                    "buckets",
                    format!("give 1 to {MAX_BUCKETS} bucket bounds"),
                ));
            }
            for i in 1..b.len() {
                if b[i] <= b[i - 1] {
                    return Err(ApiError::field(
                        format!("buckets[{i}]"),
                        "bucket bounds must be strictly increasing",
                    ));
                }
            }
            Some(b)
        }
    };
    Ok(TrackItem {
        name,
        value,
        kind,
        labels,
        service,
        tenant_id: f.tenant_id,
        timestamp_ms,
        help: f.help,
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

    #[test]
    fn fast_and_slow_paths_agree() {
        let bodies = [
            r#"{"name":"a_total","value":1,"type":"counter","labels":{"b":"x\"y","a":"1"},"service":"s","tenant_id":"t","timestamp":1700000000,"help":"h"}"#,
            r#"{"name":"h","value":0.5,"type":"histogram","buckets":[1,2.5],"timestamp":"2024-01-15T10:30:00Z","extra":{"ignored":[1]}}"#,
            r#"{"name":"g","value":-3,"type":"gauge","labels":null,"service":null}"#,
        ];
        for b in bodies {
            let raw: RawItem<'_> = serde_json::from_slice(b.as_bytes()).unwrap();
            let slow = parse_item(&serde_json::from_str(b).unwrap()).unwrap();
            // Label order may differ (the slow path's map is sorted); the series do not.
            fn sorted(mut t: TrackItem<'_>) -> TrackItem<'_> {
                t.labels.sort();
                t
            }
            assert_eq!(sorted(raw.into_item().unwrap()), slow, "{b}");
            assert_eq!(sorted(parse_track(b.as_bytes()).unwrap()), slow);
        }
        // Typed errors fall back to the slow path and keep their field.
        let e = parse_batch(
            br#"[{"name":"a","value":1,"type":"gauge"},{"name":"b","value":true,"type":"gauge"}]"#,
            10,
        )
        .unwrap();
        assert!(e[0].is_ok());
        assert_eq!(e[1].as_ref().unwrap_err().field.as_deref(), Some("[1].value"));
    }
}
