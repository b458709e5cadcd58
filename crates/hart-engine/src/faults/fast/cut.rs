//! The first stage for each tensor: where its flips enter the graph (the
//! cut at its first consumer), which shortcuts apply there (structured
//! delta, bound, channel-sparse path, exact-chain test, linear-region
//! certificate), and how many images and pairs fit in memory at once.

use std::rc::Rc;

use tch::Tensor;

use super::candidates::Scalar;
use super::delta::delta_kind;
use super::linear::Linear;
use super::plan::{plan, Plan};
use super::sparse::{self, Sparse};
use super::{bound, Cut, Fast, CACHE_BYTES, PAIR_BYTES};
use crate::error::Result;
use crate::model::Mode;

fn numel(t: &Option<Tensor>) -> i64 {
    t.as_ref().map_or(0, |t| t.numel() as i64)
}

/// The cached values a cut reads: the dense path's and the sparse path's.
pub(super) fn keep(plan: &Plan, c: usize, sparse: Option<&Sparse>) -> Vec<usize> {
    let mut keep: Vec<usize> = plan.gather.iter().chain(&plan.statics).copied().chain([c]).collect();
    if let Some(sp) = sparse {
        keep.extend(sp.plan.gather.iter().chain(&sp.plan.statics).copied());
        keep.extend([sp.end(c), sp.d]);
    }
    keep.sort_unstable();
    keep.dedup();
    keep
}

impl Fast<'_> {
    /// Every value of a clean pass on one image: shapes and bound inputs.
    fn env1(&mut self) -> Result<&[Option<Tensor>]> {
        if self.env1.is_none() {
            let (x, _) = self.ctx.images(0, 1)?;
            let mut env: Vec<Option<Tensor>> = (0..self.gm.graph.nodes.len()).map(|_| None).collect();
            let _ = tch::no_grad(|| self.gm.graph.forward_from(&self.gm.params, &x, 0, &mut env, Mode::Eval))?;
            self.env1 = Some(env);
        }
        Ok(self.env1.as_deref().unwrap_or_default())
    }

    pub(super) fn cut(&mut self, name: &str) -> Result<Option<Rc<Cut>>> {
        if let Some(c) = self.cuts.get(name) {
            return Ok(c.clone());
        }
        let t = std::time::Instant::now();
        let cut = self.build_cut(name)?.map(Rc::new);
        tracing::debug!(tensor = name, seconds = t.elapsed().as_secs_f64(), "cut built");
        if cut.is_none() {
            tracing::info!(tensor = name, "no cut point: generic engine");
        }
        self.cuts.insert(name.to_string(), cut.clone());
        Ok(cut)
    }

    fn build_cut(&mut self, name: &str) -> Result<Option<Cut>> {
        let graph = &self.gm.graph;
        let Some(c) = graph.first_consumer(name) else {
            return Ok(None);
        };
        let Some(plan) = plan(graph, &self.ax, c) else {
            return Ok(None);
        };
        let shape = self.gm.params.get(name)?.size();
        if self.abs.is_none() {
            self.abs = Some(bound::abs_store(&self.gm.params)?);
        }
        self.env1()?;
        let (env1, abs) = (self.env1.as_deref().unwrap_or_default(), self.abs.as_ref());
        let rank = |v: usize| env1[v].as_ref().map_or(0, |t| t.dim());
        let node = &graph.nodes[c];
        let delta = delta_kind(&node.op, &node.inputs, name, rank(c), rank, &shape);
        let g = match (delta.structured(), abs) {
            (true, Some(abs)) => bound::sensitivity(graph, abs, env1, &self.ax, c)?,
            _ => None,
        };
        let mut sparse = sparse::find(graph, &self.ax, c, &delta, rank);
        if let Some(sp) = sparse.as_mut() {
            // `d`'s own input is never needed whole: its change comes from the slice.
            let own = &graph.nodes[sp.d].inputs;
            sp.plan.gather.retain(|v| !own.contains(v));
        }
        // A tangent pass costs about one dense evaluation of a pair: it pays
        // where pairs are evaluated densely, not where the sparse path or the
        // exact-chain test makes them cheap (measured: LeNet-5 and the MLP
        // ran at half speed with it).
        let linear = match (delta.structured(), &sparse) {
            (true, None) => Linear::new(graph, &self.gm.params, &self.ax, c, |v| {
                env1[v].as_ref().map(Tensor::size)
            })?,
            _ => None,
        };
        let kept = keep(&plan, c, sparse.as_ref());
        // The certificate keeps the clean ReLU inputs after the cut per chunk too.
        let suffix = match (&linear, self.ctx.clean.values.is_empty()) {
            (Some(lin), true) => lin.clean_inputs.clone(),
            _ => vec![],
        };
        let cached: i64 = kept.iter().chain(&suffix).map(|&v| numel(&env1[v])).sum::<i64>() * 4;
        let per_pair: i64 = plan
            .gather
            .iter()
            .chain([&c])
            .chain(&plan.after)
            .map(|&v| numel(&env1[v]))
            .sum::<i64>()
            * 4;
        let scalar = match (&g, &sparse, abs) {
            (Some(_), Some(sp), Some(abs)) if rank(c) == 2 => {
                match bound::sensitivity(graph, abs, env1, &self.ax, sp.end(c))? {
                    Some(g_end) => Scalar::new(graph, &sp.chain, &g_end)?,
                    None => None,
                }
            }
            _ => None,
        };
        tracing::debug!(tensor = name, cut = %node.name, ?delta, bound = g.is_some(), sparse = ?sparse.as_ref().map(|s| s.d), scalar = scalar.is_some(), linear = linear.is_some(), "cut");
        Ok(Some(Cut {
            sparse,
            scalar,
            linear,
            chunk: (CACHE_BYTES / cached.max(1)).clamp(1, self.ctx.clean.n as i64) as usize,
            cached_per_image: cached,
            max_pairs: (PAIR_BYTES / per_pair.max(1)).clamp(16, 8192),
            plan,
            delta,
            g,
        }))
    }
}
