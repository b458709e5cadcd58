//! Which engine a sweep runs: the choice on the command line and the
//! factory that builds it over an evaluation context.

use serde::{Deserialize, Serialize};

use super::engine::{Ctx, Engine};
use super::fast;
use super::generic::Generic;
use super::reference::Reference;
use crate::error::{HartError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// The fast engine where the graph allows it, the generic one elsewhere.
    Auto,
    /// Flip in place, full forward, early exit: no structure needed.
    Generic,
    /// The brute-force loop (no early exit): slow, the definition.
    Reference,
}

impl std::str::FromStr for EngineKind {
    type Err = HartError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(EngineKind::Auto),
            "generic" => Ok(EngineKind::Generic),
            "reference" => Ok(EngineKind::Reference),
            _ => Err(HartError::Invalid(format!(
                "unknown engine {s:?} (auto, generic or reference)"
            ))),
        }
    }
}

impl EngineKind {
    /// This kind's engine over `ctx` (the fast one only for graph models).
    pub fn build(self, ctx: Ctx<'_>) -> Box<dyn Engine + '_> {
        match (self, ctx.model.graph()) {
            (EngineKind::Reference, _) => Box::new(Reference { ctx }),
            (EngineKind::Auto, Some(gm)) => Box::new(fast::Fast::new(ctx, gm)),
            _ => Box::new(Generic { ctx }),
        }
    }
}
