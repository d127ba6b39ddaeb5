//! Durations written as `"250ms"`, `"2s"` or `"1m30s"`: the one place config files spell time.
//!
//! Use it on your own fields with `#[serde(with = "switchover::config::duration")]`, or
//! [`option`] for an `Option<Duration>`:
//!
//! ```
//! use std::time::Duration;
//! use switchover::config::duration;
//!
//! assert_eq!(duration::parse("250ms"), Ok(Duration::from_millis(250)));
//! assert_eq!(duration::parse("1m30s"), Ok(Duration::from_secs(90)));
//! assert_eq!(duration::parse("1.5s"), Ok(Duration::from_millis(1500)));
//! assert_eq!(duration::format(Duration::from_millis(1500)), "1s500ms");
//! assert!(duration::parse("250").is_err()); // a unit is required
//! ```
//!
//! A duration is one or more `<number><unit>` parts (spaces between parts allowed), the number
//! a decimal with an optional fraction, the unit one of `ns`, `us` (or `µs`), `ms`, `s`, `m`,
//! `h`, `d`. [`format()`] writes the shortest exact form, so a value read and written back is the
//! same duration to the nanosecond.

use std::fmt::{self, Write as _};
use std::time::Duration;

use serde::{Deserializer, Serializer, de};

const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

/// Reads a duration such as `"250ms"`, `"2s"` or `"1h 30m"`.
///
/// # Errors
///
/// A message saying what is wrong: no unit, an unknown unit, no number, or a value too large
/// for a [`Duration`].
pub fn parse(text: &str) -> Result<Duration, String> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("an empty string is not a duration (write e.g. \"250ms\" or \"2s\")".into());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        if number.is_empty() {
            return Err(format!("`{text}`: expected a number before `{tail}`"));
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match UNITS.iter().find(|(name, _)| *name == unit) {
            Some((_, scale)) => *scale,
            None if unit.is_empty() => {
                return Err(format!(
                    "`{text}`: `{number}` needs a unit (ns, us, ms, s, m, h or d)"
                ));
            }
            None => {
                return Err(format!(
                    "`{text}`: unknown unit `{unit}` (use ns, us, ms, s, m, h or d)"
                ));
            }
        };
        let part =
            scaled(number, scale).ok_or_else(|| format!("`{text}`: bad number `{number}`"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("`{text}` is too long for a duration"))?;
        rest = tail.trim_start();
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| format!("`{text}` is too long for a duration"))?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// `number × scale` in nanoseconds, for a decimal `number` (`"1.5"`); `None` for a malformed
/// number, an overflow, or a fraction finer than a nanosecond.
fn scaled(number: &str, scale: u128) -> Option<u128> {
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut nanos = whole.checked_mul(scale)?;
    let mut unit = scale;
    for digit in fraction.bytes() {
        unit /= 10;
        let d = u128::from(digit - b'0');
        if unit == 0 {
            // Below a nanosecond: only zeros are exact.
            if d != 0 {
                return None;
            }
            continue;
        }
        nanos = nanos.checked_add(d * unit)?;
    }
    Some(nanos)
}

/// Writes `d` in the shortest exact form: `"250ms"`, `"2s"`, `"1m30s"`, `"0s"`.
pub fn format(d: Duration) -> String {
    let mut nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (name, scale) in UNITS.iter().rev().filter(|(name, _)| *name != "µs") {
        if nanos >= *scale {
            let _ = write!(out, "{}{name}", nanos / scale);
            nanos %= scale;
        }
    }
    out
}

/// Serializes a [`Duration`] as its [`format()`] string.
///
/// # Errors
///
/// Those of the serializer.
pub fn serialize<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*d))
}

/// Deserializes a [`Duration`] from a string such as `"250ms"` (see [`parse`]).
///
/// # Errors
///
/// A custom error of the deserializer with [`parse`]'s message, or a type error for anything
/// but a string.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_str(Visitor)
}

struct Visitor;

impl de::Visitor<'_> for Visitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"250ms\" or \"2s\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }
}

/// The same for an `Option<Duration>`: `None` is skipped when serializing (use it with
/// `#[serde(default, skip_serializing_if = "Option::is_none")]`).
pub mod option {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    /// Serializes `Some(d)` as its [`format()`](super::format) string and `None` as a none.
    ///
    /// # Errors
    ///
    /// Those of the serializer.
    pub fn serialize<S: Serializer>(
        d: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, serializer),
            None => serializer.serialize_none(),
        }
    }

    /// Deserializes a present value as a [`Duration`] string.
    ///
    /// # Errors
    ///
    /// As [`deserialize`](super::deserialize).
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        super::deserialize(deserializer).map(Some)
    }
}

/// A duration that may also be switched off, for an `Option<Option<Duration>>` field: left out
/// is `None` (the builder's default), `"off"` is `Some(None)`, `"200ms"` is `Some(Some(200 ms))`.
pub mod switch {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de};

    /// Serializes `Some(Some(d))` as its [`format()`](super::format) string, `Some(None)` as
    /// `"off"` and `None` as a none.
    ///
    /// # Errors
    ///
    /// Those of the serializer.
    pub fn serialize<S: Serializer>(v: &Option<Option<Duration>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(Some(d)) => s.serialize_str(&super::format(*d)),
            Some(None) => s.serialize_str("off"),
            None => s.serialize_none(),
        }
    }

    /// Deserializes `"off"` or a duration string.
    ///
    /// # Errors
    ///
    /// A value that is neither.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<Duration>>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if text == "off" {
            return Ok(Some(None));
        }
        super::parse(&text)
            .map(|d| Some(Some(d)))
            .map_err(|e| de::Error::custom(format!("{e}; or \"off\"")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn parses_every_unit_and_combinations() {
        assert_eq!(parse("100ns"), Ok(Duration::from_nanos(100)));
        assert_eq!(parse("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse("10µs"), Ok(Duration::from_micros(10)));
        assert_eq!(parse("250ms"), Ok(ms(250)));
        assert_eq!(parse("2s"), Ok(ms(2000)));
        assert_eq!(parse("3m"), Ok(ms(180_000)));
        assert_eq!(parse("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse("1d"), Ok(ms(86_400_000)));
        assert_eq!(parse("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse(" 1h 30m "), Ok(ms(5_400_000)));
        assert_eq!(parse("1.5s"), Ok(ms(1500)));
        assert_eq!(parse(".5s"), Ok(ms(500)));
        assert_eq!(parse("0.25ms"), Ok(Duration::from_micros(250)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse("1.0000000000s"), Ok(ms(1000)));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in [
            "", "250", "2x", "ms", "1..5s", ".s", "1.5ns", "s1", "-1s", "1e3ms",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse("99999999999999999999999d").is_err());
        assert!(parse("250").unwrap_err().contains("needs a unit"));
        assert!(parse("2x").unwrap_err().contains("unknown unit `x`"));
    }

    #[test]
    fn format_is_exact_and_round_trips() {
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(ms(250)), "250ms");
        assert_eq!(format(ms(2000)), "2s");
        assert_eq!(format(ms(90_000)), "1m30s");
        assert_eq!(format(Duration::new(86_401, 5)), "1d1s5ns");
        for d in [
            Duration::from_nanos(1),
            ms(1500),
            Duration::new(12_345, 678_901_234),
            Duration::MAX,
        ] {
            assert_eq!(parse(&format(d)), Ok(d), "{d:?}");
        }
    }
}
