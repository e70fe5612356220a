//! The API's errors and their one mapping to HTTP: every 4xx/5xx of the JSON API is
//! `{"success": false, "error": {"code", "message", "field"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// What a client is told of a store failure; the details (file paths) are in the log.
pub const STORAGE_ERROR_MESSAGE: &str = "storage error; the server log has the details";

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code (`invalid_json`, `invalid_field`, `limit_exceeded`, ...).
    pub code: &'static str,
    /// What is wrong, for humans.
    pub message: String,
    /// The request field at fault (`name`, `labels.method`, `[3].value`), if any.
    pub field: Option<String>,
}

impl ApiError {
    /// A 400 about `field`.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_field",
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// Maps a store error: caller's fault → 400, limit → 400 `limit_exceeded` (retrying the
    /// same data cannot succeed), except the tenant limit → 429 (a new tenant may fit
    /// later); store failure → 500 (a retry may). A store failure's text names files of the
    /// data directory: it is logged, and the client gets [`STORAGE_ERROR_MESSAGE`].
    pub fn from_store(e: &metricsd_tsdb::Error) -> Self {
        if matches!(e, metricsd_tsdb::Error::TooManyTenants { .. }) {
            return ApiError::new(StatusCode::TOO_MANY_REQUESTS, "limit_exceeded", e.to_string());
        }
        Self::store_failure(e.kind(), e)
    }

    /// The answer to a read that failed through the storage seam (a query's store).
    pub fn from_read(e: &metricsd_storage::Error) -> Self {
        Self::store_failure(e.kind(), e)
    }

    /// One mapping for both: the text of a store failure is logged, not answered.
    fn store_failure(kind: metricsd_storage::ErrorKind, e: &dyn std::fmt::Display) -> Self {
        use metricsd_storage::ErrorKind;
        match kind {
            ErrorKind::InvalidInput => ApiError::new(StatusCode::BAD_REQUEST, "rejected", e.to_string()),
            ErrorKind::LimitExceeded => {
                ApiError::new(StatusCode::BAD_REQUEST, "limit_exceeded", e.to_string())
            }
            ErrorKind::Internal => {
                tracing::error!(error = %e, "storage error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "storage_error",
                    STORAGE_ERROR_MESSAGE,
                )
            }
        }
    }

    /// Prefixes the field with a batch index: `[3].value`.
    pub fn at_index(mut self, i: usize) -> Self {
        self.field = Some(match self.field {
            Some(f) => format!("[{i}].{f}"),
            None => format!("[{i}]"),
        });
        self
    }

    /// The JSON object under `"error"`.
    pub fn body(&self) -> serde_json::Value {
        let mut o = serde_json::json!({ "code": self.code, "message": self.message });
        if let Some(f) = &self.field
            && let Some(o) = o.as_object_mut()
        {
            o.insert("field".into(), serde_json::Value::String(f.clone()));
        }
        o
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "success": false, "error": self.body() })),
        )
            .into_response()
    }
}

/// The track decoders' errors keep their code and field: `too_many_items` is a 413, the
/// rest 400.
/// A task of the blocking pool that panicked or was cancelled ([`crate::blocking`]).
impl From<crate::tenant::TenantError> for ApiError {
    fn from(e: crate::tenant::TenantError) -> Self {
        ApiError::field(e.field(), e.message())
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("worker failed: {e}"),
        )
    }
}

impl From<metricsd_ingest::TrackError> for ApiError {
    fn from(e: metricsd_ingest::TrackError) -> Self {
        let status = match e.status() {
            metricsd_ingest::ErrorStatus::LimitExceeded => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError {
            status,
            code: e.code(),
            message: e.message,
            field: e.field,
        }
    }
}
