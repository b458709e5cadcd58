//! RAD, the erratic verdict, and when counting can stop early.

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

/// What is known about one flip while its samples are being evaluated.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    /// Correct-then-wrong minus wrong-then-correct over the samples evaluated so far.
    pub lost: i64,
    /// Samples not yet evaluated that were correct (each may still be lost) …
    pub open_correct: i64,
    /// … and that were wrong (each may still be won back).
    pub open_wrong: i64,
}

impl Tally {
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
        };
        assert!(t.decided(100, 0.1), "12 - 1 > 10 whatever happens");
        let t = Tally {
            lost: 11,
            open_correct: 30,
            open_wrong: 1,
        };
        assert!(!t.decided(100, 0.1), "could end at exactly 10");
        let t = Tally {
            lost: 2,
            open_correct: 8,
            open_wrong: 5,
        };
        assert!(t.decided(100, 0.1), "at most 10 lost: not erratic");
        assert!(!Tally {
            lost: 2,
            open_correct: 9,
            open_wrong: 0
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
        };
        // 11 losses of 100 make it erratic; 40 kept of 50 open settle "not erratic".
        assert_eq!(t.to_settle(100, 0.1), 11);
        let t = Tally {
            lost: 9,
            open_correct: 3,
            open_wrong: 0,
        };
        assert_eq!(t.to_settle(100, 0.1), 2, "two more lost, or two kept with one left");
        let settled = Tally {
            lost: 20,
            open_correct: 3,
            open_wrong: 0,
        };
        assert_eq!(settled.to_settle(100, 0.1), 0);
    }
}
