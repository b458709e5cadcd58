//! The fast engine for graph models (placeholder: generic until the cut engine lands).

use super::engine::{Ctx, Engine, Outcome};
use super::generic::Generic;
use super::space::{Flip, FlipSpace};
use crate::error::Result;

pub struct Fast<'a> {
    generic: Generic<'a>,
}

impl<'a> Fast<'a> {
    pub fn new(ctx: Ctx<'a>) -> Self {
        Fast {
            generic: Generic { ctx },
        }
    }
}

impl Engine for Fast<'_> {
    fn run(&mut self, space: &FlipSpace, flips: &[Flip]) -> Result<Vec<Outcome>> {
        self.generic.run(space, flips)
    }
}
