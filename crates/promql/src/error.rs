//! Query errors, classified as the Prometheus HTTP API classifies them.

/// Why a query failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// The expression does not parse or does not type-check (`bad_data`, HTTP 400).
    #[error("{0}")]
    Parse(String),
    /// A parameter of the request is invalid, e.g. `end < start` (`bad_data`, HTTP 400).
    #[error("{0}")]
    BadParam(String),
    /// Evaluation failed: many-to-many matching, duplicate label sets, a limit hit
    /// (`execution`, HTTP 422).
    #[error("{0}")]
    Execution(String),
    /// The query ran past its deadline (`timeout`, HTTP 503).
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// The caller went away (`canceled`, HTTP 499).
    #[error("query was canceled in {0}")]
    Canceled(&'static str),
    /// The store failed to read data (`internal`, HTTP 500).
    #[error("{0}")]
    Storage(String),
}

impl QueryError {
    /// The Prometheus API `errorType` of this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            QueryError::Parse(_) | QueryError::BadParam(_) => "bad_data",
            QueryError::Execution(_) => "execution",
            QueryError::Timeout(_) => "timeout",
            QueryError::Canceled(_) => "canceled",
            QueryError::Storage(_) => "internal",
        }
    }

    /// The HTTP status Prometheus answers this error with.
    pub fn http_status(&self) -> u16 {
        match self {
            QueryError::Parse(_) | QueryError::BadParam(_) => 400,
            QueryError::Execution(_) => 422,
            QueryError::Timeout(_) => 503,
            QueryError::Canceled(_) => 499,
            QueryError::Storage(_) => 500,
        }
    }
}

impl From<metricsd_storage::Error> for QueryError {
    fn from(e: metricsd_storage::Error) -> Self {
        match e.kind() {
            metricsd_storage::ErrorKind::InvalidInput => QueryError::BadParam(e.to_string()),
            _ => QueryError::Storage(e.to_string()),
        }
    }
}
