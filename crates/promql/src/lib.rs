//! A PromQL evaluator over the metricsd-tsdb read API.
//!
//! Expressions are parsed with `promql-parser` and evaluated by our own engine over a
//! [`metricsd_storage::Queryable`]. The semantics are those of Prometheus 2.x for float
//! samples (checked against Prometheus 2.42 by the conformance harness); see
//! `docs/promql.md` for the deliberate differences.
//!
//! ```no_run
//! # fn demo(store: &dyn metricsd_storage::Queryable) {
//! use metricsd_promql::{Engine, EngineOptions, QueryContext};
//! let engine = Engine::new(EngineOptions::default());
//! let res = engine
//!     .instant_query(store, "sum by (job) (rate(http_requests_total[5m]))", 1_700_000_000_000, &QueryContext::default())
//!     .unwrap();
//! println!("{:?}", res.value);
//! # }
//! ```

#![warn(clippy::unwrap_used, clippy::panic)]
// Queries are hostile input: an index a query can drive is checked (`get`, patterns) and
// fails as a PromQL error; the evaluator's hot loops allow it on the smallest item, with
// the reason the bound holds.
#![warn(clippy::indexing_slicing)]
mod aggregate;
mod binary;
mod engine;
mod error;
mod eval;
mod functions;
mod syntax;
mod value;

pub use engine::{Engine, EngineOptions, QueryContext, parse};
pub use error::QueryError;
pub use eval::selector_matchers;
pub use promql_parser;
pub use value::{QueryResult, QueryStats, RangeSeries, Value, VectorSample};
