//! Time for the server: the clock, RFC 3339 text, and Prometheus' duration syntax (which
//! the configuration and the Prometheus API both read). One place, so no module borrows
//! another's parser.

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// RFC 3339 text of a Unix ms timestamp.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Parses a Prometheus duration string (`1y2w3d4h5m6s7ms`: units in this order, each at most
/// once; `0`) or a float number of seconds. Returns ms (negative for negative seconds);
/// `None` when it is neither or overflows.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    if let Ok(f) = s.parse::<f64>() {
        let ms = (f * 1000.0).trunc();
        return (ms.is_finite() && ms.abs() < i64::MAX as f64).then_some(ms as i64);
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut next_unit = 0;
    let mut total: i64 = 0;
    while !rest.is_empty() {
        // Both splits fall after ASCII bytes, so on character boundaries.
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, tail) = rest.split_at_checked(digits)?;
        if number.is_empty() {
            return None;
        }
        let n: i64 = number.parse().ok()?;
        let letters = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at_checked(letters)?;
        rest = tail;
        let (i, (_, mult)) = UNITS
            .iter()
            .enumerate()
            .skip(next_unit)
            .find(|(_, (u, _))| *u == unit)?;
        next_unit = i + 1;
        total = total.checked_add(n.checked_mul(*mult)?)?;
    }
    Some(total)
}

/// Formats ms as Prometheus formats a duration: `5m`, `1h30m`, `15d`; years and weeks only
/// when they divide it exactly (`90d`, not `12w6d`).
pub fn format_duration_ms(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut ms = ms;
    if ms < 0 {
        out.push('-');
        ms = ms.saturating_neg();
    }
    for (unit, mult, exact) in [
        ("y", 365 * 86_400_000, true),
        ("w", 7 * 86_400_000, true),
        ("d", 86_400_000, false),
        ("h", 3_600_000, false),
        ("m", 60_000, false),
        ("s", 1000, false),
        ("ms", 1, false),
    ] {
        if exact && ms % mult != 0 {
            continue;
        }
        let v = ms / mult;
        if v > 0 {
            out.push_str(&v.to_string());
            out.push_str(unit);
            ms -= v * mult;
        }
    }
    out
}
