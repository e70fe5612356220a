//! Query results.

use metricsd_model::{Labels, Sample};

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSample {
    /// The series' labels.
    pub labels: Labels,
    /// Evaluation timestamp (ms).
    pub t: i64,
    /// The value.
    pub v: f64,
}

/// One series of a range result: its points in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    /// The series' labels.
    pub labels: Labels,
    /// Points in time order, never empty.
    pub points: Vec<Sample>,
}

/// The value of a query, as the Prometheus API's `resultType` distinguishes them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `scalar`: `[t, v]`.
    Scalar {
        /// Evaluation timestamp (ms).
        t: i64,
        /// The value.
        v: f64,
    },
    /// `string`: `[t, s]`.
    String {
        /// Evaluation timestamp (ms).
        t: i64,
        /// The string.
        s: String,
    },
    /// `vector`: an instant query's vector result.
    Vector(Vec<VectorSample>),
    /// `matrix`: a range query's result, or an instant query of a range selector. Sorted by
    /// labels.
    Matrix(Vec<RangeSeries>),
}

impl Value {
    /// The Prometheus API `resultType`.
    pub fn result_type(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// What a query cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryStats {
    /// Samples read from storage.
    pub samples_loaded: u64,
    /// Series selected from storage.
    pub series_selected: u64,
    /// The largest number of points held in memory at once.
    pub peak_points: u64,
}

/// A query's value, warnings and statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// The value.
    pub value: Value,
    /// Warnings (Prometheus' `warnings` array), e.g. a chunk that failed to decode.
    pub warnings: Vec<String>,
    /// Cost figures.
    pub stats: QueryStats,
}
