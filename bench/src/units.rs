//! Parsing and printing of the sizes and durations the bench CLIs accept ("64MiB", "10s").
//!
//! Binary suffixes (KiB, MiB, GiB) are powers of 1024; decimal ones (KB, MB, GB) powers of
//! 1000, so a size on the command line means exactly what it says.

use anyhow::{bail, Context, Result};
use std::time::Duration;

/// Parses a byte size: a plain number, or a number with B/KiB/MiB/GiB/TiB/KB/MB/GB/TB.
pub fn parse_size_bytes(text: &str) -> Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let multiplier: u64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => bail!("unknown size suffix {other:?} in {text:?}"),
    };
    if number.contains('.') {
        let value: f64 = number
            .parse()
            .with_context(|| format!("bad size {text:?}"))?;
        if !value.is_finite() || value < 0.0 {
            bail!("bad size {text:?}");
        }
        Ok((value * multiplier as f64) as u64)
    } else {
        let value: u64 = number
            .parse()
            .with_context(|| format!("bad size {text:?}"))?;
        value
            .checked_mul(multiplier)
            .with_context(|| format!("size {text:?} overflows"))
    }
}

/// Parses a duration: a plain number of seconds, or a number with ms/s/m/h.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let value: f64 = number
        .parse()
        .with_context(|| format!("bad duration {text:?}"))?;
    if !value.is_finite() || value < 0.0 {
        bail!("bad duration {text:?}");
    }
    let seconds = match suffix {
        "" | "s" => value,
        "ms" => value / 1e3,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => bail!("unknown duration suffix {other:?} in {text:?}"),
    };
    Duration::try_from_secs_f64(seconds).with_context(|| format!("duration {text:?} is too long"))
}

/// Formats a byte count with a binary suffix, for humans.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size_bytes("4096").unwrap(), 4096);
        assert_eq!(parse_size_bytes("4KiB").unwrap(), 4096);
        assert_eq!(parse_size_bytes("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size_bytes("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_size_bytes("1.5KiB").unwrap(), 1536);
        assert!(parse_size_bytes("12XB").is_err());
        assert!(parse_size_bytes("").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("99999999999999999999999999h").is_err());
    }
}
