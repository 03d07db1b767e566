//! Go's duration syntax, which upstream's flags and `external-secrets.io` fields use.

use std::time::Duration;

/// Go's `time.ParseDuration` (e.g. `720h`, `1h30m`, `1.5h`, `300ms`, `0`), without negative
/// durations (no flag or field here can use one).
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("expected a duration such as 720h, 1h30m or 90s, got {text:?}");
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut nanos: u128 = 0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(invalid)?;
        let (number, tail) = rest.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return Err(invalid());
        }
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            _ => return Err(invalid()),
        };
        let digits = |s: &str| -> Result<u128, String> {
            if s.is_empty() {
                Ok(0)
            } else {
                s.parse().map_err(|_| invalid())
            }
        };
        // Nine fraction digits are as precise as nanoseconds of a nanosecond unit.
        let fraction = &fraction[..fraction.len().min(18)];
        let scale = 10u128.pow(fraction.len() as u32);
        let fraction_nanos = digits(fraction)? * unit_nanos / scale;
        nanos = digits(whole)?
            .checked_mul(unit_nanos)
            .and_then(|n| n.checked_add(fraction_nanos))
            .and_then(|n| nanos.checked_add(n))
            .filter(|n| *n <= u128::from(u64::MAX))
            .ok_or_else(|| format!("duration {text:?} is too long"))?;
        rest = tail;
    }
    Ok(Duration::from_nanos(nanos as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        for (text, seconds) in [
            ("0", 0.0),
            ("720h", 720.0 * 3600.0),
            ("1h30m", 5400.0),
            ("1.5h", 5400.0),
            ("90s", 90.0),
            ("300ms", 0.3),
            ("2m0.5s", 120.5),
            ("8760h0m0s", 8760.0 * 3600.0),
        ] {
            assert_eq!(
                parse_go_duration(text).unwrap().as_secs_f64(),
                seconds,
                "{text}"
            );
        }
        for bad in ["", "5", "h", "-1h", "1d", "1h 30m", ".h"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
    }
}
