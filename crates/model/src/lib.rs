//! metricsd's shared vocabulary.
//!
//! Every crate of metricsd speaks these types; this crate depends on nothing of ours.
//!
//! - [`Labels`]: a series identity, a set of [`Label`]s sorted by name, with the metric name
//!   under [`METRIC_NAME`] (`__name__`).
//! - [`Sample`]: one `(timestamp in ms, f64 value)` point; [`STALE_NAN`] is Prometheus'
//!   staleness marker, kept bit-exact everywhere.
//! - [`Matcher`]: a label matcher (`=`, `!=`, `=~`, `!~`) with Prometheus semantics: regexes
//!   are fully anchored and a missing label matches like the empty string.
//! - [`Limits`] and the `validate_*` functions: name syntax and size limits, each failure a
//!   typed [`Error`] that names the offending value and the limit.
//!
//! # Layout
//! - `labels.rs`: [`Label`], [`Labels`], [`LabelsBuilder`]
//! - `sample.rs`: [`Sample`], staleness helpers
//! - `matcher.rs`: [`Matcher`], [`MatchOp`]
//! - `validate.rs`: [`Limits`], name syntax checks
//! - `error.rs`: [`Error`], [`ErrorKind`]
//!
//! # Example
//! ```
//! use metricsd_model::{Labels, Matcher, MatchOp};
//! let l = Labels::from_pairs([("__name__", "up"), ("job", "node")]);
//! let m = Matcher::new(MatchOp::Regex, "job", "no.*").unwrap();
//! assert!(m.matches(l.get("job").unwrap_or("")));
//! assert_eq!(l.to_string(), r#"up{job="node"}"#);
//! ```
#![warn(clippy::unwrap_used, clippy::panic)]
// Decoders of hostile input: every index is checked (`get`, patterns) or allowed where
// the bound is established next to it, with the reason.
#![warn(clippy::indexing_slicing)]
#![warn(missing_docs)]

mod error;
mod labels;
mod matcher;
mod sample;
mod validate;

pub use error::{Error, ErrorKind, Result};
pub use labels::{Label, Labels, LabelsBuilder, METRIC_NAME, with_pair_bytes};
pub use matcher::{MatchOp, Matcher};
pub use sample::{STALE_NAN, Sample, go_float, is_stale_nan, write_go_float};
pub use validate::{
    Limits, abbreviate, abbreviate_to, is_valid_label_name, is_valid_metric_name, validate_labels,
};
