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

mod wire;

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

/// How [`RemoteWriteDecoder::decode_keyed`] identifies an accepted series.
#[derive(Debug, Clone, PartialEq)]
pub enum SeriesId<H> {
    /// The caller's lookup knew the series' key: its labels were neither parsed nor
    /// validated (they are byte-identical to ones that were).
    Known(H),
    /// The lookup did not know it: the validated labels, and the key to remember the series
    /// under for the next request.
    New {
        /// The series' labels, validated, sorted, without empty values.
        labels: Labels,
        /// The series' key (see [`RemoteWriteDecoder::decode_keyed`]).
        key: u128,
    },
}

/// A decoded remote_write request whose series are identified through the caller's
/// lookup; see [`RemoteWriteDecoder::decode_keyed`]. Same invariants as [`WriteBatch`].
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedBatch<H> {
    /// Accepted series: how each is identified, and the end of its samples in `samples`
    /// (each series' samples follow the previous one's).
    pub series: Vec<(SeriesId<H>, usize)>,
    /// The samples of the accepted series, in request order.
    pub samples: Vec<ModelSample>,
    /// Metadata entries, passed through as sent.
    pub metadata: Vec<MetricMetadata>,
    /// Rejected series: index in `WriteRequest.timeseries` and why.
    pub rejected: Vec<(usize, IngestError)>,
    /// Exemplars of accepted series that were dropped (exemplars are not stored yet).
    pub exemplars_dropped: usize,
    /// Float samples of the rejected series.
    pub rejected_samples: usize,
}

impl<H> Default for KeyedBatch<H> {
    fn default() -> Self {
        KeyedBatch {
            series: Vec::new(),
            samples: Vec::new(),
            metadata: Vec::new(),
            rejected: Vec::new(),
            exemplars_dropped: 0,
            rejected_samples: 0,
        }
    }
}

impl<H> KeyedBatch<H> {
    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.series.clear();
        self.samples.clear();
        self.metadata.clear();
        self.rejected.clear();
        self.exemplars_dropped = 0;
        self.rejected_samples = 0;
    }

    /// Each accepted series with its samples.
    pub fn iter(&self) -> impl Iterator<Item = (&SeriesId<H>, &[ModelSample])> {
        let mut start = 0;
        self.series.iter().map(move |(id, end)| {
            let s = self.samples.get(start..*end).unwrap_or_default();
            start = *end;
            (id, s)
        })
    }

    /// Takes the accepted series (with their samples) out, in order.
    pub fn drain(&mut self) -> impl Iterator<Item = (SeriesId<H>, &[ModelSample])> {
        let mut start = 0;
        let samples = &self.samples;
        self.series.drain(..).map(move |(id, end)| {
            let s = samples.get(start..end).unwrap_or_default();
            start = end;
            (id, s)
        })
    }
}

/// A reusable remote_write decoder: keeps its decompression buffer between requests.
#[derive(Debug, Clone)]
pub struct RemoteWriteDecoder {
    max_decompressed: usize,
    limits: Limits,
    seed: u64,
    buf: Vec<u8>,
}

impl RemoteWriteDecoder {
    /// A decoder rejecting bodies that decompress to more than `max_decompressed` bytes and
    /// series that break `limits`.
    pub fn new(max_decompressed: usize, limits: Limits) -> Self {
        RemoteWriteDecoder {
            max_decompressed,
            limits,
            seed: 0,
            buf: Vec::new(),
        }
    }

    /// Sets the seed of the series keys [`RemoteWriteDecoder::decode_keyed`] computes. A
    /// server should pick it at random once per process (so nobody can find collisions
    /// offline for it; see the key's limits in the module docs of `wire`), and use one seed
    /// with one key cache.
    pub fn with_key_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Decodes `body` into `out` (cleared first). An error means the whole body is unusable
    /// (bad snappy, too large, bad protobuf); per-series problems go to `out.rejected`.
    pub fn decode(&mut self, body: &[u8], out: &mut WriteBatch) -> Result<(), IngestError> {
        out.clear();
        let mut keyed = KeyedBatch::<std::convert::Infallible>::default();
        self.decode_keyed(body, &mut keyed, |_| None)?;
        out.series.reserve(keyed.series.len());
        for (id, samples) in keyed.drain() {
            let SeriesId::New { labels, .. } = id;
            out.series.push((labels, samples.to_vec()));
        }
        out.metadata = keyed.metadata;
        out.rejected = keyed.rejected;
        out.exemplars_dropped = keyed.exemplars_dropped;
        out.rejected_samples = keyed.rejected_samples;
        Ok(())
    }

    /// Decodes `body` into `out` (cleared first), asking `lookup` about each series by its
    /// key before parsing its labels: the 128-bit hash (seeded, see
    /// [`RemoteWriteDecoder::with_key_seed`]) of the series' label fields exactly as they
    /// are encoded. When `lookup` answers, the series is [`SeriesId::Known`] and its labels
    /// cost nothing; otherwise they are parsed, validated and returned with the key as
    /// [`SeriesId::New`], for the caller to remember once they are stored.
    ///
    /// A caller must only answer for keys it was given with labels that were accepted
    /// (by this decoder's limits): equal keys mean byte-identical label fields, so the
    /// answer is then the series those labels name. A series with native histograms is
    /// rejected whatever the lookup says. Errors are as for [`RemoteWriteDecoder::decode`].
    pub fn decode_keyed<H>(
        &mut self,
        body: &[u8],
        out: &mut KeyedBatch<H>,
        mut lookup: impl FnMut(u128) -> Option<H>,
    ) -> Result<(), IngestError> {
        out.clear();
        let n = self.decompress(body)?;
        let res = self.read(n, out, &mut lookup);
        // Large buffers are not kept: one 50 MB request must not pin 50 MB per decoder.
        if self.buf.capacity() > 4 << 20 {
            self.buf = Vec::new();
        }
        res.map_err(|e| IngestError::InvalidProtobuf {
            len: n,
            reason: e.0.into_owned(),
        })
    }

    /// The protobuf half of [`RemoteWriteDecoder::decode_keyed`], over `self.buf[..n]`.
    fn read<H>(
        &self,
        n: usize,
        out: &mut KeyedBatch<H>,
        lookup: &mut impl FnMut(u128) -> Option<H>,
    ) -> Result<(), wire::WireError> {
        let pb = self.buf.get(..n).unwrap_or_default();
        let limits = &self.limits;
        let seed = self.seed;
        let mut strings = Interner::default();
        let mut pairs = smallvec::SmallVec::new();
        let KeyedBatch {
            series,
            samples,
            metadata,
            rejected,
            exemplars_dropped,
            rejected_samples,
        } = out;
        wire::read_request(pb, samples, metadata, |i, fields, samples, first| {
            let id = if fields.histograms > 0 {
                // Parsed all the same: malformed labels make the whole body invalid.
                pairs.clear();
                fields.labels(&mut pairs)?;
                Err(unsupported_histograms(i))
            } else {
                let key = fields.key(seed);
                match lookup(key) {
                    Some(h) => Ok(SeriesId::Known(h)),
                    None => {
                        pairs.clear();
                        fields.labels(&mut pairs)?;
                        labels_from_pairs(i, &mut pairs, limits, &mut strings)
                            .map(|labels| SeriesId::New { labels, key })
                    }
                }
            };
            match id {
                Ok(id) => {
                    *exemplars_dropped += fields.exemplars;
                    series.push((id, samples.len()));
                }
                Err(e) => {
                    *rejected_samples += samples.len() - first;
                    samples.truncate(first);
                    rejected.push((i, e));
                }
            }
            Ok(())
        })
    }

    /// Decompresses `body` into `self.buf`, checking the announced size first; returns the
    /// decompressed length.
    fn decompress(&mut self, body: &[u8]) -> Result<usize, IngestError> {
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
        // The announced length is the sender's word; the buffer is sized from it only as far
        // as the body can back it. No snappy element expands more than 64/3 times (a 3-byte
        // copy of 64 bytes), so a body of n bytes decompresses to at most 22 n: a 6-byte body
        // announcing 80 MiB is refused here, before anything is allocated.
        if len > body.len().saturating_mul(MAX_SNAPPY_EXPANSION) {
            return Err(IngestError::InvalidSnappy {
                len: body.len(),
                reason: format!(
                    "the header announces {len} decompressed bytes, more than {MAX_SNAPPY_EXPANSION} times the {} bytes of the body can hold",
                    body.len()
                ),
            });
        }
        self.buf.clear();
        self.buf.resize(len, 0);
        snap::raw::Decoder::new()
            .decompress(body, &mut self.buf)
            .map_err(|e| IngestError::InvalidSnappy {
                len: body.len(),
                reason: e.to_string(),
            })
    }
}

/// The most a snappy block can expand per compressed byte: the densest element is a copy
/// with a 2-byte offset, 3 bytes that produce up to 64 (`64 / 3 < 22`).
pub const MAX_SNAPPY_EXPANSION: usize = 22;

/// The same decode done with the derived prost messages: the reference the hand-written
/// reader is compared with (property tests here, the `remote_write` fuzz target). Not for
/// production use: it allocates every label string.
#[doc(hidden)]
pub fn decode_write_request_with_prost(
    body: &[u8],
    max_decompressed: usize,
) -> Result<WriteBatch, IngestError> {
    let mut d = RemoteWriteDecoder::new(max_decompressed, Limits::default());
    let n = d.decompress(body)?;
    let req = WriteRequest::decode(d.buf.get(..n).unwrap_or_default()).map_err(|e| {
        IngestError::InvalidProtobuf {
            len: n,
            reason: e.to_string(),
        }
    })?;
    let mut out = WriteBatch::default();
    let mut strings = Interner::default();
    for (i, ts) in req.timeseries.iter().enumerate() {
        let labels = if ts.histograms.is_empty() {
            let mut pairs = ts
                .labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect();
            labels_from_pairs(i, &mut pairs, &d.limits, &mut strings)
        } else {
            Err(unsupported_histograms(i))
        };
        match labels {
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
    out.metadata = req.metadata;
    Ok(out)
}

/// Label strings of one request, each allocated once: a request's new series share most
/// label names and many values (`job`, `instance`, the metric names of one target), so
/// interning them turns about sixteen allocations per series into a few.
#[derive(Default)]
struct Interner<'r>(std::collections::HashMap<&'r str, std::sync::Arc<str>, foldhash::fast::RandomState>);

impl<'r> Interner<'r> {
    fn get(&mut self, s: &'r str) -> std::sync::Arc<str> {
        self.0.entry(s).or_insert_with(|| std::sync::Arc::from(s)).clone()
    }
}

fn unsupported_histograms(i: usize) -> IngestError {
    IngestError::Unsupported {
        field: format!("timeseries[{i}].histograms"),
        what: "native histograms",
    }
}

/// The label set of series `i` from its (name, value) pairs as sent: sorted, empty values
/// dropped, checked for duplicate names and against `limits`.
fn labels_from_pairs<'r>(
    i: usize,
    pairs: &mut smallvec::SmallVec<[(&'r str, &'r str); 16]>,
    limits: &Limits,
    strings: &mut Interner<'r>,
) -> Result<Labels, IngestError> {
    let field = || format!("timeseries[{i}].labels");
    // Cheap count check first, so that a series with a million labels costs no sort.
    let non_empty = pairs.iter().filter(|(_, v)| !v.is_empty()).count();
    if non_empty > limits.max_label_names_per_series {
        let name = pairs
            .iter()
            .find(|(n, _)| *n == metricsd_model::METRIC_NAME)
            .map(|(_, v)| abbreviate(v))
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
    pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
    if let Some((a, _)) = pairs.windows(2).find_map(|w| match w {
        [a, b] if a.0 == b.0 => Some((a, b)),
        _ => None,
    }) {
        return Err(IngestError::InvalidLabels {
            field: field(),
            source: ModelError::DuplicateLabelName(abbreviate(a.0)),
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
    fn announced_length_must_fit_the_body() {
        // 6 bytes announcing just under 80 MiB: refused before the buffer is sized.
        let mut body = Vec::new();
        let mut n = (80u64 << 20) - 1;
        while n >= 0x80 {
            body.push((n as u8) | 0x80);
            n >>= 7;
        }
        body.push(n as u8);
        body.extend_from_slice(&[0x00, 0x00]);
        let mut d = RemoteWriteDecoder::new(100 << 20, Limits::default());
        let e = d.decode(&body, &mut WriteBatch::default()).unwrap_err();
        assert_eq!(e.code(), "invalid_snappy");
        assert!(e.to_string().contains("83886079"), "{e}");
        assert!(d.buf.capacity() < 1 << 20, "nothing sized from the header");
        // The densest real snappy (a run of zeros) stays within the bound, so no valid body
        // is refused by it.
        for len in [1usize, 64, 65, 4096, 1 << 20] {
            let zeros = vec![0u8; len];
            let c = snap::raw::Encoder::new().compress_vec(&zeros).unwrap();
            assert!(len <= c.len() * MAX_SNAPPY_EXPANSION, "{len} from {}", c.len());
            let mut out = vec![0u8; len];
            assert_eq!(snap::raw::Decoder::new().decompress(&c, &mut out).unwrap(), len);
        }
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

    fn f64_edge() -> impl Strategy<Value = f64> + Clone {
        prop_oneof![
            any::<u64>().prop_map(f64::from_bits),
            Just(f64::from_bits(STALE_NAN)),
            Just(f64::NAN),
            Just(-0.0),
            Just(f64::INFINITY),
            Just(f64::MIN_POSITIVE),
        ]
    }

    fn i64_edge() -> impl Strategy<Value = i64> + Clone {
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

    /// Both decoders on one protobuf: both fail, or both give the same batch.
    fn same_as_prost(pb: &[u8]) -> Result<(), TestCaseError> {
        let body = snap::raw::Encoder::new().compress_vec(pb).unwrap();
        let ours = decode_write_request(&body, 1 << 24);
        let theirs = decode_write_request_with_prost(&body, 1 << 24);
        match (ours, theirs) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => prop_assert_eq!(a.code(), b.code()),
            (a, b) => prop_assert!(false, "ours {a:?}\ntheirs {b:?}\nbody {pb:x?}"),
        }
        Ok(())
    }

    /// One protobuf field with a tag that means something at some level of a
    /// `WriteRequest` (1–4) or nothing (5, 16), of any wire type, possibly nested.
    fn arb_field() -> impl Strategy<Value = Vec<u8>> {
        fn key(tag: u32, wire: u8, out: &mut Vec<u8>) {
            prost::encoding::encode_varint(u64::from(tag << 3 | u32::from(wire)), out);
        }
        let tag = prop_oneof![1u32..=4, Just(5u32), Just(16u32)];
        let leaf = (
            tag.clone(),
            0u8..6,
            any::<u64>(),
            "\\PC{0,4}",
            proptest::collection::vec(any::<u8>(), 0..6),
        )
            .prop_map(|(tag, wire, n, s, raw)| {
                let mut out = Vec::new();
                key(tag, wire, &mut out);
                match wire {
                    0 => prost::encoding::encode_varint(n % 300, &mut out),
                    1 => out.extend(n.to_le_bytes()),
                    2 if n % 2 == 0 => {
                        prost::encoding::encode_varint(s.len() as u64, &mut out);
                        out.extend(s.as_bytes());
                    }
                    2 => {
                        prost::encoding::encode_varint(raw.len() as u64, &mut out);
                        out.extend(raw);
                    }
                    3 => key(tag, 4, &mut out), // an empty group
                    4 => {}                     // a stray end of group
                    _ => out.extend((n as u32).to_le_bytes()),
                }
                out
            });
        leaf.prop_recursive(4, 48, 6, move |inner| {
            (tag.clone(), any::<bool>(), proptest::collection::vec(inner, 0..6)).prop_map(
                |(tag, group, fields)| {
                    let body: Vec<u8> = fields.concat();
                    let mut out = Vec::new();
                    if group {
                        key(tag, 3, &mut out);
                        out.extend(body);
                        key(tag, 4, &mut out);
                    } else {
                        key(tag, 2, &mut out);
                        prost::encoding::encode_varint(body.len() as u64, &mut out);
                        out.extend(body);
                    }
                    out
                },
            )
        })
    }

    fn field(tag: u32, wire: u8, out: &mut Vec<u8>) {
        prost::encoding::encode_varint(u64::from(tag << 3 | u32::from(wire)), out);
    }

    fn len_field(tag: u32, body: &[u8], out: &mut Vec<u8>) {
        field(tag, 2, out);
        prost::encoding::encode_varint(body.len() as u64, out);
        out.extend(body);
    }

    /// A message built from parts in a random order: the fields a sender writes, written
    /// twice or left out, beside unknown fields.
    fn arb_message(parts: Vec<BoxedStrategy<Vec<u8>>>) -> impl Strategy<Value = Vec<u8>> {
        let unknown = arb_field().prop_filter("unknown tag", |f| f.first().is_some_and(|k| k >> 3 >= 5));
        (
            proptest::collection::vec(proptest::strategy::Union::new(parts), 0..5),
            proptest::option::weighted(0.2, unknown),
            any::<prop::sample::Index>(),
        )
            .prop_map(|(mut fields, unknown, at)| {
                if let Some(u) = unknown {
                    fields.insert(at.index(fields.len() + 1), u);
                }
                fields.concat()
            })
    }

    /// A `Label` message whose name and value come from small pools, so that valid,
    /// duplicate and conflicting label sets are all common.
    fn arb_label_message() -> impl Strategy<Value = Vec<u8>> {
        let name = proptest::sample::select(vec!["__name__", "job", "a", "", "1x"]).prop_map(|n| {
            let mut out = Vec::new();
            len_field(1, n.as_bytes(), &mut out);
            out
        });
        let value = proptest::sample::select(vec!["up", "x", "", "y"]).prop_map(|v| {
            let mut out = Vec::new();
            len_field(2, v.as_bytes(), &mut out);
            out
        });
        arb_message(vec![
            name.clone().boxed(),
            value.clone().boxed(),
            name.boxed(),
            value.boxed(),
        ])
    }

    /// A `Sample` message: value and timestamp fields in any order, repeated or missing.
    fn arb_sample_message() -> impl Strategy<Value = Vec<u8>> {
        let value = f64_edge().boxed().prop_map(|v| {
            let mut out = Vec::new();
            field(1, 1, &mut out);
            out.extend(v.to_le_bytes());
            out
        });
        let ts = i64_edge().boxed().prop_map(|t| {
            let mut out = Vec::new();
            field(2, 0, &mut out);
            prost::encoding::encode_varint(t as u64, &mut out);
            out
        });
        arb_message(vec![
            value.clone().boxed(),
            ts.clone().boxed(),
            value.boxed(),
            ts.boxed(),
        ])
    }

    /// A `TimeSeries` message of such labels and samples, with now and then an exemplar
    /// or a histogram.
    fn arb_series_message() -> impl Strategy<Value = Vec<u8>> {
        let label = arb_label_message().prop_map(|l| {
            let mut out = Vec::new();
            len_field(1, &l, &mut out);
            out
        });
        let sample = arb_sample_message().prop_map(|s| {
            let mut out = Vec::new();
            len_field(2, &s, &mut out);
            out
        });
        let rare = prop_oneof![
            Just(
                Exemplar {
                    labels: vec![],
                    value: 1.0,
                    timestamp: 2
                }
                .encode_to_vec()
            )
            .prop_map(|e| {
                let mut out = Vec::new();
                len_field(3, &e, &mut out);
                out
            }),
            Just({
                let mut out = Vec::new();
                len_field(4, &[0x18, 0x05], &mut out); // a histogram with sum 5 ... as a varint: invalid
                out
            }),
            Just({
                let mut out = Vec::new();
                len_field(4, &[0x20, 0x02], &mut out); // a histogram with schema 1
                out
            }),
        ];
        proptest::collection::vec(prop_oneof![6 => label, 4 => sample, 1 => rare], 0..8)
            .prop_map(|f| f.concat())
    }

    /// A request of such series, now and then with a byte changed.
    fn arb_request_message() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::collection::vec(arb_series_message(), 0..4),
            proptest::option::weighted(0.2, (any::<prop::sample::Index>(), any::<u8>())),
        )
            .prop_map(|(series, edit)| {
                let mut out = Vec::new();
                for s in series {
                    len_field(1, &s, &mut out);
                }
                if let Some((at, byte)) = edit
                    && !out.is_empty()
                {
                    let i = at.index(out.len());
                    out[i] = byte;
                }
                out
            })
    }

    #[test]
    fn keyed_decoding_skips_known_series() {
        let req = WriteRequest {
            timeseries: vec![
                series(&[("__name__", "up"), ("job", "a")], &[(1, 1.0), (2, 2.0)]),
                series(&[("__name__", "up"), ("job", "b")], &[(1, 3.0)]),
                series(&[("__name__", "9bad")], &[(1, 1.0)]),
                // The first series' labels in another order: another key, same labels.
                series(&[("job", "a"), ("__name__", "up")], &[(3, 4.0)]),
            ],
            metadata: vec![],
        };
        let body = encode_write_request(&req);
        let mut d = RemoteWriteDecoder::new(1 << 20, Limits::default()).with_key_seed(42);
        let mut cache: std::collections::HashMap<u128, Labels> = Default::default();
        let mut b = KeyedBatch::default();
        d.decode_keyed(&body, &mut b, |k| cache.get(&k).cloned()).unwrap();
        let mut keys = Vec::new();
        for (id, _) in b.iter() {
            let SeriesId::New { labels, key } = id else {
                panic!("nothing is known yet: {id:?}")
            };
            cache.insert(*key, labels.clone());
            keys.push(*key);
        }
        assert_eq!(keys.len(), 3);
        assert_ne!(keys[0], keys[2], "the key is of the bytes, not the label set");
        assert_eq!(b.rejected.len(), 1);
        d.decode_keyed(&body, &mut b, |k| cache.get(&k).cloned()).unwrap();
        let got: Vec<_> = b.iter().map(|(id, s)| (id.clone(), s.to_vec())).collect();
        let up_a = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        assert_eq!(
            got,
            [
                (
                    SeriesId::Known(up_a.clone()),
                    vec![ModelSample::new(1, 1.0), ModelSample::new(2, 2.0)]
                ),
                (
                    SeriesId::Known(Labels::from_pairs([("__name__", "up"), ("job", "b")])),
                    vec![ModelSample::new(1, 3.0)]
                ),
                (SeriesId::Known(up_a), vec![ModelSample::new(3, 4.0)]),
            ]
        );
        // Rejected series are asked about like any other and rejected again by the caller's
        // silence; a series with native histograms is rejected even when known.
        assert_eq!(b.rejected.len(), 1);
        assert_eq!(b.rejected_samples, 1);
        let mut hist = req.timeseries[0].clone();
        hist.histograms.push(Histogram {
            count: None,
            sum: 0.0,
            schema: 0,
            zero_threshold: 0.0,
            zero_count: None,
            negative_spans: vec![],
            negative_deltas: vec![],
            negative_counts: vec![],
            positive_spans: vec![],
            positive_deltas: vec![],
            positive_counts: vec![],
            reset_hint: 0,
            timestamp: 0,
            custom_values: vec![],
        });
        let body = encode_write_request(&WriteRequest {
            timeseries: vec![hist],
            metadata: vec![],
        });
        d.decode_keyed(&body, &mut b, |k| cache.get(&k).cloned()).unwrap();
        assert_eq!((b.series.len(), b.rejected[0].1.code()), (0, "unsupported"));
        assert_eq!(b.samples.len(), 0);
    }

    #[test]
    fn malformed_label_bytes_name_their_series_and_field() {
        // timeseries[1]'s label value is not UTF-8.
        let mut pb = WriteRequest {
            timeseries: vec![series(&[("__name__", "a")], &[(1, 1.0)])],
            metadata: vec![],
        }
        .encode_to_vec();
        pb.extend([0x0a, 0x09, 0x0a, 0x07, 0x0a, 0x01, b'x', 0x12, 0x02, 0xff, 0xfe]);
        let body = snap::raw::Encoder::new().compress_vec(&pb).unwrap();
        let e = decode_write_request(&body, 1 << 20).unwrap_err();
        assert_eq!(e.code(), "invalid_protobuf");
        assert!(
            e.to_string()
                .contains("timeseries[1]: labels[0].value: invalid string value"),
            "{e}"
        );
        assert!(decode_write_request_with_prost(&body, 1 << 20).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

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
        fn same_as_prost_on_arbitrary_fields(fields in proptest::collection::vec(arb_field(), 0..6)) {
            same_as_prost(&fields.concat())?;
        }

        #[test]
        fn same_as_prost_on_odd_but_valid_messages(pb in arb_request_message()) {
            same_as_prost(&pb)?;
        }

        #[test]
        fn same_as_prost_on_mutated_requests(
            series in proptest::collection::vec(arb_series(), 1..4),
            extra in proptest::collection::vec(arb_field(), 0..2),
            at in any::<prop::sample::Index>(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..3),
        ) {
            let batch = WriteBatch { series, ..WriteBatch::default() };
            let mut pb = batch.to_write_request().encode_to_vec();
            // Unknown or repeated fields spliced in somewhere, then a few bytes changed,
            // inserted or removed.
            let i = at.index(pb.len() + 1);
            pb.splice(i..i, extra.concat());
            for (at, byte, op) in edits {
                let i = at.index(pb.len().max(1));
                match op {
                    0 if i < pb.len() => pb[i] = byte,
                    1 => pb.insert(i.min(pb.len()), byte),
                    _ if i < pb.len() => { pb.remove(i); }
                    _ => {}
                }
            }
            same_as_prost(&pb)?;
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
