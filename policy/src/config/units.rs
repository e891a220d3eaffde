//! Sizes and durations as operators write them: `"64KiB"`, `"1MiB"`, `"500ms"`, `"10s"`.
//!
//! Sizes may also be plain integers (bytes); durations always need a unit, because a bare
//! `30` is ambiguous between seconds and milliseconds and both readings are plausible.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// Why a size or duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// The string was empty or only whitespace.
    #[error("empty value")]
    Empty,
    /// No digits before the unit.
    #[error("no number before the unit")]
    NoNumber,
    /// A leading minus sign.
    #[error("must not be negative")]
    Negative,
    /// A fraction or exponent, which neither sizes nor durations accept.
    #[error("must be a whole number followed by a unit")]
    NotInteger,
    /// Digits but no unit.
    #[error("a unit is required ({expected})")]
    MissingUnit {
        /// The units that would have been accepted.
        expected: &'static str,
    },
    /// A unit that is not in the accepted list.
    #[error("unknown unit {unit:?} (expected {expected})")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The units that would have been accepted.
        expected: &'static str,
    },
    /// The value does not fit in 64 bits.
    #[error("too large")]
    Overflow,
}

/// Units accepted by [`parse_size`], for messages.
const SIZE_UNITS: &str = "B, KiB, MiB, GiB, TiB, KB, MB, GB, TB";
/// Units accepted by [`parse_duration`], for messages.
const DURATION_UNITS: &str = "ms, s, m, h";

/// Parses a size such as `"16KiB"`, `"1 MiB"` or `"4096B"` into bytes. Binary units
/// (KiB = 1024) and decimal units (KB = 1000) are both accepted; a unit is required.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let (number, unit) = split_number(text)?;
    let factor: u64 = match unit {
        "" => {
            return Err(UnitError::MissingUnit {
                expected: SIZE_UNITS,
            })
        }
        "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(UnitError::UnknownUnit {
                unit: other.to_owned(),
                expected: SIZE_UNITS,
            })
        }
    };
    number.checked_mul(factor).ok_or(UnitError::Overflow)
}

/// Parses a duration such as `"500ms"`, `"10s"`, `"2m"` or `"1h"`; a unit is required.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let (number, unit) = split_number(text)?;
    let millis_per_unit: u64 = match unit {
        "" => {
            return Err(UnitError::MissingUnit {
                expected: DURATION_UNITS,
            })
        }
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        other => {
            return Err(UnitError::UnknownUnit {
                unit: other.to_owned(),
                expected: DURATION_UNITS,
            })
        }
    };
    let millis = number
        .checked_mul(millis_per_unit)
        .ok_or(UnitError::Overflow)?;
    Ok(Duration::from_millis(millis))
}

/// Splits `"64 KiB"` into `(64, "KiB")`, rejecting signs and fractions with a clear reason.
fn split_number(text: &str) -> Result<(u64, &str), UnitError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(UnitError::Empty);
    }
    if text.starts_with('-') {
        return Err(UnitError::Negative);
    }
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, rest) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(UnitError::NoNumber);
    }
    if rest.starts_with(['.', 'e', 'E', '_']) {
        return Err(UnitError::NotInteger);
    }
    let number = digits.parse::<u64>().map_err(|_| UnitError::Overflow)?;
    Ok((number, rest.trim_start()))
}

/// Renders bytes in the config's own syntax, with the largest binary unit that divides
/// them exactly (`16KiB`, `1MiB`, `1500B`), so messages can be pasted back into the file.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (factor, unit) in UNITS {
        if bytes != 0 && bytes.is_multiple_of(factor) {
            return format!("{}{unit}", bytes / factor);
        }
    }
    format!("{bytes}B")
}

/// Renders a duration in the config's own syntax (`1h`, `2m`, `10s`, `500ms`); durations
/// finer than a millisecond, which the config cannot express, fall back to `Debug`.
pub fn format_duration(duration: Duration) -> String {
    if !duration.subsec_nanos().is_multiple_of(1_000_000) {
        return format!("{duration:?}");
    }
    let millis = duration.as_millis();
    const UNITS: [(u128, &str); 3] = [(3_600_000, "h"), (60_000, "m"), (1_000, "s")];
    for (factor, unit) in UNITS {
        if millis != 0 && millis.is_multiple_of(factor) {
            return format!("{}{unit}", millis / factor);
        }
    }
    format!("{millis}ms")
}

// === serde adapters used by the TOML-shaped structs ===

/// The longest duration any config key accepts: every duration in the schema is a
/// timeout or interval, and one longer than a day is a typo, not a policy.
pub(crate) const CONFIG_DURATION_MAX: Duration = Duration::from_secs(24 * 3600);

/// A size key: integer bytes or a string with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConfigSize(pub u64);

/// A duration key: a string with a unit, at most [`CONFIG_DURATION_MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConfigDuration(pub Duration);

impl<'de> Deserialize<'de> for ConfigSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ConfigSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: integer bytes or a string such as \"64KiB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ConfigSize, E> {
                Ok(ConfigSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ConfigSize, E> {
                u64::try_from(v)
                    .map(ConfigSize)
                    .map_err(|_| E::custom(format!("size {v} must not be negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ConfigSize, E> {
                parse_size(v)
                    .map(ConfigSize)
                    .map_err(|e| E::custom(format!("bad size {v:?}: {e}")))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"10s\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ConfigDuration, E> {
                Err(E::custom(format!(
                    "duration {v} needs a unit, e.g. \"{v}s\" or \"{v}ms\" ({DURATION_UNITS})"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ConfigDuration, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!(
                        "duration {v} must not be negative, and needs a unit ({DURATION_UNITS})"
                    ))),
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ConfigDuration, E> {
                Err(E::custom(format!(
                    "duration {v} must be a string with a unit, e.g. \"1500ms\""
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ConfigDuration, E> {
                let duration =
                    parse_duration(v).map_err(|e| E::custom(format!("bad duration {v:?}: {e}")))?;
                if duration > CONFIG_DURATION_MAX {
                    return Err(E::custom(format!(
                        "duration {v:?} is longer than the maximum of {}",
                        format_duration(CONFIG_DURATION_MAX)
                    )));
                }
                Ok(ConfigDuration(duration))
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096B"), Ok(4096));
        assert_eq!(parse_size("16KiB"), Ok(16 * 1024));
        assert_eq!(parse_size("1 MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("5TiB"), Ok(5 << 40));
        assert_eq!(parse_size("2TB"), Ok(2_000_000_000_000));
        assert_eq!(format_size(5 << 40), "5TiB");
        assert_eq!(parse_size("64KB"), Ok(64_000));
        assert_eq!(parse_size("3MB"), Ok(3_000_000));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("0B"), Ok(0));
    }

    #[test]
    fn size_rejections() {
        assert_eq!(parse_size(""), Err(UnitError::Empty));
        assert_eq!(parse_size("KiB"), Err(UnitError::NoNumber));
        assert_eq!(parse_size("-1KiB"), Err(UnitError::Negative));
        assert_eq!(parse_size("1.5MiB"), Err(UnitError::NotInteger));
        assert!(matches!(
            parse_size("4096"),
            Err(UnitError::MissingUnit { .. })
        ));
        assert!(matches!(
            parse_size("1kib"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert_eq!(parse_size("99999999999GiB"), Err(UnitError::Overflow));
        assert_eq!(
            parse_size("99999999999999999999999B"),
            Err(UnitError::Overflow)
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn duration_rejections() {
        assert!(matches!(
            parse_duration("10"),
            Err(UnitError::MissingUnit { .. })
        ));
        assert_eq!(parse_duration("-5s"), Err(UnitError::Negative));
        assert_eq!(parse_duration("1.5s"), Err(UnitError::NotInteger));
        assert!(matches!(
            parse_duration("3d"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("10S"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert_eq!(
            parse_duration("18446744073709551615h"),
            Err(UnitError::Overflow)
        );
    }

    #[test]
    fn formatting_round_trips() {
        for s in ["16KiB", "1MiB", "1500B", "3GiB", "0B"] {
            assert_eq!(format_size(parse_size(s).unwrap()), s);
        }
        for s in ["500ms", "10s", "2m", "1h", "90s", "0ms"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}
