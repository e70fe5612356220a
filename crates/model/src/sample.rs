//! Samples and Prometheus' staleness marker.

/// The bit pattern of Prometheus' staleness marker, a signalling NaN (`0x7ff0000000000002`).
///
/// It marks a series as gone at a timestamp. It must be stored and returned bit-exact: an
/// ordinary NaN is a value, this one is a marker.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is the staleness marker (compares bits, not value: every NaN is `!=` itself).
#[inline]
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN
}

/// One point of a series: a timestamp in milliseconds since the Unix epoch and a float value.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub t: i64,
    /// The value; any f64 bit pattern, the staleness marker included.
    pub v: f64,
}

impl Sample {
    /// A sample at `t` ms with value `v`.
    #[inline]
    pub const fn new(t: i64, v: f64) -> Self {
        Sample { t, v }
    }

    /// A staleness marker at `t`.
    pub fn stale(t: i64) -> Self {
        Sample {
            t,
            v: f64::from_bits(STALE_NAN),
        }
    }
}

/// Samples are equal when their timestamps and value *bits* are equal, so a NaN equals
/// itself and the staleness marker differs from an ordinary NaN.
impl PartialEq for Sample {
    fn eq(&self, other: &Self) -> bool {
        self.t == other.t && self.v.to_bits() == other.v.to_bits()
    }
}
impl Eq for Sample {}

/// Writes `v` as Go's `strconv.FormatFloat(v, 'f', -1, 64)`, the way Prometheus writes
/// sample values in its API and bucket bounds in `le`/`quantile` labels: the shortest
/// decimal that reads back as `v`, never an exponent (`1e21` is
/// `1000000000000000000000`); `NaN`, `+Inf`, `-Inf`; `-0` keeps its sign.
pub fn write_go_float(out: &mut String, v: f64) {
    use std::fmt::Write;
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        // Rust's `Display` for f64 is the shortest round-trip decimal without an exponent,
        // which is exactly Go's 'f' with precision -1.
        let _ = write!(out, "{v}");
    }
}

/// [`write_go_float`] into a new string.
pub fn go_float(v: f64) -> String {
    let mut s = String::new();
    write_go_float(&mut s, v);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_marker_is_a_nan_but_not_every_nan_is_stale() {
        let s = Sample::stale(5);
        assert!(s.v.is_nan());
        assert!(is_stale_nan(s.v));
        assert!(!is_stale_nan(f64::NAN));
        assert_ne!(s, Sample::new(5, f64::NAN));
        assert_eq!(Sample::new(1, f64::NAN), Sample::new(1, f64::NAN));
    }
}
