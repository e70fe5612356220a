//! The engine: options, the per-query context, and the query entry points.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use metricsd_storage::Queryable;
use promql_parser::parser::Expr;

use crate::error::QueryError;
use crate::value::QueryResult;

/// Engine settings. The defaults are Prometheus' defaults.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back a vector selector looks for the latest sample (`--query.lookback-delta`,
    /// 5m).
    pub lookback_delta_ms: i64,
    /// Step of subqueries written without one (`x[1h:]`): Prometheus' global evaluation
    /// interval, 1m by default.
    pub default_subquery_step_ms: i64,
    /// Longest a query may run (`--query.timeout`, 2m).
    pub timeout: Duration,
    /// Most points a query may hold in memory at once (`--query.max-samples`, 50M).
    pub max_samples: u64,
    /// Most series a query may select from storage in one selector (0 = no limit).
    pub max_series: u64,
    /// Most points per series of a range query (Prometheus' 11,000).
    pub max_points_per_series: u64,
    /// Threads one query may use to decode series and compute range functions (default:
    /// the machine's cores, at most 8; 1 = the calling thread only).
    pub query_threads: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: 5 * 60 * 1000,
            default_subquery_step_ms: 60 * 1000,
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            max_series: 0,
            max_points_per_series: 11_000,
            query_threads: std::thread::available_parallelism().map_or(1, |n| n.get()).min(8),
        }
    }
}

/// Per-query controls: a cancellation flag the caller sets when its client goes away.
#[derive(Debug, Clone, Default)]
pub struct QueryContext {
    /// Set to true to cancel the query; checked between series and steps.
    pub cancel: Option<Arc<AtomicBool>>,
    /// A deadline tighter than the engine's timeout, e.g. from the request's `timeout=`.
    pub deadline: Option<Instant>,
}

impl QueryContext {
    /// A context cancelled through `flag`.
    pub fn with_cancel(flag: Arc<AtomicBool>) -> Self {
        QueryContext {
            cancel: Some(flag),
            deadline: None,
        }
    }
}

/// Parses an expression, answering Prometheus' `bad_data` class of error.
pub fn parse(expr: &str) -> Result<Expr, QueryError> {
    register_functions();
    crate::syntax::check_depth(expr).map_err(|e| QueryError::Parse(format!("parse error: {e}")))?;
    let text = crate::syntax::prepare(expr).map_err(|e| QueryError::Parse(format!("parse error: {e}")))?;
    let e =
        promql_parser::parser::parse(&text).map_err(|e| QueryError::Parse(format!("parse error: {e}")))?;
    crate::syntax::check_types(&e).map_err(|e| QueryError::Parse(format!("parse error: {e}")))?;
    Ok(e)
}

/// Teaches the parser the Prometheus 2.x functions it no longer knows: `holt_winters`
/// (renamed `double_exponential_smoothing` in Prometheus 3).
fn register_functions() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use promql_parser::parser::value::ValueType;
        let f = promql_parser::parser::Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        );
        // Fails only if a later parser version has the function built in, which is fine.
        let _ = promql_parser::parser::register_extra_functions(vec![f]);
    });
}

/// The PromQL engine. Cheap to share: it holds only options.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOptions,
}

impl Engine {
    /// An engine with `opts`.
    pub fn new(opts: EngineOptions) -> Engine {
        Engine { opts }
    }

    /// The options in force.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates `expr` at `t` (ms).
    pub fn instant_query(
        &self,
        store: &dyn Queryable,
        expr: &str,
        t: i64,
        ctx: &QueryContext,
    ) -> Result<QueryResult, QueryError> {
        let e = parse(expr)?;
        crate::eval::run(&self.opts, store, &e, t, t, 1, true, ctx)
    }

    /// Evaluates `expr` at every `step` from `start` to `end` (ms, inclusive).
    pub fn range_query(
        &self,
        store: &dyn Queryable,
        expr: &str,
        start: i64,
        end: i64,
        step: i64,
        ctx: &QueryContext,
    ) -> Result<QueryResult, QueryError> {
        if end < start {
            return Err(QueryError::BadParam(
                "end timestamp must not be before start time".into(),
            ));
        }
        if step <= 0 {
            return Err(QueryError::BadParam(
                "zero or negative query resolution step widths are not accepted. Try a positive integer"
                    .into(),
            ));
        }
        if (i128::from(end) - i128::from(start)) / i128::from(step)
            > i128::from(self.opts.max_points_per_series)
        {
            return Err(QueryError::BadParam(format!(
                "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
                self.opts.max_points_per_series
            )));
        }
        let e = parse(expr)?;
        use promql_parser::parser::value::ValueType;
        match e.value_type() {
            ValueType::Scalar | ValueType::Vector => {}
            other => {
                return Err(QueryError::BadParam(format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                    type_name(other)
                )));
            }
        }
        crate::eval::run(&self.opts, store, &e, start, end, step, false, ctx)
    }
}

/// Prometheus' names of value types, as its errors spell them.
pub(crate) fn type_name(t: promql_parser::parser::value::ValueType) -> &'static str {
    use promql_parser::parser::value::ValueType;
    match t {
        ValueType::Scalar => "scalar",
        ValueType::String => "string",
        ValueType::Vector => "instant vector",
        ValueType::Matrix => "range vector",
    }
}

#[cfg(test)]
mod tests {
    //! The engine over the storage seam's in-memory store: no store crate needed.

    use metricsd_model::{Labels, Matcher};
    use metricsd_storage::mem::MemStore;
    use metricsd_storage::{
        Error, ErrorKind, Querier, Queryable, Result, SampleIterator, Series, SeriesData,
    };

    use super::*;
    use crate::Value;

    fn counter(store: &MemStore, job: &str, per_step: f64) {
        let l = Labels::from_pairs([("__name__", "requests_total"), ("job", job)]);
        store.add(l, (0..=20).map(|k| (k * 15_000, k as f64 * per_step)));
    }

    #[test]
    fn rate_and_sum_over_an_in_memory_store() {
        let store = MemStore::new();
        counter(&store, "a", 15.0);
        counter(&store, "b", 30.0);
        let r = Engine::default()
            .instant_query(
                &store,
                "sum(rate(requests_total[1m]))",
                300_000,
                &QueryContext::default(),
            )
            .unwrap();
        let Value::Vector(v) = r.value else {
            panic!("{:?}", r.value)
        };
        assert_eq!(v.len(), 1);
        assert!((v[0].v - 3.0).abs() < 1e-9, "{}", v[0].v);
    }

    /// A store whose every series fails to read: the query answers, with a warning that
    /// names the series.
    struct Failing;
    struct FailingQuerier;
    struct FailingData;
    struct FailingIter;

    impl Queryable for Failing {
        fn querier(&self, _: i64, _: i64) -> Result<Box<dyn Querier + '_>> {
            Ok(Box::new(FailingQuerier))
        }
    }
    impl Querier for FailingQuerier {
        fn select(&self, _: &[Matcher]) -> Result<Vec<Series>> {
            Ok(vec![Series::new(
                Labels::from_pairs([("__name__", "x")]),
                std::sync::Arc::new(FailingData),
            )])
        }
        fn label_names(&self, _: &[Matcher]) -> Result<Vec<std::sync::Arc<str>>> {
            Ok(Vec::new())
        }
        fn label_values(&self, _: &str, _: &[Matcher]) -> Result<Vec<std::sync::Arc<str>>> {
            Ok(Vec::new())
        }
        fn range(&self) -> (i64, i64) {
            (0, 0)
        }
    }
    impl SeriesData for FailingData {
        fn iter(&self) -> Box<dyn SampleIterator + '_> {
            Box::new(FailingIter)
        }
    }
    impl Iterator for FailingIter {
        type Item = metricsd_model::Sample;
        fn next(&mut self) -> Option<Self::Item> {
            None
        }
    }
    impl SampleIterator for FailingIter {
        fn err(&self) -> Option<Error> {
            Some(Error::new(ErrorKind::Internal, "chunk 7 is unreadable"))
        }
    }

    #[test]
    fn unreadable_series_become_warnings() {
        let r = Engine::default()
            .instant_query(&Failing, "x", 1000, &QueryContext::default())
            .unwrap();
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("chunk 7 is unreadable") && w.contains("x")),
            "{:?}",
            r.warnings
        );
    }
}
