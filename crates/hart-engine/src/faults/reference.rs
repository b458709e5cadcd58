//! The brute-force loop, kept as the definition of a flip's effect: flip,
//! full forward over all N images in fixed batches, count correct, restore.
//! Every faster engine is tested against it.

use super::engine::{with_flip, Ctx, Engine};
use super::space::{Flip, FlipSpace};
use super::verdict::Outcome;
use crate::error::Result;
use crate::model::Mode;

pub struct Reference<'a> {
    pub ctx: Ctx<'a>,
}

impl Engine for Reference<'_> {
    fn run(&mut self, space: &FlipSpace, flips: &[Flip], values: &[(f32, f32)]) -> Result<Vec<Outcome>> {
        let ctx = &self.ctx;
        flips
            .iter()
            .zip(values.iter().copied())
            .map(|(f, (old, new))| {
                let tensor = &space.targets[f.target].tensor;
                let correct = with_flip(tensor, f.index, old, new, || {
                    let mut correct = 0;
                    for start in (0..ctx.data.len()).step_by(ctx.batch) {
                        let end = (start + ctx.batch).min(ctx.data.len());
                        let (x, y) = ctx.images(start, end)?;
                        let logits = tch::no_grad(|| ctx.model.forward(&x, Mode::Eval))?;
                        correct += ctx
                            .clean
                            .policy
                            .correct(&logits, &y)
                            .sum(tch::Kind::Int64)
                            .f_int64_value(&[])?;
                    }
                    Ok(correct)
                })?;
                Ok(Outcome::exact(ctx.clean.correct_count, correct, ctx.data.len() as i64))
            })
            .collect()
    }
}
