//! Reproducible random draws: every trial's faults follow from (seed, level,
//! trial) alone, whatever ran before, in which shard, or after a resume.
//! Bit faults are drawn by geometric skipping over the stored bits, so a
//! trial costs in proportion to its faults, not to the number of bits.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One drawn bit fault: stored bit `bit` of element `index` of target `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BitFault {
    pub target: usize,
    pub index: i64,
    pub bit: u8,
}

/// The stored bits of the chosen tensors, in one global order: target by
/// target, element by element, bit 0 first.
#[derive(Debug, Clone)]
pub struct StoredBits {
    /// `offsets[t]` is the first global bit of target `t`; the last entry the total.
    offsets: Vec<u64>,
    widths: Vec<u32>,
}

impl StoredBits {
    /// Targets of `numel[t]` elements stored in `widths[t]` bits each.
    pub fn new(numel: &[i64], widths: &[u32]) -> Self {
        let mut offsets = vec![0u64];
        for (n, w) in numel.iter().zip(widths) {
            offsets.push(offsets.last().unwrap() + *n as u64 * *w as u64);
        }
        StoredBits {
            offsets,
            widths: widths.to_vec(),
        }
    }

    pub fn total(&self) -> u64 {
        *self.offsets.last().unwrap()
    }

    pub fn locate(&self, position: u64) -> BitFault {
        let t = self.offsets.partition_point(|&o| o <= position) - 1;
        let rel = position - self.offsets[t];
        let w = self.widths[t] as u64;
        BitFault {
            target: t,
            index: (rel / w) as i64,
            bit: (rel % w) as u8,
        }
    }

    /// Each stored bit independently with probability `rate`, in global order.
    pub fn draw(&self, rate: f64, rng: &mut impl Rng) -> Vec<BitFault> {
        let total = self.total();
        let mut out = vec![];
        if rate <= 0.0 || total == 0 {
            return out;
        }
        // Gap before the next fault ~ Geometric(rate): floor(ln U / ln(1 − rate)).
        let log_q = (-rate).ln_1p();
        let mut pos = 0u64;
        loop {
            let u = 1.0 - rng.random::<f64>(); // (0, 1]
            let skip = (u.ln() / log_q).floor();
            if skip >= (total - pos) as f64 {
                return out;
            }
            pos += skip as u64;
            out.push(self.locate(pos));
            pos += 1;
            if pos >= total {
                return out;
            }
        }
    }
}

/// The generator of one trial: a ChaCha8 keyed by the campaign seed, the
/// level's bits and the trial number (and a stream per purpose).
pub fn trial_rng(seed: u64, level: f64, trial: u64, stream: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&level.to_bits().to_le_bytes());
    key[16..24].copy_from_slice(&trial.to_le_bytes());
    key[24..].copy_from_slice(&stream.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_walks_targets_and_widths() {
        let s = StoredBits::new(&[2, 3], &[32, 8]);
        assert_eq!(s.total(), 64 + 24);
        assert_eq!(
            s.locate(0),
            BitFault {
                target: 0,
                index: 0,
                bit: 0
            }
        );
        assert_eq!(
            s.locate(63),
            BitFault {
                target: 0,
                index: 1,
                bit: 31
            }
        );
        assert_eq!(
            s.locate(64 + 17),
            BitFault {
                target: 1,
                index: 2,
                bit: 1
            }
        );
    }

    #[test]
    fn rate_one_takes_every_bit_and_zero_none() {
        let s = StoredBits::new(&[3, 2], &[8, 4]);
        let all = s.draw(1.0, &mut trial_rng(1, 1.0, 0, 0));
        assert_eq!(all.len() as u64, s.total());
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        assert!(s.draw(0.0, &mut trial_rng(1, 0.0, 0, 0)).is_empty());
    }

    /// Per-bit inclusion frequencies against the rate, over many draws: a
    /// skipping error (off by one, bias at tensor borders) shows up here.
    #[test]
    fn each_bit_is_hit_at_the_rate() {
        let s = StoredBits::new(&[5, 7], &[4, 2]);
        let (rate, n) = (0.3, 20_000u64);
        let mut hits = vec![0u64; s.total() as usize];
        for t in 0..n {
            for f in s.draw(rate, &mut trial_rng(7, rate, t, 0)) {
                let g = s.offsets[f.target] + f.index as u64 * s.widths[f.target] as u64 + f.bit as u64;
                hits[g as usize] += 1;
            }
        }
        let sd = (n as f64 * rate * (1.0 - rate)).sqrt();
        for (g, h) in hits.iter().enumerate() {
            assert!((*h as f64 - n as f64 * rate).abs() < 5.0 * sd, "bit {g}: {h}");
        }
    }

    #[test]
    fn draws_are_reproducible_and_distinct_per_trial() {
        let s = StoredBits::new(&[1000], &[32]);
        let a = s.draw(0.01, &mut trial_rng(3, 0.01, 5, 0));
        assert_eq!(a, s.draw(0.01, &mut trial_rng(3, 0.01, 5, 0)));
        assert_ne!(a, s.draw(0.01, &mut trial_rng(3, 0.01, 6, 0)));
    }
}
