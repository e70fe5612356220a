//! The store's errors. Each variant carries the values that explain it; [`Error::status`]
//! tells the server whether the caller (4xx) or the store (5xx) is at fault.

use std::path::PathBuf;

/// A `Result` with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Who is at fault for an error, for mapping to HTTP status codes in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The input was rejected; retrying it unchanged cannot succeed (HTTP 400).
    InvalidInput,
    /// A limit was reached (HTTP 400 for per-sample limits, the server may choose 429).
    LimitExceeded,
    /// The store failed (I/O, corruption); a retry may succeed (HTTP 5xx).
    Internal,
}

/// An error of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation failed on `path`.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("open", "write", "fsync", "rename", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file's content is not what the store wrote: bad checksum, truncated record, bad magic.
    /// Names the file and the byte offset so repair can truncate there.
    #[error("corruption in {path} at offset {offset}: {reason}")]
    Corruption {
        /// The corrupt file.
        path: PathBuf,
        /// Byte offset of the first bad byte or record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A chunk could not be decoded (says what was expected and how much was there).
    #[error("invalid chunk: {0}")]
    InvalidChunk(String),
    /// Labels failed validation or a limit of the model layer.
    #[error(transparent)]
    Model(#[from] metricsd_model::Error),
    /// The sample is older than the head accepts (outside the out-of-order window).
    #[error("sample at {t} ms for {series} is too old: the oldest accepted timestamp is {min_valid} ms")]
    OutOfBounds {
        /// The series (as text).
        series: String,
        /// The sample's timestamp.
        t: i64,
        /// The oldest timestamp the head accepts now.
        min_valid: i64,
    },
    /// The sample is older than the series' newest sample and out-of-order ingestion is off.
    #[error("out-of-order sample at {t} ms for {series}: the series' newest sample is at {last} ms")]
    OutOfOrder {
        /// The series (as text).
        series: String,
        /// The sample's timestamp.
        t: i64,
        /// The series' newest timestamp.
        last: i64,
    },
    /// The sample is further ahead of the store's clock than it accepts.
    #[error(
        "sample at {t} ms for {series} is too far in the future: the clock is at {now} ms and samples may be at most {max_future_ms} ms ahead of it (creation_grace_period_seconds)"
    )]
    TooFarInFuture {
        /// The series (as text).
        series: String,
        /// The sample's timestamp.
        t: i64,
        /// The clock when the sample was checked.
        now: i64,
        /// The bound ([`crate::DbOptions::max_future_ms`]).
        max_future_ms: i64,
    },
    /// The store has as many tenants as it may have; a new one is refused.
    #[error("tenant limit of {limit} reached (max_tenants); new tenant {tenant:?} rejected")]
    TooManyTenants {
        /// The refused tenant.
        tenant: String,
        /// The limit.
        limit: usize,
    },
    /// A sample with the same timestamp but a different value exists.
    #[error("duplicate sample for timestamp {t} ms of {series}: stored value {stored}, new value {new}")]
    DuplicateSample {
        /// The series (as text).
        series: String,
        /// The timestamp.
        t: i64,
        /// The stored value.
        stored: f64,
        /// The rejected value.
        new: f64,
    },
    /// The tenant has as many series as it may have. The message names `max_metric_series`,
    /// the service setting that sets [`crate::DbOptions::max_series`].
    #[error(
        "series limit of {limit} reached for tenant {tenant:?} (max_metric_series); new series {series} rejected"
    )]
    TooManySeries {
        /// The tenant.
        tenant: String,
        /// The limit.
        limit: usize,
        /// The rejected series (formatted only when the error is: a limit storm rejects
        /// many samples, and formatting each label set cost more than storing a sample).
        series: metricsd_model::Labels,
    },
    /// An invalid tenant id.
    #[error("invalid tenant id {0:?}: use 1 to 128 characters of [a-zA-Z0-9_.-], not \".\" or \"..\"")]
    InvalidTenant(String),
    /// An invalid argument to an API of the store (a bad time range, an empty matcher list).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The store is closed or failed in a way that makes it refuse writes.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A read through the storage seam failed (what a [`crate::Series`] reports).
    #[error(transparent)]
    Read(#[from] metricsd_storage::Error),
}

impl Error {
    /// The error as a client may see it: a file is named by its last two components
    /// (`chunks/000001`), never by the data directory's path.
    pub fn without_paths(&self) -> String {
        fn short(p: &std::path::Path) -> String {
            let n: Vec<_> = p.iter().rev().take(2).collect();
            n.iter()
                .rev()
                .map(|c| c.to_string_lossy())
                .collect::<Vec<_>>()
                .join("/")
        }
        match self {
            Error::Io { op, path, source } => format!("{op} {}: {source}", short(path)),
            Error::Corruption { path, offset, reason } => {
                format!("corruption in {} at offset {offset}: {reason}", short(path))
            }
            other => other.to_string(),
        }
    }

    /// [`Error::status`] as the storage seam's kind.
    pub fn kind(&self) -> metricsd_storage::ErrorKind {
        match self.status() {
            Status::InvalidInput => metricsd_storage::ErrorKind::InvalidInput,
            Status::LimitExceeded => metricsd_storage::ErrorKind::LimitExceeded,
            Status::Internal => metricsd_storage::ErrorKind::Internal,
        }
    }

    /// Who is at fault.
    pub fn status(&self) -> Status {
        match self {
            Error::Io { .. } | Error::Corruption { .. } | Error::InvalidChunk(_) | Error::Unavailable(_) => {
                Status::Internal
            }
            Error::Read(e) => match e.kind() {
                metricsd_storage::ErrorKind::InvalidInput => Status::InvalidInput,
                metricsd_storage::ErrorKind::LimitExceeded => Status::LimitExceeded,
                metricsd_storage::ErrorKind::Internal => Status::Internal,
            },
            Error::Model(e) => match e.kind() {
                metricsd_model::ErrorKind::LimitExceeded => Status::LimitExceeded,
                metricsd_model::ErrorKind::InvalidInput => Status::InvalidInput,
            },
            Error::TooManySeries { .. } | Error::TooManyTenants { .. } => Status::LimitExceeded,
            Error::OutOfBounds { .. }
            | Error::TooFarInFuture { .. }
            | Error::OutOfOrder { .. }
            | Error::DuplicateSample { .. }
            | Error::InvalidTenant(_)
            | Error::InvalidArgument(_) => Status::InvalidInput,
        }
    }

    /// An [`Error::Io`] for `op` on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// The storage seam's error for a store error: its status as the kind, its message without
/// file paths (the seam's errors may reach clients; the store logs paths itself).
impl From<&Error> for metricsd_storage::Error {
    fn from(e: &Error) -> Self {
        metricsd_storage::Error::new(e.kind(), e.without_paths())
    }
}

impl From<Error> for metricsd_storage::Error {
    fn from(e: Error) -> Self {
        metricsd_storage::Error::from(&e)
    }
}
