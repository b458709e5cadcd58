//! The engine for faults whose recovery rewrites more than the flipped
//! element (RADAR zeroes whole groups), and the evaluation of grouped faults:
//! apply the recovered state, count batch by batch as the generic engine
//! does, restore.

use super::defense::Recovery;
use super::engine::{Ctx, Engine};
use super::generic::one_flip;
use super::inject::{BitFault, BitOp, Injector};
use super::space::{Flip, FlipSpace};
use super::verdict::Outcome;
use crate::error::{HartError, Result};

pub struct Faulted<'a> {
    pub ctx: Ctx<'a>,
    pub inject: &'a Injector,
}

/// `flips` as bit faults on the injector's stored tensors.
pub fn bit_faults(space: &FlipSpace, inject: &Injector, flips: &[Flip]) -> Result<Vec<BitFault>> {
    flips
        .iter()
        .map(|f| {
            let name = &space.targets[f.target].name;
            let tensor = inject
                .stored
                .index(name)
                .ok_or_else(|| HartError::Invalid(format!("{name} is not a stored float tensor")))?;
            Ok(BitFault {
                tensor,
                index: f.index as usize,
                bit: f.bit,
                op: BitOp::Flip,
            })
        })
        .collect()
}

impl Engine for Faulted<'_> {
    fn run(&mut self, space: &FlipSpace, flips: &[Flip], _values: &[(f32, f32)]) -> Result<Vec<Outcome>> {
        bit_faults(space, self.inject, flips)?
            .into_iter()
            .map(|f| self.inject.with_faults(self.ctx.model, &[f], |_| one_flip(&self.ctx)))
            .collect()
    }
}

/// The exact outcome of `faults` applied together, and what the defence did.
pub fn group_outcome(ctx: &Ctx, inject: &Injector, faults: &[BitFault]) -> Result<(Outcome, Recovery)> {
    let exact = Ctx {
        exact_rad: true,
        ..*ctx
    };
    inject.with_faults(ctx.model, faults, |rec| Ok((one_flip(&exact)?, rec.clone())))
}
