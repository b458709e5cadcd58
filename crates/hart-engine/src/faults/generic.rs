//! The structure-free engine (TorchScript models, and graph tensors the fast
//! engine cannot cut at): the reference loop plus the one speed-up that needs
//! no structure, stopping once the remaining batches cannot change the verdict.

use tch::Kind;

use super::engine::{lost, with_flip, Ctx, Engine, Outcome};
use super::space::{Flip, FlipSpace};
use super::verdict::Tally;
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

/// Counts batch by batch with the flip applied.
pub fn one_flip(ctx: &Ctx) -> Result<Outcome> {
    let cc = ctx.clean.correct_count;
    let n = ctx.data.len() as i64;
    let mut tally = Tally {
        lost: 0,
        open_correct: cc,
        open_wrong: n - cc,
    };
    for start in (0..ctx.data.len()).step_by(ctx.batch) {
        if !ctx.exact_rad && tally.decided(cc, ctx.threshold) {
            break;
        }
        let end = (start + ctx.batch).min(ctx.data.len());
        let clean = ctx.clean.correct.narrow(0, start as i64, (end - start) as i64);
        let faulty = ctx.correct_on(start, end)?;
        let was_correct = clean.sum(Kind::Int64).f_int64_value(&[])?;
        tally.lost += lost(&clean, &faulty)?;
        tally.open_correct -= was_correct;
        tally.open_wrong -= (end - start) as i64 - was_correct;
    }
    Ok(Outcome {
        correct: tally.correct(cc),
        exact: tally.exact(),
    })
}
