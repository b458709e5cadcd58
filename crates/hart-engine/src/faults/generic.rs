//! The structure-free engine (TorchScript models, and graph tensors the fast
//! engine cannot cut at): the reference loop plus the one speed-up that needs
//! no structure, stopping once the remaining batches cannot change the verdict.

use super::engine::{with_flip, Ctx, Engine};
use super::space::{Flip, FlipSpace};
use super::verdict::{Outcome, Tally};
use crate::error::Result;

pub struct Generic<'a> {
    pub ctx: Ctx<'a>,
}

impl Engine for Generic<'_> {
    fn run(&mut self, space: &FlipSpace, flips: &[Flip], values: &[(f32, f32)]) -> Result<Vec<Outcome>> {
        flips
            .iter()
            .zip(values.iter().copied())
            .map(|(f, (old, new))| {
                let tensor = &space.targets[f.target].tensor;
                with_flip(tensor, f.index, old, new, || one_flip(&self.ctx))
            })
            .collect()
    }
}

/// Counts batch by batch with the flip applied (cut at the sequential
/// rule's looks), until the verdict is closed.
pub fn one_flip(ctx: &Ctx) -> Result<Outcome> {
    let (cc, threshold) = (ctx.clean.correct_count, ctx.threshold);
    let n = ctx.data.len();
    let mut tally = Tally::new(cc, n as i64);
    for start in (0..n).step_by(ctx.batch) {
        let end = (start + ctx.batch).min(n);
        let parts = ctx.sequential.map_or(vec![(start, end)], |sq| sq.segments(start, end));
        for (s0, s1) in parts {
            if !ctx.exact_rad && tally.closed(cc, threshold) {
                return Ok(tally.outcome(cc, threshold));
            }
            let clean = ctx.clean.correct.narrow(0, s0 as i64, (s1 - s0) as i64);
            let faulty = Vec::<bool>::try_from(ctx.correct_on(s0, s1)?)?;
            for (was, is) in Vec::<bool>::try_from(clean)?.into_iter().zip(faulty) {
                tally.observe(was, is);
            }
            if let Some(sq) = ctx.sequential.filter(|sq| sq.looks_at(s1)) {
                tally.look(cc, threshold, sq.alpha);
            }
        }
    }
    Ok(tally.outcome(cc, threshold))
}
