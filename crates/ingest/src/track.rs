//! The JSON track API: `POST /metrics/track` (one object) and `POST /metrics/track/batch`
//! (an array of them, or `{"metrics": [...]}`), decoded into [`TrackItem`]s.
//!
//! ```json
//! {"name": "api_requests_total", "value": 1, "type": "counter",
//!  "labels": {"service": "gateway", "method": "GET"},
//!  "service": "gateway-service", "tenant_id": "tenant-1",
//!  "timestamp": "2024-01-15T10:30:00Z"}
//! ```
//!
//! # Two paths, one result
//! The fast path deserializes straight into borrowed fields (`Cow<str>` pointing into the
//! body where no unescaping is needed): no `serde_json::Value` tree, few allocations, about
//! 1.7× the throughput of the slow path. Any decoding error on the fast path (a string
//! where a number belongs, a duplicate field, an object wrapper around a batch) sends the
//! body to the slow path, which walks a `Value` tree so that every error names its field.
//! Both end in [`build`], which holds every rule, so both accept exactly the same items;
//! labels come out sorted by name with duplicate names resolved "last one wins", as
//! `serde_json`'s map does on the slow path. The fuzz target `fuzz-ingest/track_json`
//! checks that the two paths agree.
//!
//! The rules are documented on [`parse_track`]. Label *limits* (count, lengths) and the
//! series limit are the caller's: they depend on configuration and on the series the item
//! writes (a histogram adds `le`).

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::error::{TrackError, abbreviate};

/// Label that carries an item's `service` field (see `docs/api.md`, "The service field").
pub const SERVICE_LABEL: &str = "service_name";

/// Most buckets a histogram may declare.
pub const MAX_BUCKETS: usize = 128;

/// Longest `help` text in bytes.
pub const MAX_HELP_LENGTH: usize = 4096;

/// 3001-01-01T00:00:00Z in Unix milliseconds: the first rejected instant.
const END_MS: i64 = 32_535_216_000_000;
/// Numbers below this are seconds, at or above it milliseconds (see [`parse_timestamp`]).
const SECONDS_BELOW: f64 = 1e11;

/// The four metric types of the track API (JSON field `"type"`); serialized by their JSON
/// names (`"counter"`, ...), as the collector's metadata file stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    /// `value` is a non-negative increment of a cumulative counter.
    Counter,
    /// `value` is the new value.
    Gauge,
    /// `value` is an observation counted into buckets, `_sum` and `_count`.
    Histogram,
    /// `value` is an observation for sliding-window quantiles, `_sum` and `_count`.
    Summary,
}

impl MetricKind {
    /// The name used in JSON and in `# TYPE` lines.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
            MetricKind::Summary => "summary",
        }
    }

    /// Parses the JSON spelling (lowercase only).
    pub fn parse(s: &str) -> Option<MetricKind> {
        match s {
            "counter" => Some(MetricKind::Counter),
            "gauge" => Some(MetricKind::Gauge),
            "histogram" => Some(MetricKind::Histogram),
            "summary" => Some(MetricKind::Summary),
            _ => None,
        }
    }
}

impl std::fmt::Display for MetricKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
    pub kind: MetricKind,
    /// User labels, sorted by name, names unique and validated; `service_name` only if
    /// equal to `service`.
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
///
/// # Rules
/// - `name` (required): a non-empty Prometheus metric name, `[a-zA-Z_:][a-zA-Z0-9_:]*`.
/// - `value` (required): a finite JSON number. Strings (`"42"`, `"NaN"`), `null` and
///   numbers outside the f64 range (`1e400`) are rejected; counter increments must be
///   `>= 0`.
/// - `type` (required): `counter`, `gauge`, `histogram` or `summary`, lowercase.
/// - `labels` (optional): an object of string values; names `[a-zA-Z_][a-zA-Z0-9_]*`, not
///   starting with `__`; `le` is reserved on histograms, `quantile` on summaries; a
///   `service_name` label must equal the `service` field. A name given twice keeps its
///   last value. Empty values mean "no label", as everywhere in metricsd.
/// - `service` (optional): a non-empty string, stored as the label `service_name`.
/// - `tenant_id` (optional): 1–128 characters of `[a-zA-Z0-9_.-]`, not `.` or `..`.
/// - `timestamp` (optional): see [`parse_timestamp`].
/// - `help` (optional): a string of at most [`MAX_HELP_LENGTH`] bytes.
/// - `buckets` (optional, histograms only): 1 to [`MAX_BUCKETS`] finite, strictly
///   increasing numbers.
/// - `null` for an optional field means absent; unknown fields are ignored (newer clients
///   may send fields an older server does not know).
///
/// Errors name the field: `invalid_json` for an undecodable body (field `body`),
/// `invalid_field` for everything else.
pub fn parse_track(body: &[u8]) -> Result<TrackItem<'_>, TrackError> {
    if let Ok(raw) = serde_json::from_slice::<RawItem<'_>>(body) {
        return raw.into_item();
    }
    let v: Value = parse_json(body)?;
    parse_item(&v)
}

/// Decodes the body of `POST /metrics/track/batch`: a JSON array (or `{"metrics": [...]}`)
/// of items as [`parse_track`] takes them.
///
/// The outer error is for the whole body: not JSON, no array, empty, or more than
/// `max_items` items (`too_many_items`). Each item then succeeds or fails on its own, in
/// input order, so the caller can store the valid ones and report the others; item errors
/// name the field with the item's index (`[3].value`).
pub fn parse_batch(
    body: &[u8],
    max_items: usize,
) -> Result<Vec<Result<TrackItem<'_>, TrackError>>, TrackError> {
    // Fast path: a well-formed array decodes straight into borrowed items; anything else
    // (a type error anywhere, an object wrapper, too many items) takes the slow path.
    let mut de = serde_json::Deserializer::from_slice(body);
    if let Ok(items) = serde::de::DeserializeSeed::deserialize(
        BatchSeed {
            max: max_items,
            len: body.len(),
        },
        &mut de,
    ) && de.end().is_ok()
        && !items.is_empty()
    {
        return Ok(items);
    }
    let v: Value = parse_json(body)?;
    let items = match v {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("metrics") {
            Some(Value::Array(a)) => a,
            _ => {
                return Err(TrackError::invalid(
                    "body",
                    "expected a JSON array of metric items",
                ));
            }
        },
        _ => {
            return Err(TrackError::invalid(
                "body",
                "expected a JSON array of metric items",
            ));
        }
    };
    if items.is_empty() {
        return Err(TrackError::invalid("body", "the batch is empty"));
    }
    if items.len() > max_items {
        return Err(TrackError::too_many_items(items.len(), max_items));
    }
    Ok(items
        .iter()
        .enumerate()
        .map(|(i, v)| parse_item(v).map_err(|e| e.at_index(i)))
        .collect())
}

fn parse_json(body: &[u8]) -> Result<Value, TrackError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(TrackError::json("the request body is empty"));
    }
    // serde_json refuses nesting deeper than 128 levels, so deep bodies fail here, cheaply.
    serde_json::from_slice(body).map_err(|e| TrackError::json(format!("invalid JSON: {e}")))
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

fn opt_str<'a>(o: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, TrackError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(TrackError::invalid(
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
    name: pairs::Str<'a>,
    value: f64,
    #[serde(rename = "type", borrow)]
    kind: pairs::Str<'a>,
    #[serde(default, borrow)]
    labels: Option<pairs::Pairs<'a>>,
    #[serde(default, borrow)]
    service: Option<pairs::Str<'a>>,
    #[serde(default, borrow)]
    tenant_id: Option<pairs::Str<'a>>,
    #[serde(default)]
    timestamp: Option<Value>,
    #[serde(default, borrow)]
    help: Option<pairs::Str<'a>>,
    #[serde(default)]
    buckets: Option<Vec<f64>>,
}

/// Decodes a batch array item by item into its final form, in a vector sized from the body
/// (serde's own `Vec` grows by doubling, moving every item each time). Fails past `max`
/// items, so the slow path can report it.
struct BatchSeed {
    max: usize,
    /// The body's length: an item is rarely under 64 bytes.
    len: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for BatchSeed {
    type Value = Vec<Result<TrackItem<'de>, TrackError>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for BatchSeed {
    type Value = Vec<Result<TrackItem<'de>, TrackError>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of metric items")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(self.max.min(self.len / 64 + 1));
        while let Some(raw) = seq.next_element::<RawItem<'de>>()? {
            if out.len() == self.max {
                return Err(serde::de::Error::custom("too many items"));
            }
            let i = out.len();
            out.push(raw.into_item().map_err(|e| e.at_index(i)));
        }
        Ok(out)
    }
}

impl<'a> RawItem<'a> {
    fn into_item(self) -> Result<TrackItem<'a>, TrackError> {
        build(Fields {
            name: self.name.0,
            kind: &self.kind.0,
            value: self.value,
            labels: self.labels.map(|p| p.0).unwrap_or_default(),
            service: self.service.map(|s| s.0),
            tenant_id: self.tenant_id.map(|s| s.0),
            timestamp: self.timestamp.as_ref().filter(|v| !v.is_null()),
            help: self.help.map(|s| s.0),
            buckets: self.buckets,
        })
    }
}

/// Labels arrive as a JSON object; serde gives them to the fast path as pairs. Strings
/// borrow from the body unless they hold escapes.
mod pairs {
    use std::borrow::Cow;

    use serde::de::{Deserializer, MapAccess, Visitor};

    pub struct Pairs<'a>(pub Vec<(Cow<'a, str>, Cow<'a, str>)>);

    /// A string that borrows from the input when it can. (`Cow<str>`'s own `Deserialize`
    /// always allocates, and `#[serde(borrow)]` borrows only a bare `Cow` field, not one
    /// in an `Option` or a map.)
    pub struct Str<'a>(pub Cow<'a, str>);

    impl<'de: 'a, 'a> serde::Deserialize<'de> for Str<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Str<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a string")
                }
                fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Str<'de>, E> {
                    Ok(Str(Cow::Borrowed(s)))
                }
                fn visit_str<E>(self, s: &str) -> Result<Str<'de>, E> {
                    Ok(Str(Cow::Owned(s.to_owned())))
                }
                fn visit_string<E>(self, s: String) -> Result<Str<'de>, E> {
                    Ok(Str(Cow::Owned(s)))
                }
            }
            d.deserialize_str(V)
        }
    }

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
                    while let Some((k, val)) = m.next_entry::<Str<'de>, Str<'de>>()? {
                        v.push((k.0, val.0));
                    }
                    Ok(Pairs(v))
                }
            }
            d.deserialize_map(V)
        }
    }
}

/// Decodes one item object (the slow path: every type error names its field).
pub fn parse_item(v: &Value) -> Result<TrackItem<'static>, TrackError> {
    let Value::Object(o) = v else {
        return Err(TrackError::invalid(
            "body",
            format!("a metric item must be a JSON object, got {}", type_name(v)),
        ));
    };
    let name = opt_str(o, "name")?.ok_or_else(|| TrackError::invalid("name", "name is required"))?;
    let kind = opt_str(o, "type")?.ok_or_else(|| TrackError::invalid("type", "type is required"))?;
    let value = match o.get("value") {
        None | Some(Value::Null) => return Err(TrackError::invalid("value", "value is required")),
        Some(Value::Number(n)) => n.as_f64().filter(|f| f.is_finite()),
        Some(Value::String(s)) => {
            let t = s.trim().trim_start_matches(['+', '-']).to_ascii_lowercase();
            let why = if matches!(t.as_str(), "nan" | "inf" | "infinity") {
                "NaN and infinities are not accepted"
            } else {
                "send a JSON number, not a string"
            };
            return Err(TrackError::invalid(
                "value",
                format!(
                    "value must be a finite number, got the string {:?}: {why}",
                    abbreviate(s)
                ),
            ));
        }
        Some(v) => {
            return Err(TrackError::invalid(
                "value",
                format!("value must be a number, got {}", type_name(v)),
            ));
        }
    }
    .ok_or_else(|| TrackError::invalid("value", "value must be a finite number"))?;
    let mut labels = Vec::new();
    match o.get("labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let Value::String(s) = v else {
                    return Err(TrackError::invalid(
                        format!("labels.{}", abbreviate(k)),
                        format!("label values must be strings, got {}", type_name(v)),
                    ));
                };
                labels.push((Cow::Borrowed(k.as_str()), Cow::Borrowed(s.as_str())));
            }
        }
        Some(v) => {
            return Err(TrackError::invalid(
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
                    TrackError::invalid(format!("buckets[{i}]"), "bucket bounds must be finite numbers")
                })?);
            }
            Some(b)
        }
        Some(v) => {
            return Err(TrackError::invalid(
                "buckets",
                format!("buckets must be an array of numbers, got {}", type_name(v)),
            ));
        }
    };
    build(Fields {
        name: Cow::Borrowed(name),
        kind,
        value,
        labels,
        service: opt_str(o, "service")?.map(Cow::Borrowed),
        tenant_id: opt_str(o, "tenant_id")?.map(Cow::Borrowed),
        timestamp: o.get("timestamp").filter(|v| !v.is_null()),
        help: opt_str(o, "help")?.map(Cow::Borrowed),
        buckets,
    })
    .map(TrackItem::into_owned)
}

/// Whether `s` is a tenant id: 1–128 characters of `[a-zA-Z0-9_.-]`, not `.` or `..` (it
/// names a directory).
pub fn is_valid_tenant_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The checks shared by both paths: names, types, timestamps, buckets.
fn build<'a>(f: Fields<'a, '_>) -> Result<TrackItem<'a>, TrackError> {
    let name = f.name;
    let n: &str = &name;
    if n.is_empty() {
        return Err(TrackError::invalid("name", "name must not be empty"));
    }
    if !metricsd_model::is_valid_metric_name(n) {
        return Err(TrackError::invalid(
            "name",
            format!(
                "invalid metric name {:?}: must match [a-zA-Z_:][a-zA-Z0-9_:]*",
                abbreviate(n)
            ),
        ));
    }
    let kind = MetricKind::parse(f.kind).ok_or_else(|| {
        TrackError::invalid(
            "type",
            format!(
                "unknown type {:?}: use counter, gauge, histogram or summary",
                abbreviate(f.kind)
            ),
        )
    })?;
    let value = f.value;
    if !value.is_finite() {
        return Err(TrackError::invalid("value", "value must be a finite number"));
    }
    if kind == MetricKind::Counter && value < 0.0 {
        return Err(TrackError::invalid(
            "value",
            format!(
                "counter increments must not be negative, got {value} (use a gauge for values that go down)"
            ),
        ));
    }
    let service = f.service;
    if service.as_deref() == Some("") {
        return Err(TrackError::invalid(
            "service",
            "service must not be empty when given",
        ));
    }
    if let Some(t) = f.tenant_id.as_deref()
        && !is_valid_tenant_id(t)
    {
        return Err(TrackError::invalid(
            "tenant_id",
            format!(
                "invalid tenant id {:?}: use 1 to 128 characters of [a-zA-Z0-9_.-]",
                abbreviate(t)
            ),
        ));
    }
    let mut labels = f.labels;
    // Sorted by name, last duplicate wins: the stable sort keeps input order among equal
    // names, so keeping the last of each run is "last one wins", as serde_json's map.
    labels.sort_by(|a, b| a.0.cmp(&b.0));
    let mut i = 0;
    while i + 1 < labels.len() {
        if labels.get(i).map(|l| &l.0) == labels.get(i + 1).map(|l| &l.0) {
            labels.remove(i);
        } else {
            i += 1;
        }
    }
    for (kc, sc) in &labels {
        let (k, s): (&str, &str) = (kc, sc);
        if !metricsd_model::is_valid_label_name(k) || k.starts_with("__") {
            let field = format!("labels.{}", abbreviate(k));
            if k.starts_with("__") {
                return Err(TrackError::invalid(
                    field,
                    "label names starting with __ are reserved",
                ));
            }
            return Err(TrackError::invalid(
                field,
                format!(
                    "invalid label name {:?}: must match [a-zA-Z_][a-zA-Z0-9_]*",
                    abbreviate(k)
                ),
            ));
        }
        if (kind == MetricKind::Histogram && k == "le") || (kind == MetricKind::Summary && k == "quantile") {
            return Err(TrackError::invalid(
                format!("labels.{k}"),
                format!("label {k:?} is reserved for {} series", kind.as_str()),
            ));
        }
        if k == SERVICE_LABEL && service.as_deref().is_some_and(|svc| svc != s) {
            return Err(TrackError::invalid(
                format!("labels.{k}"),
                format!("label {SERVICE_LABEL:?} carries the service field and differs from it"),
            ));
        }
    }
    let timestamp_ms = match f.timestamp {
        None => None,
        Some(v) => Some(parse_timestamp(v).map_err(|m| TrackError::invalid("timestamp", m))?),
    };
    if f.help.as_ref().is_some_and(|h| h.len() > MAX_HELP_LENGTH) {
        return Err(TrackError::invalid(
            "help",
            format!("help must be at most {MAX_HELP_LENGTH} bytes"),
        ));
    }
    let buckets = match f.buckets {
        None => None,
        Some(b) => {
            if kind != MetricKind::Histogram {
                return Err(TrackError::invalid("buckets", "buckets are only for histograms"));
            }
            if b.is_empty() || b.len() > MAX_BUCKETS {
                return Err(TrackError::invalid(
                    "buckets",
                    format!("give 1 to {MAX_BUCKETS} bucket bounds"),
                ));
            }
            for (i, w) in b.windows(2).enumerate() {
                let i = i + 1;
                if matches!(w, [prev, cur] if cur <= prev) {
                    return Err(TrackError::invalid(
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

/// Parses a timestamp: an RFC 3339 string (`2024-01-15T10:30:00.5+01:00`; sub-millisecond
/// digits are truncated), or a JSON number of Unix **seconds** when below 1e11 (may be
/// fractional, rounded to the millisecond) and Unix **milliseconds** from 1e11 on. The
/// cut-over is unambiguous for every plausible instant: 1e11 s is the year 5138, 1e11 ms is
/// 1973-03-03. Instants before 1970 or from the year 3001 on are rejected.
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
            let ms = if f < SECONDS_BELOW { f * 1000.0 } else { f };
            if ms >= END_MS as f64 {
                return Err(format!(
                    "timestamp {f} is after the year 3000 (numbers below 1e11 are seconds, others milliseconds)"
                ));
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
    if ms < 0 {
        return Err(format!("timestamp {v} is before 1970-01-01"));
    }
    if ms >= END_MS {
        return Err(format!("timestamp {v} is after the year 3000"));
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> TrackError {
        parse_track(body.as_bytes()).expect_err(body)
    }

    #[test]
    fn seed_item_decodes() {
        let it = parse_track(
            br#"{"name":"api_requests_total","value":1,"type":"counter",
                 "labels":{"service":"gateway","method":"GET"},"service":"gateway-service","tenant_id":"tenant-1"}"#,
        )
        .unwrap();
        assert_eq!(it.name, "api_requests_total");
        assert_eq!(it.kind, MetricKind::Counter);
        assert_eq!(it.service.as_deref(), Some("gateway-service"));
        assert_eq!(it.tenant_id.as_deref(), Some("tenant-1"));
        // Sorted by name.
        assert_eq!(it.labels[0], ("method".into(), "GET".into()));
        assert_eq!(it.labels.len(), 2);
    }

    #[test]
    fn optional_nulls_and_unknown_fields() {
        let t = parse_track(
            br#"{"name":"m","value":-2.5,"type":"gauge","labels":null,"service":null,
                "tenant_id":null,"timestamp":null,"help":null,"buckets":null,
                "future":{"deep":[1,2,{"x":null}]}}"#,
        )
        .unwrap();
        assert_eq!(t.value, -2.5);
        assert!(t.labels.is_empty());
        assert_eq!((t.service, t.timestamp_ms), (None, None));
    }

    /// Every rejection names its field; codes are the API's (`docs/api.md`).
    #[test]
    fn bad_items_name_their_field() {
        let cases: &[(&str, &str, &str)] = &[
            ("{", "invalid_json", "body"),
            ("", "invalid_json", "body"),
            ("\u{7f}", "invalid_json", "body"),
            (
                r#"{"name":"m","value":1,"type":"gauge"} x"#,
                "invalid_json",
                "body",
            ),
            ("[]", "invalid_field", "body"),
            (r#"[{"name":"m"}]"#, "invalid_field", "body"),
            (r#"{"value":1,"type":"gauge"}"#, "invalid_field", "name"),
            (r#"{"name":"m","type":"gauge"}"#, "invalid_field", "value"),
            (r#"{"name":"m","value":1}"#, "invalid_field", "type"),
            (r#"{"name":"","value":1,"type":"gauge"}"#, "invalid_field", "name"),
            (
                r#"{"name":"1x","value":1,"type":"gauge"}"#,
                "invalid_field",
                "name",
            ),
            (
                r#"{"name":"a-b","value":1,"type":"gauge"}"#,
                "invalid_field",
                "name",
            ),
            (r#"{"name":5,"value":1,"type":"gauge"}"#, "invalid_field", "name"),
            (
                r#"{"name":"x","value":"1","type":"gauge"}"#,
                "invalid_field",
                "value",
            ),
            (
                r#"{"name":"x","value":"NaN","type":"gauge"}"#,
                "invalid_field",
                "value",
            ),
            (
                r#"{"name":"x","value":"-Infinity","type":"gauge"}"#,
                "invalid_field",
                "value",
            ),
            (
                r#"{"name":"x","value":[1],"type":"gauge"}"#,
                "invalid_field",
                "value",
            ),
            // Out of the f64 range: serde_json refuses the document as a whole.
            (
                r#"{"name":"x","value":1e400,"type":"gauge"}"#,
                "invalid_json",
                "body",
            ),
            (
                r#"{"name":"x","value":-1,"type":"counter"}"#,
                "invalid_field",
                "value",
            ),
            (
                r#"{"name":"x","value":1,"type":"meter"}"#,
                "invalid_field",
                "type",
            ),
            (
                r#"{"name":"x","value":1,"type":"Counter"}"#,
                "invalid_field",
                "type",
            ),
            (r#"{"name":"x","value":1,"type":1}"#, "invalid_field", "type"),
            (
                r#"{"name":"x","value":1,"type":"gauge","labels":[]}"#,
                "invalid_field",
                "labels",
            ),
            (
                r#"{"name":"x","value":1,"type":"gauge","labels":{"a-b":"c"}}"#,
                "invalid_field",
                "labels.a-b",
            ),
            (
                r#"{"name":"x","value":1,"type":"gauge","labels":{"a":1}}"#,
                "invalid_field",
                "labels.a",
            ),
            (
                r#"{"name":"x","value":1,"type":"gauge","labels":{"a":null}}"#,
                "invalid_field",
                "labels.a",
            ),
            (
                r#"{"name":"x","value":1,"type":"gauge","labels":{"a":{"b":"c"}}}"#,
                "invalid_field",
                "labels.a",
            ),
            (
                r#"{"name":"x","value":1,"type":"gauge","labels":{"__name__":"c"}}"#,
                "invalid_field",
                "labels.__name__",
            ),
            (
                r#"{"name":"x","value":1,"type":"histogram","labels":{"le":"1"}}"#,
                "invalid_field",
                "labels.le",
            ),
            (
                r#"{"name":"x","value":1,"type":"summary","labels":{"quantile":"1"}}"#,
                "invalid_field",
                "labels.quantile",
            ),
            (
                r#"{"name":"x","value":1,"type":"gauge","service":"a","labels":{"service_name":"b"}}"#,
                "invalid_field",
                "labels.service_name",
            ),
            (
                r#"{"name":"x","value":1,"type":"gauge","service":7}"#,
                "invalid_field",
                "service",
            ),
            (
                r#"{"name":"x","value":1,"type":"gauge","service":""}"#,
                "invalid_field",
                "service",
            ),
            (
                r#"{"name":"x","value":1,"type":"gauge","tenant_id":"../x"}"#,
                "invalid_field",
                "tenant_id",
            ),
            (
                r#"{"name":"x","value":1,"type":"gauge","tenant_id":".."}"#,
                "invalid_field",
                "tenant_id",
            ),
            (
                r#"{"name":"x","value":1,"type":"gauge","tenant_id":""}"#,
                "invalid_field",
                "tenant_id",
            ),
            (
                r#"{"name":"x","value":1,"type":"gauge","help":1}"#,
                "invalid_field",
                "help",
            ),
            (
                r#"{"name":"x","value":1,"type":"gauge","timestamp":"yesterday"}"#,
                "invalid_field",
                "timestamp",
            ),
            (
                r#"{"name":"x","value":1,"type":"gauge","timestamp":true}"#,
                "invalid_field",
                "timestamp",
            ),
            (
                r#"{"name":"x","value":1,"type":"gauge","buckets":[1]}"#,
                "invalid_field",
                "buckets",
            ),
            (
                r#"{"name":"x","value":1,"type":"histogram","buckets":[1,1]}"#,
                "invalid_field",
                "buckets[1]",
            ),
            (
                r#"{"name":"x","value":1,"type":"histogram","buckets":[2,1]}"#,
                "invalid_field",
                "buckets[1]",
            ),
            (
                r#"{"name":"x","value":1,"type":"histogram","buckets":[1,"Inf"]}"#,
                "invalid_field",
                "buckets[1]",
            ),
            (
                r#"{"name":"x","value":1,"type":"histogram","buckets":[]}"#,
                "invalid_field",
                "buckets",
            ),
            (
                r#"{"name":"x","value":1,"type":"histogram","buckets":1}"#,
                "invalid_field",
                "buckets",
            ),
        ];
        for (body, code, field) in cases {
            let e = err(body);
            assert_eq!((e.code(), e.field()), (*code, Some(*field)), "{body}: {e}");
        }
        let deep = "[".repeat(10_000);
        assert_eq!(err(&deep).field(), Some("body"));
        let help = format!(
            r#"{{"name":"m","value":1,"type":"gauge","help":"{}"}}"#,
            "h".repeat(MAX_HELP_LENGTH + 1)
        );
        assert_eq!(err(&help).field(), Some("help"));
        let many = format!(
            r#"{{"name":"h","value":1,"type":"histogram","buckets":[{}]}}"#,
            (0..300).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
        );
        assert_eq!(err(&many).field(), Some("buckets"));
    }

    #[test]
    fn timestamps() {
        let ts = |v: &str| {
            parse_track(format!(r#"{{"name":"m","value":1,"type":"gauge","timestamp":{v}}}"#).as_bytes())
                .map(|t| t.timestamp_ms.unwrap())
                .map_err(|e| {
                    assert_eq!(e.field(), Some("timestamp"), "{v}: {e}");
                })
        };
        // 2024-01-15T10:30:00Z = 1705314600 s.
        assert_eq!(ts(r#""2024-01-15T10:30:00Z""#), Ok(1_705_314_600_000));
        assert_eq!(ts(r#""2024-01-15T11:30:00.250+01:00""#), Ok(1_705_314_600_250));
        assert_eq!(ts(r#""2024-01-15T10:30:00.123999Z""#), Ok(1_705_314_600_123));
        assert_eq!(ts("1705314600"), Ok(1_705_314_600_000));
        assert_eq!(ts("1705314600.5"), Ok(1_705_314_600_500));
        assert_eq!(ts("1705314600123"), Ok(1_705_314_600_123));
        assert_eq!(ts("1705314600123.6"), Ok(1_705_314_600_124));
        assert_eq!(ts("1.7053146e12"), Ok(1_705_314_600_000));
        assert_eq!(ts("0"), Ok(0));
        // The cut-over: just below 1e11 is seconds (year 5138, rejected), 1e11 is milliseconds.
        assert!(ts("99999999999").is_err());
        assert_eq!(ts("100000000000"), Ok(100_000_000_000));
        for bad in [
            "-1",
            "-0.5",
            r#""1969-12-31T23:59:59Z""#,
            "32535216000",
            "32535216000000",
            "1e300",
            "9223372036854775807",
            r#""3001-01-01T00:00:00Z""#,
            r#""yesterday""#,
            "true",
        ] {
            assert!(ts(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn duplicate_labels_last_wins_on_both_paths() {
        let body = br#"{"name":"m","value":1,"type":"gauge","labels":{"b":"1","a":"x","b":"2"}}"#;
        let fast = parse_track(body).unwrap();
        let slow = parse_item(&serde_json::from_slice(body).unwrap()).unwrap();
        assert_eq!(fast, slow);
        assert_eq!(
            fast.labels,
            vec![("a".into(), "x".into()), ("b".into(), "2".into())]
        );
    }

    #[test]
    fn batch_reports_each_item() {
        let r = parse_batch(
            br#"[{"name":"a","value":1,"type":"gauge"},{"name":"b","type":"gauge"}]"#,
            10,
        )
        .unwrap();
        assert!(r[0].is_ok());
        assert_eq!(r[1].as_ref().unwrap_err().field(), Some("[1].value"));
        let e = parse_batch(b"[1,2,3]", 2).unwrap_err();
        assert_eq!(
            (e.code(), e.status()),
            ("too_many_items", crate::ErrorStatus::LimitExceeded)
        );
        // Mixed good and bad items, non-objects included; the wrapper form too.
        let body = br#"{"metrics": [
          {"name": "api_requests_total", "value": 1, "type": "counter", "service": "gateway-service"},
          {"name": "response_time_seconds", "value": "slow", "type": "histogram"},
          7,
          {"name": "metric2", "value": 2.5, "type": "gauge"}
        ]}"#;
        let items = parse_batch(body, 100).unwrap();
        assert_eq!(items.len(), 4);
        assert_eq!(items[0].as_ref().unwrap().name, "api_requests_total");
        assert_eq!(items[1].as_ref().unwrap_err().field(), Some("[1].value"));
        assert_eq!(items[2].as_ref().unwrap_err().field(), Some("[2].body"));
        assert_eq!(items[3].as_ref().unwrap().value, 2.5);
        for bad in [&b"[]"[..], b"[1,2", b"{\"name\":\"m\"}", b"[{}] x"] {
            assert!(parse_batch(bad, 10).is_err());
        }
    }

    #[test]
    fn fast_and_slow_paths_agree() {
        let bodies = [
            r#"{"name":"a_total","value":1,"type":"counter","labels":{"b":"x\"y","a":"1"},"service":"s","tenant_id":"t","timestamp":1700000000,"help":"h"}"#,
            r#"{"name":"h","value":0.5,"type":"histogram","buckets":[1,2.5],"timestamp":"2024-01-15T10:30:00Z","extra":{"ignored":[1]}}"#,
            r#"{"name":"g","value":-3,"type":"gauge","labels":null,"service":null,"timestamp":null}"#,
        ];
        for b in bodies {
            let raw: RawItem<'_> = serde_json::from_slice(b.as_bytes()).unwrap();
            let slow = parse_item(&serde_json::from_str(b).unwrap()).unwrap();
            assert_eq!(raw.into_item().unwrap(), slow, "{b}");
            assert_eq!(parse_track(b.as_bytes()).unwrap(), slow);
        }
        // Typed errors fall back to the slow path and keep their field.
        let e = parse_batch(
            br#"[{"name":"a","value":1,"type":"gauge"},{"name":"b","value":true,"type":"gauge"}]"#,
            10,
        )
        .unwrap();
        assert!(e[0].is_ok());
        assert_eq!(e[1].as_ref().unwrap_err().field(), Some("[1].value"));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = parse_track(&body);
            let _ = parse_batch(&body, 4);
        }

        /// JSON-shaped noise reaches the field validators, not just the syntax checker;
        /// the fast path (a batch of well-formed items) and the slow path agree.
        #[test]
        fn json_shaped_input_never_panics(
            name in r#"("[a-z_:\-]{0,6}"|1|null)"#,
            value in r#"(-?[0-9]{1,3}(\.[0-9])?(e-?[0-9]{1,3})?|"[a-zA-Z0-9+\-]{0,5}"|null|true|\[\])"#,
            kind in r#"("(counter|gauge|histogram|summary|Gauge|x)"|0)"#,
            ts in r#"(-?[0-9]{1,16}(\.[0-9]{1,4})?|"[0-9T:Z+\-]{0,24}"|null)"#,
            labels in r#"(\{("[a-z_]{0,3}":("[a-z]{0,3}"|1|null),?){0,3}\}|\[\]|null)"#,
            buckets in r#"(\[(-?[0-9]{1,2},?){0,4}\]|null)"#,
        ) {
            let body = format!(
                r#"{{"name":{name},"value":{value},"type":{kind},"timestamp":{ts},"labels":{labels},"buckets":{buckets}}}"#
            );
            let one = parse_track(body.as_bytes());
            if let Ok(v) = serde_json::from_str::<Value>(&body) {
                let slow = parse_item(&v);
                proptest::prop_assert_eq!(one.as_ref().ok(), slow.as_ref().ok());
            }
            let two = format!("[{body},{body}]");
            if let Ok(items) = parse_batch(two.as_bytes(), 4) {
                proptest::prop_assert_eq!(items.len(), 2);
                proptest::prop_assert_eq!(items[0].as_ref().ok(), one.as_ref().ok());
            }
            if let Ok(t) = one {
                proptest::prop_assert!(t.value.is_finite());
                proptest::prop_assert!(t.timestamp_ms.is_none_or(|ms| (0..END_MS).contains(&ms)));
            }
        }

        /// A value is stored exactly as sent: the shortest decimal that round-trips (what
        /// every JSON encoder writes) parses back to the same bits, in both paths.
        #[test]
        fn values_round_trip_exactly(bits in proptest::prelude::any::<u64>()) {
            let v = f64::from_bits(bits);
            proptest::prop_assume!(v.is_finite());
            let body = format!(r#"{{"name":"a","value":{},"type":"gauge"}}"#, serde_json::Value::from(v));
            let one = parse_track(body.as_bytes()).unwrap();
            proptest::prop_assert_eq!(one.value.to_bits(), bits);
            let arr = format!("[{body}]");
            let batch = parse_batch(arr.as_bytes(), 4).unwrap();
            proptest::prop_assert_eq!(batch[0].as_ref().unwrap().value.to_bits(), bits);
        }
    }

    #[test]
    fn batch_item_limit_and_trailing_bytes_are_errors() {
        let item = r#"{"name":"a","value":1,"type":"gauge"}"#;
        let two = format!("[{item},{item}]");
        assert_eq!(parse_batch(two.as_bytes(), 2).unwrap().len(), 2);
        let three = format!("[{item},{item},{item}]");
        let e = parse_batch(three.as_bytes(), 2).unwrap_err();
        assert_eq!(e.kind, crate::TrackErrorKind::TooManyItems, "{e:?}");
        // Trailing bytes after the array are an error, not ignored.
        assert!(parse_batch(format!("{two} x").as_bytes(), 2).is_err());
    }

    #[test]
    fn batch_strings_borrow_from_the_body_unless_escaped() {
        let body = br#"[{"name":"a_total","value":1,"type":"counter","service":"api","labels":{"path":"/x","q":"\u0041"}}]"#;
        let items = parse_batch(body, 10).unwrap();
        let it = items[0].as_ref().unwrap();
        assert!(matches!(it.name, Cow::Borrowed("a_total")));
        assert!(matches!(it.service, Some(Cow::Borrowed("api"))));
        assert!(matches!(
            it.labels[0],
            (Cow::Borrowed("path"), Cow::Borrowed("/x"))
        ));
        assert!(
            matches!(&it.labels[1].1, Cow::Owned(s) if s == "A"),
            "{:?}",
            it.labels[1]
        );
    }

    #[test]
    fn values_parse_to_the_nearest_double() {
        // serde_json's default float parser is off by one ulp here; float_roundtrip is not.
        let v = f64::from_bits(4744917151700231029);
        let body = format!(r#"{{"name":"a","value":{v},"type":"gauge"}}"#);
        assert_eq!(parse_track(body.as_bytes()).unwrap().value.to_bits(), v.to_bits());
    }
}
