//! The second stage: the clean values crossing a cut for a chunk (or
//! segment) of images, cached within [`CACHE_BYTES`] and continued from the
//! last clean pass where it already ran past the earlier layers.

use std::rc::Rc;

use tch::Tensor;

use super::cut::keep;
use super::{Cut, Env, Fast, PrefixKey, CACHE_BYTES};
use crate::error::Result;
use crate::faults::axes::Axis;
use crate::model::graph::Graph;
use crate::model::Mode;

/// The last node that reads each value.
pub(super) fn last_use(graph: &Graph) -> Vec<usize> {
    let mut last = vec![0; graph.nodes.len()];
    for (u, node) in graph.nodes.iter().enumerate() {
        for &v in &node.inputs {
            last[v] = u;
        }
    }
    last
}

impl Fast<'_> {
    /// Clean values of nodes `0..=c` (`0..=d` with a sparse path) on images
    /// `s0..s1`, keeping what the cut needs.
    pub(super) fn prefix(&self, cut: &Cut, s0: usize, s1: usize) -> Result<Rc<Env>> {
        let key = (cut.plan.c, cut.sparse.as_ref().map(|sp| sp.d), s0, s1);
        if let Some((_, env)) = self.prefixes.borrow().iter().find(|(k, _)| *k == key) {
            return Ok(env.clone());
        }
        {
            // Free what the new prefix would not fit beside before computing it.
            let mut cache = self.prefixes.borrow_mut();
            cache.retain(|(k, _)| (k.0, k.1) == (key.0, key.1));
            let bytes = |k: &PrefixKey| (k.3 - k.2) as i64 * cut.cached_per_image;
            let mut held: i64 = cache.iter().map(|(k, _)| bytes(k)).sum();
            while !cache.is_empty() && held + bytes(&key) > CACHE_BYTES {
                held -= bytes(&cache.remove(0).0);
            }
        }
        let env = Rc::new(self.compute_prefix(cut, s0, s1)?);
        self.prefixes.borrow_mut().push((key, env.clone()));
        Ok(env)
    }

    fn compute_prefix(&self, cut: &Cut, s0: usize, s1: usize) -> Result<Env> {
        let (x, _) = self.ctx.images(s0, s1)?;
        let graph = &self.gm.graph;
        let keep = keep(&cut.plan, cut.plan.c, cut.sparse.as_ref());
        let stored = &self.ctx.clean.values;
        if !stored.is_empty() {
            // Batched values from the clean pass; the few static ones (weights
            // and what is computed from them alone) evaluated here.
            let mut env: Env = (0..graph.nodes.len()).map(|_| None).collect();
            let last = keep.iter().copied().max().unwrap_or(0);
            let statics = (0..=last).filter(|&v| self.ax[v] == Axis::Static);
            tch::no_grad(|| graph.forward_nodes(&self.gm.params, &x, statics, &mut env, Mode::Eval))?;
            return Ok((0..graph.nodes.len())
                .map(|v| match (keep.contains(&v), &stored[v]) {
                    (false, _) => None,
                    (true, Some(t)) => Some(t.narrow(0, s0 as i64, (s1 - s0) as i64)),
                    (true, None) => env[v].take(),
                })
                .collect());
        }
        let mut env: Vec<Option<Tensor>> = (0..graph.nodes.len()).map(|_| None).collect();
        let last = cut.sparse.as_ref().map_or(cut.plan.c, |s| s.d);
        let mut start = 0;
        if let Some((p, range, front)) = self.frontier.borrow_mut().take() {
            // Usable if it holds every earlier value the nodes still to run and
            // the cut read (the cut re-runs shape computations from before `c`).
            let has = |v: &usize| *v > p || front[*v].is_some();
            let reads = (p + 1..=last).flat_map(|u| graph.nodes[u].inputs.iter());
            if range == (s0, s1) && p < cut.plan.c && keep.iter().all(has) && reads.into_iter().all(has) {
                env = front;
                start = p + 1;
            }
        }
        let ids: Vec<usize> = (start..=last).collect();
        let needed = |v: usize| self.last_use[v] > last || keep.contains(&v);
        tch::no_grad(|| graph.forward_nodes_freeing(&self.gm.params, &x, &ids, &mut env, Mode::Eval, needed))?;
        let front: Env = env
            .iter()
            .enumerate()
            .map(|(v, t)| {
                if self.last_use[v] > last {
                    t.as_ref().map(Tensor::shallow_clone)
                } else {
                    None
                }
            })
            .collect();
        *self.frontier.borrow_mut() = Some((last, (s0, s1), front));
        Ok(env
            .into_iter()
            .enumerate()
            .map(|(v, t)| if keep.contains(&v) { t } else { None })
            .collect())
    }
}
