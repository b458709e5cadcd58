//! The fast engine for graph models. Per tensor it cuts the graph at the
//! tensor's first consumer `c`, caches the clean values crossing the cut for
//! a chunk of images, and then, per round of samples:
//! - proves (flip, sample) pairs unaffected with the bound of [`bound`]
//!   (|δ|·A < margin, with slack for rounding) and, where pairs are
//!   evaluated densely, with the linear-region certificate of [`linear`]:
//!   those keep their clean outcome;
//! - stacks the remaining pairs of many flips along the batch dimension,
//!   builds `c`'s faulty output from its clean one with a structured delta
//!   ([`delta`]) or by re-running `c` with the flip applied, and runs only
//!   the nodes after `c`;
//! - stops a flip once its erratic verdict is settled (unless `exact_rad`),
//!   surely or, with sequential verdicts, at the stated confidence.
//!
//! Tensors whose cut cannot be gathered row by row use the generic engine.
//!
//! One file per stage of a unit: [`cut`] (where and how a tensor's flips
//! enter the graph), [`prefix`] (the clean values crossing the cut),
//! [`rounds`] (candidates and rounds until each verdict settles) and
//! [`pairs`] (the faulty outcome of a batch of pairs).

pub mod bound;
mod candidates;
mod certify;
mod cut;
pub mod delta;
mod linear;
mod pairs;
pub mod plan;
mod prefix;
mod rounds;
pub mod sparse;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use tch::Tensor;

use self::candidates::Scalar;
use self::delta::Delta;
use self::linear::Linear;
use self::plan::Plan;
use self::prefix::last_use;
use self::sparse::Sparse;
use super::axes::{axes, Axis};
use super::engine::{Ctx, Engine, EngineStats};
use super::generic::Generic;
use super::space::{Flip, FlipSpace};
use super::verdict::Outcome;
use crate::error::Result;
use crate::model::{GraphModel, ParamStore};

/// Memory for the cached values of one chunk of images.
const CACHE_BYTES: i64 = 384 << 20;
/// Memory for the activations of one stacked batch of pairs: small enough
/// that each buffer stays under the allocator's mmap threshold (32 MiB) and
/// is reused rather than faulted in afresh.
const PAIR_BYTES: i64 = 24 << 20;
/// Fewest candidate samples a flip evaluates per round between early-exit checks.
const MIN_ROUND: i64 = 8;
/// Relative safety factor on the bound (its own float rounding).
const BOUND_SAFETY: f64 = 1.0 + 1.0 / 128.0;

type Env = Vec<Option<Tensor>>;
/// (cut node, dense layer of the sparse path, first sample, end sample) of a cached prefix.
type PrefixKey = (usize, Option<usize>, usize, usize);
/// (last node run, images) of a clean pass and the values later nodes read.
type Frontier = (usize, (usize, usize), Env);
/// (cut node, first sample, end sample, fan-in) of the exact-chain test's inputs.
type ColumnsKey = (usize, usize, usize, i64);
/// (cut node, first sample, end sample) of the certificate's clean values.
type SuffixKey = (usize, usize, usize);

struct Cut {
    plan: Plan,
    delta: Delta,
    /// Sensitivity at `c`'s output, when every op after it has a bound rule.
    g: Option<Tensor>,
    /// Channel-sparse evaluation up to the next dense layer, where the graph allows it.
    sparse: Option<Sparse>,
    /// The exact-chain candidate test, for a 2-D linear cut followed by ReLU/clip ops.
    scalar: Option<Scalar>,
    /// The linear-region certificate, where every op after the cut has a linearisation.
    linear: Option<Linear>,
    chunk: usize,
    /// Bytes a prefix keeps per image.
    cached_per_image: i64,
    max_pairs: i64,
}

pub struct Fast<'a> {
    ctx: Ctx<'a>,
    gm: &'a GraphModel,
    ax: Vec<Axis>,
    abs: Option<ParamStore>,
    env1: Option<Vec<Option<Tensor>>>,
    cuts: HashMap<String, Option<Rc<Cut>>>,
    /// The prefixes of the current cut, keyed by their [`PrefixKey`], oldest
    /// first, within [`CACHE_BYTES`] (a whole chunk's fills it; sequential
    /// verdicts' segments share it): consecutive units of one tensor reuse
    /// them instead of re-running the layers before the cut.
    prefixes: RefCell<Vec<(PrefixKey, Rc<Env>)>>,
    /// The values a clean pass past node `.0` on images `.1` still needs
    /// (those read by later nodes): the next prefix on the same images with a
    /// later cut continues from here instead of from the input. Units come
    /// in graph order, so each worker runs about one clean forward per chunk
    /// however many tensors it visits.
    frontier: RefCell<Option<Frontier>>,
    /// The exact-chain test's inputs for the last (cut, chunk, fan-in) it ran on.
    columns: RefCell<Option<(ColumnsKey, Rc<candidates::Columns>)>>,
    /// The clean ReLU and max-pool inputs after the cut of the certificate's
    /// last clean pass, by (cut, first sample, end sample); later cuts on
    /// the same images reuse them.
    suffix_cache: RefCell<Option<(SuffixKey, Rc<Env>)>>,
    /// The last node that reads each value.
    last_use: Vec<usize>,
    stats: Cell<EngineStats>,
    generic: Generic<'a>,
}

impl<'a> Fast<'a> {
    pub fn new(ctx: Ctx<'a>, gm: &'a GraphModel) -> Self {
        Fast {
            ctx,
            gm,
            ax: axes(&gm.graph),
            abs: None,
            env1: None,
            cuts: HashMap::new(),
            prefixes: RefCell::new(vec![]),
            frontier: RefCell::new(None),
            columns: RefCell::new(None),
            suffix_cache: RefCell::new(None),
            last_use: last_use(&gm.graph),
            stats: Cell::new(EngineStats::default()),
            generic: Generic { ctx },
        }
    }
}

impl Fast<'_> {
    fn count(&self, add: impl FnOnce(&mut EngineStats)) {
        let mut s = self.stats.get();
        add(&mut s);
        self.stats.set(s);
    }
}

/// What is fixed for one unit's flips.
struct UnitFlips<'u> {
    flips: &'u [Flip],
    values: &'u [(f32, f32)],
    tensor: &'u Tensor,
}

impl UnitFlips<'_> {
    fn delta32(&self, f: usize) -> f32 {
        let (old, new) = self.values[f];
        if new.is_finite() {
            new - old
        } else {
            0.0
        }
    }
}

impl Engine for Fast<'_> {
    fn run(&mut self, space: &FlipSpace, flips: &[Flip], values: &[(f32, f32)]) -> Result<Vec<Outcome>> {
        let Some(first) = flips.first() else { return Ok(vec![]) };
        let target = &space.targets[first.target];
        let Some(cut) = self.cut(&target.name)? else {
            return self.generic.run(space, flips, values);
        };
        let unit = UnitFlips {
            flips,
            values,
            tensor: &target.tensor,
        };
        let _span = tracing::debug_span!("unit", tensor = %target.name).entered();
        tch::no_grad(|| self.run_cut(&cut, &unit))
    }

    fn stats(&self) -> EngineStats {
        self.stats.get()
    }
}
