//! Request parameters of the Prometheus API, parsed as Prometheus parses them: form values
//! from the URL and a form-encoded body, times, durations and series selectors, with
//! Prometheus' error texts. Pure functions; the handlers in `promapi` do the I/O.

use metricsd_model::Matcher;
use metricsd_promql::promql_parser::parser::Expr;

/// Prometheus' `MinTime` (`-292273086-05-16T16:47:06Z`) in ms: the default start of
/// `/series`, `/labels`, label values and deletions.
pub const MIN_TIME_MS: i64 = -9_223_309_901_257_974_000;
/// Prometheus' `MaxTime` (`292277025-08-18T07:12:54.999999999Z`) in ms.
pub const MAX_TIME_MS: i64 = 9_223_309_901_257_974_999;

/// How clients (the Go client library, Grafana) spell [`MIN_TIME_MS`] and [`MAX_TIME_MS`]:
/// years beyond 9999, which RFC 3339 parsers reject.
const MIN_TIME_TEXT: &str = "-292273086-05-16T16:47:06Z";
const MAX_TIME_TEXT: &str = "292277025-08-18T07:12:54.999999999Z";

/// The form values of a request, as Go's `Request.ParseForm` collects them: the values of
/// a form-encoded body first, then those of the URL, so a body value wins in [`Form::value`].
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// Collects the values of `body` (pass it only for `application/x-www-form-urlencoded`)
    /// and of the URL's `query`.
    pub fn parse(query: Option<&str>, body: Option<&[u8]>) -> Form {
        let mut pairs = Vec::new();
        if let Some(b) = body {
            pairs.extend(form_urlencoded::parse(b).map(|(k, v)| (k.into_owned(), v.into_owned())));
        }
        if let Some(q) = query {
            pairs.extend(form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())));
        }
        Form { pairs }
    }

    /// The first value of `key`, `""` when absent (Go's `FormValue`).
    pub fn value(&self, key: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `key` in order (`match[]`).
    pub fn values<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a time: Unix seconds with up to millisecond precision (`1700000000.123`) or
/// RFC 3339 (`2023-11-14T22:13:20.123Z`, `2023-11-14T23:13:20+01:00`). Returns ms.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let err = || format!("cannot parse {s:?} to a valid timestamp");
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            return Err(err());
        }
        // As Prometheus: whole seconds plus the fraction rounded to the millisecond.
        let secs = f.trunc();
        let ms = secs * 1000.0 + (f.fract() * 1000.0).round();
        // Beyond MinTime/MaxTime (where f64 no longer holds every ms) clamp to them.
        return Ok(if ms >= MAX_TIME_MS as f64 {
            MAX_TIME_MS
        } else if ms <= MIN_TIME_MS as f64 {
            MIN_TIME_MS
        } else {
            ms as i64
        });
    }
    if s == MIN_TIME_TEXT {
        return Ok(MIN_TIME_MS);
    }
    if s == MAX_TIME_TEXT {
        return Ok(MAX_TIME_MS);
    }
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| err())
}

/// Parses an optional time parameter: `""` gives `default`; an error is Prometheus'
/// `Invalid time value for 'start': cannot parse ...`.
pub fn time_param(form: &Form, name: &str, default: i64) -> Result<i64, String> {
    match form.value(name) {
        "" => Ok(default),
        v => parse_time(v).map_err(|e| format!("Invalid time value for '{name}': {e}")),
    }
}

/// Parses a duration as the Prometheus API does: a float number of seconds (`1.5`, `-3`)
/// or a duration string (`5m`, `1h30m`, `100ms`). Returns nanoseconds.
pub fn parse_duration_ns(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        let ns = f * 1e9;
        if !ns.is_finite() || ns >= i64::MAX as f64 || ns <= i64::MIN as f64 {
            return Err(format!(
                "cannot parse {s:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok(ns as i64);
    }
    parse_duration_ms(s)
        .and_then(|ms| ms.checked_mul(1_000_000))
        .ok_or_else(|| format!("cannot parse {s:?} to a valid duration"))
}

pub use crate::time::parse_duration_ms;

/// Parses one `match[]` value, a series selector (`up`, `{job="x"}`, `up{a=~"b.*"}`), into
/// matcher sets: one, or one per alternative of Prometheus 3's `{a="1" or b="2"}`.
pub fn parse_selector(s: &str) -> Result<Vec<Vec<Matcher>>, String> {
    let expr = metricsd_promql::parse(s).map_err(|e| e.to_string())?;
    let vs = match &expr {
        Expr::VectorSelector(vs) if vs.offset.is_none() && vs.at.is_none() => vs,
        _ => {
            return Err(format!(
                "parse error: {s:?} is not a series selector (like up or {{job=\"node\"}})"
            ));
        }
    };
    metricsd_promql::selector_matchers(vs).map_err(|e| e.to_string())
}

/// Parses every `match[]` of `form` into matcher sets (empty when there is none). The error
/// names the parameter, as Prometheus' does.
pub fn match_param(form: &Form) -> Result<Vec<Vec<Matcher>>, String> {
    let mut sets = Vec::new();
    for s in form.values("match[]") {
        sets.extend(parse_selector(s).map_err(|e| format!("invalid parameter \"match[]\": {e}"))?);
    }
    Ok(sets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::format_duration_ms;

    #[test]
    fn times_as_prometheus_parses_them() {
        let ok = |s: &str, want: i64| assert_eq!(parse_time(s), Ok(want), "{s}");
        ok("1700000000", 1_700_000_000_000);
        ok("1700000000.123", 1_700_000_000_123);
        ok("1700000000.1235", 1_700_000_000_124);
        ok("-1.5", -1500);
        ok("2019-07-07T20:01:02Z", 1_562_529_662_000);
        ok("2019-07-07T20:47:40+03:00", 1_562_521_660_000);
        ok("2020-02-21T16:07:49.433Z", 1_582_301_269_433);
        ok(MIN_TIME_TEXT, MIN_TIME_MS);
        ok(MAX_TIME_TEXT, MAX_TIME_MS);
        ok("1e300", MAX_TIME_MS);
        for bad in ["", "abc", "NaN", "inf", "2019-07-07", "2019-07-07T20:01:02"] {
            assert_eq!(
                parse_time(bad),
                Err(format!("cannot parse {bad:?} to a valid timestamp")),
                "{bad}"
            );
        }
    }

    #[test]
    fn durations_as_prometheus_parses_them() {
        let ns = |s: &str| parse_duration_ns(s);
        assert_eq!(ns("15"), Ok(15_000_000_000));
        assert_eq!(ns("1.5"), Ok(1_500_000_000));
        assert_eq!(ns("-3"), Ok(-3_000_000_000));
        assert_eq!(ns("5m"), Ok(300_000_000_000));
        assert_eq!(ns("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(ns("100ms"), Ok(100_000_000));
        assert_eq!(ns("0"), Ok(0));
        assert_eq!(
            ns("1e10"),
            Err("cannot parse \"1e10\" to a valid duration. It overflows int64".into())
        );
        for bad in ["", "5x", "m5", "1m1h", "1h1h", "1.5m", "5 m"] {
            assert_eq!(
                ns(bad),
                Err(format!("cannot parse {bad:?} to a valid duration")),
                "{bad}"
            );
        }
        assert_eq!(
            parse_duration_ms("1y2w3d4h5m6s7ms"),
            Some(365 * 86_400_000 + 14 * 86_400_000 + 3 * 86_400_000 + 4 * 3_600_000 + 5 * 60_000 + 6007)
        );
        assert_eq!(parse_duration_ms("99999999999999y"), None);
    }

    #[test]
    fn durations_format_as_prometheus() {
        let f = |ms: i64, want: &str| assert_eq!(format_duration_ms(ms), want);
        f(0, "0s");
        f(300_000, "5m");
        f(5_400_000, "1h30m");
        f(15 * 86_400_000, "15d");
        f(14 * 86_400_000, "2w");
        f(90 * 86_400_000, "90d");
        f(365 * 86_400_000, "1y");
        f(1500, "1s500ms");
    }

    #[test]
    fn form_values_body_first_then_url() {
        let f = Form::parse(
            Some("query=url&match[]=a&time=1"),
            Some(b"query=body&match%5B%5D=%7Bjob%3D%22x%22%7D"),
        );
        assert_eq!(f.value("query"), "body");
        assert_eq!(f.value("time"), "1");
        assert_eq!(f.value("absent"), "");
        assert_eq!(f.values("match[]").collect::<Vec<_>>(), ["{job=\"x\"}", "a"]);
        let f = Form::parse(Some("q=a+b%20c"), None);
        assert_eq!(f.value("q"), "a b c");
    }

    #[test]
    fn selectors_to_matchers() {
        let sets = parse_selector(r#"up{job="x",i=~"a.*"}"#).unwrap();
        assert_eq!(sets.len(), 1);
        let text: Vec<String> = sets[0].iter().map(|m| m.to_string()).collect();
        assert_eq!(text, [r#"job="x""#, r#"i=~"a.*""#, r#"__name__="up""#]);
        assert_eq!(parse_selector(r#"{__name__=~"up|down"}"#).unwrap()[0].len(), 1);
        for bad in [
            "rate(x[5m])",
            "up[5m]",
            "up offset 5m",
            "1",
            "{}",
            r#"{job=""}"#,
            "up{",
        ] {
            assert!(parse_selector(bad).is_err(), "{bad}");
        }
        let f = Form::parse(Some("match[]=up&match[]=%7Bjob%3D%22x%22%7D"), None);
        assert_eq!(match_param(&f).unwrap().len(), 2);
        let f = Form::parse(Some("match[]=up&match[]=sum(up)"), None);
        assert!(
            match_param(&f)
                .unwrap_err()
                .starts_with("invalid parameter \"match[]\": ")
        );
    }
}
