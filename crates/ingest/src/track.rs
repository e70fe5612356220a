//! The JSON track API: `POST /metrics/track` (one object) and `POST /metrics/track/batch`
//! (an array of them).
//!
//! ```json
//! {"name": "api_requests_total", "value": 1, "type": "counter",
//!  "labels": {"service": "gateway", "method": "GET"},
//!  "service": "gateway-service", "tenant_id": "tenant-1",
//!  "timestamp": "2024-01-15T10:30:00Z"}
//! ```
//!
//! The rules are documented on the public items; see [`parse_track_with`].

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use metricsd_model::{Limits, is_valid_label_name, is_valid_metric_name};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::{Got, IngestError, abbreviate};

/// The four metric types of the track API (JSON field `"type"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// A monotonically increasing count; `value` is an increment `>= 0`.
    Counter,
    /// A value that goes up and down; `value` replaces the previous one.
    Gauge,
    /// One observation to sort into `buckets`.
    Histogram,
    /// One observation for quantile estimation.
    Summary,
}

impl MetricKind {
    /// The JSON spelling: `counter`, `gauge`, `histogram`, `summary`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
            MetricKind::Summary => "summary",
        }
    }

    /// Parses the JSON spelling (case-sensitive).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "counter" => MetricKind::Counter,
            "gauge" => MetricKind::Gauge,
            "histogram" => MetricKind::Histogram,
            "summary" => MetricKind::Summary,
            _ => return None,
        })
    }
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One validated track item. Every field obeys the rules documented on [`parse_track_with`].
#[derive(Debug, Clone, PartialEq)]
pub struct TrackRequest {
    /// The metric name.
    pub name: String,
    /// The value: an increment for counters, the new value for gauges, an observation for
    /// histograms and summaries. Always finite.
    pub value: f64,
    /// The metric type (JSON field `"type"`).
    pub kind: MetricKind,
    /// The labels, sorted by name; may contain empty values (meaning "absent").
    pub labels: BTreeMap<String, String>,
    /// The reporting service, if given and non-empty.
    pub service: Option<String>,
    /// The tenant, if given.
    pub tenant_id: Option<String>,
    /// The sample time in Unix milliseconds, if given (JSON field `"timestamp"`).
    pub timestamp_ms: Option<i64>,
    /// The metric's help text, if given.
    pub help: Option<String>,
    /// Histogram bucket upper bounds, strictly increasing and finite, if given.
    pub buckets: Option<Vec<f64>>,
}

/// Limits of the track API. `Default` gives the model's label limits (64 labels, 1024-byte
/// names, 4096-byte values), 4096-byte help texts and 256 buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackLimits {
    /// Label limits shared with every other ingest path.
    pub labels: Limits,
    /// Longest `help` in bytes.
    pub max_help_length: usize,
    /// Most `buckets`.
    pub max_buckets: usize,
}

impl Default for TrackLimits {
    fn default() -> Self {
        TrackLimits {
            labels: Limits::default(),
            max_help_length: 4096,
            max_buckets: 256,
        }
    }
}

/// Parses one `POST /metrics/track` body with [`TrackLimits::default`].
pub fn parse_track(body: &[u8]) -> Result<TrackRequest, IngestError> {
    parse_track_with(body, &TrackLimits::default())
}

/// Parses one `POST /metrics/track` body.
///
/// # Rules
/// - `name` (required): a non-empty Prometheus metric name, `[a-zA-Z_:][a-zA-Z0-9_:]*`.
/// - `value` (required): a JSON number, finite. Strings (`"42"`, `"NaN"`, `"Inf"`) and `null`
///   are rejected; so is a number outside the f64 range (`1e400`). Counter increments must
///   be `>= 0`.
/// - `type` (required): `counter`, `gauge`, `histogram` or `summary`, lowercase.
/// - `labels` (optional): an object of string values. Label names follow
///   `[a-zA-Z_][a-zA-Z0-9_]*` and must not start with `__` (reserved). At most
///   `max_label_names_per_series - 1` labels (the metric name takes one slot of the series),
///   names and values within the model's length limits, no duplicate names. Empty values are
///   accepted and mean "no label", as everywhere in metricsd.
/// - `service` (optional): a string no longer than a label value; `""` means absent.
/// - `tenant_id` (optional): `[a-zA-Z0-9_.-]{1,128}`.
/// - `timestamp` (optional): an RFC 3339 string (`2024-01-15T10:30:00.5+01:00`), or a JSON
///   number that is Unix **seconds** when `< 1e11` (may be fractional) and Unix
///   **milliseconds** when `>= 1e11`. The cut-over works because 1e11 seconds is the year
///   5138 while 1e11 milliseconds is 1973-03-03: every plausible timestamp is unambiguous,
///   only millisecond values before March 1973 would be misread as seconds. Results before
///   1970 or from the year 3001 on are rejected. Stored as [`TrackRequest::timestamp_ms`],
///   rounded to the nearest millisecond for fractional numbers and truncated for RFC 3339
///   sub-millisecond digits.
/// - `help` (optional): a string of at most [`TrackLimits::max_help_length`] bytes.
/// - `buckets` (optional, `histogram` only): a non-empty array of finite numbers, strictly
///   increasing, at most [`TrackLimits::max_buckets`].
/// - `null` for an optional field means the field is absent (Python clients send `None`).
/// - Unknown fields are **ignored**, so that newer clients can send fields an older server
///   does not know yet (forward compatibility). Duplicate fields are an `invalid_json`
///   error.
///
/// # Implementation
/// The body is split into one borrowed [`RawValue`] per field (no `serde_json::Value` tree,
/// no copies), then each field is checked on its own so every error names its field and
/// quotes its value. Nesting cannot overflow the stack: raw values are skipped iteratively
/// and everything else goes through serde_json's recursion limit of 128.
pub fn parse_track_with(body: &[u8], limits: &TrackLimits) -> Result<TrackRequest, IngestError> {
    expect_top_level(body, b'{', "body", "a JSON object")?;
    let raw: RawTrack<'_> = serde_json::from_slice(body).map_err(|e| IngestError::json(&e))?;
    raw.validate(limits)
}

/// Parses a `POST /metrics/track/batch` body with [`TrackLimits::default`].
pub fn parse_batch(
    body: &[u8],
    max_items: usize,
) -> Result<Vec<Result<TrackRequest, IngestError>>, IngestError> {
    parse_batch_with(body, max_items, &TrackLimits::default())
}

/// Parses a `POST /metrics/track/batch` body: a JSON array of track objects.
///
/// The outer error is for the body as a whole: not JSON, not an array, or more than
/// `max_items` items (`payload_too_large`, counted without keeping the surplus items). Each
/// item then succeeds or fails on its own, in input order, so the caller can store the
/// valid ones and report the others by index; item errors name fields relative to the item.
pub fn parse_batch_with(
    body: &[u8],
    max_items: usize,
    limits: &TrackLimits,
) -> Result<Vec<Result<TrackRequest, IngestError>>, IngestError> {
    expect_top_level(body, b'[', "body", "a JSON array of metric objects")?;
    let items: Items<'_> = {
        let mut de = serde_json::Deserializer::from_slice(body);
        let items = de
            .deserialize_seq(ItemsVisitor { max: max_items })
            .map_err(|e| IngestError::json(&e))?;
        de.end().map_err(|e| IngestError::json(&e))?;
        items
    };
    if items.total > max_items {
        return Err(IngestError::PayloadTooLarge {
            field: "body".into(),
            what: "number of batch items",
            size: items.total as u64,
            limit: max_items as u64,
        });
    }
    Ok(items
        .kept
        .into_iter()
        .map(|raw| {
            expect_top_level(raw.get().as_bytes(), b'{', "item", "a JSON object")?;
            let t: RawTrack<'_> = serde_json::from_str(raw.get()).map_err(|e| IngestError::json(&e))?;
            t.validate(limits)
        })
        .collect())
}

/// Checks the first non-whitespace byte before handing the body to serde, so that a wrong
/// top-level shape gets a precise `invalid_type` error (and a struct is never filled from
/// an array positionally, which serde would otherwise allow).
fn expect_top_level(body: &[u8], open: u8, field: &str, expected: &'static str) -> Result<(), IngestError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b) if *b == open => Ok(()),
        // Empty or garbage: let serde_json produce its positioned syntax error.
        None => Err(IngestError::InvalidJson {
            line: 1,
            column: 0,
            reason: "empty body".into(),
        }),
        Some(b'{' | b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9') => {
            let text = String::from_utf8_lossy(body.get(..64).unwrap_or(body));
            Err(IngestError::InvalidType {
                field: field.into(),
                expected,
                got: Got(&text).to_string(),
            })
        }
        Some(_) => match serde_json::from_slice::<IgnoredAny>(body) {
            Err(e) => Err(IngestError::json(&e)),
            Ok(_) => Err(IngestError::InvalidType {
                field: field.into(),
                expected,
                got: "something else".into(),
            }),
        },
    }
}

/// The body split into fields, each kept as raw JSON text. Unknown fields are skipped.
#[derive(Deserialize)]
struct RawTrack<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    name: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    value: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present", rename = "type")]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    labels: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    service: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    tenant_id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    help: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    buckets: Option<&'a RawValue>,
}

/// `Some(raw)` for any present field, `null` included (serde's `Option` would turn `null`
/// into `None` and lose the difference between "missing" and "null").
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

/// `None` for an absent field or `null`.
fn optional(raw: Option<&RawValue>) -> Option<&RawValue> {
    raw.filter(|r| r.get() != "null")
}

fn required<'a>(raw: Option<&'a RawValue>, field: &str) -> Result<&'a RawValue, IngestError> {
    raw.ok_or_else(|| IngestError::MissingField { field: field.into() })
}

fn first_byte(raw: &RawValue) -> u8 {
    raw.get().as_bytes().first().copied().unwrap_or(b' ')
}

fn type_error(field: &str, expected: &'static str, raw: &RawValue) -> IngestError {
    IngestError::InvalidType {
        field: field.into(),
        expected,
        got: Got(raw.get()).to_string(),
    }
}

fn string(raw: &RawValue, field: &str) -> Result<String, IngestError> {
    if first_byte(raw) != b'"' {
        return Err(type_error(field, "a string", raw));
    }
    serde_json::from_str(raw.get()).map_err(|e| IngestError::json(&e))
}

const FINITE: &str = "a finite JSON number";

fn number(raw: &RawValue, field: &str) -> Result<f64, IngestError> {
    match first_byte(raw) {
        b'-' | b'0'..=b'9' => match serde_json::from_str::<f64>(raw.get()) {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(IngestError::InvalidValue {
                field: field.into(),
                reason: format!(
                    "must be a finite number, got {} (out of the f64 range)",
                    abbreviate(raw.get())
                ),
            }),
        },
        b'"' => {
            let s: String = serde_json::from_str(raw.get()).unwrap_or_default();
            let t = s.trim().trim_start_matches(['+', '-']).to_ascii_lowercase();
            if matches!(t.as_str(), "nan" | "inf" | "infinity") {
                Err(IngestError::InvalidValue {
                    field: field.into(),
                    reason: format!(
                        "must be a finite number, got {:?}: NaN and infinities are not accepted",
                        abbreviate(&s)
                    ),
                })
            } else {
                Err(type_error(field, "a finite JSON number, not a string", raw))
            }
        }
        _ => Err(type_error(field, FINITE, raw)),
    }
}

impl RawTrack<'_> {
    fn validate(&self, limits: &TrackLimits) -> Result<TrackRequest, IngestError> {
        let name = string(required(self.name, "name")?, "name")?;
        check_metric_name(&name, &limits.labels)?;

        let kind_raw = required(self.kind, "type")?;
        let kind_s = string(kind_raw, "type")?;
        let kind = MetricKind::parse(&kind_s).ok_or_else(|| IngestError::InvalidValue {
            field: "type".into(),
            reason: format!(
                "unknown metric type {:?}; allowed: \"counter\", \"gauge\", \"histogram\", \"summary\" (lowercase)",
                abbreviate(&kind_s)
            ),
        })?;

        let value = number(required(self.value, "value")?, "value")?;
        if kind == MetricKind::Counter && value < 0.0 {
            return Err(IngestError::InvalidValue {
                field: "value".into(),
                reason: format!("counter increments must be >= 0, got {value}"),
            });
        }

        let labels = match optional(self.labels) {
            Some(raw) => labels(raw, &name, &limits.labels)?,
            None => BTreeMap::new(),
        };

        let service = match optional(self.service) {
            Some(raw) => {
                let s = string(raw, "service")?;
                if s.len() > limits.labels.max_label_value_length {
                    return Err(IngestError::InvalidLabels {
                        field: "service".into(),
                        source: metricsd_model::Error::LabelValueTooLong {
                            name: "service".into(),
                            len: s.len(),
                            limit: limits.labels.max_label_value_length,
                        },
                    });
                }
                Some(s).filter(|s| !s.is_empty())
            }
            None => None,
        };

        let tenant_id = match optional(self.tenant_id) {
            Some(raw) => {
                let t = string(raw, "tenant_id")?;
                if !is_valid_tenant_id(&t) {
                    return Err(IngestError::InvalidName {
                        field: "tenant_id".into(),
                        name: abbreviate(&t),
                        reason: "tenant ids must match [a-zA-Z0-9_.-]{1,128}",
                    });
                }
                Some(t)
            }
            None => None,
        };

        let timestamp_ms = optional(self.timestamp).map(timestamp).transpose()?;

        let help = match optional(self.help) {
            Some(raw) => {
                let h = string(raw, "help")?;
                if h.len() > limits.max_help_length {
                    return Err(IngestError::PayloadTooLarge {
                        field: "help".into(),
                        what: "length in bytes",
                        size: h.len() as u64,
                        limit: limits.max_help_length as u64,
                    });
                }
                Some(h)
            }
            None => None,
        };

        let buckets = match optional(self.buckets) {
            Some(raw) => {
                if kind != MetricKind::Histogram {
                    return Err(IngestError::InvalidValue {
                        field: "buckets".into(),
                        reason: format!(
                            "buckets are only allowed with type \"histogram\", not {kind:?}",
                            kind = kind.as_str()
                        ),
                    });
                }
                Some(buckets(raw, limits.max_buckets)?)
            }
            None => None,
        };

        Ok(TrackRequest {
            name,
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
}

fn check_metric_name(name: &str, limits: &Limits) -> Result<(), IngestError> {
    if name.is_empty() {
        return Err(IngestError::InvalidName {
            field: "name".into(),
            name: String::new(),
            reason: "the metric name must not be empty",
        });
    }
    if name.len() > limits.max_label_value_length {
        return Err(IngestError::InvalidLabels {
            field: "name".into(),
            source: metricsd_model::Error::LabelValueTooLong {
                name: metricsd_model::METRIC_NAME.into(),
                len: name.len(),
                limit: limits.max_label_value_length,
            },
        });
    }
    if !is_valid_metric_name(name) {
        return Err(IngestError::InvalidName {
            field: "name".into(),
            name: abbreviate(name),
            reason: "metric names must match [a-zA-Z_:][a-zA-Z0-9_:]*",
        });
    }
    Ok(())
}

/// Whether `s` matches `[a-zA-Z0-9_.-]{1,128}`.
pub fn is_valid_tenant_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn labels(raw: &RawValue, metric: &str, limits: &Limits) -> Result<BTreeMap<String, String>, IngestError> {
    if first_byte(raw) != b'{' {
        return Err(type_error("labels", "an object of string values", raw));
    }
    let pairs: Pairs<'_> = serde_json::from_str(raw.get()).map_err(|e| IngestError::json(&e))?;
    // The metric name takes one slot of the series' label budget.
    let max = limits.max_label_names_per_series.saturating_sub(1);
    if pairs.0.len() > max {
        return Err(IngestError::InvalidLabels {
            field: "labels".into(),
            source: metricsd_model::Error::TooManyLabels {
                series: abbreviate(metric),
                count: pairs.0.len() + 1,
                limit: limits.max_label_names_per_series,
            },
        });
    }
    let mut out = BTreeMap::new();
    for (name, value) in pairs.0 {
        let field = format!("labels.{}", abbreviate(&name));
        if name.len() > limits.max_label_name_length {
            return Err(IngestError::InvalidLabels {
                field,
                source: metricsd_model::Error::LabelNameTooLong {
                    name: abbreviate(&name),
                    len: name.len(),
                    limit: limits.max_label_name_length,
                },
            });
        }
        if !is_valid_label_name(&name) {
            return Err(IngestError::InvalidName {
                field,
                name: abbreviate(&name),
                reason: "label names must match [a-zA-Z_][a-zA-Z0-9_]*",
            });
        }
        if name.starts_with("__") {
            return Err(IngestError::InvalidName {
                field,
                name: abbreviate(&name),
                reason: "label names starting with \"__\" are reserved",
            });
        }
        let value = string(value, &field)?;
        if value.len() > limits.max_label_value_length {
            return Err(IngestError::InvalidLabels {
                field,
                source: metricsd_model::Error::LabelValueTooLong {
                    name: abbreviate(&name),
                    len: value.len(),
                    limit: limits.max_label_value_length,
                },
            });
        }
        if out.contains_key(&name) {
            return Err(IngestError::InvalidValue {
                field,
                reason: format!("duplicate label name {:?}", abbreviate(&name)),
            });
        }
        out.insert(name, value);
    }
    Ok(out)
}

/// 3001-01-01T00:00:00Z in Unix milliseconds: the first rejected instant.
const END_MS: i64 = 32_535_216_000_000;
/// Numbers below this are seconds, at or above it milliseconds (see the module docs).
const SECONDS_BELOW: f64 = 1e11;
const TS_EXPECTED: &str = "an RFC 3339 string or a number of Unix seconds or milliseconds";

fn timestamp(raw: &RawValue) -> Result<i64, IngestError> {
    let field = "timestamp";
    let ms = match first_byte(raw) {
        b'"' => {
            let s = string(raw, field)?;
            let dt = chrono::DateTime::parse_from_rfc3339(&s).map_err(|e| IngestError::InvalidValue {
                field: field.into(),
                reason: format!(
                    "{:?} is not an RFC 3339 timestamp like \"2024-01-15T10:30:00Z\": {e}",
                    abbreviate(&s)
                ),
            })?;
            dt.timestamp_millis()
        }
        b'-' | b'0'..=b'9' => {
            let text = raw.get();
            if let Ok(i) = text.parse::<i64>() {
                if (i as f64) < SECONDS_BELOW {
                    i.saturating_mul(1000)
                } else {
                    i
                }
            } else {
                let f = serde_json::from_str::<f64>(text).unwrap_or(f64::INFINITY);
                let ms = if f < SECONDS_BELOW { f * 1000.0 } else { f };
                if !ms.is_finite() || ms >= END_MS as f64 {
                    i64::MAX
                } else {
                    // In range (or negative and rejected below); the cast saturates anyway.
                    ms.round() as i64
                }
            }
        }
        _ => return Err(type_error(field, TS_EXPECTED, raw)),
    };
    if ms < 0 {
        return Err(IngestError::InvalidValue {
            field: field.into(),
            reason: format!("{} is before 1970-01-01", abbreviate(raw.get())),
        });
    }
    if ms >= END_MS {
        return Err(IngestError::InvalidValue {
            field: field.into(),
            reason: format!(
                "{} is after the year 3000 (numbers below 1e11 are seconds, others milliseconds)",
                abbreviate(raw.get())
            ),
        });
    }
    Ok(ms)
}

fn buckets(raw: &RawValue, max: usize) -> Result<Vec<f64>, IngestError> {
    if first_byte(raw) != b'[' {
        return Err(type_error("buckets", "an array of finite numbers", raw));
    }
    let items: Items<'_> = {
        let mut de = serde_json::Deserializer::from_str(raw.get());
        de.deserialize_seq(ItemsVisitor { max })
            .map_err(|e| IngestError::json(&e))?
    };
    if items.total > max {
        return Err(IngestError::PayloadTooLarge {
            field: "buckets".into(),
            what: "number of buckets",
            size: items.total as u64,
            limit: max as u64,
        });
    }
    if items.kept.is_empty() {
        return Err(IngestError::InvalidValue {
            field: "buckets".into(),
            reason: "must hold at least one upper bound".into(),
        });
    }
    let mut out: Vec<f64> = Vec::with_capacity(items.kept.len());
    for (i, raw) in items.kept.into_iter().enumerate() {
        let field = format!("buckets[{i}]");
        let b = number(raw, &field)?;
        if let Some(prev) = out.last()
            && b <= *prev
        {
            return Err(IngestError::InvalidValue {
                field,
                reason: format!("buckets must be strictly increasing, got {b} after {prev}"),
            });
        }
        out.push(b);
    }
    Ok(out)
}

/// An object's members in input order, values raw (so duplicates can be reported and values
/// type-checked one by one).
struct Pairs<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Pairs<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Pairs<'a>, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = m.next_key::<String>()? {
                    let raw: &'de RawValue = m.next_value()?;
                    v.push((k, raw));
                }
                Ok(Pairs(v))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// An array's first `max` elements, raw, plus the count of all elements: the surplus is
/// skipped without being kept, so an oversized batch costs parsing time but no memory.
struct Items<'a> {
    kept: Vec<&'a RawValue>,
    total: usize,
}

struct ItemsVisitor {
    max: usize,
}

impl<'de> Visitor<'de> for ItemsVisitor {
    type Value = Items<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Items<'de>, A::Error> {
        let mut kept = Vec::with_capacity(s.size_hint().unwrap_or(0).min(self.max).min(1024));
        let mut total = 0usize;
        while total < self.max {
            match s.next_element::<&'de RawValue>()? {
                Some(raw) => kept.push(raw),
                None => return Ok(Items { kept, total }),
            }
            total += 1;
        }
        while s.next_element::<IgnoredAny>()?.is_some() {
            total += 1;
        }
        Ok(Items { kept, total })
    }
    fn visit_map<A: MapAccess<'de>>(self, _m: A) -> Result<Items<'de>, A::Error> {
        Err(de::Error::invalid_type(de::Unexpected::Map, &self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> IngestError {
        parse_track(body.as_bytes()).expect_err(body)
    }

    /// Asserts code, field and a message fragment of the error for `body`.
    fn rejects(body: &str, code: &str, field: Option<&str>, msg: &str) {
        let e = err(body);
        assert_eq!(e.code(), code, "{body}: {e}");
        assert_eq!(e.field(), field, "{body}: {e}");
        assert!(e.to_string().contains(msg), "{body}: {e:?} lacks {msg:?}");
    }

    #[test]
    fn parses_the_contract_example() {
        let body = br#"{
          "name": "api_requests_total", "value": 1, "type": "counter",
          "labels": {"service": "gateway", "endpoint": "/api/v1/instruments",
                     "method": "GET", "status_code": "200"},
          "service": "gateway-service", "tenant_id": "tenant-1"
        }"#;
        let t = parse_track(body).unwrap();
        assert_eq!(t.name, "api_requests_total");
        assert_eq!(t.value, 1.0);
        assert_eq!(t.kind, MetricKind::Counter);
        assert_eq!(t.labels.len(), 4);
        assert_eq!(t.labels["status_code"], "200");
        assert_eq!(t.service.as_deref(), Some("gateway-service"));
        assert_eq!(t.tenant_id.as_deref(), Some("tenant-1"));
        assert_eq!(t.timestamp_ms, None);
        assert_eq!(t.help, None);
        assert_eq!(t.buckets, None);
    }

    #[test]
    fn minimal_and_optional_nulls() {
        let t = parse_track(
            br#"{"name":"m","value":-2.5,"type":"gauge","labels":null,"service":null,
                "tenant_id":null,"timestamp":null,"help":null,"buckets":null}"#,
        )
        .unwrap();
        assert_eq!(t.value, -2.5);
        assert!(t.labels.is_empty());
        assert_eq!(t.service, None);
        let t = parse_track(br#"{"name":"m","value":1,"type":"gauge","service":""}"#).unwrap();
        assert_eq!(t.service, None);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let t = parse_track(
            br#"{"name":"m","value":1,"type":"gauge","future":{"deep":[1,2,{"x":null}]},"unit":"s"}"#,
        )
        .unwrap();
        assert_eq!(t.name, "m");
    }

    #[test]
    fn field_errors_name_the_field() {
        let cases: &[(&str, &str, Option<&str>, &str)] = &[
            (
                r#"{"value":1,"type":"gauge"}"#,
                "missing_field",
                Some("name"),
                "\"name\"",
            ),
            (
                r#"{"name":"m","type":"gauge"}"#,
                "missing_field",
                Some("value"),
                "\"value\"",
            ),
            (
                r#"{"name":"m","value":1}"#,
                "missing_field",
                Some("type"),
                "\"type\"",
            ),
            (
                r#"{"name":"","value":1,"type":"gauge"}"#,
                "invalid_name",
                Some("name"),
                "empty",
            ),
            (
                r#"{"name":"a-b","value":1,"type":"gauge"}"#,
                "invalid_name",
                Some("name"),
                "\"a-b\"",
            ),
            (
                r#"{"name":5,"value":1,"type":"gauge"}"#,
                "invalid_type",
                Some("name"),
                "number 5",
            ),
            (
                r#"{"name":"m","value":"abc","type":"gauge"}"#,
                "invalid_type",
                Some("value"),
                "string \"abc\"",
            ),
            (
                r#"{"name":"m","value":"42","type":"gauge"}"#,
                "invalid_type",
                Some("value"),
                "not a string",
            ),
            (
                r#"{"name":"m","value":null,"type":"gauge"}"#,
                "invalid_type",
                Some("value"),
                "got null",
            ),
            (
                r#"{"name":"m","value":true,"type":"gauge"}"#,
                "invalid_type",
                Some("value"),
                "boolean true",
            ),
            (
                r#"{"name":"m","value":[1],"type":"gauge"}"#,
                "invalid_type",
                Some("value"),
                "an array",
            ),
            (
                r#"{"name":"m","value":"NaN","type":"gauge"}"#,
                "invalid_value",
                Some("value"),
                "NaN and infinities",
            ),
            (
                r#"{"name":"m","value":"-Infinity","type":"gauge"}"#,
                "invalid_value",
                Some("value"),
                "finite",
            ),
            (
                r#"{"name":"m","value":"+Inf","type":"gauge"}"#,
                "invalid_value",
                Some("value"),
                "finite",
            ),
            (
                r#"{"name":"m","value":1e400,"type":"gauge"}"#,
                "invalid_value",
                Some("value"),
                "1e400",
            ),
            (
                r#"{"name":"m","value":-1,"type":"counter"}"#,
                "invalid_value",
                Some("value"),
                ">= 0",
            ),
            (
                r#"{"name":"m","value":1,"type":"Counter"}"#,
                "invalid_value",
                Some("type"),
                "allowed: \"counter\"",
            ),
            (
                r#"{"name":"m","value":1,"type":"timer"}"#,
                "invalid_value",
                Some("type"),
                "\"timer\"",
            ),
            (
                r#"{"name":"m","value":1,"type":1}"#,
                "invalid_type",
                Some("type"),
                "a string",
            ),
            (
                r#"{"name":"m","value":1,"type":"gauge","labels":[]}"#,
                "invalid_type",
                Some("labels"),
                "object",
            ),
            (
                r#"{"name":"m","value":1,"type":"gauge","labels":{"code":200}}"#,
                "invalid_type",
                Some("labels.code"),
                "number 200",
            ),
            (
                r#"{"name":"m","value":1,"type":"gauge","labels":{"ok":true}}"#,
                "invalid_type",
                Some("labels.ok"),
                "boolean",
            ),
            (
                r#"{"name":"m","value":1,"type":"gauge","labels":{"a":{"b":"c"}}}"#,
                "invalid_type",
                Some("labels.a"),
                "an object",
            ),
            (
                r#"{"name":"m","value":1,"type":"gauge","labels":{"a":null}}"#,
                "invalid_type",
                Some("labels.a"),
                "null",
            ),
            (
                r#"{"name":"m","value":1,"type":"gauge","labels":{"a-b":"c"}}"#,
                "invalid_name",
                Some("labels.a-b"),
                "[a-zA-Z_]",
            ),
            (
                r#"{"name":"m","value":1,"type":"gauge","labels":{"__name__":"c"}}"#,
                "invalid_name",
                Some("labels.__name__"),
                "reserved",
            ),
            (
                r#"{"name":"m","value":1,"type":"gauge","labels":{"a":"1","a":"2"}}"#,
                "invalid_value",
                Some("labels.a"),
                "duplicate",
            ),
            (
                r#"{"name":"m","value":1,"type":"gauge","service":7}"#,
                "invalid_type",
                Some("service"),
                "a string",
            ),
            (
                r#"{"name":"m","value":1,"type":"gauge","tenant_id":"a b"}"#,
                "invalid_name",
                Some("tenant_id"),
                "[a-zA-Z0-9_.-]",
            ),
            (
                r#"{"name":"m","value":1,"type":"gauge","tenant_id":""}"#,
                "invalid_name",
                Some("tenant_id"),
                "{1,128}",
            ),
            (
                r#"{"name":"m","value":1,"type":"gauge","help":1}"#,
                "invalid_type",
                Some("help"),
                "a string",
            ),
            (
                r#"{"name":"m","value":1,"type":"gauge","buckets":[1]}"#,
                "invalid_value",
                Some("buckets"),
                "only allowed with type \"histogram\"",
            ),
            (
                r#"{"name":"m","value":1,"type":"histogram","buckets":[1,1]}"#,
                "invalid_value",
                Some("buckets[1]"),
                "strictly increasing",
            ),
            (
                r#"{"name":"m","value":1,"type":"histogram","buckets":[2,1]}"#,
                "invalid_value",
                Some("buckets[1]"),
                "strictly increasing",
            ),
            (
                r#"{"name":"m","value":1,"type":"histogram","buckets":[1,"Inf"]}"#,
                "invalid_value",
                Some("buckets[1]"),
                "finite",
            ),
            (
                r#"{"name":"m","value":1,"type":"histogram","buckets":[]}"#,
                "invalid_value",
                Some("buckets"),
                "at least one",
            ),
            (
                r#"{"name":"m","value":1,"type":"histogram","buckets":1}"#,
                "invalid_type",
                Some("buckets"),
                "array",
            ),
            (
                r#"[{"name":"m"}]"#,
                "invalid_type",
                Some("body"),
                "a JSON object, got an array",
            ),
            (
                r#"{"name":"m","name":"n","value":1,"type":"gauge"}"#,
                "invalid_json",
                None,
                "duplicate field `name`",
            ),
            (
                r#"{"name":"m","value":1,"type":"gauge""#,
                "invalid_json",
                None,
                "EOF",
            ),
            (
                r#"{"name":"m","value":1,"type":"gauge"} x"#,
                "invalid_json",
                None,
                "trailing",
            ),
            ("", "invalid_json", None, "empty"),
            ("\u{7f}", "invalid_json", None, "expected value"),
        ];
        for (body, code, field, msg) in cases {
            rejects(body, code, *field, msg);
        }
    }

    #[test]
    fn label_limits() {
        let lim = TrackLimits {
            labels: Limits {
                max_label_names_per_series: 3,
                max_label_name_length: 4,
                max_label_value_length: 5,
            },
            ..TrackLimits::default()
        };
        let p = |s: &str| parse_track_with(s.as_bytes(), &lim);
        assert!(p(r#"{"name":"m","value":1,"type":"gauge","labels":{"a":"1","b":"2"}}"#).is_ok());
        let e = p(r#"{"name":"m","value":1,"type":"gauge","labels":{"a":"1","b":"2","c":"3"}}"#).unwrap_err();
        assert_eq!((e.code(), e.field()), ("limit_exceeded", Some("labels")));
        assert!(e.to_string().contains("max_label_names_per_series"), "{e}");
        let e = p(r#"{"name":"m","value":1,"type":"gauge","labels":{"abcde":"1"}}"#).unwrap_err();
        assert_eq!((e.code(), e.field()), ("limit_exceeded", Some("labels.abcde")));
        let e = p(r#"{"name":"m","value":1,"type":"gauge","labels":{"a":"123456"}}"#).unwrap_err();
        assert!(e.to_string().contains("max_label_value_length"), "{e}");
        let e = p(r#"{"name":"mmmmmm","value":1,"type":"gauge"}"#).unwrap_err();
        assert_eq!(e.field(), Some("name"));
        let e = p(r#"{"name":"m","value":1,"type":"gauge","service":"serv12"}"#).unwrap_err();
        assert_eq!(e.field(), Some("service"));
        let h = format!(
            r#"{{"name":"m","value":1,"type":"gauge","help":"{}"}}"#,
            "h".repeat(4097)
        );
        assert_eq!(parse_track(h.as_bytes()).unwrap_err().code(), "payload_too_large");
    }

    #[test]
    fn timestamps() {
        let ts = |v: &str| {
            parse_track(format!(r#"{{"name":"m","value":1,"type":"gauge","timestamp":{v}}}"#).as_bytes())
                .map(|t| t.timestamp_ms.unwrap())
        };
        // 2024-01-15T10:30:00Z = 1705314600 s.
        assert_eq!(ts(r#""2024-01-15T10:30:00Z""#), Ok(1_705_314_600_000));
        assert_eq!(ts(r#""2024-01-15T11:30:00.250+01:00""#), Ok(1_705_314_600_250));
        assert_eq!(ts(r#""2024-01-15T10:30:00.123999Z""#), Ok(1_705_314_600_123));
        assert_eq!(ts("1705314600"), Ok(1_705_314_600_000));
        assert_eq!(ts("1705314600.5"), Ok(1_705_314_600_500));
        assert_eq!(ts("1705314600.0004"), Ok(1_705_314_600_000));
        assert_eq!(ts("1705314600123"), Ok(1_705_314_600_123));
        assert_eq!(ts("1705314600123.6"), Ok(1_705_314_600_124));
        assert_eq!(ts("1.7053146e12"), Ok(1_705_314_600_000));
        assert_eq!(ts("0"), Ok(0));
        // The cut-over: just below 1e11 is seconds (year 5138, rejected), 1e11 is milliseconds.
        assert!(ts("99999999999").is_err());
        assert_eq!(ts("100000000000"), Ok(100_000_000_000));
    }

    #[test]
    fn timestamp_errors() {
        let e = |v: &str| {
            parse_track(format!(r#"{{"name":"m","value":1,"type":"gauge","timestamp":{v}}}"#).as_bytes())
                .unwrap_err()
        };
        for bad in [
            "-1",
            "-0.5",
            "-1705314600000",
            r#""1969-12-31T23:59:59Z""#,
            "32535216000",
            "32535216000000",
            "1e300",
            "9223372036854775807",
            r#""3001-01-01T00:00:00Z""#,
        ] {
            let err = e(bad);
            assert_eq!(
                (err.code(), err.field()),
                ("invalid_value", Some("timestamp")),
                "{bad}: {err}"
            );
        }
        let err = e(r#""yesterday""#);
        assert!(err.to_string().contains("RFC 3339"), "{err}");
        let err = e("true");
        assert_eq!(err.code(), "invalid_type");
        let err = e("1e999");
        assert_eq!(err.code(), "invalid_value");
    }

    #[test]
    fn buckets_parse() {
        let t = parse_track(
            br#"{"name":"h","value":0.042,"type":"histogram","buckets":[0.005,0.01,0.025,1,10]}"#,
        )
        .unwrap();
        assert_eq!(t.buckets, Some(vec![0.005, 0.01, 0.025, 1.0, 10.0]));
        let many = format!(
            r#"{{"name":"h","value":1,"type":"histogram","buckets":[{}]}}"#,
            (0..300).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
        );
        let e = parse_track(many.as_bytes()).unwrap_err();
        assert_eq!((e.code(), e.field()), ("payload_too_large", Some("buckets")));
    }

    #[test]
    fn batch_items_fail_alone() {
        let body = br#"[
          {"name": "api_requests_total", "value": 1, "type": "counter",
           "labels": {"service": "gateway"}, "service": "gateway-service"},
          {"name": "response_time_seconds", "value": "slow", "type": "histogram"},
          7,
          {"name": "metric2", "value": 2.5, "type": "gauge"}
        ]"#;
        let items = parse_batch(body, 100).unwrap();
        assert_eq!(items.len(), 4);
        assert_eq!(items[0].as_ref().unwrap().name, "api_requests_total");
        let e = items[1].as_ref().unwrap_err();
        assert_eq!((e.code(), e.field()), ("invalid_type", Some("value")));
        let e = items[2].as_ref().unwrap_err();
        assert_eq!((e.code(), e.field()), ("invalid_type", Some("item")));
        assert_eq!(items[3].as_ref().unwrap().value, 2.5);
        assert_eq!(parse_batch(b" [ ] ", 10).unwrap().len(), 0);
    }

    #[test]
    fn batch_outer_errors() {
        let e = parse_batch(br#"{"name":"m"}"#, 10).unwrap_err();
        assert_eq!((e.code(), e.field()), ("invalid_type", Some("body")));
        let e = parse_batch(b"[1,2", 10).unwrap_err();
        assert_eq!(e.code(), "invalid_json");
        let e = parse_batch(b"[{},{},{}] x", 10).unwrap_err();
        assert_eq!(e.code(), "invalid_json");
        let body = format!("[{}]", vec!["{}"; 1000].join(","));
        let e = parse_batch(body.as_bytes(), 100).unwrap_err();
        assert_eq!((e.code(), e.field()), ("payload_too_large", Some("body")));
        assert!(e.to_string().contains("1000"), "{e}");
        assert!(parse_batch(body.as_bytes(), 1000).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = parse_track(&body);
            let _ = parse_batch(&body, 4);
        }

        /// JSON-shaped noise reaches the field validators, not just the syntax checker.
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
            let batch = parse_batch(format!("[{body},{body}]").as_bytes(), 4);
            if let Ok(items) = batch {
                proptest::prop_assert_eq!(items.len(), 2);
                proptest::prop_assert_eq!(&items[0], &one);
            }
            if let Ok(t) = one {
                proptest::prop_assert!(t.value.is_finite());
                proptest::prop_assert!(t.timestamp_ms.is_none_or(|ms| (0..END_MS).contains(&ms)));
            }
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert_eq!(
            parse_batch(deep.as_bytes(), 10).unwrap_err().code(),
            "invalid_json"
        );
        assert!(parse_track(deep.as_bytes()).is_err());
        let closed = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        // Well-formed: one item, skipped iteratively as raw JSON, then rejected as no object.
        let items = parse_batch(closed.as_bytes(), 10).unwrap();
        assert_eq!(items[0].as_ref().unwrap_err().field(), Some("item"));
        let obj = format!(
            r#"{{"name":"m","value":1,"type":"gauge","x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        // Deep but well-formed unknown fields are skipped without recursion.
        let _ = parse_track(obj.as_bytes());
        let labels = format!(
            r#"{{"name":"m","value":1,"type":"gauge","labels":{{"a":{}}}}}"#,
            "{\"a\":".repeat(100_000)
        );
        assert!(parse_track(labels.as_bytes()).is_err());
    }
}
