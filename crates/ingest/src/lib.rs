//! metricsd's ingest decoders: pure functions from request bodies to batches of samples.
//!
//! Nothing here does I/O: the HTTP layer reads the body (with its size limit and content
//! decoding), calls a decoder, and maps [`IngestError`] to a response once, through
//! [`IngestError::code`], [`IngestError::field`] and [`IngestError::status`]. Every decoder
//! is total over arbitrary bytes (fuzzed in `fuzz-ingest/`, property-tested here): bad input
//! is an error naming the field, never a panic.
//!
//! - [`parse_track`] / [`parse_batch`]: the JSON track API (`POST /metrics/track`,
//!   `POST /metrics/track/batch`) into [`TrackItem`]s borrowing from the body; errors are
//!   [`TrackError`]s carrying the API's codes. The server and the fuzz target use this one
//!   parser.
//! - [`decode_write_request`]: Prometheus remote_write 1.0 (snappy block + protobuf) into a
//!   [`WriteBatch`] of validated series; [`encode_write_request`] is its inverse.
//!   [`RemoteWriteDecoder::decode_keyed`] is the server's form: a hand-written zero-copy
//!   reader that keys each series by a hash of its label bytes, so a caller that knows the
//!   key skips parsing and validating the labels.
//! - [`write_prometheus`] / [`write_openmetrics`]: the text exposition formats, with Go's
//!   float formatting ([`format_go_g`]).
//!
//! # Layout
//! - `error.rs`: [`IngestError`], [`TrackError`], [`ErrorStatus`]
//! - `track.rs`: [`TrackItem`], [`MetricKind`], [`parse_timestamp`]
//! - `remote_write.rs`: the prost messages ([`WriteRequest`], ...), [`WriteBatch`],
//!   [`KeyedBatch`]; `remote_write/wire.rs`: the zero-copy protobuf reader
//! - `exposition.rs`: [`MetricFamily`], the writers, [`format_go_g`]
//!
//! # Example
//! ```
//! let t = metricsd_ingest::parse_track(
//!     br#"{"name": "up", "value": 1, "type": "gauge", "labels": {"job": "node"}}"#,
//! ).unwrap();
//! assert_eq!(t.labels, [("job".into(), "node".into())]);
//!
//! let e = metricsd_ingest::parse_track(br#"{"name": "up", "value": "1", "type": "gauge"}"#)
//!     .unwrap_err();
//! assert_eq!((e.code(), e.field()), ("invalid_field", Some("value")));
//! ```
#![warn(clippy::unwrap_used, clippy::panic)]
// Decoders of hostile input: every index is checked (`get`, patterns) or allowed where
// the bound is established next to it, with the reason.
#![warn(clippy::indexing_slicing)]
#![warn(missing_docs)]

mod error;
mod exposition;
mod remote_write;
mod track;

pub use error::{ErrorStatus, IngestError, TrackError, TrackErrorKind};
pub use exposition::{
    FamilyKind, FamilySample, MetricFamily, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE, format_go_g,
    format_openmetrics_float, write_openmetrics, write_prometheus,
};
pub use remote_write::{
    BucketSpan, Exemplar, Histogram, KeyedBatch, Label, MetricMetadata, RemoteWriteDecoder, Sample, SeriesId,
    TimeSeries, WriteBatch, WriteRequest, decode_write_request, decode_write_request_with_prost,
    encode_write_request, histogram, metric_metadata,
};
pub use track::{
    MAX_BUCKETS, MAX_HELP_LENGTH, MetricKind, SERVICE_LABEL, TrackItem, is_valid_tenant_id, parse_batch,
    parse_item, parse_timestamp, parse_track,
};
