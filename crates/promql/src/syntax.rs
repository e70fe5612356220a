//! What `promql-parser` (which follows Prometheus 3) accepts but Prometheus 2.x does not, or
//! gets wrong, handled around it:
//! - backtick strings are raw in PromQL (no escapes); the parser applies escapes to them, so
//!   they are rewritten as equivalent double-quoted strings first;
//! - durations need a unit in 2.x (`x[5m]`, `offset 1h`); the parser takes a bare number as
//!   seconds;
//! - function arguments must have the declared types; the parser does not check them.
//!
//! And one limit Prometheus does not need: the parser, the type checks and the evaluator
//! recurse once per level of the syntax tree, and Go grows its stacks where Rust's are fixed,
//! so a query whose tree could be deeper than [`MAX_DEPTH`] is refused *before* it is parsed
//! ([`check_depth`]): `abs(abs(…))` 1,500 deep, or `1+1+…+1` with thousands of operators,
//! would otherwise overflow the stack and abort the process (the parser's type inference
//! also recurses down operator chains once per node: quadratic in the chain's length).

use promql_parser::parser::Expr;

use crate::engine::type_name;

/// Rewrites backtick strings and rejects unit-less durations.
pub(crate) fn prepare(q: &str) -> Result<String, String> {
    let b: Vec<char> = q.chars().collect();
    let at = |i: usize| b.get(i).copied();
    let mut out = String::with_capacity(q.len() + 8);
    let mut i = 0;
    while let Some(c) = at(i) {
        match c {
            '"' | '\'' => {
                // Copy a quoted string verbatim, honouring escapes.
                out.push(c);
                i += 1;
                while let Some(d) = at(i) {
                    out.push(d);
                    if d == '\\'
                        && let Some(escaped) = at(i + 1)
                    {
                        out.push(escaped);
                        i += 2;
                        continue;
                    }
                    i += 1;
                    if d == c {
                        break;
                    }
                }
            }
            '`' => {
                out.push('"');
                i += 1;
                while let Some(d) = at(i)
                    && d != '`'
                {
                    match d {
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
                while at(j).is_some_and(|d| d != ']' && d != '[') {
                    j += 1;
                }
                let inner: String = b.get(start..j).unwrap_or_default().iter().collect();
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
                out.extend(b.iter().skip(i).take(6));
                i += 6;
                let mut j = i;
                while at(j).is_some_and(char::is_whitespace) {
                    j += 1;
                }
                let mut k = j;
                if at(k) == Some('-') {
                    k += 1;
                }
                if at(k).is_some_and(|d| d.is_ascii_digit()) {
                    let mut e = k;
                    while at(e).is_some_and(|d| d.is_ascii_alphanumeric() || d == '.') {
                        e += 1;
                    }
                    let tok: String = b.get(k..e).unwrap_or_default().iter().collect();
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

/// The deepest syntax tree a query may have (bounded from above by [`check_depth`]). Our own
/// recursion over the tree (type checks, evaluation) also grows its stack as it goes
/// ([`grow`]), so the limit is what bounds the parser's recursion and the tree's `Drop`,
/// whose frames are small.
pub const MAX_DEPTH: usize = 512;

/// Runs `f` with at least 256 KiB of stack left, moving to a new 4 MiB segment when less is
/// left: each level of the evaluator's recursion calls it, so no accepted query can
/// overflow the thread it runs on, whatever that thread's stack size.
#[inline]
pub(crate) fn grow<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(256 << 10, 4 << 20, f)
}

/// Refuses a query whose syntax tree could be deeper than [`MAX_DEPTH`], from its text alone
/// and in one pass, before the parser (which recurses too) sees it.
///
/// The bound: every bracket (`(`, `[`, `{`) opens a level; within a level, a chain of binary
/// or unary operators, or of subqueries, makes a tree as deep as the chain is long (`a + b +
/// c` is `(a + b) + c`). So the depth is at most the number of open brackets plus the
/// operators and `[` seen in each open level, summed over the open levels. Operators are
/// over-counted where a character is not one (`1e-5`, `==`), which only makes the bound
/// safer. Strings and comments are skipped.
pub(crate) fn check_depth(q: &str) -> Result<(), String> {
    let b = q.as_bytes();
    // Per open level: operators counted in it, and whether it is a `{…}` matcher list
    // (whose `=`, `!~` and commas build no tree). The bottom entry is the top level.
    let mut levels: Vec<(usize, bool)> = vec![(0, false)];
    // levels.len() - 1 + the sum of the counts.
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let in_braces = levels.last().is_some_and(|l| l.1);
        let mut op = false;
        match c {
            b'"' | b'\'' | b'`' => {
                i += 1;
                while let Some(&d) = b.get(i)
                    && d != c
                {
                    if d == b'\\' && c != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'#' => {
                while b.get(i).is_some_and(|&d| d != b'\n') {
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => {
                // `[` is also a postfix operator of its level (a range or a subquery).
                op = c == b'[';
                levels.push((0, c == b'{'));
                depth += 1;
            }
            b')' | b']' | b'}' if levels.len() > 1 => {
                depth -= 1 + levels.pop().expect("more than one level").0;
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'=' | b'!' | b'<' | b'>' => op = !in_braces,
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let s = i;
                while b
                    .get(i)
                    .is_some_and(|&d| d.is_ascii_alphanumeric() || d == b'_' || d == b':')
                {
                    i += 1;
                }
                let w = q.get(s..i).unwrap_or_default();
                i -= 1;
                op = !in_braces
                    && ["and", "or", "unless", "atan2"]
                        .iter()
                        .any(|k| w.eq_ignore_ascii_case(k));
            }
            _ => {}
        }
        if op {
            // The level an operator belongs to is the one it was written in: for `[`, the
            // one below the level it just opened.
            let below = if c == b'[' { 2 } else { 1 };
            if let Some(level) = levels.len().checked_sub(below).and_then(|k| levels.get_mut(k)) {
                level.0 += 1;
            }
            depth += 1;
        }
        if depth > MAX_DEPTH {
            return Err(format!(
                "the expression nests more than {MAX_DEPTH} levels deep (brackets and operators), the limit of this server"
            ));
        }
        i += 1;
    }
    Ok(())
}

/// Whether `word` (case-insensitive) starts at `i` as a whole identifier.
fn is_word_at(b: &[char], i: usize, word: &str) -> bool {
    let n = word.len();
    let Some(w) = b.get(i..i + n) else {
        return false;
    };
    let ident = |c: &char| c.is_ascii_alphanumeric() || *c == '_' || *c == ':';
    if i.checked_sub(1).and_then(|p| b.get(p)).is_some_and(ident) || b.get(i + n).is_some_and(ident) {
        return false;
    }
    w.iter()
        .zip(word.chars())
        .all(|(a, w)| a.eq_ignore_ascii_case(&w))
}

/// A Prometheus 2.x duration: `[0-9]+(ms|s|m|h|d|w|y)`, repeated.
fn is_duration(s: &str) -> bool {
    let mut b = s.as_bytes();
    if b.is_empty() {
        return false;
    }
    while !b.is_empty() {
        let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let rest = b.get(digits..).unwrap_or_default();
        if digits == 0 || rest.is_empty() {
            return false;
        }
        b = if let Some(rest) = rest.strip_prefix(b"ms") {
            rest
        } else if let [b's' | b'm' | b'h' | b'd' | b'w' | b'y', rest @ ..] = rest {
            rest
        } else {
            return false;
        };
    }
    true
}

/// Checks the types of function arguments, as Prometheus' parser does.
pub(crate) fn check_types(e: &Expr) -> Result<(), String> {
    grow(|| check_types_inner(e))
}

fn check_types_inner(e: &Expr) -> Result<(), String> {
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
