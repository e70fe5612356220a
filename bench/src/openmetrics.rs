//! Writes data sets as OpenMetrics text for `promtool tsdb create-blocks-from openmetrics`.
//!
//! Format: `# TYPE <family> <type>` once per family, then one line per sample,
//! `name{a="1",b="2"} <value> <timestamp in seconds>`, and `# EOF` at the end.
//!
//! What promtool 2.42 (the Debian `prometheus` package) requires, found by running it:
//! - the file must end with `# EOF` ("data does not end with # EOF" otherwise);
//! - labels are separated by `,` with **no space** (`a="1", b="2"` is rejected);
//! - timestamps are float **seconds** (an integer in ms is read as seconds, silently);
//! - samples of one series must have strictly increasing timestamps: an out-of-order or
//!   duplicate-timestamp sample is **silently dropped** (exit code 0), so callers should check
//!   the sample count of the blocks it writes;
//! - it is otherwise lenient: families may be interleaved, a `# TYPE` may repeat, series may
//!   be written series-major (all samples of a series, then the next) or row-major,
//!   and counter sample names are accepted with or without `_total`.
//!
//! We write families contiguously, each under one `# TYPE` (as OpenMetrics requires), series
//! major. Values use Rust's shortest round-trip representation (`{}`), switching to exponent
//! form (`{:e}`, e.g. `1e21`, `1.5e-300`) for magnitudes ≥ 1e16 or < 1e-5, so that no line has
//! hundreds of digits; `NaN`, `+Inf`, `-Inf` as OpenMetrics spells them (the bit pattern of a
//! NaN, e.g. the staleness marker, is not representable in text). Timestamps are written
//! exactly: `1700006400` or `1700006400.123` (milliseconds as three decimals). With timestamps
//! around 1.7e9 s, Go's `int64(float64("s.mmm") * 1000)` gives back the exact millisecond (a
//! test checks this property for the float arithmetic).

use std::io::{self, Write};

use metricsd_model::{Labels, METRIC_NAME, Sample};

use crate::datagen::{DataSet, MetricType};

/// Appends `v` formatted for OpenMetrics to `out`.
pub fn format_value(v: f64, out: &mut Vec<u8>) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
    } else {
        let a = v.abs();
        // Writing to a Vec cannot fail.
        if a != 0.0 && !(1e-5..1e16).contains(&a) {
            let _ = write!(out, "{v:e}");
        } else {
            let _ = write!(out, "{v}");
        }
    }
}

/// Appends the millisecond timestamp `ms` as exact decimal seconds to `out`.
pub fn format_timestamp(ms: i64, out: &mut Vec<u8>) {
    let a = ms.unsigned_abs();
    if ms < 0 {
        out.push(b'-');
    }
    let (s, r) = (a / 1000, a % 1000);
    let _ = if r == 0 {
        write!(out, "{s}")
    } else {
        write!(out, "{s}.{r:03}")
    };
}

/// Appends `name{a="1",b="2"}` (labels in name order, values escaped) to `out`.
pub fn format_series(labels: &Labels, out: &mut Vec<u8>) {
    if let Some(n) = labels.metric_name() {
        out.extend_from_slice(n.as_bytes());
    }
    let mut first = true;
    for l in labels.iter().filter(|l| &*l.name != METRIC_NAME) {
        out.push(if first { b'{' } else { b',' });
        first = false;
        out.extend_from_slice(l.name.as_bytes());
        out.extend_from_slice(b"=\"");
        for &b in l.value.as_bytes() {
            match b {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'"' => out.extend_from_slice(b"\\\""),
                b'\n' => out.extend_from_slice(b"\\n"),
                b => out.push(b),
            }
        }
        out.push(b'"');
    }
    if !first {
        out.push(b'}');
    }
}

/// A streaming OpenMetrics writer.
pub struct OpenMetricsWriter<W: Write> {
    w: W,
    prefix: Vec<u8>,
    line: Vec<u8>,
    samples: u64,
    bytes: u64,
}

impl<W: Write> OpenMetricsWriter<W> {
    /// A writer into `w` (wrap files in a `BufWriter`).
    pub fn new(w: W) -> Self {
        OpenMetricsWriter {
            w,
            prefix: Vec::new(),
            line: Vec::with_capacity(1 << 16),
            samples: 0,
            bytes: 0,
        }
    }

    /// Starts a metric family: `# TYPE name type`.
    pub fn family(&mut self, name: &str, mtype: MetricType) -> io::Result<()> {
        let s = format!("# TYPE {name} {}\n", mtype.as_str());
        self.bytes += s.len() as u64;
        self.w.write_all(s.as_bytes())
    }

    /// Writes all samples of one series (timestamps must be strictly increasing for promtool
    /// to keep them all).
    pub fn series(&mut self, labels: &Labels, samples: &[Sample]) -> io::Result<()> {
        self.prefix.clear();
        format_series(labels, &mut self.prefix);
        self.prefix.push(b' ');
        for s in samples {
            self.line.extend_from_slice(&self.prefix);
            format_value(s.v, &mut self.line);
            self.line.push(b' ');
            format_timestamp(s.t, &mut self.line);
            self.line.push(b'\n');
            if self.line.len() >= 1 << 16 {
                self.flush_line()?;
            }
        }
        self.samples += samples.len() as u64;
        self.flush_line()
    }

    fn flush_line(&mut self) -> io::Result<()> {
        self.bytes += self.line.len() as u64;
        self.w.write_all(&self.line)?;
        self.line.clear();
        Ok(())
    }

    /// Samples written so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Writes `# EOF`, flushes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.w.write_all(b"# EOF\n")?;
        self.bytes += 6;
        self.w.flush()?;
        Ok(self.w)
    }
}

/// Writes the whole data set to `w`, generating each series once and handing its samples to
/// `each(series index, samples)` as well (so other consumers need not regenerate them).
/// Returns the writer (flushed) and the number of bytes written.
pub fn write_dataset<W: Write>(
    ds: &DataSet,
    w: W,
    mut each: impl FnMut(usize, &[Sample]),
) -> io::Result<(W, u64)> {
    let mut om = OpenMetricsWriter::new(w);
    let mut buf = Vec::with_capacity(ds.cfg.samples_per_series);
    let mut fam = usize::MAX;
    for i in 0..ds.num_series() {
        let f = ds.family_of(i);
        if f != fam {
            fam = f;
            om.family(&ds.families[f].name, ds.families[f].mtype)?;
        }
        ds.samples_into(i, &mut buf);
        om.series(&ds.series[i], &buf)?;
        each(i, &buf);
    }
    let bytes = om.bytes() + 6;
    Ok((om.finish()?, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datagen::{GenConfig, generate};

    #[test]
    fn golden_two_series() {
        let a = Labels::from_pairs([
            ("__name__", "node_cpu_seconds_total"),
            ("instance", "host-00000:9100"),
            ("job", "node"),
            ("mode", "idle"),
            ("cpu", "0"),
        ]);
        let b = Labels::from_pairs([("__name__", "node_hwmon_temp_celsius"), ("chip", "a\"b\\c\nd")]);
        let mut om = OpenMetricsWriter::new(Vec::new());
        om.family("node_cpu_seconds", MetricType::Counter).unwrap();
        om.series(
            &a,
            &[
                Sample::new(1_700_006_400_000, 123.45),
                Sample::new(1_700_006_415_003, 1e21),
            ],
        )
        .unwrap();
        om.family("node_hwmon_temp_celsius", MetricType::Gauge).unwrap();
        om.series(
            &b,
            &[
                Sample::new(1_700_006_400_007, 45.1),
                Sample::new(1_700_006_415_000, -0.0000015),
                Sample::new(1_700_006_430_000, f64::NAN),
                Sample::new(1_700_006_445_000, f64::NEG_INFINITY),
            ],
        )
        .unwrap();
        let n = om.bytes();
        let out = String::from_utf8(om.finish().unwrap()).unwrap();
        let want = "# TYPE node_cpu_seconds counter\n\
node_cpu_seconds_total{cpu=\"0\",instance=\"host-00000:9100\",job=\"node\",mode=\"idle\"} 123.45 1700006400\n\
node_cpu_seconds_total{cpu=\"0\",instance=\"host-00000:9100\",job=\"node\",mode=\"idle\"} 1e21 1700006415.003\n\
# TYPE node_hwmon_temp_celsius gauge\n\
node_hwmon_temp_celsius{chip=\"a\\\"b\\\\c\\nd\"} 45.1 1700006400.007\n\
node_hwmon_temp_celsius{chip=\"a\\\"b\\\\c\\nd\"} -1.5e-6 1700006415\n\
node_hwmon_temp_celsius{chip=\"a\\\"b\\\\c\\nd\"} NaN 1700006430\n\
node_hwmon_temp_celsius{chip=\"a\\\"b\\\\c\\nd\"} -Inf 1700006445\n\
# EOF\n";
        assert_eq!(out, want);
        assert_eq!(n + 6, out.len() as u64);
    }

    #[test]
    fn values_round_trip() {
        for v in [
            0.0,
            -0.0,
            1.0,
            0.1,
            123.45,
            1e15,
            1e16,
            9.223372036854776e18,
            1e-5,
            9.99e-6,
            5e-324,
            f64::MAX,
        ] {
            let mut b = Vec::new();
            format_value(v, &mut b);
            let s = String::from_utf8(b).unwrap();
            assert_eq!(s.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{s}");
            assert!(s.len() <= 24, "{s}");
        }
    }

    #[test]
    fn timestamps_survive_gos_seconds_to_ms_truncation() {
        // promtool: ts = int64(ParseFloat(text) * 1000). Check every ms of a 2h window.
        let start = crate::datagen::DEFAULT_START_MS;
        let mut b = Vec::new();
        for ms in (start..start + 7_200_000).step_by(7) {
            b.clear();
            format_timestamp(ms, &mut b);
            let f: f64 = std::str::from_utf8(&b).unwrap().parse().unwrap();
            assert_eq!((f * 1000.0) as i64, ms);
        }
        b.clear();
        format_timestamp(-1500, &mut b);
        assert_eq!(b, b"-1.500");
    }

    #[test]
    fn dataset_file_groups_families() {
        let ds = generate(&GenConfig {
            hosts: 2,
            samples_per_series: 3,
            ..Default::default()
        });
        let mut n = 0;
        let (out, bytes) = write_dataset(&ds, Vec::new(), |_, s| n += s.len()).unwrap();
        assert_eq!(n as u64, ds.num_samples());
        assert_eq!(bytes, out.len() as u64);
        let text = String::from_utf8(out).unwrap();
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(types, ds.families.len());
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(text.lines().count() as u64, ds.num_samples() + types as u64 + 1);
    }
}
