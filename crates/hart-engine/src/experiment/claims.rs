//! The HAT paper's headline claims, each judged from per-seed paired
//! comparisons with the baseline: reproduced, not reproduced, or
//! inconclusive when the 95% interval cannot tell.

use super::results::Group;
use crate::stats::MeanCi;

pub const EXPLANATION: &str = "Each claim of the HAT paper is judged per architecture and Hessian-aware recipe from per-seed paired comparisons with the baseline recipe (the same seed trained both ways). A reduction claim is reproduced when the 95% interval of the relative change lies below 0, not reproduced when the interval excludes a reduction as large as the paper's smallest, and inconclusive otherwise. An increase claim (flips the bit-flip attack needs to crush the model) is judged the same way with the signs reversed: reproduced when the interval lies above 0, not reproduced when it excludes an increase as large as the paper's smallest (2×, +100%); a trial that never reached the target counts its budget, a lower bound, so a verdict such bounds could overturn (not reproduced with the Hessian-aware recipe's trials cut off, reproduced with the baseline's) is inconclusive. The synergy claim (fewer erratic bits than the baseline under the same defence) names no size: it is not reproduced only when the interval excludes any reduction. Accuracy is compared as a difference in points; SAM is compared with the same recipe's change. Resilience is compared only at matched accuracy: when a recipe's accuracy is significantly more than a point below the baseline's, its resilience claims read \"not comparable\" (a collapsed model has few erratic bits because it has nothing left to lose).";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Reproduced,
    NotReproduced,
    Inconclusive,
    /// A resilience claim of a recipe whose accuracy is not matched.
    NotComparable,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Reproduced => "reproduced",
            Verdict::NotReproduced => "not reproduced",
            Verdict::Inconclusive => "inconclusive",
            Verdict::NotComparable => "not comparable (accuracy not matched)",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Claim {
    pub arch: String,
    pub claim: String,
    pub measured: String,
    pub verdict: Verdict,
}

impl Claim {
    pub fn row(self) -> Vec<String> {
        vec![self.arch, self.claim, self.measured, self.verdict.as_str().to_string()]
    }
}

/// A claimed reduction of at least `smallest` (a negative fraction, e.g. −0.06).
pub fn reduction(change: &MeanCi, smallest: f64) -> Verdict {
    match change.interval() {
        Some((_, hi)) if hi < 0.0 => Verdict::Reproduced,
        Some((lo, _)) if lo > smallest => Verdict::NotReproduced,
        _ => Verdict::Inconclusive,
    }
}

/// A claimed increase of at least `smallest` (a positive fraction, e.g. +1.0 for 2×).
pub fn increase(change: &MeanCi, smallest: f64) -> Verdict {
    let negated = MeanCi {
        mean: -change.mean,
        ..*change
    };
    reduction(&negated, -smallest)
}

/// `increase` for flips to crush, where trials cut off at the budget make a
/// recipe's flips a lower bound: more flips for a censored recipe could
/// only raise its change, a censored baseline could only lower it.
pub fn flips_increase(change: &MeanCi, smallest: f64, censored: bool, base_censored: bool) -> Verdict {
    match increase(change, smallest) {
        Verdict::NotReproduced if censored => Verdict::Inconclusive,
        Verdict::Reproduced if base_censored => Verdict::Inconclusive,
        v => v,
    }
}

/// Accuracy within `points` (a fraction) of the baseline.
pub fn within(diff: &MeanCi, points: f64) -> Verdict {
    match diff.interval() {
        Some((lo, _)) if lo >= -points => Verdict::Reproduced,
        Some((_, hi)) if hi < -points => Verdict::NotReproduced,
        _ => Verdict::Inconclusive,
    }
}

/// "SAM does not give the same benefit": SAM's change in erratic parameters
/// against the Hessian-aware recipe's, both paired with the baseline. SAM
/// is no better when its reduction is significantly smaller than HAT's, or
/// when HAT reduces significantly and SAM does not; it gives the benefit
/// too when it reduces significantly at least as much as HAT's mean.
pub fn sam_no_better(sam: &MeanCi, hat: &MeanCi) -> Verdict {
    let (Some((sam_lo, sam_hi)), Some((_, hat_hi))) = (sam.interval(), hat.interval()) else {
        return Verdict::Inconclusive;
    };
    if sam_lo > hat.mean || (hat_hi < 0.0 && sam_lo >= 0.0) {
        Verdict::Reproduced
    } else if sam_hi < 0.0 && sam.mean <= hat.mean {
        Verdict::NotReproduced
    } else {
        Verdict::Inconclusive
    }
}

/// A paired change as the claims table prints it.
pub fn describe(c: &Option<MeanCi>) -> String {
    c.map_or("—".into(), |c| c.signed_percent())
}

/// One Hessian-aware recipe whose claims are judged, for the measurements' claims hooks.
pub struct ClaimContext<'a> {
    pub group: &'a Group,
    /// Its baseline recipe on the same architecture.
    pub base: Option<&'a Group>,
    /// The recipe as the claims name it (with its λ).
    pub name: String,
    /// Its accuracy is significantly more than a point below the baseline's.
    pub collapsed: bool,
}

impl ClaimContext<'_> {
    /// Resilience claims stand only at matched accuracy.
    pub fn resilience(&self, v: Option<Verdict>) -> Option<Verdict> {
        if self.collapsed {
            Some(Verdict::NotComparable)
        } else {
            v
        }
    }

    pub fn claim(&self, claim: String, measured: String, verdict: Option<Verdict>) -> Claim {
        Claim {
            arch: self.group.arch.clone(),
            claim,
            measured,
            verdict: verdict.unwrap_or(Verdict::Inconclusive),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(mean: f64, ci95: f64) -> MeanCi {
        MeanCi { mean, ci95, n: 5 }
    }

    #[test]
    fn reductions_need_an_interval_below_zero() {
        assert_eq!(reduction(&m(-0.09, 0.02), -0.06), Verdict::Reproduced);
        // Significant but larger than claimed still counts as fewer.
        assert_eq!(reduction(&m(-0.30, 0.05), -0.06), Verdict::Reproduced);
        assert_eq!(reduction(&m(0.01, 0.03), -0.06), Verdict::NotReproduced);
        assert_eq!(reduction(&m(-0.04, 0.05), -0.06), Verdict::Inconclusive);
        assert_eq!(reduction(&m(-0.2, f64::NAN), -0.06), Verdict::Inconclusive);
    }

    #[test]
    fn increases_mirror_reductions() {
        // 2.5× the flips: +150 ± 40 %.
        assert_eq!(increase(&m(1.5, 0.4), 1.0), Verdict::Reproduced);
        // +10 ± 20 %: the interval excludes doubling.
        assert_eq!(increase(&m(0.1, 0.2), 1.0), Verdict::NotReproduced);
        assert_eq!(increase(&m(0.5, 0.8), 1.0), Verdict::Inconclusive);
        assert_eq!(increase(&m(2.0, f64::NAN), 1.0), Verdict::Inconclusive);
        // Cut-off trials only ever understate the censored recipe's flips.
        assert_eq!(flips_increase(&m(0.1, 0.2), 1.0, true, false), Verdict::Inconclusive);
        assert_eq!(flips_increase(&m(0.1, 0.2), 1.0, false, true), Verdict::NotReproduced);
        assert_eq!(flips_increase(&m(1.5, 0.4), 1.0, true, false), Verdict::Reproduced);
        assert_eq!(flips_increase(&m(1.5, 0.4), 1.0, false, true), Verdict::Inconclusive);
    }

    #[test]
    fn accuracy_and_sam_rules() {
        assert_eq!(within(&m(-0.004, 0.003), 0.01), Verdict::Reproduced);
        assert_eq!(within(&m(-0.05, 0.01), 0.01), Verdict::NotReproduced);
        assert_eq!(within(&m(-0.008, 0.01), 0.01), Verdict::Inconclusive);
        // HAT −10 ± 2 %, SAM +1 ± 2 %: SAM is no better.
        assert_eq!(sam_no_better(&m(0.01, 0.02), &m(-0.10, 0.02)), Verdict::Reproduced);
        // SAM −12 ± 2 % beats HAT's −10 %: claim fails.
        assert_eq!(sam_no_better(&m(-0.12, 0.02), &m(-0.10, 0.02)), Verdict::NotReproduced);
        assert_eq!(sam_no_better(&m(-0.05, 0.08), &m(-0.04, 0.08)), Verdict::Inconclusive);
    }
}
