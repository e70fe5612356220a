//! Prometheus remote_write 1.0: hand-written prost messages (no protoc, no build.rs), and
//! pure decode/encode functions over the snappy block + protobuf body. (To be replaced by
//! `metricsd-ingest`'s `decode_write_request`.)

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// Metric metadata (ignored for now).
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Labels, `__name__` included.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples in time order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Unix ms.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.MetricMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    /// Metric type enum.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// Family name.
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    /// Help text.
    #[prost(string, tag = "4")]
    pub help: String,
    /// Unit.
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    /// The snappy block is invalid.
    #[error("invalid snappy block ({len} bytes): {reason}")]
    Snappy {
        /// Compressed length.
        len: usize,
        /// Decoder message.
        reason: String,
    },
    /// The decompressed size exceeds the limit.
    #[error("decompressed body of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Declared size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The protobuf is invalid.
    #[error("invalid WriteRequest protobuf ({len} bytes): {reason}")]
    Protobuf {
        /// Decompressed length.
        len: usize,
        /// Decoder message.
        reason: String,
    },
}

/// Decodes a remote_write body: snappy block format, then protobuf. The decompressed
/// size is checked against `max_decompressed` before allocating.
pub fn decode_write_request(body: &[u8], max_decompressed: usize) -> Result<WriteRequest, DecodeError> {
    let size = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy {
        len: body.len(),
        reason: e.to_string(),
    })?;
    if size > max_decompressed {
        return Err(DecodeError::TooLarge {
            size,
            limit: max_decompressed,
        });
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| DecodeError::Snappy {
            len: body.len(),
            reason: e.to_string(),
        })?;
    <WriteRequest as prost::Message>::decode(raw.as_slice()).map_err(|e| DecodeError::Protobuf {
        len: raw.len(),
        reason: e.to_string(),
    })
}

/// Encodes a request as a remote_write body (for tests and the load generator).
pub fn encode_write_request(req: &WriteRequest) -> Vec<u8> {
    let raw = prost::Message::encode_to_vec(req);
    snap::raw::Encoder::new().compress_vec(&raw).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1000,
                }],
            }],
            metadata: vec![],
        };
        let body = encode_write_request(&req);
        assert_eq!(decode_write_request(&body, 1 << 20).unwrap(), req);
        assert!(matches!(
            decode_write_request(b"\xff\xff\xff\xff\xff", 1 << 20),
            Err(DecodeError::Snappy { .. })
        ));
        assert!(matches!(
            decode_write_request(&body, 4),
            Err(DecodeError::TooLarge { .. })
        ));
        let junk = snap::raw::Encoder::new()
            .compress_vec(b"\x0a\xff\xff\xff")
            .unwrap();
        assert!(matches!(
            decode_write_request(&junk, 1 << 20),
            Err(DecodeError::Protobuf { .. })
        ));
    }
}
