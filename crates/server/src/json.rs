//! JSON formatting shared by the JSON API and the exposition's JSON format.

use serde_json::json;

/// A sample value as JSON: integral values as integers (`1`, not `1.0`), non-finite ones
/// as the strings `NaN`, `+Inf`, `-Inf`.
pub fn num(v: f64) -> serde_json::Value {
    if !v.is_finite() {
        json!(metricsd_model::go_float(v))
    } else if v.fract() == 0.0 && v.abs() < 9e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}
