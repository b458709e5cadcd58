//! Means and 95% confidence intervals over seeds, for the experiment and the attack alike.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanCi {
    #[serde(deserialize_with = "crate::util::f64_or_nan")]
    pub mean: f64,
    /// Half-width of the 95% interval (Student t, n−1 degrees of freedom); NaN for n < 2.
    #[serde(deserialize_with = "crate::util::f64_or_nan")]
    pub ci95: f64,
    pub n: usize,
}

/// Two-sided 97.5% quantiles of Student's t for 1..=30 degrees of freedom.
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120,
    2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
];

pub fn t975(dof: usize) -> f64 {
    match dof {
        0 => f64::NAN,
        d if d <= 30 => T975[d - 1],
        _ => 1.96,
    }
}

pub fn mean_ci(xs: &[f64]) -> MeanCi {
    let n = xs.len();
    if n == 0 {
        return MeanCi {
            mean: f64::NAN,
            ci95: f64::NAN,
            n,
        };
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    let ci95 = if n < 2 {
        f64::NAN
    } else {
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        t975(n - 1) * (var / n as f64).sqrt()
    };
    MeanCi { mean, ci95, n }
}

/// Decimals that show `x` to four significant digits (counts in the
/// thousands print whole, accuracies as 0.8552), at most four.
fn decimals(x: f64) -> usize {
    if x == 0.0 || !x.is_finite() {
        return 4;
    }
    (3 - x.abs().log10().floor() as i64).clamp(0, 4) as usize
}

impl MeanCi {
    /// A fraction as a percentage with two decimals: `85.52 ± 2.99%`, or
    /// `85.52% ± n/a` for a single seed. Console, summary.md and report.html all use it.
    pub fn percent(&self) -> String {
        if self.ci95.is_nan() {
            format!("{:.2}% ± n/a", 100.0 * self.mean)
        } else {
            format!("{:.2} ± {:.2}%", 100.0 * self.mean, 100.0 * self.ci95)
        }
    }

    /// A relative change as a signed percentage with one decimal: `+1.0 ± 9.9%`.
    pub fn signed_percent(&self) -> String {
        if self.ci95.is_nan() {
            format!("{:+.1}% ± n/a", 100.0 * self.mean)
        } else {
            format!("{:+.1} ± {:.1}%", 100.0 * self.mean, 100.0 * self.ci95)
        }
    }

    /// A difference of fractions in signed percentage points with two
    /// decimals, as accuracies print: `-0.40 ± 0.30 points`.
    pub fn points(&self) -> String {
        if self.ci95.is_nan() {
            format!("{:+.2} ± n/a points", 100.0 * self.mean)
        } else {
            format!("{:+.2} ± {:.2} points", 100.0 * self.mean, 100.0 * self.ci95)
        }
    }

    /// The 95% interval; None for a single seed.
    pub fn interval(&self) -> Option<(f64, f64)> {
        (!self.ci95.is_nan()).then_some((self.mean - self.ci95, self.mean + self.ci95))
    }
}

impl std::fmt::Display for MeanCi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = decimals(self.mean);
        if self.ci95.is_nan() {
            write!(f, "{:.d$} ± n/a", self.mean)
        } else {
            write!(f, "{:.d$} ± {:.d$}", self.mean, self.ci95)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_print_to_four_significant_digits() {
        let m = |mean, ci95| MeanCi { mean, ci95, n: 3 }.to_string();
        assert_eq!(m(24795.0, 2787.156), "24795 ± 2787");
        assert_eq!(m(0.85521, 0.02991), "0.8552 ± 0.0299");
        assert_eq!(m(100.0891, 23.33), "100.1 ± 23.3");
        assert_eq!(m(0.0, f64::NAN), "0.0000 ± n/a");
        let one = MeanCi {
            mean: 0.85521,
            ci95: f64::NAN,
            n: 1,
        };
        assert_eq!(one.percent(), "85.52% ± n/a");
        assert_eq!(one.signed_percent(), "+85.5% ± n/a");
        assert_eq!(one.points(), "+85.52 ± n/a points");
        let three = MeanCi {
            mean: -0.0441,
            ci95: 0.0502,
            n: 3,
        };
        assert_eq!(three.percent(), "-4.41 ± 5.02%");
        assert_eq!(three.signed_percent(), "-4.4 ± 5.0%");
        assert_eq!(three.points(), "-4.41 ± 5.02 points");
    }

    #[test]
    fn interval_matches_hand_computation() {
        // mean 2, sample sd 1, n 3: half-width = 4.303 / sqrt(3).
        let m = mean_ci(&[1.0, 2.0, 3.0]);
        assert_eq!(m.mean, 2.0);
        assert!((m.ci95 - 4.303 / 3f64.sqrt()).abs() < 1e-12);
        assert!(mean_ci(&[5.0]).ci95.is_nan());
    }
}
