//! Errors of the ingest decoders: [`IngestError`] for remote_write, [`TrackError`] for the
//! JSON track API. Each names the offending field (a dotted path such as `labels.endpoint`,
//! `timeseries[3].labels` or `[3].value`) and quotes the offending value, so that the HTTP
//! layer can answer `{"code": .., "field": .., "message": ..}` without re-deriving it.

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
    /// A stable machine-readable code: `payload_too_large`, `invalid_protobuf`,
    /// `invalid_snappy`, `invalid_name`, `missing_field`, `invalid_value`, `limit_exceeded`
    /// (label limits) or `unsupported`.
    pub fn code(&self) -> &'static str {
        use metricsd_model::Error as M;
        match self {
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
            IngestError::InvalidProtobuf { .. } | IngestError::InvalidSnappy { .. } => None,
            IngestError::PayloadTooLarge { field, .. }
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
            IngestError::InvalidProtobuf { .. } | IngestError::InvalidSnappy { .. } => None,
            IngestError::PayloadTooLarge { field, .. }
            | IngestError::InvalidLabels { field, .. }
            | IngestError::Unsupported { field, .. } => Some(field),
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

/// The kinds of [`TrackError`]; each is one of the API's error codes (`docs/api.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackErrorKind {
    /// The body is not JSON (`invalid_json`).
    InvalidJson,
    /// A field is missing, has the wrong type or an unacceptable value (`invalid_field`).
    InvalidField,
    /// A batch holds more items than allowed (`too_many_items`).
    TooManyItems,
}

/// An error of the JSON track API decoders ([`crate::parse_track`], [`crate::parse_batch`]):
/// a code, the field at fault (`name`, `labels.method`, `[3].value`, `body`) and a message
/// that quotes the offending value (abbreviated).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{message}", field.as_deref().map(|f| format!("{f}: ")).unwrap_or_default())]
pub struct TrackError {
    /// What went wrong.
    pub kind: TrackErrorKind,
    /// The field at fault.
    pub field: Option<String>,
    /// What is wrong, for humans.
    pub message: String,
}

impl TrackError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        TrackError {
            kind: TrackErrorKind::InvalidField,
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub(crate) fn json(message: impl Into<String>) -> Self {
        TrackError {
            kind: TrackErrorKind::InvalidJson,
            field: Some("body".into()),
            message: message.into(),
        }
    }

    pub(crate) fn too_many_items(n: usize, max: usize) -> Self {
        TrackError {
            kind: TrackErrorKind::TooManyItems,
            field: Some("body".into()),
            message: format!("the batch has {n} items, more than the limit of {max} (max_batch_items)"),
        }
    }

    /// The API's error code: `invalid_json`, `invalid_field` or `too_many_items`.
    pub fn code(&self) -> &'static str {
        match self.kind {
            TrackErrorKind::InvalidJson => "invalid_json",
            TrackErrorKind::InvalidField => "invalid_field",
            TrackErrorKind::TooManyItems => "too_many_items",
        }
    }

    /// The field at fault.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// Bad input or a limit; the server maps this to HTTP once (400 / 413).
    pub fn status(&self) -> ErrorStatus {
        match self.kind {
            TrackErrorKind::TooManyItems => ErrorStatus::LimitExceeded,
            _ => ErrorStatus::InvalidInput,
        }
    }

    /// Prefixes the field with a batch index: `value` becomes `[3].value`.
    pub fn at_index(mut self, i: usize) -> Self {
        self.field = Some(match self.field {
            Some(f) => format!("[{i}].{f}"),
            None => format!("[{i}]"),
        });
        self
    }
}

pub(crate) use metricsd_model::abbreviate;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_code_field_message() {
        let e = IngestError::PayloadTooLarge {
            field: "body".into(),
            what: "decompressed size in bytes",
            size: 9,
            limit: 8,
        };
        let j = serde_json::to_string(&e).unwrap();
        assert_eq!(
            j,
            r#"{"code":"payload_too_large","field":"body","message":"body: decompressed size in bytes is 9, more than the limit of 8"}"#
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
