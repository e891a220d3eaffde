//! Medians and spreads of a few rounds: with 3–5 rounds on a shared 2-core machine the
//! min–max range is the honest error bar, so that is what every table shows.

/// Median and range of a handful of measurements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// Middle value (mean of the two middle values for an even count).
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of the finite values, or `None` when there is none.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: sorted[0],
            max: sorted[n - 1],
        })
    }

    /// `median (min–max)` with `decimals` digits after the point.
    pub fn show(&self, decimals: usize) -> String {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            self.median,
            self.min,
            self.max,
            d = decimals
        )
    }
}

/// `median (min–max)`, or an em dash when there is nothing to show.
pub fn show(spread: Option<Spread>, decimals: usize) -> String {
    spread.map_or_else(|| "—".to_string(), |s| s.show(decimals))
}

/// Ratio of two medians as `0.95×`, or an em dash.
pub fn ratio(numerator: Option<Spread>, denominator: Option<Spread>) -> String {
    match (numerator, denominator) {
        (Some(n), Some(d)) if d.median > 0.0 => format!("{:.2}×", n.median / d.median),
        _ => "—".to_string(),
    }
}

/// Decimals that show about three significant digits of `value`.
pub fn decimals_for(value: f64) -> usize {
    let magnitude = value.abs();
    if magnitude >= 100.0 {
        0
    } else if magnitude >= 10.0 {
        1
    } else if magnitude >= 1.0 {
        2
    } else {
        3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ranges() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert_eq!(Spread::of(&[f64::NAN]), None);
        assert_eq!(s.show(1), "2.5 (1.0–4.0)");
    }

    #[test]
    fn ratios_of_medians() {
        let a = Spread::of(&[2.0]);
        let b = Spread::of(&[4.0]);
        assert_eq!(ratio(a, b), "0.50×");
        assert_eq!(ratio(a, None), "—");
        assert_eq!(ratio(a, Spread::of(&[0.0])), "—");
    }
}
