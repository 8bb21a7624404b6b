//! Durations as operators write them: whole seconds (`300`) or anything
//! [`humantime`] reads (`300s`, `5m`, `1h30m`, `5 minutes`, `1.5h`, `250ms`).
//!
//! One function for every place a duration is read: flags (`--min-validity`,
//! `--access-token-ttl`), TOML and `SNYKEY_*` variables, and the
//! `min_validity` / `wait` query parameters. `snykey-helper` uses it too:
//! humantime is a small std-only crate (no dependency of its own, no static
//! initializer), so the helper stays free of any runtime; its start-up cost
//! is measured in BENCHMARKS.md.

use std::time::Duration;

/// The largest duration read: whole milliseconds in a `u64` (about 584
/// million years), so that nothing computed from one (`timeout * 2`, a
/// deadline) can overflow, and every duration read can be written back by
/// [`format_duration`] and read again.
const MAX: Duration = Duration::from_millis(u64::MAX);

/// What an error message suggests writing instead.
const EXAMPLES: &str = "write seconds (300) or a duration like 5m, 1h30m or \"5 minutes\"";

/// Parses whole seconds (`300`) or a humantime duration: a sequence of
/// `<number><unit>` with units `ns`, `us`, `ms`, `s`/`sec`/`seconds`,
/// `m`/`min`/`minutes`, `h`/`hours`, `d`/`days`, `w`/`weeks`, `M`/`months`,
/// `y`/`years`; spaces are allowed between parts (`1h 30m`) and between a
/// number and its unit (`5 minutes`).
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err(format!("empty duration: {EXAMPLES}"));
    }
    let d = if s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("duration {} is too large", quote(s)))?
    } else {
        humantime::parse_duration(s).map_err(|e| explain(s, &e))?
    };
    if d > MAX {
        return Err(format!("duration {} is too large", quote(s)));
    }
    Ok(d)
}

/// humantime's error in our words: the value (bounded), what is wrong with
/// it, and what to write.
fn explain(s: &str, e: &humantime::DurationError) -> String {
    use humantime::DurationError as E;
    let what = match e {
        E::InvalidCharacter(at) => format!("unexpected character at position {at}"),
        E::NumberExpected(at) => format!("expected a number at position {at}"),
        E::UnknownUnit { unit, value, .. } if unit.is_empty() => {
            format!("the number {value} needs a unit (ms, s, m, h, d)")
        }
        E::UnknownUnit { unit, .. } => {
            format!(
                "unknown unit {} (use ms, s, m, h, d or their long names)",
                quote(unit)
            )
        }
        E::NumberOverflow => return format!("duration {} is too large", quote(s)),
        E::Empty => "empty".to_string(),
    };
    format!("invalid duration {}: {what}; {EXAMPLES}", quote(s))
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

/// Formats a duration the way [`parse_duration`] reads it back exactly
/// (`1h30m`, `45s`, `250ms`, `0s`).
pub fn format_duration(d: Duration) -> String {
    let mut ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000_000_000u128),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ] {
        if ns >= size {
            out.push_str(&format!("{}{unit}", ns / size));
            ns %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_documented_form() {
        for (text, secs) in [
            ("300", 300),
            ("300s", 300),
            ("5m", 300),
            ("1h30m", 5400),
            ("1h 30m", 5400),
            ("5 minutes", 300),
            ("5min", 300),
            ("1 hour 30 minutes", 5400),
            ("1.5h", 5400),
            ("2d", 172_800),
            ("0", 0),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text:?}"
            );
        }
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1us").unwrap(), Duration::from_micros(1));
    }

    #[test]
    fn refuses_garbage_with_a_message_saying_what_to_write() {
        for bad in [
            "",
            "abc",
            "5x",
            "m5",
            "-5",
            "5 parsecs",
            "1h30",
            "5 m 3",
            "1,5h",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(
                e.contains("duration") && e.contains("5 minutes"),
                "{bad:?}: {e}"
            );
        }
        assert!(
            parse_duration("5 parsecs")
                .unwrap_err()
                .contains("unknown unit \"parsecs\""),
            "the unit at fault is named"
        );
        assert!(parse_duration("99999999999999999999").is_err());
        assert!(parse_duration("99999999999999999d").is_err());
    }

    #[test]
    fn durations_beyond_the_millisecond_range_are_too_large() {
        // Whole milliseconds in a u64: anything computed from a duration
        // (a timeout doubled, a deadline) stays in range.
        let e = parse_duration("18446800000000000").unwrap_err();
        assert!(e.contains("too large"), "{e}");
        assert!(parse_duration(&(u64::MAX / 1000).to_string()).is_ok());
        let e = parse_duration("600000000 years").unwrap_err();
        assert!(e.contains("too large"), "{e}");
    }

    #[test]
    fn format_round_trips() {
        for s in [0u64, 1, 59, 60, 61, 3600, 5400, 90061] {
            let d = Duration::from_secs(s);
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        // Below a millisecond too (humantime reads ns and us).
        let d = Duration::new(61, 1_001);
        assert_eq!(format_duration(d), "1m1s1us1ns");
        assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }
}

#[cfg(test)]
mod prop_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::prop::config(512))]

        #[test]
        fn prop_any_text_parses_or_fails_with_a_bounded_message(s in "\\PC{0,64}|[0-9 smhdinecruMy.]{0,40}|[0-9]{15,40}[a-z]{0,3}|[0-9]{1,3}[a-z]{100,300}") {
            match parse_duration(&s) {
                Ok(d) => {
                    // What was read is written back in a form read the same.
                    prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
                }
                Err(e) => {
                    prop_assert!(!e.is_empty());
                    prop_assert!(e.len() <= 300 + s.len().min(MAX_QUOTED) * 12, "{}", e);
                }
            }
        }

        #[test]
        fn prop_formatted_durations_round_trip(ms in 0u64..=u64::MAX / 2, ns in 0u32..1_000_000) {
            let d = Duration::from_millis(ms) + Duration::from_nanos(u64::from(ns));
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn prop_long_input_is_not_echoed_whole(s in "[a-z]{300,2000}") {
            let e = parse_duration(&s).unwrap_err();
            prop_assert!(e.len() < 300, "{}", e);
        }
    }
}
