//! Errors of the ingest decoders. Every variant names the offending field (a dotted path such
//! as `labels.endpoint` or `timeseries[3].labels`) and carries the offending value, so that
//! the HTTP layer can answer `{"code": .., "field": .., "message": ..}` without re-deriving it.

use std::fmt;

/// Whether an error is the client's fault (bad input, 400) or a limit (413/400 with a hint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStatus {
    /// The input is malformed or invalid; the same request can never succeed.
    InvalidInput,
    /// A configured size or count limit was exceeded.
    LimitExceeded,
    /// The input is valid but uses a feature metricsd does not implement yet.
    Unsupported,
}

/// An ingest error. Build the client answer from [`IngestError::code`],
/// [`IngestError::field`] and the `Display` message, or serialize it (see the `Serialize` impl).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IngestError {
    /// The body is not syntactically valid JSON (or not the expected top-level shape).
    #[error("invalid JSON at line {line} column {column}: {reason}")]
    InvalidJson {
        /// 1-based line of the error, 0 if unknown.
        line: usize,
        /// 1-based column of the error, 0 if unknown.
        column: usize,
        /// serde_json's description.
        reason: String,
    },
    /// A required field is absent.
    #[error("missing required field {field:?}")]
    MissingField {
        /// The field's path.
        field: String,
    },
    /// A field has the wrong JSON type (a string where a number is required, ...).
    #[error("{field} must be {expected}, got {got}")]
    InvalidType {
        /// The field's path.
        field: String,
        /// What was expected, e.g. "a JSON number".
        expected: &'static str,
        /// What was found, abbreviated, e.g. `string "abc"`.
        got: String,
    },
    /// A field has the right type but an unacceptable value.
    #[error("{field}: {reason}")]
    InvalidValue {
        /// The field's path.
        field: String,
        /// Why the value is rejected; quotes the value.
        reason: String,
    },
    /// A metric name, label name or tenant id has the wrong syntax or is reserved.
    #[error("{field}: invalid name {name:?}: {reason}")]
    InvalidName {
        /// The field's path.
        field: String,
        /// The offending name (abbreviated).
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A size or count limit was exceeded.
    #[error("{field}: {what} is {size}, more than the limit of {limit}")]
    PayloadTooLarge {
        /// The field's path (`body` for the whole request).
        field: String,
        /// What was measured, e.g. "decompressed size in bytes".
        what: &'static str,
        /// The measured size or count.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The decompressed remote_write body is not a valid `WriteRequest` protobuf.
    #[error("invalid protobuf WriteRequest ({len} bytes decompressed): {reason}")]
    InvalidProtobuf {
        /// Decompressed length.
        len: usize,
        /// prost's description.
        reason: String,
    },
    /// The body is not valid snappy block-format data.
    #[error("invalid snappy block ({len} bytes compressed): {reason}")]
    InvalidSnappy {
        /// Compressed length.
        len: usize,
        /// snap's description.
        reason: String,
    },
    /// A series' labels break the model's rules (name syntax, limits, missing `__name__`).
    #[error("{field}: {source}")]
    InvalidLabels {
        /// The field's path, e.g. `timeseries[3].labels`.
        field: String,
        /// The model's error.
        source: metricsd_model::Error,
    },
    /// A valid feature metricsd does not support yet (native histograms).
    #[error("{field}: {what} are not supported yet")]
    Unsupported {
        /// The field's path.
        field: String,
        /// The feature, e.g. "native histograms".
        what: &'static str,
    },
}

impl IngestError {
    /// A stable machine-readable code: `invalid_json`, `missing_field`, `invalid_type`,
    /// `invalid_value`, `invalid_name`, `payload_too_large`, `invalid_protobuf`,
    /// `invalid_snappy`, `limit_exceeded` (label limits) or `unsupported`.
    pub fn code(&self) -> &'static str {
        use metricsd_model::Error as M;
        match self {
            IngestError::InvalidJson { .. } => "invalid_json",
            IngestError::MissingField { .. } => "missing_field",
            IngestError::InvalidType { .. } => "invalid_type",
            IngestError::InvalidValue { .. } => "invalid_value",
            IngestError::InvalidName { .. } => "invalid_name",
            IngestError::PayloadTooLarge { .. } => "payload_too_large",
            IngestError::InvalidProtobuf { .. } => "invalid_protobuf",
            IngestError::InvalidSnappy { .. } => "invalid_snappy",
            IngestError::InvalidLabels { source, .. } => match source {
                M::InvalidMetricName(_) | M::InvalidLabelName(_) => "invalid_name",
                M::MissingMetricName(_) => "missing_field",
                M::TooManyLabels { .. } | M::LabelNameTooLong { .. } | M::LabelValueTooLong { .. } => {
                    "limit_exceeded"
                }
                _ => "invalid_value",
            },
            IngestError::Unsupported { .. } => "unsupported",
        }
    }

    /// The offending field's path, if the error is about one field (`None` for whole-body
    /// errors such as invalid JSON or snappy).
    pub fn field(&self) -> Option<&str> {
        match self {
            IngestError::InvalidJson { .. }
            | IngestError::InvalidProtobuf { .. }
            | IngestError::InvalidSnappy { .. } => None,
            IngestError::MissingField { field }
            | IngestError::InvalidType { field, .. }
            | IngestError::InvalidValue { field, .. }
            | IngestError::InvalidName { field, .. }
            | IngestError::PayloadTooLarge { field, .. }
            | IngestError::InvalidLabels { field, .. }
            | IngestError::Unsupported { field, .. } => Some(field),
        }
    }

    /// Bad input, a limit, or an unsupported feature; the server maps this to HTTP once.
    pub fn status(&self) -> ErrorStatus {
        match self {
            IngestError::PayloadTooLarge { .. } => ErrorStatus::LimitExceeded,
            IngestError::InvalidLabels { source, .. }
                if source.kind() == metricsd_model::ErrorKind::LimitExceeded =>
            {
                ErrorStatus::LimitExceeded
            }
            IngestError::Unsupported { .. } => ErrorStatus::Unsupported,
            _ => ErrorStatus::InvalidInput,
        }
    }

    /// Prefixes the field path with `prefix` (`labels` + `.a` style is up to the caller):
    /// used by the batch decoder to say `[3].value`.
    pub fn with_field_prefix(mut self, prefix: &str) -> Self {
        if let Some(f) = self.field_mut() {
            *f = format!("{prefix}{f}");
        }
        self
    }

    fn field_mut(&mut self) -> Option<&mut String> {
        match self {
            IngestError::InvalidJson { .. }
            | IngestError::InvalidProtobuf { .. }
            | IngestError::InvalidSnappy { .. } => None,
            IngestError::MissingField { field }
            | IngestError::InvalidType { field, .. }
            | IngestError::InvalidValue { field, .. }
            | IngestError::InvalidName { field, .. }
            | IngestError::PayloadTooLarge { field, .. }
            | IngestError::InvalidLabels { field, .. }
            | IngestError::Unsupported { field, .. } => Some(field),
        }
    }

    pub(crate) fn json(e: &serde_json::Error) -> Self {
        // serde_json's Display appends " at line L column C"; keep only the reason.
        let full = e.to_string();
        let reason = match full.rfind(" at line ") {
            Some(i) => full.get(..i).unwrap_or(&full).to_owned(),
            None => full,
        };
        IngestError::InvalidJson {
            line: e.line(),
            column: e.column(),
            reason,
        }
    }
}

/// Serializes as `{"code": .., "field": .., "message": ..}` (`field` omitted when `None`):
/// the body of a 4xx answer, and one entry of a batch's per-item error list.
impl serde::Serialize for IngestError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let field = self.field();
        let mut m = s.serialize_map(Some(if field.is_some() { 3 } else { 2 }))?;
        m.serialize_entry("code", self.code())?;
        if let Some(f) = field {
            m.serialize_entry("field", f)?;
        }
        m.serialize_entry("message", &self.to_string())?;
        m.end()
    }
}

/// Abbreviates client text quoted back in an error, so a 1 MB label value does not make a
/// 1 MB error message. Cuts at a char boundary and marks the cut with `…`.
pub(crate) fn abbreviate(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", s.get(..end).unwrap_or(""))
}

/// `Display` of a JSON token for messages: `string "abc"`, `null`, `object`, ...
pub(crate) struct Got<'a>(pub &'a str);

impl fmt::Display for Got<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let raw = self.0.trim();
        match raw.as_bytes().first() {
            Some(b'"') => write!(f, "string {}", abbreviate(raw)),
            Some(b'{') => f.write_str("an object"),
            Some(b'[') => f.write_str("an array"),
            Some(b't' | b'f') => write!(f, "boolean {raw}"),
            Some(b'n') => f.write_str("null"),
            _ => write!(f, "number {}", abbreviate(raw)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_code_field_message() {
        let e = IngestError::InvalidType {
            field: "value".into(),
            expected: "a finite JSON number",
            got: Got(r#""abc""#).to_string(),
        };
        let j = serde_json::to_string(&e).unwrap();
        assert_eq!(
            j,
            r#"{"code":"invalid_type","field":"value","message":"value must be a finite JSON number, got string \"abc\""}"#
        );
        let e = IngestError::InvalidSnappy {
            len: 3,
            reason: "x".into(),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"code":"invalid_snappy","message":"invalid snappy block (3 bytes compressed): x"}"#
        );
    }

    #[test]
    fn abbreviate_cuts_at_char_boundary() {
        let s = "é".repeat(100);
        let a = abbreviate(&s);
        assert!(a.ends_with('…'));
        assert!(a.len() <= 64 + '…'.len_utf8());
        assert_eq!(abbreviate("short"), "short");
    }
}
