//! Errors of the model layer: invalid names, broken limits, bad matchers.

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether an error is the caller's fault (bad input, maps to 4xx) or ours (maps to 5xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input was invalid; retrying the same input cannot succeed.
    InvalidInput,
    /// A configured limit was reached; the input may be accepted once the limit is raised.
    LimitExceeded,
}

/// An error in labels, names, matchers or limits. Each variant carries the offending value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The metric name does not match `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    #[error("invalid metric name {0:?}: must match [a-zA-Z_:][a-zA-Z0-9_:]*")]
    InvalidMetricName(String),
    /// A label name does not match `[a-zA-Z_][a-zA-Z0-9_]*`.
    #[error("invalid label name {0:?}: must match [a-zA-Z_][a-zA-Z0-9_]*")]
    InvalidLabelName(String),
    /// A series carries no `__name__` label.
    #[error("series {0} has no metric name (__name__ label)")]
    MissingMetricName(String),
    /// The same label name appears twice in one series.
    #[error("duplicate label name {0:?}")]
    DuplicateLabelName(String),
    /// A label value is not valid UTF-8 or otherwise unusable.
    #[error("invalid value for label {name:?}: {reason}")]
    InvalidLabelValue {
        /// The label whose value is invalid.
        name: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A series has more labels than [`crate::Limits::max_label_names_per_series`].
    #[error(
        "series {series} has {count} labels, more than the limit of {limit} (max_label_names_per_series)"
    )]
    TooManyLabels {
        /// The series (abbreviated).
        series: String,
        /// How many labels it has.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A label name is longer than [`crate::Limits::max_label_name_length`].
    #[error(
        "label name {name:?} is {len} bytes long, more than the limit of {limit} (max_label_name_length)"
    )]
    LabelNameTooLong {
        /// The name (abbreviated).
        name: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A label value is longer than [`crate::Limits::max_label_value_length`].
    #[error(
        "value of label {name:?} is {len} bytes long, more than the limit of {limit} (max_label_value_length)"
    )]
    LabelValueTooLong {
        /// The label name.
        name: String,
        /// The value's length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A regex matcher failed to compile.
    #[error("invalid regex {regex:?} for label {name:?}: {reason}")]
    InvalidRegex {
        /// The label name of the matcher.
        name: String,
        /// The regex text.
        regex: String,
        /// The compiler's message.
        reason: String,
    },
}

impl Error {
    /// Whether this is bad input or a limit.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::TooManyLabels { .. }
            | Error::LabelNameTooLong { .. }
            | Error::LabelValueTooLong { .. } => ErrorKind::LimitExceeded,
            _ => ErrorKind::InvalidInput,
        }
    }
}
