//! Label matchers with Prometheus semantics.

use std::fmt;

use regex::Regex;

use crate::{Error, Result};

/// The four matcher operators of PromQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~` (fully anchored)
    Regex,
    /// `!~` (fully anchored)
    NotRegex,
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        })
    }
}

/// A label matcher: `name op "value"`.
///
/// Semantics are Prometheus': a series without label `name` is matched as if the label's
/// value were the empty string, so `{foo=""}` selects series *without* `foo`, and
/// `{foo!~".+"}` too. Regexes are anchored at both ends (`=~"a.*"` does not match `"ba"`).
#[derive(Clone)]
pub struct Matcher {
    /// The operator.
    pub op: MatchOp,
    /// The label name.
    pub name: String,
    /// The value or regex text, as written.
    pub value: String,
    re: Option<Regex>,
    /// For regexes that are a plain alternation of literals (`a|b|c`), the literals, sorted:
    /// the index looks these up directly instead of scanning every value.
    set: Option<Vec<String>>,
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op, self.value)
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.op == other.op && self.name == other.name && self.value == other.value
    }
}

impl Matcher {
    /// A matcher; compiles the regex for `=~`/`!~`, anchored as `^(?:value)$`.
    pub fn new(op: MatchOp, name: impl Into<String>, value: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let value = value.into();
        let (re, set) = match op {
            MatchOp::Regex | MatchOp::NotRegex => {
                let re = Regex::new(&format!("^(?s:{value})$")).map_err(|e| Error::InvalidRegex {
                    name: name.clone(),
                    regex: value.clone(),
                    reason: e.to_string(),
                })?;
                (Some(re), literal_alternatives(&value))
            }
            _ => (None, None),
        };
        Ok(Matcher {
            op,
            name,
            value,
            re,
            set,
        })
    }

    /// Shorthand for an `=` matcher (cannot fail).
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Matcher {
            op: MatchOp::Equal,
            name: name.into(),
            value: value.into(),
            re: None,
            set: None,
        }
    }

    /// Whether `value` (the empty string for a missing label) satisfies the matcher.
    #[inline]
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => self.value == value,
            MatchOp::NotEqual => self.value != value,
            MatchOp::Regex => self.regex_match(value),
            MatchOp::NotRegex => !self.regex_match(value),
        }
    }

    #[inline]
    fn regex_match(&self, value: &str) -> bool {
        if let Some(set) = &self.set {
            return set.binary_search_by(|s| s.as_str().cmp(value)).is_ok();
        }
        self.re.as_ref().is_some_and(|r| r.is_match(value))
    }

    /// Whether the matcher accepts the empty string, i.e. accepts series *without* the label.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// For `=` and literal-alternation `=~`, the exact values that match; `None` when the set
    /// of matching values cannot be listed without scanning.
    pub fn exact_values(&self) -> Option<Vec<&str>> {
        match self.op {
            MatchOp::Equal => Some(vec![self.value.as_str()]),
            MatchOp::Regex => self.set.as_ref().map(|s| s.iter().map(String::as_str).collect()),
            _ => None,
        }
    }

    /// Whether this matcher is the inverse form (`!=`, `!~`).
    pub fn is_negative(&self) -> bool {
        matches!(self.op, MatchOp::NotEqual | MatchOp::NotRegex)
    }

    /// The positive matcher with the same name and value (`!=` → `=`, `!~` → `=~`).
    pub fn inverse(&self) -> Matcher {
        let op = match self.op {
            MatchOp::Equal => MatchOp::NotEqual,
            MatchOp::NotEqual => MatchOp::Equal,
            MatchOp::Regex => MatchOp::NotRegex,
            MatchOp::NotRegex => MatchOp::Regex,
        };
        Matcher { op, ..self.clone() }
    }
}

/// If `re` is `lit1|lit2|...` with no regex metacharacters, the sorted literals.
fn literal_alternatives(re: &str) -> Option<Vec<String>> {
    const META: &[char] = &['.', '*', '+', '?', '(', ')', '[', ']', '{', '}', '^', '$', '\\'];
    if re.contains(META) {
        return None;
    }
    let mut v: Vec<String> = re.split('|').map(str::to_owned).collect();
    v.sort();
    v.dedup();
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_semantics_table() {
        let case = |op, val: &str, input: &str, want: bool| {
            let m = Matcher::new(op, "l", val).unwrap();
            assert_eq!(m.matches(input), want, "{m} on {input:?}");
        };
        case(MatchOp::Equal, "a", "a", true);
        case(MatchOp::Equal, "", "", true);
        case(MatchOp::NotEqual, "a", "", true);
        case(MatchOp::Regex, "a.*", "abc", true);
        case(MatchOp::Regex, "a.*", "ba", false); // anchored at the start
        case(MatchOp::Regex, "b", "abc", false); // anchored at both ends
        case(MatchOp::Regex, ".*", "", true);
        case(MatchOp::Regex, ".+", "", false);
        case(MatchOp::NotRegex, ".+", "", true);
        case(MatchOp::Regex, "a|b", "b", true);
        case(MatchOp::Regex, "a|b", "ab", false);
        case(MatchOp::Regex, "a|", "", true);
        case(MatchOp::Regex, "x.y", "x\ny", true); // . matches newline, as in Prometheus (?s)
        case(MatchOp::NotRegex, "a|b", "c", true);
    }

    #[test]
    fn literal_alternation_is_listed() {
        let m = Matcher::new(MatchOp::Regex, "l", "b|a|b").unwrap();
        assert_eq!(m.exact_values(), Some(vec!["a", "b"]));
        assert!(
            Matcher::new(MatchOp::Regex, "l", "a.*")
                .unwrap()
                .exact_values()
                .is_none()
        );
    }

    #[test]
    fn bad_regex_names_label_and_regex() {
        let e = Matcher::new(MatchOp::Regex, "job", "(").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("job") && msg.contains("\"(\""), "{msg}");
    }
}
