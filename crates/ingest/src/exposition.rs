//! Writers for the Prometheus text format 0.0.4 and OpenMetrics 1.0 text format, for
//! `/metrics`, `/federate` and exports.
//!
//! The rules are documented on the public items; see [`MetricFamily`].

use std::fmt::Write as _;

use metricsd_model::Labels;

/// `Content-Type` of [`write_prometheus`] output.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// `Content-Type` of [`write_openmetrics`] output.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `# TYPE` of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FamilyKind {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`.
    Histogram,
    /// `summary`.
    Summary,
    /// `untyped` in the Prometheus format, `unknown` in OpenMetrics.
    Unknown,
}

impl From<crate::MetricKind> for FamilyKind {
    fn from(k: crate::MetricKind) -> Self {
        match k {
            crate::MetricKind::Counter => FamilyKind::Counter,
            crate::MetricKind::Gauge => FamilyKind::Gauge,
            crate::MetricKind::Histogram => FamilyKind::Histogram,
            crate::MetricKind::Summary => FamilyKind::Summary,
        }
    }
}

impl FamilyKind {
    /// The name in the Prometheus text format's `# TYPE` line (`untyped` for unknown).
    pub fn name(self) -> &'static str {
        self.prometheus()
    }

    fn prometheus(self) -> &'static str {
        match self {
            FamilyKind::Counter => "counter",
            FamilyKind::Gauge => "gauge",
            FamilyKind::Histogram => "histogram",
            FamilyKind::Summary => "summary",
            FamilyKind::Unknown => "untyped",
        }
    }

    fn openmetrics(self) -> &'static str {
        match self {
            FamilyKind::Unknown => "unknown",
            k => k.prometheus(),
        }
    }
}

/// One sample line of a family.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilySample {
    /// Appended to the family name: `""`, `"_bucket"`, `"_sum"`, `"_count"`, `"_total"`,
    /// `"_created"`.
    pub suffix: &'static str,
    /// The series' labels; `__name__`, if present, is skipped. Written in name order.
    pub labels: Labels,
    /// The value.
    pub value: f64,
    /// Milliseconds since the Unix epoch, if the line carries a timestamp.
    pub timestamp_ms: Option<i64>,
}

/// One metric family: one `# TYPE` block with its samples.
///
/// # Input
/// A [`MetricFamily`] is one `# TYPE` block: a name, optional help and unit, a
/// [`FamilyKind`], and its samples. A [`FamilySample`] names its series by a *suffix* of the
/// family name (`""`, `"_bucket"`, `"_sum"`, `"_count"`, `"_total"`, `"_created"`) and its
/// labels **without** `__name__` (`le` and `quantile` are ordinary labels here). The writers
/// emit families and samples in the given order and do not check that names are valid or
/// that a histogram has its `+Inf` bucket: callers hand over series read from the store,
/// whose names were validated on ingest.
///
/// # Counter names
/// `name` is the name series are stored under (`api_requests_total`). The Prometheus format
/// uses it as is. OpenMetrics names the *family* without `_total` (`# TYPE api_requests
/// counter`) and its samples with it (`api_requests_total`): a counter sample with suffix
/// `""` or `"_total"` is written as `<family>_total`, `"_created"` as `<family>_created`. A
/// counter whose name lacks `_total` is written as `unknown` in OpenMetrics, as `expfmt` does.
///
/// # Numbers
/// Values are formatted like Go's `strconv.FormatFloat(v, 'g', -1, 64)` ([`format_go_g`]),
/// which Prometheus uses, so output is byte-identical to Prometheus' own. OpenMetrics values
/// follow Go's `expfmt` (`writeOpenMetricsFloat`): the same, plus `.0` on integral values,
/// except histogram and summary `_bucket`/`_count` values, which `expfmt` writes as integers.
/// Timestamps are integer milliseconds in the Prometheus format; in OpenMetrics they are
/// seconds, written as an exact decimal (`1705314600.123`) instead of Go's lossy float
/// conversion (`1.705314600123e+09`): both parse to the same instant.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFamily {
    /// The stored name (for counters usually ending in `_total`).
    pub name: String,
    /// Help text; `None` writes no `# HELP` line.
    pub help: Option<String>,
    /// The type.
    pub kind: FamilyKind,
    /// Unit (OpenMetrics `# UNIT`, ignored by the Prometheus format); `None` or `""` for none.
    pub unit: Option<String>,
    /// The sample lines.
    pub samples: Vec<FamilySample>,
}

/// Appends the families in the Prometheus text format 0.0.4.
pub fn write_prometheus(families: &[MetricFamily], out: &mut String) {
    for f in families {
        if let Some(help) = &f.help {
            out.push_str("# HELP ");
            out.push_str(&f.name);
            out.push(' ');
            escape_help(help, false, out);
            out.push('\n');
        }
        out.push_str("# TYPE ");
        out.push_str(&f.name);
        out.push(' ');
        out.push_str(f.kind.prometheus());
        out.push('\n');
        for s in &f.samples {
            // A counter stored as `x_total` with an explicit `_total` suffix is still `x_total`.
            let suffix =
                if f.kind == FamilyKind::Counter && s.suffix == "_total" && f.name.ends_with("_total") {
                    ""
                } else {
                    s.suffix
                };
            write_series(&f.name, suffix, &s.labels, out);
            out.push(' ');
            format_go_g(s.value, out);
            if let Some(t) = s.timestamp_ms {
                let _ = write!(out, " {t}");
            }
            out.push('\n');
        }
    }
}

/// Appends the families in the OpenMetrics 1.0 text format, terminated by `# EOF`.
///
/// As Go's `expfmt` (`MetricFamilyToOpenMetrics`): a counter stored as `x_total` is the
/// family `x` of type `counter` with samples `x_total`; a counter whose name lacks `_total`
/// is written as type `unknown` under its stored name (OpenMetrics requires the suffix on
/// counter samples, and renaming the series would not be the series we store). Histogram
/// and summary `_bucket` and `_count` values are counts, written as integers (`expfmt`
/// writes them from `uint64`); every other value gets `.0` when integral
/// ([`format_openmetrics_float`]).
pub fn write_openmetrics(families: &[MetricFamily], out: &mut String) {
    for f in families {
        let total = f.kind == FamilyKind::Counter && f.name.ends_with("_total");
        let (family, kind) = match f.kind {
            FamilyKind::Counter if total => (f.name.strip_suffix("_total").unwrap_or(&f.name), "counter"),
            FamilyKind::Counter => (f.name.as_str(), "unknown"),
            k => (f.name.as_str(), k.openmetrics()),
        };
        if let Some(help) = &f.help {
            out.push_str("# HELP ");
            out.push_str(family);
            out.push(' ');
            escape_help(help, true, out);
            out.push('\n');
        }
        out.push_str("# TYPE ");
        out.push_str(family);
        out.push(' ');
        out.push_str(kind);
        out.push('\n');
        if let Some(unit) = f.unit.as_deref().filter(|u| !u.is_empty()) {
            out.push_str("# UNIT ");
            out.push_str(family);
            out.push(' ');
            out.push_str(unit);
            out.push('\n');
        }
        let counts = matches!(f.kind, FamilyKind::Histogram | FamilyKind::Summary);
        for s in &f.samples {
            let suffix = match s.suffix {
                "" | "_total" if total => "_total",
                suffix => suffix,
            };
            write_series(family, suffix, &s.labels, out);
            out.push(' ');
            if counts && matches!(suffix, "_bucket" | "_count") {
                format_count(s.value, out);
            } else {
                format_openmetrics_float(s.value, out);
            }
            if let Some(t) = s.timestamp_ms {
                out.push(' ');
                format_seconds(t, out);
            }
            out.push('\n');
        }
    }
    out.push_str("# EOF\n");
}

/// A count as an integer when it is one (`40`), else as an OpenMetrics float.
fn format_count(v: f64, out: &mut String) {
    if v.fract() == 0.0 && (0.0..1.8e19).contains(&v) {
        let _ = write!(out, "{}", v as u64);
    } else {
        format_openmetrics_float(v, out);
    }
}

fn write_series(name: &str, suffix: &str, labels: &Labels, out: &mut String) {
    out.push_str(name);
    out.push_str(suffix);
    let mut sep = '{';
    for l in labels {
        if &*l.name == metricsd_model::METRIC_NAME {
            continue;
        }
        out.push(sep);
        sep = ',';
        out.push_str(&l.name);
        out.push_str("=\"");
        escape_label_value(&l.value, out);
        out.push('"');
    }
    if sep == ',' {
        out.push('}');
    }
}

/// Escapes `\`, `"` and newline, as both formats require for label values.
fn escape_label_value(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Escapes `\` and newline (Prometheus), plus `"` (OpenMetrics).
fn escape_help(v: &str, quote: bool, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Milliseconds as exact decimal seconds: `1500` → `1.5`, `-1` → `-0.001`, `2000` → `2`.
fn format_seconds(ms: i64, out: &mut String) {
    let abs = ms.unsigned_abs();
    if ms < 0 {
        out.push('-');
    }
    let _ = write!(out, "{}", abs / 1000);
    let frac = abs % 1000;
    if frac != 0 {
        let s = format!("{frac:03}");
        out.push('.');
        out.push_str(s.trim_end_matches('0'));
    }
}

/// Appends `v` formatted like Go's `strconv.FormatFloat(v, 'g', -1, 64)`.
///
/// Go's rule (`strconv/ftoa.go`, `%g` with shortest precision): take the shortest decimal
/// digits that round-trip, `d1.d2d3…dn × 10^exp`; use `%e` form (`1.5e-07`, two-digit
/// exponent minimum, explicit sign) when `exp < -4 || exp >= 6` — for shortest formatting
/// Go fixes the precision used in this decision at 6, whatever the digit count — and `%f`
/// form with exactly the needed digits otherwise (`123456`, `0.0001`). Specials: `NaN`,
/// `+Inf`, `-Inf`, and `-0` keeps its sign.
///
/// The digits come from Rust's `{:e}`, which like Go's shortest mode yields the shortest
/// digit string that parses back to the same f64, choosing the closest one on ties.
pub fn format_go_g(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if v.is_sign_negative() {
        out.push('-');
    }
    if v == 0.0 {
        out.push('0');
        return;
    }
    let mut buf = StackBuf::default();
    // `{:e}` of a finite positive f64: "d[.ddd]e[-]x", at most 24 bytes; cannot overflow 32.
    if write!(buf, "{:e}", v.abs()).is_err() {
        let _ = write!(out, "{}", v.abs());
        return;
    }
    let text = buf.as_str();
    let (mantissa, exp) = match text.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let (int_digit, frac_digits) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // All significant digits, no point; the decimal point sits after `exp + 1` of them.
    let nd = int_digit.len() + frac_digits.len();
    let dp = exp + 1;
    let digit = |i: usize| -> char {
        let b = if i < int_digit.len() {
            int_digit.as_bytes().get(i)
        } else {
            frac_digits.as_bytes().get(i - int_digit.len())
        };
        b.map_or('0', |b| *b as char)
    };
    if !(-4..6).contains(&exp) {
        // %e: d.ddde±xx
        out.push(digit(0));
        if nd > 1 {
            out.push('.');
            for i in 1..nd {
                out.push(digit(i));
            }
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push('0');
        }
        let _ = write!(out, "{e}");
    } else if dp <= 0 {
        // %f below 1: 0.000ddd
        out.push_str("0.");
        for _ in 0..(-dp) {
            out.push('0');
        }
        for i in 0..nd {
            out.push(digit(i));
        }
    } else {
        // %f: integer digits (zero-padded), then the fraction if any digits remain.
        let dp = dp as usize;
        for i in 0..dp {
            out.push(if i < nd { digit(i) } else { '0' });
        }
        if nd > dp {
            out.push('.');
            for i in dp..nd {
                out.push(digit(i));
            }
        }
    }
}

/// Appends `v` the way Go's `expfmt` writes OpenMetrics values: [`format_go_g`], with `.0`
/// appended when the result has neither `.` nor `e` (`1.0`, `1e+06`), and `0.0` for both
/// zeros.
pub fn format_openmetrics_float(v: f64, out: &mut String) {
    if v == 0.0 {
        out.push_str("0.0");
        return;
    }
    let start = out.len();
    format_go_g(v, out);
    if v.is_finite() && !out.get(start..).unwrap_or("").contains(['.', 'e']) {
        out.push_str(".0");
    }
}

/// A fixed 32-byte `fmt::Write` target, so formatting a float allocates nothing.
#[derive(Default)]
struct StackBuf {
    buf: [u8; 32],
    len: usize,
}

impl StackBuf {
    fn as_str(&self) -> &str {
        std::str::from_utf8(self.buf.get(..self.len).unwrap_or(&[])).unwrap_or("")
    }
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn g(v: f64) -> String {
        let mut s = String::new();
        format_go_g(v, &mut s);
        s
    }

    #[test]
    fn go_g_table() {
        // Expected strings are Go's strconv.FormatFloat(v, 'g', -1, 64).
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (-1.0, "-1"),
            (0.1, "0.1"),
            (0.042, "0.042"),
            (4.2, "4.2"),
            (1.67, "1.67"),
            (100.0, "100"),
            (123456.0, "123456"),
            (999999.0, "999999"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (123456789.0, "1.23456789e+08"),
            (1e20, "1e+20"),
            (1e21, "1e+21"),
            (1.5e300, "1.5e+300"),
            (0.0001, "0.0001"),
            (0.00012345, "0.00012345"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (5e-324, "5e-324"),
            (2.2250738585072014e-308, "2.2250738585072014e-308"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (-1.7976931348623157e308, "-1.7976931348623157e+308"),
            (0.30000000000000004, "0.30000000000000004"),
            (1.0 / 3.0, "0.3333333333333333"),
            (100000.5, "100000.5"),
            (1234567.5, "1.2345675e+06"),
            (9007199254740993.0, "9.007199254740992e+15"),
            (1705314600.0, "1.7053146e+09"),
            (f64::NAN, "NaN"),
            (f64::from_bits(metricsd_model::STALE_NAN), "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (0.005, "0.005"),
            (2.5, "2.5"),
        ];
        let mut buf = String::new();
        for (v, want) in cases {
            assert_eq!(g(*v), *want, "{v:e}");
            // Appends, never clears: many values into one buffer.
            format_go_g(*v, &mut buf);
            buf.push(' ');
        }
        assert!(buf.starts_with("0 -0 1 -1 0.1 "));
    }

    #[test]
    fn openmetrics_floats() {
        let om = |v: f64| {
            let mut s = String::new();
            format_openmetrics_float(v, &mut s);
            s
        };
        assert_eq!(om(1.0), "1.0");
        assert_eq!(om(-1.0), "-1.0");
        assert_eq!(om(0.0), "0.0");
        assert_eq!(om(-0.0), "0.0");
        assert_eq!(om(100.0), "100.0");
        assert_eq!(om(1e6), "1e+06");
        assert_eq!(om(0.5), "0.5");
        assert_eq!(om(f64::INFINITY), "+Inf");
        assert_eq!(om(f64::NAN), "NaN");
    }

    proptest! {
        /// The output is a number Prometheus parses back to the same value, and digits are
        /// as short as Rust's shortest round-trip form.
        #[test]
        fn go_g_round_trips(bits in any::<u64>()) {
            let v = f64::from_bits(bits);
            let s = g(v);
            if v.is_nan() {
                prop_assert_eq!(s, "NaN");
            } else {
                let back: f64 = s.replace("+Inf", "inf").replace("-Inf", "-inf").parse().unwrap();
                prop_assert_eq!(back.to_bits(), v.to_bits(), "{}", s);
                let digits = |t: &str| t.split('e').next().unwrap_or("").chars()
                    .filter(char::is_ascii_digit).collect::<String>()
                    .trim_start_matches('0').trim_end_matches('0').len();
                if v.is_finite() && v != 0.0 {
                    prop_assert_eq!(digits(&s), digits(&format!("{:e}", v.abs())), "{}", s);
                }
            }
        }
    }

    fn histogram_family() -> MetricFamily {
        let l = |le: &str| {
            Labels::from_pairs([
                ("service", "gateway"),
                ("endpoint", "/api/v1/instruments"),
                ("le", le),
            ])
        };
        let base = Labels::from_pairs([("service", "gateway"), ("endpoint", "/api/v1/instruments")]);
        let s = |suffix, labels, value| FamilySample {
            suffix,
            labels,
            value,
            timestamp_ms: None,
        };
        MetricFamily {
            name: "response_time_seconds".into(),
            help: Some("Response time in seconds".into()),
            kind: FamilyKind::Histogram,
            unit: Some("seconds".into()),
            samples: vec![
                s("_bucket", l("0.005"), 0.0),
                s("_bucket", l("0.1"), 40.0),
                s("_bucket", l("+Inf"), 100.0),
                s("_sum", base.clone(), 4.2),
                s("_count", base, 100.0),
            ],
        }
    }

    fn counter_family() -> MetricFamily {
        MetricFamily {
            name: "api_requests_total".into(),
            help: Some("Total API requests\nwith \\ and \"quotes\"".into()),
            kind: FamilyKind::Counter,
            unit: None,
            samples: vec![
                FamilySample {
                    suffix: "",
                    labels: Labels::from_pairs([("method", "GET"), ("path", "C:\\dir\n\"x\"")]),
                    value: 1e6,
                    timestamp_ms: Some(1_705_314_600_123),
                },
                FamilySample {
                    suffix: "",
                    labels: Labels::empty(),
                    value: f64::from_bits(metricsd_model::STALE_NAN),
                    timestamp_ms: Some(-1500),
                },
            ],
        }
    }

    fn untyped_family() -> MetricFamily {
        MetricFamily {
            name: "up".into(),
            help: None,
            kind: FamilyKind::Unknown,
            unit: Some(String::new()),
            samples: vec![FamilySample {
                suffix: "",
                // __name__ is skipped if a caller leaves it in.
                labels: Labels::from_pairs([("__name__", "up"), ("job", "node")]),
                value: 1.0,
                timestamp_ms: None,
            }],
        }
    }

    #[test]
    fn prometheus_golden() {
        let mut out = String::new();
        write_prometheus(
            &[counter_family(), histogram_family(), untyped_family()],
            &mut out,
        );
        let want = r#"# HELP api_requests_total Total API requests\nwith \\ and "quotes"
# TYPE api_requests_total counter
api_requests_total{method="GET",path="C:\\dir\n\"x\""} 1e+06 1705314600123
api_requests_total NaN -1500
# HELP response_time_seconds Response time in seconds
# TYPE response_time_seconds histogram
response_time_seconds_bucket{endpoint="/api/v1/instruments",le="0.005",service="gateway"} 0
response_time_seconds_bucket{endpoint="/api/v1/instruments",le="0.1",service="gateway"} 40
response_time_seconds_bucket{endpoint="/api/v1/instruments",le="+Inf",service="gateway"} 100
response_time_seconds_sum{endpoint="/api/v1/instruments",service="gateway"} 4.2
response_time_seconds_count{endpoint="/api/v1/instruments",service="gateway"} 100
# TYPE up untyped
up{job="node"} 1
"#;
        assert_eq!(out, want);
    }

    #[test]
    fn openmetrics_golden() {
        let mut out = String::new();
        write_openmetrics(
            &[counter_family(), histogram_family(), untyped_family()],
            &mut out,
        );
        let want = r#"# HELP api_requests Total API requests\nwith \\ and \"quotes\"
# TYPE api_requests counter
api_requests_total{method="GET",path="C:\\dir\n\"x\""} 1e+06 1705314600.123
api_requests_total NaN -1.5
# HELP response_time_seconds Response time in seconds
# TYPE response_time_seconds histogram
# UNIT response_time_seconds seconds
response_time_seconds_bucket{endpoint="/api/v1/instruments",le="0.005",service="gateway"} 0
response_time_seconds_bucket{endpoint="/api/v1/instruments",le="0.1",service="gateway"} 40
response_time_seconds_bucket{endpoint="/api/v1/instruments",le="+Inf",service="gateway"} 100
response_time_seconds_sum{endpoint="/api/v1/instruments",service="gateway"} 4.2
response_time_seconds_count{endpoint="/api/v1/instruments",service="gateway"} 100
# TYPE up unknown
up{job="node"} 1.0
# EOF
"#;
        assert_eq!(out, want);
        let mut empty = String::new();
        write_openmetrics(&[], &mut empty);
        assert_eq!(empty, "# EOF\n");
    }

    #[test]
    fn counter_suffixes() {
        let fam = |name: &str, suffix| MetricFamily {
            name: name.into(),
            help: None,
            kind: FamilyKind::Counter,
            unit: None,
            samples: vec![FamilySample {
                suffix,
                labels: Labels::empty(),
                value: 2.0,
                timestamp_ms: Some(2000),
            }],
        };
        let prom = |f| {
            let mut s = String::new();
            write_prometheus(&[f], &mut s);
            s
        };
        let om = |f| {
            let mut s = String::new();
            write_openmetrics(&[f], &mut s);
            s
        };
        assert_eq!(
            prom(fam("x_total", "_total")),
            "# TYPE x_total counter\nx_total 2 2000\n"
        );
        assert_eq!(prom(fam("x", "")), "# TYPE x counter\nx 2 2000\n");
        // expfmt: a counter without `_total` is `unknown` in OpenMetrics, under its own name.
        assert_eq!(om(fam("x", "")), "# TYPE x unknown\nx 2.0 2\n# EOF\n");
        assert_eq!(om(fam("x_total", "")), "# TYPE x counter\nx_total 2.0 2\n# EOF\n");
        assert_eq!(
            om(fam("x_total", "_created")),
            "# TYPE x counter\nx_created 2.0 2\n# EOF\n"
        );
    }
}
