//! Prometheus remote_write 1.0: `POST` bodies that are a snappy-compressed (block format,
//! not framed) protobuf `prometheus.WriteRequest`.
//!
//! The messages are hand-written prost structs mirroring Prometheus' `prompb/types.proto`
//! and `prompb/remote.proto` field for field (same tags and wire types; gogoproto options do
//! not change the wire format), so the build needs no `protoc`.
//!
//! [`decode_write_request`] checks the announced decompressed length against the caller's
//! limit *before* allocating, decodes, then validates every series on its own: a bad series
//! lands in [`WriteBatch::rejected`] with its index and the others are kept, so the HTTP
//! layer can choose between a 400 and a partial write. Sample values are kept bit-exact,
//! Prometheus' staleness marker included.

use metricsd_model::{Error as ModelError, Label as ModelLabel, Labels, Limits, Sample as ModelSample};
use prost::Message;

use crate::error::{IngestError, abbreviate};

/// `prometheus.WriteRequest` (remote.proto). Tag 2 is reserved (Cortex' `source`).
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    /// The series with their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// Metric metadata (type, help, unit), sent by Prometheus every minute or so.
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// The series' labels, `__name__` included; senders should sort them.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Float samples.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Exemplars (dropped by metricsd for now, and counted).
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
    /// Native histogram samples (rejected per series for now).
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Histogram>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, Hash, Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

impl Label {
    /// A label set as the labels of a request's series.
    pub fn from_labels(labels: &Labels) -> Vec<Label> {
        labels
            .iter()
            .map(|l| Label {
                name: l.name.to_string(),
                value: l.value.to_string(),
            })
            .collect()
    }
}

/// `prometheus.Sample`.
///
/// `Message` is implemented by hand rather than derived: proto3 omits a field equal to its
/// default, and the derived code (like Prometheus' gogoproto code) tests `value != 0.0`,
/// which is false for `-0.0`, so the sign of zero would be lost. This impl omits only the
/// all-zero bit pattern and writes every other value, so [`encode_write_request`] keeps
/// values bit-exact. Decoding is the same as the derived code.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// The value; any bit pattern.
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
}

impl Message for Sample {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        if self.value.to_bits() != 0 {
            prost::encoding::double::encode(1, &self.value, buf);
        }
        if self.timestamp != 0 {
            prost::encoding::int64::encode(2, &self.timestamp, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            1 => prost::encoding::double::merge(wire_type, &mut self.value, buf, ctx),
            2 => prost::encoding::int64::merge(wire_type, &mut self.timestamp, buf, ctx),
            _ => prost::encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let v = if self.value.to_bits() != 0 {
            prost::encoding::double::encoded_len(1, &self.value)
        } else {
            0
        };
        let t = if self.timestamp != 0 {
            prost::encoding::int64::encoded_len(2, &self.timestamp)
        } else {
            0
        };
        v + t
    }

    fn clear(&mut self) {
        *self = Sample::default();
    }
}

/// `prometheus.Exemplar`.
#[derive(Clone, PartialEq, Message)]
pub struct Exemplar {
    /// Exemplar labels (e.g. `trace_id`); may be empty.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// The exemplar's value.
    #[prost(double, tag = "2")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// `prometheus.Histogram`: a native (sparse, exponential) histogram sample.
#[derive(Clone, PartialEq, Message)]
pub struct Histogram {
    /// Count of observations, integer or float.
    #[prost(oneof = "histogram::Count", tags = "1, 2")]
    pub count: Option<histogram::Count>,
    /// Sum of observations.
    #[prost(double, tag = "3")]
    pub sum: f64,
    /// Bucket schema, -4..=8 for exponential buckets.
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    /// Breadth of the zero bucket.
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    /// Count in the zero bucket, integer or float.
    #[prost(oneof = "histogram::ZeroCount", tags = "6, 7")]
    pub zero_count: Option<histogram::ZeroCount>,
    /// Negative bucket spans.
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<BucketSpan>,
    /// Negative bucket count deltas (integer histograms).
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    /// Negative bucket absolute counts (float histograms).
    #[prost(double, repeated, tag = "10")]
    pub negative_counts: Vec<f64>,
    /// Positive bucket spans.
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    /// Positive bucket count deltas (integer histograms).
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    /// Positive bucket absolute counts (float histograms).
    #[prost(double, repeated, tag = "13")]
    pub positive_counts: Vec<f64>,
    /// Counter-reset hint, a [`histogram::ResetHint`].
    #[prost(enumeration = "histogram::ResetHint", tag = "14")]
    pub reset_hint: i32,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
    /// Custom bucket bounds (internal to Prometheus' OTLP conversion).
    #[prost(double, repeated, tag = "16")]
    pub custom_values: Vec<f64>,
}

/// Nested types of [`Histogram`].
pub mod histogram {
    /// `oneof count`.
    #[derive(Clone, Copy, PartialEq, prost::Oneof)]
    pub enum Count {
        /// Integer count.
        #[prost(uint64, tag = "1")]
        CountInt(u64),
        /// Float count.
        #[prost(double, tag = "2")]
        CountFloat(f64),
    }

    /// `oneof zero_count`.
    #[derive(Clone, Copy, PartialEq, prost::Oneof)]
    pub enum ZeroCount {
        /// Integer count.
        #[prost(uint64, tag = "6")]
        ZeroCountInt(u64),
        /// Float count.
        #[prost(double, tag = "7")]
        ZeroCountFloat(f64),
    }

    /// `Histogram.ResetHint`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum ResetHint {
        /// Test for a counter reset explicitly.
        Unknown = 0,
        /// First histogram after a counter reset.
        Yes = 1,
        /// No counter reset since the previous histogram.
        No = 2,
        /// A gauge histogram; counter resets do not apply.
        Gauge = 3,
    }
}

/// `prometheus.BucketSpan`.
#[derive(Clone, Copy, PartialEq, Eq, Message)]
pub struct BucketSpan {
    /// Gap to the previous span, or the first bucket index.
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    /// Number of consecutive buckets.
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

/// `prometheus.MetricMetadata`. Tag 3 is unused in Prometheus' proto.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct MetricMetadata {
    /// The metric type, a [`metric_metadata::MetricType`].
    #[prost(enumeration = "metric_metadata::MetricType", tag = "1")]
    pub r#type: i32,
    /// The family name (without `_bucket`, `_total`, ... suffixes).
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    /// Help text.
    #[prost(string, tag = "4")]
    pub help: String,
    /// Unit, e.g. `seconds`.
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// Nested types of [`MetricMetadata`].
pub mod metric_metadata {
    /// `MetricMetadata.MetricType`, matching Prometheus' metadata types.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum MetricType {
        /// Unknown / untyped.
        Unknown = 0,
        /// Counter.
        Counter = 1,
        /// Gauge.
        Gauge = 2,
        /// Histogram.
        Histogram = 3,
        /// Gauge histogram.
        Gaugehistogram = 4,
        /// Summary.
        Summary = 5,
        /// Info.
        Info = 6,
        /// Stateset.
        Stateset = 7,
    }
}

/// A decoded, validated remote_write request.
///
/// # Invariants
/// Every entry of `series` passed [`metricsd_model::validate_labels`], had no duplicate label
/// names and no native histograms; its empty-valued labels were dropped. Every other input
/// series has exactly one entry in `rejected`, with its index in the request. Samples are in
/// request order, values bit-exact.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    /// Accepted series and their samples (possibly none).
    pub series: Vec<(Labels, Vec<ModelSample>)>,
    /// Metadata entries, passed through as sent.
    pub metadata: Vec<MetricMetadata>,
    /// Rejected series: index in `WriteRequest.timeseries` and why.
    pub rejected: Vec<(usize, IngestError)>,
    /// Exemplars of accepted series that were dropped (exemplars are not stored yet).
    pub exemplars_dropped: usize,
    /// Float samples of the rejected series (so callers can count the samples a request lost).
    pub rejected_samples: usize,
}

impl WriteBatch {
    /// Empties the batch, keeping the outer allocations for the next request.
    pub fn clear(&mut self) {
        self.series.clear();
        self.metadata.clear();
        self.rejected.clear();
        self.exemplars_dropped = 0;
        self.rejected_samples = 0;
    }

    /// Total samples of the accepted series.
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|(_, s)| s.len()).sum()
    }

    /// The accepted series and metadata as a request again (for re-encoding and tests).
    pub fn to_write_request(&self) -> WriteRequest {
        WriteRequest {
            timeseries: self
                .series
                .iter()
                .map(|(labels, samples)| TimeSeries {
                    labels: Label::from_labels(labels),
                    samples: samples
                        .iter()
                        .map(|s| Sample {
                            value: s.v,
                            timestamp: s.t,
                        })
                        .collect(),
                    exemplars: Vec::new(),
                    histograms: Vec::new(),
                })
                .collect(),
            metadata: self.metadata.clone(),
        }
    }
}

/// Decodes a remote_write body with the model's default label [`Limits`].
///
/// `max_decompressed` bounds the decompressed protobuf size; a larger announced size is a
/// `payload_too_large` error before any allocation.
pub fn decode_write_request(body: &[u8], max_decompressed: usize) -> Result<WriteBatch, IngestError> {
    let mut batch = WriteBatch::default();
    RemoteWriteDecoder::new(max_decompressed, Limits::default()).decode(body, &mut batch)?;
    Ok(batch)
}

/// A reusable remote_write decoder: keeps its decompression buffer between requests.
#[derive(Debug, Clone)]
pub struct RemoteWriteDecoder {
    max_decompressed: usize,
    limits: Limits,
    buf: Vec<u8>,
}

impl RemoteWriteDecoder {
    /// A decoder rejecting bodies that decompress to more than `max_decompressed` bytes and
    /// series that break `limits`.
    pub fn new(max_decompressed: usize, limits: Limits) -> Self {
        RemoteWriteDecoder {
            max_decompressed,
            limits,
            buf: Vec::new(),
        }
    }

    /// Decodes `body` into `out` (cleared first). An error means the whole body is unusable
    /// (bad snappy, too large, bad protobuf); per-series problems go to `out.rejected`.
    pub fn decode(&mut self, body: &[u8], out: &mut WriteBatch) -> Result<(), IngestError> {
        out.clear();
        let len = snap::raw::decompress_len(body).map_err(|e| IngestError::InvalidSnappy {
            len: body.len(),
            reason: e.to_string(),
        })?;
        if len > self.max_decompressed {
            return Err(IngestError::PayloadTooLarge {
                field: "body".into(),
                what: "decompressed size in bytes",
                size: len as u64,
                limit: self.max_decompressed as u64,
            });
        }
        self.buf.clear();
        self.buf.resize(len, 0);
        let n = snap::raw::Decoder::new()
            .decompress(body, &mut self.buf)
            .map_err(|e| IngestError::InvalidSnappy {
                len: body.len(),
                reason: e.to_string(),
            })?;
        self.buf.truncate(n);
        let req = WriteRequest::decode(self.buf.as_slice()).map_err(|e| IngestError::InvalidProtobuf {
            len: n,
            reason: e.to_string(),
        })?;
        // Large buffers are not kept: one 50 MB request must not pin 50 MB per decoder.
        if self.buf.capacity() > 4 << 20 {
            self.buf = Vec::new();
        }
        convert(req, &self.limits, out);
        Ok(())
    }
}

/// Label strings of one request, each allocated once: a request's series share most label
/// names and many values (`job`, `instance`, the metric names of one target), so interning
/// them turns about sixteen allocations per series into a few.
#[derive(Default)]
struct Interner<'r>(std::collections::HashMap<&'r str, std::sync::Arc<str>, foldhash::fast::RandomState>);

impl<'r> Interner<'r> {
    fn get(&mut self, s: &'r str) -> std::sync::Arc<str> {
        self.0.entry(s).or_insert_with(|| std::sync::Arc::from(s)).clone()
    }
}

fn convert(req: WriteRequest, limits: &Limits, out: &mut WriteBatch) {
    out.series.reserve(req.timeseries.len());
    let mut strings = Interner::default();
    for (i, ts) in req.timeseries.iter().enumerate() {
        match convert_series(i, ts, limits, &mut strings) {
            Ok(labels) => {
                out.exemplars_dropped += ts.exemplars.len();
                let samples = ts
                    .samples
                    .iter()
                    .map(|s| ModelSample::new(s.timestamp, s.value))
                    .collect();
                out.series.push((labels, samples));
            }
            Err(e) => {
                out.rejected_samples += ts.samples.len();
                out.rejected.push((i, e));
            }
        }
    }
    drop(strings);
    out.metadata = req.metadata;
}

fn convert_series<'r>(
    i: usize,
    ts: &'r TimeSeries,
    limits: &Limits,
    strings: &mut Interner<'r>,
) -> Result<Labels, IngestError> {
    if !ts.histograms.is_empty() {
        return Err(IngestError::Unsupported {
            field: format!("timeseries[{i}].histograms"),
            what: "native histograms",
        });
    }
    let field = || format!("timeseries[{i}].labels");
    // Cheap count check first, so that a series with a million labels costs no sort.
    let non_empty = ts.labels.iter().filter(|l| !l.value.is_empty()).count();
    if non_empty > limits.max_label_names_per_series {
        let name = ts
            .labels
            .iter()
            .find(|l| l.name == metricsd_model::METRIC_NAME)
            .map(|l| abbreviate(&l.value))
            .unwrap_or_default();
        return Err(IngestError::InvalidLabels {
            field: field(),
            source: ModelError::TooManyLabels {
                series: name,
                count: non_empty,
                limit: limits.max_label_names_per_series,
            },
        });
    }
    // Sorted once, on the stack: duplicate names are found next to each other (empty values
    // included, as Prometheus does), and the label set is built in order.
    let mut pairs: smallvec::SmallVec<[(&str, &str); 16]> = ts
        .labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
    if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(IngestError::InvalidLabels {
            field: field(),
            source: ModelError::DuplicateLabelName(abbreviate(w[0].0)),
        });
    }
    let v: Vec<ModelLabel> = pairs
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|&(name, value)| ModelLabel::new(strings.get(name), strings.get(value)))
        .collect();
    let labels = Labels::from_sorted(v);
    metricsd_model::validate_labels(&labels, limits).map_err(|source| IngestError::InvalidLabels {
        field: field(),
        source,
    })?;
    Ok(labels)
}

/// Encodes a request as a remote_write body: protobuf, then snappy block format.
///
/// # Panics
/// If the encoded protobuf is larger than snappy's block limit (about 4 GiB); no valid
/// remote_write request comes near it.
pub fn encode_write_request(req: &WriteRequest) -> Vec<u8> {
    let pb = req.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&pb)
        .expect("protobuf larger than snappy's 4 GiB block limit")
}

#[cfg(test)]
mod tests {
    use super::*;
    use metricsd_model::STALE_NAN;
    use proptest::prelude::*;

    fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|(t, v)| Sample {
                    value: *v,
                    timestamp: *t,
                })
                .collect(),
            exemplars: vec![],
            histograms: vec![],
        }
    }

    #[test]
    fn decodes_and_validates_each_series() {
        let stale = f64::from_bits(STALE_NAN);
        let mut hist = series(&[("__name__", "h")], &[]);
        hist.histograms.push(Histogram {
            count: Some(histogram::Count::CountInt(3)),
            sum: 1.5,
            schema: 3,
            zero_threshold: 0.0,
            zero_count: None,
            negative_spans: vec![],
            negative_deltas: vec![],
            negative_counts: vec![],
            positive_spans: vec![BucketSpan { offset: 0, length: 1 }],
            positive_deltas: vec![3],
            positive_counts: vec![],
            reset_hint: histogram::ResetHint::No as i32,
            timestamp: 5,
            custom_values: vec![],
        });
        let mut with_exemplar = series(&[("__name__", "up"), ("job", "x")], &[(1, 1.0)]);
        with_exemplar.exemplars.push(Exemplar {
            labels: vec![],
            value: 1.0,
            timestamp: 1,
        });
        let req = WriteRequest {
            timeseries: vec![
                series(
                    &[("job", "node"), ("__name__", "up"), ("empty", "")],
                    &[(1000, 1.0), (2000, stale), (-5, f64::NAN)],
                ),
                series(&[("job", "a"), ("job", "b"), ("__name__", "up")], &[(1, 1.0)]),
                series(&[("job", "a")], &[(1, 1.0)]),
                series(&[("__name__", "9bad")], &[(1, 1.0)]),
                series(&[("__name__", "up"), ("a-b", "1")], &[(1, 1.0)]),
                hist,
                with_exemplar,
            ],
            metadata: vec![MetricMetadata {
                r#type: metric_metadata::MetricType::Counter as i32,
                metric_family_name: "http_requests".into(),
                help: "Requests.".into(),
                unit: String::new(),
            }],
        };
        let body = encode_write_request(&req);
        let b = decode_write_request(&body, 1 << 20).unwrap();
        assert_eq!(b.series.len(), 2);
        let (l, s) = &b.series[0];
        assert_eq!(*l, Labels::from_pairs([("__name__", "up"), ("job", "node")]));
        assert_eq!(s.len(), 3);
        assert_eq!(s[1].v.to_bits(), STALE_NAN);
        assert_eq!(s[2].v.to_bits(), f64::NAN.to_bits());
        assert_eq!(s[2].t, -5);
        assert_eq!(b.exemplars_dropped, 1);
        let codes: Vec<_> = b.rejected.iter().map(|(i, e)| (*i, e.code())).collect();
        assert_eq!(
            codes,
            [
                (1, "invalid_value"),
                (2, "missing_field"),
                (3, "invalid_name"),
                (4, "invalid_name"),
                (5, "unsupported")
            ]
        );
        let (_, e) = &b.rejected[4];
        assert_eq!(e.field(), Some("timeseries[5].histograms"));
        assert_eq!(
            e.to_string(),
            "timeseries[5].histograms: native histograms are not supported yet"
        );
        assert!(
            b.rejected[0]
                .1
                .to_string()
                .contains("duplicate label name \"job\"")
        );
        assert_eq!(b.metadata, req.metadata);
        assert_eq!(b.sample_count(), 4);
        // One sample in each of the four rejected series with samples; none in the histogram one.
        assert_eq!(b.rejected_samples, 4);
    }

    #[test]
    fn limits_checked_before_allocating() {
        let req = WriteRequest {
            timeseries: vec![series(&[("__name__", "up")], &[(1, 1.0); 100])],
            metadata: vec![],
        };
        let body = encode_write_request(&req);
        let e = decode_write_request(&body, 100).unwrap_err();
        assert_eq!((e.code(), e.field()), ("payload_too_large", Some("body")));
        // A 5-byte body announcing 4 GiB: rejected from the header alone.
        let e = decode_write_request(&[0x80, 0x80, 0x80, 0x80, 0x0f], 1 << 20).unwrap_err();
        assert_eq!(e.code(), "payload_too_large");
        assert!(e.to_string().contains("4026531840"), "{e}");
    }

    #[test]
    fn whole_body_errors() {
        assert_eq!(
            decode_write_request(b"", 1 << 20).unwrap_err().code(),
            "invalid_snappy"
        );
        assert_eq!(
            decode_write_request(&[0x05, 0x00], 1 << 20).unwrap_err().code(),
            "invalid_snappy"
        );
        // Valid snappy of a truncated protobuf.
        let body = snap::raw::Encoder::new()
            .compress_vec(&[0x0a, 0x05, 0x0a])
            .unwrap();
        let e = decode_write_request(&body, 1 << 20).unwrap_err();
        assert_eq!(e.code(), "invalid_protobuf");
        assert_eq!(e.field(), None);
        // Framed snappy (the wrong format) is rejected, not misread.
        let mut framed = Vec::new();
        {
            use std::io::Write;
            let mut w = snap::write::FrameEncoder::new(&mut framed);
            w.write_all(&WriteRequest::default().encode_to_vec()).unwrap();
        }
        assert!(decode_write_request(&framed, 1 << 20).is_err());
    }

    #[test]
    fn decoder_reuse_clears_the_batch() {
        let mut d = RemoteWriteDecoder::new(1 << 20, Limits::default());
        let mut b = WriteBatch::default();
        let one = encode_write_request(&WriteRequest {
            timeseries: vec![series(&[("__name__", "a")], &[(1, 1.0)]), series(&[], &[])],
            metadata: vec![],
        });
        d.decode(&one, &mut b).unwrap();
        d.decode(&one, &mut b).unwrap();
        assert_eq!((b.series.len(), b.rejected.len()), (1, 1));
        assert_eq!(b.rejected_samples, 0);
        let two = encode_write_request(&WriteRequest {
            timeseries: vec![series(&[("job", "x")], &[(1, 1.0), (2, 2.0)])],
            metadata: vec![],
        });
        d.decode(&two, &mut b).unwrap();
        d.decode(&two, &mut b).unwrap();
        assert_eq!((b.series.len(), b.rejected_samples), (0, 2));
    }

    /// A field-by-field check of our tags against the proto: bytes as Prometheus' Go
    /// client would write them for `{__name__="a"} 1 @ 2`.
    #[test]
    fn wire_format_matches_prompb() {
        let req = WriteRequest {
            timeseries: vec![series(&[("__name__", "a")], &[(2, 1.0)])],
            metadata: vec![MetricMetadata {
                r#type: 1,
                metric_family_name: "f".into(),
                help: "h".into(),
                unit: "u".into(),
            }],
        };
        let bytes = req.encode_to_vec();
        #[rustfmt::skip]
        let want = [
            0x0a, 0x1c, // timeseries (1, LEN) 28 bytes
              0x0a, 0x0d, // labels (1, LEN)
                0x0a, 0x08, b'_', b'_', b'n', b'a', b'm', b'e', b'_', b'_', // name (1)
                0x12, 0x01, b'a', // value (2)
              0x12, 0x0b, // samples (2, LEN)
                0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, // value (1, I64) 1.0
                0x10, 0x02, // timestamp (2, VARINT)
            0x1a, 0x0b, // metadata (3, LEN)
              0x08, 0x01, // type (1)
              0x12, 0x01, b'f', // metric_family_name (2)
              0x22, 0x01, b'h', // help (4)
              0x2a, 0x01, b'u', // unit (5)
        ];
        assert_eq!(bytes, want);
    }

    fn label_name() -> impl Strategy<Value = String> {
        "[a-zA-Z_][a-zA-Z0-9_]{0,8}".prop_filter("reserved", |s| !s.starts_with("__"))
    }

    fn f64_edge() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<u64>().prop_map(f64::from_bits),
            Just(f64::from_bits(STALE_NAN)),
            Just(f64::NAN),
            Just(-0.0),
            Just(f64::INFINITY),
            Just(f64::MIN_POSITIVE),
        ]
    }

    fn i64_edge() -> impl Strategy<Value = i64> {
        prop_oneof![
            any::<i64>(),
            Just(i64::MIN),
            Just(i64::MAX),
            Just(0),
            0..2_000_000_000_000i64
        ]
    }

    prop_compose! {
        fn arb_series()(
            name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}",
            labels in proptest::collection::btree_map(label_name(), "\\PC{1,6}", 0..6),
            samples in proptest::collection::vec((i64_edge(), f64_edge()), 0..20),
        ) -> (Labels, Vec<ModelSample>) {
            let mut pairs: Vec<(String, String)> = labels.into_iter().collect();
            pairs.push(("__name__".into(), name));
            (
                Labels::from_pairs(pairs),
                samples.into_iter().map(|(t, v)| ModelSample::new(t, v)).collect(),
            )
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn round_trip(series in proptest::collection::vec(arb_series(), 0..8)) {
            let batch = WriteBatch { series, ..WriteBatch::default() };
            let body = encode_write_request(&batch.to_write_request());
            let back = decode_write_request(&body, 64 << 20).unwrap();
            prop_assert!(back.rejected.is_empty(), "{:?}", back.rejected);
            // Sample's PartialEq compares value bits: stale NaN stays stale.
            prop_assert_eq!(back, batch);
        }

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_write_request(&body, 1 << 20);
            // Also as an already-valid snappy block, to reach the protobuf decoder.
            let snappy = snap::raw::Encoder::new().compress_vec(&body).unwrap();
            let _ = decode_write_request(&snappy, 1 << 20);
        }
    }
}
