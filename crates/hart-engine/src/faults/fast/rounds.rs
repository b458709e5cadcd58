//! The third stage, per unit: chunk by chunk (segment by segment for
//! sequential verdicts), the candidate pairs that the bound and the
//! certificate could not settle, evaluated in rounds until each flip's
//! verdict is settled.

use std::rc::Rc;

use tch::Tensor;

use super::candidates::{self, Cand};
use super::pairs::Pairs;
use super::{Cut, Env, Fast, UnitFlips, MIN_ROUND};
use crate::error::Result;
use crate::faults::space::Flip;
use crate::faults::verdict::{Outcome, Tally};

/// One unit's state while it runs: the clean correctness, each flip's
/// tally, and what the debug log reports.
struct Run {
    was: Vec<bool>,
    tallies: Vec<Tally>,
    /// Seconds in the prefix, the candidate test and the pair evaluations.
    seconds: [f64; 3],
    evaluated: usize,
}

impl Fast<'_> {
    pub(super) fn run_cut(&self, cut: &Cut, u: &UnitFlips) -> Result<Vec<Outcome>> {
        let clean = self.ctx.clean;
        let (n, cc, threshold) = (clean.n, clean.correct_count, self.ctx.threshold);
        let seq = self.ctx.sequential;
        let mut run = Run {
            was: Vec::<bool>::try_from(&clean.correct)?,
            tallies: vec![Tally::new(cc, n as i64); u.flips.len()],
            seconds: [0.0; 3],
            evaluated: 0,
        };
        let chunks: Vec<(usize, usize)> = (0..n).step_by(cut.chunk).map(|s| (s, (s + cut.chunk).min(n))).collect();
        // Exact verdicts: every chunk's candidates first, so that early exit
        // counts the samples proven unchanged. Sequential ones: per segment
        // between looks, of the flips still open, as the samples come.
        let mut upfront = vec![];
        if seq.is_none() {
            for &(s0, s1) in &chunks {
                let env = self.timed_prefix(cut, s0, s1, &mut run)?;
                upfront.push(self.segment_candidates(cut, u, &env, (s0, s1), &mut run)?);
            }
        }
        let mut upfront = upfront.into_iter();
        for &(s0, s1) in &chunks {
            if run.tallies.iter().all(|t| self.done(t)) {
                break;
            }
            let Some(sq) = seq else {
                let env = self.timed_prefix(cut, s0, s1, &mut run)?;
                let cand = upfront.next().unwrap_or_default();
                self.evaluate(cut, u, &env, s0, &cand, &mut run)?;
                continue;
            };
            // The layers before the cut run segment by segment, as far as
            // some flip is still open: most verdicts settle in the first
            // hundred samples, long before a chunk ends.
            for (a, b) in sq.segments(s0, s1) {
                if run.tallies.iter().all(|t| self.done(t)) {
                    break;
                }
                let seg = self.timed_prefix(cut, a, b, &mut run)?;
                let cand = self.segment_candidates(cut, u, &seg, (a, b), &mut run)?;
                self.evaluate(cut, u, &seg, a, &cand, &mut run)?;
                if sq.looks_at(b) {
                    for t in &mut run.tallies {
                        t.look(cc, threshold, sq.alpha);
                    }
                }
            }
        }
        self.count(|s| s.evaluated_pairs += run.evaluated as u64);
        tracing::debug!(
            flips = u.flips.len(),
            pairs = run.evaluated,
            seconds = ?run.seconds,
            "unit (prefix, candidates, pairs)"
        );
        Ok(run.tallies.iter().map(|t| t.outcome(cc, threshold)).collect())
    }

    /// Whether a flip needs no more evaluations.
    fn done(&self, t: &Tally) -> bool {
        let (cc, threshold) = (self.ctx.clean.correct_count, self.ctx.threshold);
        t.exact() || (!self.ctx.exact_rad && t.closed(cc, threshold))
    }

    fn timed_prefix(&self, cut: &Cut, s0: usize, s1: usize, run: &mut Run) -> Result<Rc<Env>> {
        let t = std::time::Instant::now();
        let env = self.prefix(cut, s0, s1);
        run.seconds[0] += t.elapsed().as_secs_f64();
        env
    }

    /// The candidate samples of samples `s0..s1` (whose clean values `env`
    /// holds) for each flip not yet done (none for the others); every other
    /// sample of the segment is recorded as unchanged.
    fn segment_candidates(
        &self,
        cut: &Cut,
        u: &UnitFlips,
        env: &Env,
        (s0, s1): (usize, usize),
        run: &mut Run,
    ) -> Result<Vec<Cand>> {
        let t = std::time::Instant::now();
        // Exact verdicts take every flip's candidates up front (none is done yet).
        let lazy = self.ctx.sequential.is_some();
        let open: Vec<usize> = (0..u.flips.len())
            .filter(|&f| !lazy || !self.done(&run.tallies[f]))
            .collect();
        let flips: Vec<Flip> = open.iter().map(|&f| u.flips[f]).collect();
        let values: Vec<(f32, f32)> = open.iter().map(|&f| u.values[f]).collect();
        let sub = UnitFlips {
            flips: &flips,
            values: &values,
            tensor: u.tensor,
        };
        let chunk = candidates::Chunk { env, s0, s1 };
        let mut found = vec![];
        if !open.is_empty() {
            found = self.candidates(cut, &sub, &chunk)?;
            if let Some(lin) = &cut.linear {
                self.certify(cut, lin, &sub, &chunk, &mut found)?;
            }
        }
        run.seconds[1] += t.elapsed().as_secs_f64();
        let was = &run.was[s0..s1];
        let correct = was.iter().filter(|&&w| w).count() as i64;
        let mut out: Vec<Cand> = u.flips.iter().map(|_| Cand::List(vec![])).collect();
        for (&f, c) in open.iter().zip(found) {
            let cand_correct = (0..c.len()).filter(|&k| was[c.get(k) as usize]).count() as i64;
            let cand_wrong = c.len() as i64 - cand_correct;
            run.tallies[f].unchanged(correct - cand_correct, (s1 - s0) as i64 - correct - cand_wrong);
            out[f] = c;
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            let mut per_bit = [0usize; 32];
            for (f, c) in u.flips.iter().zip(&out) {
                per_bit[f.bit as usize] += c.len();
            }
            tracing::debug!(chunk = s0, flips = open.len(), ?per_bit, "candidate pairs");
        }
        Ok(out)
    }

    /// Evaluates the candidate pairs of segment `s0..` in rounds: each flip
    /// not yet done takes its next candidates (all of them for exact RAD,
    /// else about as many as could settle its verdict), all stacked into
    /// batches, until no flip has any left or needs them.
    fn evaluate(&self, cut: &Cut, u: &UnitFlips, env: &Env, s0: usize, cand: &[Cand], run: &mut Run) -> Result<()> {
        let (cc, threshold) = (self.ctx.clean.correct_count, self.ctx.threshold);
        let mut cursor = vec![0usize; u.flips.len()];
        loop {
            let (mut f_idx, mut s_rel) = (vec![], vec![]);
            for (f, t) in run.tallies.iter().enumerate() {
                let left = cand[f].len() - cursor[f];
                if left == 0 || self.done(t) {
                    continue;
                }
                let take = if self.ctx.exact_rad {
                    left
                } else {
                    (t.to_settle(cc, threshold).max(MIN_ROUND) as usize).min(left)
                };
                for k in cursor[f]..cursor[f] + take {
                    f_idx.push(f as i64);
                    s_rel.push(cand[f].get(k) as i64);
                }
                cursor[f] += take;
            }
            if f_idx.is_empty() {
                return Ok(());
            }
            for (fb, sb) in f_idx
                .chunks(cut.max_pairs as usize)
                .zip(s_rel.chunks(cut.max_pairs as usize))
            {
                let pairs = Pairs {
                    f_idx: fb,
                    s_rel: &Tensor::from_slice(sb),
                    s0,
                };
                let t = std::time::Instant::now();
                let faulty = Vec::<bool>::try_from(self.eval_pairs(cut, u, env, &pairs)?)?;
                run.seconds[2] += t.elapsed().as_secs_f64();
                run.evaluated += fb.len();
                for ((&f, &s), &is) in fb.iter().zip(sb).zip(&faulty) {
                    run.tallies[f as usize].observe(run.was[s0 + s as usize], is);
                }
            }
        }
    }
}
