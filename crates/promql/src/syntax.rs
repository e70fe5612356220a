//! What `promql-parser` (which follows Prometheus 3) accepts but Prometheus 2.x does not, or
//! gets wrong, handled around it:
//! - backtick strings are raw in PromQL (no escapes); the parser applies escapes to them, so
//!   they are rewritten as equivalent double-quoted strings first;
//! - durations need a unit in 2.x (`x[5m]`, `offset 1h`); the parser takes a bare number as
//!   seconds;
//! - function arguments must have the declared types; the parser does not check them.

use promql_parser::parser::Expr;

use crate::engine::type_name;

/// Rewrites backtick strings and rejects unit-less durations.
pub(crate) fn prepare(q: &str) -> Result<String, String> {
    let b: Vec<char> = q.chars().collect();
    let mut out = String::with_capacity(q.len() + 8);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            '"' | '\'' => {
                // Copy a quoted string verbatim, honouring escapes.
                out.push(c);
                i += 1;
                while i < b.len() {
                    out.push(b[i]);
                    if b[i] == '\\' && i + 1 < b.len() {
                        out.push(b[i + 1]);
                        i += 2;
                        continue;
                    }
                    i += 1;
                    if b[i - 1] == c {
                        break;
                    }
                }
            }
            '`' => {
                out.push('"');
                i += 1;
                while i < b.len() && b[i] != '`' {
                    match b[i] {
                        '\\' => out.push_str("\\\\"),
                        '"' => out.push_str("\\\""),
                        '\n' => out.push_str("\\n"),
                        ch => out.push(ch),
                    }
                    i += 1;
                }
                out.push('"');
                i += 1; // the closing backtick (an unterminated one fails in the parser)
            }
            '[' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j] != ']' && b[j] != '[' {
                    j += 1;
                }
                let inner: String = b[start..j.min(b.len())].iter().collect();
                for part in inner.split(':') {
                    let p = part.trim();
                    if !p.is_empty() && !is_duration(p) {
                        return Err(format!(
                            "bad duration {p:?} in \"[{inner}]\": durations need a unit (ms, s, m, h, d, w, y)"
                        ));
                    }
                }
                out.push(c);
                i += 1;
            }
            _ if is_word_at(&b, i, "offset") => {
                out.push_str(&b[i..i + 6].iter().collect::<String>());
                i += 6;
                let mut j = i;
                while j < b.len() && b[j].is_whitespace() {
                    j += 1;
                }
                let mut k = j;
                if k < b.len() && b[k] == '-' {
                    k += 1;
                }
                if k < b.len() && b[k].is_ascii_digit() {
                    let mut e = k;
                    while e < b.len() && (b[e].is_ascii_alphanumeric() || b[e] == '.') {
                        e += 1;
                    }
                    let tok: String = b[k..e].iter().collect();
                    if !is_duration(&tok) {
                        return Err(format!(
                            "unexpected {tok:?} in offset, expected duration (with a unit: ms, s, m, h, d, w, y)"
                        ));
                    }
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Whether `word` (case-insensitive) starts at `i` as a whole identifier.
fn is_word_at(b: &[char], i: usize, word: &str) -> bool {
    let n = word.len();
    if i + n > b.len() {
        return false;
    }
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    if i > 0 && ident(b[i - 1]) {
        return false;
    }
    if i + n < b.len() && ident(b[i + n]) {
        return false;
    }
    b[i..i + n]
        .iter()
        .zip(word.chars())
        .all(|(a, w)| a.eq_ignore_ascii_case(&w))
}

/// A Prometheus 2.x duration: `[0-9]+(ms|s|m|h|d|w|y)`, repeated.
fn is_duration(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if b.is_empty() {
        return false;
    }
    while i < b.len() {
        let d = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == d || i == b.len() {
            return false;
        }
        if b[i..].starts_with(b"ms") {
            i += 2;
        } else if matches!(b[i], b's' | b'm' | b'h' | b'd' | b'w' | b'y') {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// Checks the types of function arguments, as Prometheus' parser does.
pub(crate) fn check_types(e: &Expr) -> Result<(), String> {
    match e {
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                check_types(p)?;
            }
            check_types(&a.expr)
        }
        Expr::Unary(u) => check_types(&u.expr),
        Expr::Binary(b) => {
            check_types(&b.lhs)?;
            check_types(&b.rhs)
        }
        Expr::Paren(p) => check_types(&p.expr),
        Expr::Subquery(s) => check_types(&s.expr),
        Expr::Call(c) => {
            let want = &c.func.arg_types;
            for (i, a) in c.args.args.iter().enumerate() {
                check_types(a)?;
                let Some(t) = want.get(i.min(want.len().saturating_sub(1))) else {
                    continue;
                };
                let got = a.value_type();
                if got != *t {
                    return Err(format!(
                        "expected type {} in call to function \"{}\", got {}",
                        type_name(*t),
                        c.func.name,
                        type_name(got)
                    ));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backticks_become_double_quoted() {
        assert_eq!(prepare(r#"x{a=`/a"b\c`}"#).unwrap(), r#"x{a="/a\"b\\c"}"#);
        assert_eq!(prepare(r#"x{a="`"} + y"#).unwrap(), r#"x{a="`"} + y"#);
        assert_eq!(prepare(r#"x{a='\'['}"#).unwrap(), r#"x{a='\'['}"#);
    }

    #[test]
    fn durations_need_units() {
        assert!(prepare("up offset 1").is_err());
        assert!(prepare("up offset -5m").is_ok());
        assert!(prepare("up offset 1h30m").is_ok());
        assert!(prepare("rate(x[5])").is_err());
        assert!(prepare("x[5m:1]").is_err());
        assert!(prepare("x[1h:]").is_ok());
        assert!(prepare("{offset=\"1\"}").is_ok());
        assert!(prepare("offset_total offset 5m").is_ok());
    }

    #[test]
    fn function_argument_types_are_checked() {
        let e = promql_parser::parser::parse("ln(0)").unwrap();
        assert!(
            check_types(&e)
                .unwrap_err()
                .contains("expected type instant vector")
        );
        let e = promql_parser::parser::parse("round(x, 2)").unwrap();
        assert!(check_types(&e).is_ok());
    }
}
