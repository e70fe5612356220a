//! The evaluator (being written).

use metricsd_tsdb::querier::Queryable;
use promql_parser::parser::Expr;

use crate::engine::{EngineOptions, QueryContext};
use crate::error::QueryError;
use crate::value::QueryResult;

#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    _opts: &EngineOptions,
    _store: &dyn Queryable,
    _expr: &Expr,
    _start: i64,
    _end: i64,
    _step: i64,
    _instant: bool,
    _ctx: &QueryContext,
) -> Result<QueryResult, QueryError> {
    Err(QueryError::Execution("the evaluator is not written yet".into()))
}
