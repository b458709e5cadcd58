//! The engine for faults whose recovery rewrites more than the flipped
//! element (RADAR zeroes whole groups), and the evaluation of grouped faults:
//! apply the recovered state, count batch by batch as the generic engine
//! does, restore.
//!
//! A flip's outcome depends only on the state the defence leaves, and RADAR
//! leaves the same state (its group zeroed) for every detected flip of a
//! group, so the faulted engine evaluates each distinct recovered state once:
//! an exponent-MSB sweep under `radar:16` runs about 1/16 of the forward passes.

use std::collections::HashMap;

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
    /// Outcomes by recovered state: the defence's writes, values as bits.
    memo: HashMap<Vec<(usize, usize, u32)>, Outcome>,
}

/// Recovered states the memo holds before it starts afresh, so a sweep of a
/// large model keeps a bounded memory (a few hundred MB at RADAR's 16 writes).
const MEMO_LIMIT: usize = 1 << 20;

impl<'a> Faulted<'a> {
    pub fn new(ctx: Ctx<'a>, inject: &'a Injector) -> Self {
        Faulted {
            ctx,
            inject,
            memo: HashMap::new(),
        }
    }
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
        let mut out = Vec::with_capacity(flips.len());
        for f in bit_faults(space, self.inject, flips)? {
            let mut state: Vec<(usize, usize, u32)> = self
                .inject
                .recover(&[f])?
                .writes
                .iter()
                .map(|&(t, i, v)| (t, i, v.to_bits()))
                .collect();
            state.sort_unstable();
            if let Some(o) = self.memo.get(&state) {
                out.push(*o);
                continue;
            }
            let o = self.inject.with_faults(self.ctx.model, &[f], |_| one_flip(&self.ctx))?;
            if self.memo.len() >= MEMO_LIMIT {
                self.memo.clear();
            }
            self.memo.insert(state, o);
            out.push(o);
        }
        Ok(out)
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
