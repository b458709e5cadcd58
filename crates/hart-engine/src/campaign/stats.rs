//! Per-level statistics of a campaign's trials: mean, sample standard
//! deviation, 5th percentile, a Student-t interval for the mean, and the
//! share of trials with RAD above the threshold with its Wilson interval.
//! Quantities undefined for a single trial are `None` ("n/a").

use serde::{Deserialize, Serialize};

use crate::faults::stats::{normal_quantile, wilson};

/// One trial's outcome, a row of the trials table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub level: f64,
    pub trial: u64,
    /// Faults drawn (bit models) or weights perturbed (Gaussian).
    pub faults: u64,
    /// Faults that changed a stored bit (a stuck-at cell may already hold its value).
    pub changed: u64,
    /// Changed bits the defence detected (0 without one).
    pub detected: u64,
    pub correct: i64,
    pub total: i64,
    pub rad: f64,
}

impl Trial {
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.total as f64
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelStats {
    pub level: f64,
    pub trials: usize,
    pub mean_accuracy: f64,
    pub sd_accuracy: Option<f64>,
    pub p5_accuracy: f64,
    /// Interval for the mean accuracy at `confidence` (named for the default 0.95).
    pub ci95: Option<(f64, f64)>,
    pub confidence: f64,
    /// Share of trials with RAD > threshold, and its Wilson interval.
    pub share_erratic: f64,
    pub share_erratic_ci: (f64, f64),
    pub mean_faults: f64,
    /// Rate × stored bits (bit models); weights perturbed (Gaussian).
    pub expected_faults: f64,
    pub mean_changed: f64,
}

/// Two-sided Student-t critical value for `confidence` with `dof` degrees of
/// freedom (Hill 1970, ACM Algorithm 396; exact for 1 and 2).
pub fn t_critical(confidence: f64, dof: usize) -> f64 {
    let p = 1.0 - confidence; // two-tailed probability
    let n = dof as f64;
    match dof {
        0 => f64::NAN,
        1 => 1.0 / (p * std::f64::consts::FRAC_PI_2).tan(),
        2 => (2.0 / (p * (2.0 - p)) - 2.0).sqrt(),
        _ => {
            let a = 1.0 / (n - 0.5);
            let b = 48.0 / (a * a);
            let mut c = ((20700.0 * a / b - 98.0) * a - 16.0) * a + 96.36;
            let d = ((94.5 / (b + c) - 3.0) / b + 1.0) * (a * std::f64::consts::FRAC_PI_2).sqrt() * n;
            let mut y = (d * p).powf(2.0 / n);
            if y > 0.05 + a {
                let x = normal_quantile(0.5 * p);
                y = x * x;
                if dof < 5 {
                    c += 0.3 * (n - 4.5) * (x + 0.6);
                }
                c += (((0.05 * d * x - 5.0) * x - 7.0) * x - 2.0) * x + b;
                y = (((((0.4 * y + 6.3) * y + 36.0) * y + 94.5) / c - y - 3.0) / b + 1.0) * x;
                y = a * y * y;
                y = if y > 0.002 { y.exp() - 1.0 } else { 0.5 * y * y + y };
            } else {
                y = ((1.0 / (((n + 6.0) / (n * y) - 0.089 * d - 0.822) * (n + 2.0) * 3.0) + 0.5 / (n + 4.0)) * y - 1.0)
                    * (n + 1.0)
                    / (n + 2.0)
                    + 1.0 / y;
            }
            (n * y).sqrt()
        }
    }
}

/// The `q` quantile by linear interpolation between order statistics (numpy's default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Statistics of one level's trials (at least one).
pub fn level_stats(level: f64, trials: &[Trial], expected_faults: f64, threshold: f64, confidence: f64) -> LevelStats {
    let n = trials.len();
    let acc: Vec<f64> = trials.iter().map(Trial::accuracy).collect();
    let mean = acc.iter().sum::<f64>() / n as f64;
    let sd = (n > 1).then(|| (acc.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
    let ci95 = sd.map(|sd| {
        let h = t_critical(confidence, n - 1) * sd / (n as f64).sqrt();
        (mean - h, mean + h)
    });
    let mut sorted = acc.clone();
    sorted.sort_by(f64::total_cmp);
    let erratic = trials.iter().filter(|t| t.rad > threshold).count() as u64;
    let mean_of = |f: fn(&Trial) -> u64| trials.iter().map(|t| f(t) as f64).sum::<f64>() / n as f64;
    LevelStats {
        level,
        trials: n,
        mean_accuracy: mean,
        sd_accuracy: sd,
        p5_accuracy: quantile(&sorted, 0.05),
        ci95,
        confidence,
        share_erratic: erratic as f64 / n as f64,
        share_erratic_ci: wilson(erratic, n as u64, 0, confidence),
        mean_faults: mean_of(|t| t.faults),
        expected_faults,
        mean_changed: mean_of(|t| t.changed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::t975;

    #[test]
    fn t_matches_the_table_and_known_quantiles() {
        for dof in 1..=30 {
            let t = t_critical(0.95, dof);
            assert!((t - t975(dof)).abs() < 2e-3, "dof {dof}: {t} vs {}", t975(dof));
        }
        // 99% two-sided: 63.657 (1), 3.169 (10), 2.626 (100).
        for (dof, want) in [(1, 63.657), (10, 3.169), (100, 2.626)] {
            assert!((t_critical(0.99, dof) - want).abs() < 2e-3, "dof {dof}");
        }
    }

    #[test]
    fn one_trial_has_no_interval_and_quantiles_interpolate() {
        let t = |correct| Trial {
            level: 0.1,
            trial: 0,
            faults: 3,
            changed: 2,
            detected: 0,
            correct,
            total: 10,
            rad: (8 - correct) as f64 / 8.0,
        };
        let s = level_stats(0.1, &[t(4)], 3.2, 0.1, 0.95);
        assert_eq!((s.sd_accuracy, s.ci95, s.p5_accuracy), (None, None, 0.4));
        assert_eq!((s.share_erratic, s.mean_faults, s.mean_changed), (1.0, 3.0, 2.0));
        assert_eq!(quantile(&[0.0, 1.0, 2.0, 3.0, 4.0], 0.05), 0.2);
        let s = level_stats(0.1, &[t(8), t(6), t(10)], 3.2, 0.1, 0.95);
        let (lo, hi) = s.ci95.unwrap();
        // mean 0.8, sd 0.2, t(2) = 4.303.
        assert!((s.mean_accuracy - 0.8).abs() < 1e-12 && (hi - lo - 2.0 * 4.303 * 0.2 / 3f64.sqrt()).abs() < 1e-3);
        assert!((s.share_erratic - 1.0 / 3.0).abs() < 1e-12);
    }
}
