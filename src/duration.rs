//! Durations as operators write them: `300`, `300s`, `5m`, `1h30m`, `250ms`.
//!
//! std-only so that `snykey-helper` can parse `--min-validity` without
//! pulling in anything else; the agent uses the same function for TOML,
//! environment variables and the `min_validity` query parameter.

use std::time::Duration;

/// Parses whole seconds (`300`) or a sequence of `<number><unit>` with units
/// `ms`, `s`, `m`, `h`, `d` (`1h30m`). Spaces between parts are allowed.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty duration: write seconds (300) or a duration like 5m or 1h30m".into());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        // The same bound as the unit forms (whole milliseconds in a u64), so
        // that every duration read can be written back and read again.
        return s
            .parse::<u64>()
            .ok()
            .filter(|secs| secs.checked_mul(1_000).is_some())
            .map(Duration::from_secs)
            .ok_or_else(|| format!("duration {} is too large", quote(s)));
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total = Duration::ZERO;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        if i == bytes.len() {
            break;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(format!(
                "invalid duration {}: expected a number at position {start}; write e.g. 300, 5m or 1h30m",
                quote(s)
            ));
        }
        let n: u64 = s[start..i]
            .parse()
            .map_err(|_| format!("duration {} is too large", quote(s)))?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit_ms: u64 = match &s[ustart..i] {
            "ms" => 1,
            "s" | "sec" | "secs" => 1_000,
            "m" | "min" | "mins" => 60_000,
            "h" | "hr" | "hrs" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(format!(
                    "invalid duration {}: a number inside a duration needs a unit (ms, s, m, h, d)",
                    quote(s)
                ));
            }
            other => {
                return Err(format!(
                    "invalid duration {}: unknown unit {} (use ms, s, m, h or d)",
                    quote(s),
                    quote(other)
                ));
            }
        };
        let part = n
            .checked_mul(unit_ms)
            .ok_or_else(|| format!("duration {} is too large", quote(s)))?;
        total = total
            .checked_add(Duration::from_millis(part))
            .ok_or_else(|| format!("duration {} is too large", quote(s)))?;
    }
    Ok(total)
}

/// Values longer than this are described, not quoted, in error messages (a
/// duration is never secret, but a long value may be something pasted into
/// the wrong place, and an error must stay one line).
const MAX_QUOTED: usize = 40;

fn quote(s: &str) -> String {
    if s.chars().count() <= MAX_QUOTED {
        format!("{s:?}")
    } else {
        format!("(a {}-character value)", s.chars().count())
    }
}

/// Formats a duration the way [`parse_duration`] reads it back (`1h30m`, `45s`, `0s`).
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_documented_form() {
        assert_eq!(parse_duration("300").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("300s").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn refuses_garbage_with_a_message_saying_what_to_write() {
        for bad in ["", "abc", "5x", "m5", "-5", "1.5h", "5 m 3"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("duration"), "{bad:?}: {e}");
        }
        assert!(parse_duration("99999999999999999999").is_err());
        assert!(parse_duration("99999999999999999d").is_err());
    }

    #[test]
    fn whole_seconds_beyond_the_millisecond_range_are_too_large() {
        // Found by prop_any_text_parses_or_fails_with_a_bounded_message: this
        // was read as seconds, but its written form (213504629629d…) was refused.
        let e = parse_duration("18446800000000000").unwrap_err();
        assert!(e.contains("too large"), "{e}");
        assert!(parse_duration(&(u64::MAX / 1000).to_string()).is_ok());
    }

    #[test]
    fn format_round_trips() {
        for s in [0u64, 1, 59, 60, 61, 3600, 5400, 90061] {
            let d = Duration::from_secs(s);
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
    }
}

#[cfg(test)]
mod prop_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::prop::config(512))]

        #[test]
        fn prop_any_text_parses_or_fails_with_a_bounded_message(s in "\\PC{0,64}|[0-9 smhdinecr]{0,40}|[0-9]{15,40}[a-z]{0,3}") {
            match parse_duration(&s) {
                Ok(d) => {
                    // What was read is written back in a form read the same.
                    prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
                }
                Err(e) => {
                    prop_assert!(!e.is_empty());
                    prop_assert!(e.len() <= 200 + s.len().min(MAX_QUOTED) * 6, "{}", e);
                }
            }
        }

        #[test]
        fn prop_formatted_durations_round_trip(ms in 0u64..=u64::MAX / 2) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn prop_long_input_is_not_echoed_whole(s in "[a-z]{300,2000}") {
            let e = parse_duration(&s).unwrap_err();
            prop_assert!(e.len() < 300, "{}", e);
        }
    }
}
