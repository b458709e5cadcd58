//! RAD, the erratic verdict, and when counting can stop: surely (the open
//! samples cannot change it) or, with sequential verdicts, at a stated
//! confidence from a random part of the samples.

use serde::{Deserialize, Serialize};

use super::hypergeom::Draw;
use crate::error::{HartError, Result};

/// (acc_clean − acc_faulty) / acc_clean on the same samples; 0 when the
/// clean model gets nothing right (no accuracy left to drop).
pub fn rad(clean_correct: i64, faulty_correct: i64) -> f64 {
    if clean_correct == 0 {
        0.0
    } else {
        (clean_correct - faulty_correct) as f64 / clean_correct as f64
    }
}

pub fn erratic(rad: f64, threshold: f64) -> bool {
    rad > threshold
}

/// One flip's measurement: the faulty correct count over the `total` samples,
/// exact or (after an early exit) on the verdict's side of the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub correct: i64,
    pub exact: bool,
    /// Samples whose faulty outcome is known (evaluated or proven unchanged).
    pub samples: i64,
    /// Bound on the net lost samples on the verdict's side of the threshold
    /// (the count itself when exact).
    pub bound: i64,
    /// False when the sequential rule settled the verdict at its confidence.
    pub sure: bool,
}

impl Outcome {
    /// Every one of `n` samples counted.
    pub fn exact(clean_correct: i64, correct: i64, n: i64) -> Self {
        Outcome {
            correct,
            exact: true,
            samples: n,
            bound: clean_correct - correct,
            sure: true,
        }
    }
}

/// How verdicts are reached: every sample (or a sure early exit), or at a
/// stated confidence from a random part of the samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VerdictMode {
    #[default]
    Exact,
    Sequential,
}

impl std::str::FromStr for VerdictMode {
    type Err = HartError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "exact" => Ok(VerdictMode::Exact),
            "sequential" => Ok(VerdictMode::Sequential),
            _ => Err(HartError::Invalid(format!(
                "unknown verdict mode {s:?} (exact or sequential)"
            ))),
        }
    }
}

impl VerdictMode {
    /// `--confidence` when none is given: the sampled estimate's 95% for
    /// exact verdicts, 99.9% for sequential ones (each verdict may be wrong).
    pub fn default_confidence(self) -> f64 {
        match self {
            VerdictMode::Exact => 0.95,
            VerdictMode::Sequential => 0.999,
        }
    }
}

/// Samples seen before the first look of a sequential verdict.
const FIRST_LOOK: usize = 32;

/// The sequential rule's schedule: samples are visited in one random order
/// (the sweep shuffles the evaluation images), and a flip's verdict is
/// tested after the first 32, 64, 128, … of them. Each look spends an equal
/// share of 1 − confidence, so whatever look stops it, a flip's verdict is
/// wrong with probability at most 1 − confidence (a union bound).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sequential {
    /// Error level of one look.
    pub alpha: f64,
    n: usize,
}

impl Sequential {
    pub fn new(confidence: f64, n: usize) -> Self {
        let looks = Self::ends(n).len().max(1);
        Sequential {
            alpha: (1.0 - confidence) / looks as f64,
            n,
        }
    }

    /// The sample counts (< n) after which a flip is tested.
    fn ends(n: usize) -> Vec<usize> {
        std::iter::successors(Some(FIRST_LOOK), |&e| Some(e * 2))
            .take_while(|&e| e < n)
            .collect()
    }

    /// Whether a flip is tested once its first `end` samples are known.
    pub fn looks_at(&self, end: usize) -> bool {
        end >= FIRST_LOOK && end < self.n && end.is_power_of_two() && (end / FIRST_LOOK).is_power_of_two()
    }

    /// `s0..s1` cut at the look positions inside it.
    pub fn segments(&self, s0: usize, s1: usize) -> Vec<(usize, usize)> {
        let mut cuts: Vec<usize> = Self::ends(self.n).into_iter().filter(|&e| e > s0 && e < s1).collect();
        cuts.insert(0, s0);
        cuts.push(s1);
        cuts.windows(2).map(|w| (w[0], w[1])).collect()
    }
}

/// A verdict the sequential rule reached before every sample was known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settled {
    pub erratic: bool,
    /// Bound on the flip's net lost samples, on the verdict's side of the
    /// threshold, holding at the look's level.
    pub bound: i64,
    /// Net lost samples extrapolated from the known ones.
    pub estimate: f64,
}

/// What is known about one flip while its samples are being evaluated.
/// Samples are seen (outcome known: evaluated, or proven unchanged) or open.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    /// Correct-then-wrong minus wrong-then-correct over the samples seen so far.
    pub lost: i64,
    /// Samples not yet seen that were correct (each may still be lost) …
    pub open_correct: i64,
    /// … and that were wrong (each may still be won back).
    pub open_wrong: i64,
    pub seen_correct: i64,
    pub seen_wrong: i64,
    /// Wrong-then-correct samples among those seen.
    pub won: i64,
    /// Set when the sequential rule settled the verdict.
    pub settled: Option<Settled>,
}

impl Tally {
    /// Nothing seen yet of `n` samples, `clean_correct` of them correct.
    pub fn new(clean_correct: i64, n: i64) -> Self {
        Tally {
            open_correct: clean_correct,
            open_wrong: n - clean_correct,
            ..Tally::default()
        }
    }

    /// Samples known to keep their clean outcome (proven unaffected).
    pub fn unchanged(&mut self, correct: i64, wrong: i64) {
        self.open_correct -= correct;
        self.seen_correct += correct;
        self.open_wrong -= wrong;
        self.seen_wrong += wrong;
    }

    /// One evaluated sample: correct before the flip, and after.
    pub fn observe(&mut self, was: bool, is: bool) {
        self.unchanged(was as i64, !was as i64);
        self.lost += was as i64 - is as i64;
        self.won += (!was && is) as i64;
    }

    /// Faulty correct count if every open sample keeps its clean outcome:
    /// exact once nothing is open, otherwise on the verdict's side of the threshold.
    pub fn correct(&self, clean_correct: i64) -> i64 {
        clean_correct - self.lost
    }

    pub fn exact(&self) -> bool {
        self.open_correct == 0 && self.open_wrong == 0
    }

    /// True once the open samples can no longer change the erratic verdict.
    pub fn decided(&self, clean_correct: i64, threshold: f64) -> bool {
        let lo = rad(clean_correct, clean_correct - (self.lost - self.open_wrong));
        let hi = rad(clean_correct, clean_correct - (self.lost + self.open_correct));
        erratic(lo, threshold) == erratic(hi, threshold)
    }

    /// True once nothing more needs evaluating: the verdict is sure, or the
    /// sequential rule settled it.
    pub fn closed(&self, clean_correct: i64, threshold: f64) -> bool {
        self.settled.is_some() || self.decided(clean_correct, threshold)
    }

    /// The sequential rule at one look of level `alpha`. The seen samples are
    /// a uniform random subset of the N (the order is random, pruned samples
    /// included), so the lost among the clean-correct ones and the won among
    /// the clean-wrong ones are hypergeometric: erratic when the lower bound
    /// on the net loss (lost's lower bound minus won's upper bound, alpha/2
    /// each) exceeds the threshold, not erratic when the upper bound (lost's
    /// upper bound at alpha minus the won already seen) does not.
    pub fn look(&mut self, clean_correct: i64, threshold: f64, alpha: f64) {
        if self.settled.is_some() || self.decided(clean_correct, threshold) {
            return;
        }
        let lost_c = (self.lost + self.won) as u64;
        let correct = Draw {
            pop: (self.seen_correct + self.open_correct) as u64,
            n: self.seen_correct as u64,
        };
        let wrong = Draw {
            pop: (self.seen_wrong + self.open_wrong) as u64,
            n: self.seen_wrong as u64,
        };
        let is_erratic = |net: i64| erratic(rad(clean_correct, clean_correct - net), threshold);
        let estimate = lost_c as f64 * correct.pop as f64 / correct.n.max(1) as f64
            - self.won as f64 * wrong.pop as f64 / wrong.n.max(1) as f64;
        let upper = correct.upper(lost_c, alpha) as i64 - self.won;
        if !is_erratic(upper) {
            self.settled = Some(Settled {
                erratic: false,
                bound: upper,
                estimate,
            });
            return;
        }
        let lower = correct.lower(lost_c, alpha / 2.0) as i64 - wrong.upper(self.won as u64, alpha / 2.0) as i64;
        if is_erratic(lower) {
            self.settled = Some(Settled {
                erratic: true,
                bound: lower,
                estimate,
            });
        }
    }

    /// The flip's row values: the faulty correct count (exact, or on the
    /// verdict's side), whether it is exact, samples seen, the bound on the
    /// net loss on the verdict's side, and whether that verdict is sure.
    pub fn outcome(&self, clean_correct: i64, threshold: f64) -> Outcome {
        let cc = clean_correct;
        let seen = self.seen_correct + self.seen_wrong;
        let Some(s) = self.settled else {
            let sure_erratic = erratic(rad(cc, cc - (self.lost - self.open_wrong)), threshold);
            return Outcome {
                correct: self.correct(cc),
                exact: self.exact(),
                samples: seen,
                bound: if sure_erratic {
                    self.lost - self.open_wrong
                } else {
                    self.lost + self.open_correct
                },
                sure: true,
            };
        };
        // The smallest net loss that is erratic: the estimate is kept on the verdict's side.
        let first = (0..=cc + 1)
            .find(|&l| erratic(rad(cc, cc - l), threshold))
            .unwrap_or(cc + 1);
        let est = s.estimate.round() as i64;
        let net = if s.erratic { est.max(first) } else { est.min(first - 1) };
        Outcome {
            correct: cc - net,
            exact: false,
            samples: seen,
            bound: s.bound,
            sure: false,
        }
    }

    /// The fewest further evaluations of clean-correct samples that could
    /// settle the verdict: all of them lost, or none. A sizing hint for the
    /// next round of evaluations, never a verdict.
    pub fn to_settle(&self, clean_correct: i64, threshold: f64) -> i64 {
        let settles = |k: i64, lose: bool| {
            Tally {
                lost: self.lost + if lose { k } else { 0 },
                open_correct: self.open_correct - k,
                ..*self
            }
            .decided(clean_correct, threshold)
        };
        // Both predicates are monotone in k: binary search each.
        let first = |lose: bool| {
            let (mut lo, mut hi) = (0, self.open_correct);
            if !settles(hi, lose) {
                return i64::MAX;
            }
            while lo < hi {
                let mid = (lo + hi) / 2;
                if settles(mid, lose) {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            lo
        };
        first(true).min(first(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_exit_only_when_the_verdict_is_settled() {
        // 100 correct of 120; threshold 10% = more than 10 lost.
        let t = Tally {
            lost: 12,
            open_correct: 30,
            open_wrong: 1,
            ..Tally::default()
        };
        assert!(t.decided(100, 0.1), "12 - 1 > 10 whatever happens");
        let t = Tally {
            lost: 11,
            open_correct: 30,
            open_wrong: 1,
            ..Tally::default()
        };
        assert!(!t.decided(100, 0.1), "could end at exactly 10");
        let t = Tally {
            lost: 2,
            open_correct: 8,
            open_wrong: 5,
            ..Tally::default()
        };
        assert!(t.decided(100, 0.1), "at most 10 lost: not erratic");
        assert!(!Tally {
            lost: 2,
            open_correct: 9,
            open_wrong: 0,
            ..Tally::default()
        }
        .decided(100, 0.1));
        assert_eq!(rad(0, 0), 0.0);
    }

    #[test]
    fn evaluations_to_settle_are_the_fewest_that_could() {
        let t = Tally {
            lost: 0,
            open_correct: 50,
            open_wrong: 0,
            ..Tally::default()
        };
        // 11 losses of 100 make it erratic; 40 kept of 50 open settle "not erratic".
        assert_eq!(t.to_settle(100, 0.1), 11);
        let t = Tally {
            lost: 9,
            open_correct: 3,
            open_wrong: 0,
            ..Tally::default()
        };
        assert_eq!(t.to_settle(100, 0.1), 2, "two more lost, or two kept with one left");
        let settled = Tally {
            lost: 20,
            open_correct: 3,
            open_wrong: 0,
            ..Tally::default()
        };
        assert_eq!(settled.to_settle(100, 0.1), 0);
    }

    #[test]
    fn looks_are_at_doubling_sample_counts_below_n() {
        let sq = Sequential::new(0.999, 200);
        assert!((sq.alpha - 0.001 / 3.0).abs() < 1e-15, "looks at 32, 64, 128");
        assert!(sq.looks_at(32) && sq.looks_at(64) && sq.looks_at(128));
        assert!(!sq.looks_at(96) && !sq.looks_at(256) && !sq.looks_at(16));
        assert_eq!(sq.segments(0, 100), vec![(0, 32), (32, 64), (64, 100)]);
        assert_eq!(sq.segments(100, 200), vec![(100, 128), (128, 200)]);
    }

    #[test]
    fn sequential_rule_settles_clear_flips_only() {
        // 1000 samples, 900 correct; the first 128 of them (115 correct) seen.
        let seen = |lost: i64| {
            let mut t = Tally::new(900, 1000);
            t.unchanged(115 - lost, 13);
            for _ in 0..lost {
                t.observe(true, false);
            }
            t
        };
        let mut harmless = seen(0);
        harmless.look(900, 0.1, 1e-4);
        let s = harmless.settled.expect("nothing lost in 115: at most ~7% lost");
        assert!(!s.erratic && s.bound <= 90);
        let o = harmless.outcome(900, 0.1);
        assert!(!o.sure && !o.exact && o.samples == 128 && o.correct == 900);
        let mut erratic_flip = seen(60);
        erratic_flip.look(900, 0.1, 1e-4);
        let s = erratic_flip.settled.expect("60 of 115 lost");
        assert!(s.erratic && s.bound > 90);
        let o = erratic_flip.outcome(900, 0.1);
        assert!(
            rad(900, o.correct) > 0.1 && (o.correct - (900 - 470)).abs() < 10,
            "{o:?}"
        );
        let mut borderline = seen(12);
        borderline.look(900, 0.1, 1e-4);
        assert!(borderline.settled.is_none(), "12 of 115 is about the threshold");
        let o = borderline.outcome(900, 0.1);
        assert!(o.sure);
    }
}
