//! Exact one-sided confidence bounds on how many items of a finite
//! population are marked, from a sample drawn without replacement: the
//! hypergeometric tails (no normal approximation), as sequential verdicts
//! need them for a flip's lost samples among the N evaluated images.

/// ln(n!): exact sums for small n, Stirling's series (error < 1e-15) beyond.
fn ln_fact(n: u64) -> f64 {
    if n < 32 {
        return (2..=n).map(|k| (k as f64).ln()).sum();
    }
    let x = n as f64;
    let x2 = x * x;
    x * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI * x).ln() + 1.0 / (12.0 * x) - 1.0 / (360.0 * x * x2)
        + 1.0 / (1260.0 * x * x2 * x2)
}

fn ln_choose(n: u64, k: u64) -> f64 {
    ln_fact(n) - ln_fact(k) - ln_fact(n - k)
}

/// Tail probabilities within this relative distance of the level count as
/// above it: the bounds widen rather than narrow on rounding.
const ROUNDING: f64 = 1e-9;

/// A population of `pop` items, `n` of them drawn without replacement.
#[derive(Debug, Clone, Copy)]
pub struct Draw {
    pub pop: u64,
    pub n: u64,
}

impl Draw {
    /// The values X can take when `marked` items are marked.
    fn support(&self, marked: u64) -> (u64, u64) {
        ((self.n + marked).saturating_sub(self.pop), self.n.min(marked))
    }

    /// P(X = x) for X the marked items drawn.
    pub fn pmf(&self, marked: u64, x: u64) -> f64 {
        let (lo, hi) = self.support(marked);
        if x < lo || x > hi {
            return 0.0;
        }
        (ln_choose(marked, x) + ln_choose(self.pop - marked, self.n - x) - ln_choose(self.pop, self.n)).exp()
    }

    /// P(X ≤ x).
    pub fn cdf(&self, marked: u64, x: u64) -> f64 {
        let (lo, hi) = self.support(marked);
        (lo..=x.min(hi)).map(|v| self.pmf(marked, v)).sum::<f64>().min(1.0)
    }

    /// P(X ≥ x).
    pub fn sf(&self, marked: u64, x: u64) -> f64 {
        let (lo, hi) = self.support(marked);
        (x.max(lo)..=hi).map(|v| self.pmf(marked, v)).sum::<f64>().min(1.0)
    }

    /// The markings consistent with `seen` marked in the draw.
    fn range(&self, seen: u64) -> (u64, u64) {
        (seen, self.pop - (self.n - seen))
    }

    /// The largest marked count K with P(X ≤ seen | K) > alpha: the true
    /// count exceeds it with probability at most alpha.
    pub fn upper(&self, seen: u64, alpha: f64) -> u64 {
        let (mut lo, mut hi) = self.range(seen);
        // cdf falls as K grows, and is 1 at K = seen.
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if self.cdf(mid, seen) > alpha * (1.0 - ROUNDING) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    }

    /// The smallest marked count K with P(X ≥ seen | K) > alpha: the true
    /// count is below it with probability at most alpha.
    pub fn lower(&self, seen: u64, alpha: f64) -> u64 {
        let (mut lo, mut hi) = self.range(seen);
        // sf grows with K, and is 1 at the largest K.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.sf(mid, seen) > alpha * (1.0 - ROUNDING) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// P(X ≤ x) and P(X ≥ x) by listing every n-subset of a population whose
    /// first `marked` items are marked.
    fn enumerate(pop: u64, marked: u64, n: u64) -> Vec<u64> {
        let mut counts = vec![0u64; n as usize + 1];
        for set in 0u32..1 << pop {
            if set.count_ones() as u64 == n {
                let x = (set & ((1u32 << marked) - 1)).count_ones();
                counts[x as usize] += 1;
            }
        }
        counts
    }

    #[test]
    fn tails_match_enumeration() {
        for pop in 1..=10u64 {
            for marked in 0..=pop {
                for n in 0..=pop {
                    let counts = enumerate(pop, marked, n);
                    let all: u64 = counts.iter().sum();
                    let d = Draw { pop, n };
                    for x in 0..=n {
                        let le: u64 = counts[..=x as usize].iter().sum();
                        let ge: u64 = counts[x as usize..].iter().sum();
                        assert!((d.cdf(marked, x) - le as f64 / all as f64).abs() < 1e-12);
                        assert!((d.sf(marked, x) - ge as f64 / all as f64).abs() < 1e-12);
                    }
                }
            }
        }
    }

    /// The bounds are the tightest that hold: brute-force tails of every K,
    /// and their coverage (P(bound misses the true K) ≤ alpha) by enumeration.
    #[test]
    fn bounds_are_exact_and_cover() {
        for alpha in [0.01, 0.1, 0.3] {
            for pop in 1..=10u64 {
                for n in 0..=pop {
                    let d = Draw { pop, n };
                    let tails: Vec<Vec<u64>> = (0..=pop).map(|k| enumerate(pop, k, n)).collect();
                    let p = |k: u64, x: std::ops::RangeInclusive<usize>| {
                        let c = &tails[k as usize];
                        c[x].iter().sum::<u64>() as f64 / c.iter().sum::<u64>() as f64
                    };
                    let above = |q: f64| q > alpha * (1.0 - ROUNDING);
                    for seen in 0..=n {
                        let ub = (seen..=pop - (n - seen))
                            .filter(|&k| above(p(k, 0..=seen as usize)))
                            .max()
                            .unwrap();
                        let lb = (seen..=pop - (n - seen))
                            .filter(|&k| above(p(k, seen as usize..=n as usize)))
                            .min()
                            .unwrap();
                        assert_eq!(d.upper(seen, alpha), ub, "pop {pop} n {n} seen {seen}");
                        assert_eq!(d.lower(seen, alpha), lb, "pop {pop} n {n} seen {seen}");
                    }
                    for k in 0..=pop {
                        let (mut miss_up, mut miss_lo) = (0.0, 0.0);
                        for x in 0..=n {
                            let px = p(k, x as usize..=x as usize);
                            if px > 0.0 && d.upper(x, alpha) < k {
                                miss_up += px;
                            }
                            if px > 0.0 && d.lower(x, alpha) > k {
                                miss_lo += px;
                            }
                        }
                        assert!(miss_up <= alpha + 1e-12 && miss_lo <= alpha + 1e-12);
                    }
                }
            }
        }
    }

    #[test]
    fn large_populations_stay_finite() {
        let d = Draw { pop: 10_000, n: 128 };
        // Nothing lost in 128 draws: fewer than 10% of 10,000 lost at 1e-4.
        let ub = d.upper(0, 1e-4);
        assert!(ub > 500 && ub < 1000, "{ub}");
        let lb = d.lower(128, 1e-4);
        assert!(lb > 9000, "{lb}");
        assert!((ln_fact(40) - (1..=40).map(|k| (k as f64).ln()).sum::<f64>()).abs() < 1e-10);
    }
}
