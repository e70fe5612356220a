//! Name syntax and size limits.

use crate::{Error, Labels, METRIC_NAME, Result};

/// Limits on a series' labels. Each rejection is a typed [`Error`] naming the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most labels a series may carry, `__name__` included. Default 64.
    pub max_label_names_per_series: usize,
    /// Longest label name in bytes. Default 1024.
    pub max_label_name_length: usize,
    /// Longest label value in bytes. Default 4096 (Cortex/Mimir use 2048; we are more lenient).
    pub max_label_value_length: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_label_names_per_series: 64,
            max_label_name_length: 1024,
            max_label_value_length: 4096,
        }
    }
}

/// Whether `s` matches `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(s: &str) -> bool {
    match s.as_bytes().split_first() {
        Some((first, rest)) => {
            (first.is_ascii_alphabetic() || *first == b'_' || *first == b':')
                && rest
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
        }
        None => false,
    }
}

/// Whether `s` matches `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(s: &str) -> bool {
    match s.as_bytes().split_first() {
        Some((first, rest)) => {
            (first.is_ascii_alphabetic() || *first == b'_')
                && rest.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        }
        None => false,
    }
}

/// Abbreviates client text quoted back in an error to 64 bytes, so a 1 MB label value does
/// not make a 1 MB error message. Cuts at a char boundary and marks the cut with `…`.
pub fn abbreviate(s: &str) -> String {
    abbreviate_to(s, 64)
}

/// [`abbreviate`] to at most `max` bytes (plus the `…`).
pub fn abbreviate_to(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", s.get(..end).unwrap_or(""))
}

/// Checks a series' labels: a valid metric name, valid label names, and the limits.
pub fn validate_labels(labels: &Labels, limits: &Limits) -> Result<()> {
    let name = labels
        .metric_name()
        .ok_or_else(|| Error::MissingMetricName(abbreviate(&labels.to_string())))?;
    if !is_valid_metric_name(name) {
        return Err(Error::InvalidMetricName(abbreviate(name)));
    }
    if labels.len() > limits.max_label_names_per_series {
        return Err(Error::TooManyLabels {
            series: abbreviate(name),
            count: labels.len(),
            limit: limits.max_label_names_per_series,
        });
    }
    for l in labels {
        if l.name.len() > limits.max_label_name_length {
            return Err(Error::LabelNameTooLong {
                name: abbreviate(&l.name),
                len: l.name.len(),
                limit: limits.max_label_name_length,
            });
        }
        if &*l.name != METRIC_NAME && !is_valid_label_name(&l.name) {
            return Err(Error::InvalidLabelName(abbreviate(&l.name)));
        }
        if l.value.len() > limits.max_label_value_length {
            return Err(Error::LabelValueTooLong {
                name: abbreviate(&l.name),
                len: l.value.len(),
                limit: limits.max_label_value_length,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn name_syntax() {
        for ok in ["a", "_a", "a:b", ":a", "A9_"] {
            assert!(is_valid_metric_name(ok), "{ok}");
        }
        for bad in ["", "9a", "a-b", "a b", "é"] {
            assert!(!is_valid_metric_name(bad), "{bad}");
        }
        assert!(!is_valid_label_name("a:b"));
        assert!(is_valid_label_name("_x1"));
    }

    #[test]
    fn limits_name_the_limit() {
        let lim = Limits {
            max_label_names_per_series: 2,
            max_label_name_length: 8,
            max_label_value_length: 4,
        };
        let check =
            |pairs: &[(&str, &str)]| validate_labels(&Labels::from_pairs(pairs.iter().copied()), &lim);
        assert!(check(&[("__name__", "m"), ("a", "b")]).is_ok());
        let e = check(&[("__name__", "m"), ("a", "b"), ("c", "d")]).unwrap_err();
        assert!(e.to_string().contains("max_label_names_per_series"));
        assert_eq!(e.kind(), ErrorKind::LimitExceeded);
        let e = check(&[("__name__", "m"), ("abcdefghi", "b")]).unwrap_err();
        assert!(e.to_string().contains("max_label_name_length"));
        let e = check(&[("__name__", "m"), ("a", "bcdef")]).unwrap_err();
        assert!(e.to_string().contains("max_label_value_length"));
        assert!(matches!(check(&[("a", "b")]), Err(Error::MissingMetricName(_))));
        assert!(matches!(
            check(&[("__name__", "9")]),
            Err(Error::InvalidMetricName(_))
        ));
        assert!(matches!(
            check(&[("__name__", "m"), ("a-b", "c")]),
            Err(Error::InvalidLabelName(_))
        ));
    }
}
