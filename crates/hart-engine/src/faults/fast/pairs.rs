//! The last stage: the faulty correctness of a stacked batch of (flip,
//! sample) pairs, through the channel-sparse path or the dense one (the
//! cut's faulty output from a structured delta, or `c` re-run with the flip).

use tch::{Device, Kind, Tensor};

use super::plan::Plan;
use super::sparse::Sparse;
use super::{Cut, Env, Fast, UnitFlips};
use crate::error::{HartError, Result};
use crate::faults::engine::with_flip;
use crate::model::Mode;

/// A batch of (flip, sample) pairs: flip `f_idx[p]` of the unit on chunk
/// sample `s_rel[p]`, the chunk starting at image `s0`.
#[derive(Clone, Copy)]
pub(super) struct Pairs<'p> {
    pub(super) f_idx: &'p [i64],
    pub(super) s_rel: &'p Tensor,
    pub(super) s0: usize,
}

impl Fast<'_> {
    /// Faulty correctness of pairs (flip `f_idx[p]`, chunk sample `s_rel[p]`):
    /// the sparse path for finite flips where the cut has one, the dense
    /// path for the rest.
    pub(super) fn eval_pairs(&self, cut: &Cut, u: &UnitFlips, env: &[Option<Tensor>], pairs: &Pairs) -> Result<Tensor> {
        let Pairs { f_idx, s_rel, s0 } = *pairs;
        let Some(sp) = cut.sparse.as_ref() else {
            return self.dense_pairs(cut, u, env, pairs);
        };
        let finite: Vec<bool> = f_idx.iter().map(|&f| u.values[f as usize].1.is_finite()).collect();
        if !finite.contains(&false) {
            return self.sparse_pairs(cut, sp, u, env, pairs);
        }
        let mut out = Tensor::zeros([f_idx.len() as i64], (Kind::Bool, Device::Cpu));
        for want in [true, false] {
            let pos: Vec<i64> = (0..f_idx.len() as i64)
                .filter(|&p| finite[p as usize] == want)
                .collect();
            if pos.is_empty() {
                continue;
            }
            let sub_f: Vec<i64> = pos.iter().map(|&p| f_idx[p as usize]).collect();
            let sub_s = s_rel.index_select(0, &Tensor::from_slice(&pos));
            let sub = Pairs {
                f_idx: &sub_f,
                s_rel: &sub_s,
                s0,
            };
            let got = if want {
                self.sparse_pairs(cut, sp, u, env, &sub)?
            } else {
                self.dense_pairs(cut, u, env, &sub)?
            };
            let _ = out.f_index_copy_(0, &Tensor::from_slice(&pos), &got)?;
        }
        Ok(out)
    }

    /// Rows `s` of cached value `v`, channel `channels[p]` of row `p` only: `[P, 1, …]`.
    fn channel_rows(&self, env: &[Option<Tensor>], v: usize, s: &Tensor, channels: &[i64]) -> Result<Tensor> {
        let t = env[v]
            .as_ref()
            .ok_or_else(|| HartError::Model(format!("fast engine: value {v} not cached")))?;
        let size = t.size();
        let ch = Tensor::from_slice(channels).to_device(t.device());
        let rows = s * size[1] + ch;
        let mut shape = size.clone();
        shape[0] = channels.len() as i64;
        shape[1] = 1;
        Ok(t.f_reshape([size[0] * size[1], -1])?
            .f_index_select(0, &rows)?
            .f_reshape(shape.as_slice())?)
    }

    fn sparse_pairs(
        &self,
        cut: &Cut,
        sp: &Sparse,
        u: &UnitFlips,
        env: &[Option<Tensor>],
        pairs: &Pairs,
    ) -> Result<Tensor> {
        let Pairs { f_idx, s_rel, s0 } = *pairs;
        let graph = &self.gm.graph;
        let (c, dev) = (cut.plan.c, self.ctx.device);
        let s_dev = s_rel.to_device(dev);
        let elements: Vec<i64> = f_idx.iter().map(|&f| u.flips[f as usize].index).collect();
        let deltas: Vec<f32> = f_idx.iter().map(|&f| u.delta32(f as usize)).collect();
        let channels: Vec<i64> = elements.iter().map(|&e| cut.delta.channel(e)).collect();
        let out_shape = env[c]
            .as_ref()
            .ok_or_else(|| HartError::Model("fast engine: cut value missing".into()))?
            .size();
        let change = cut.delta.change(&out_shape, env, &s_dev, &elements, &deltas)?;
        let (mut genv, gx) = self.gather(&sp.plan, env, &s_dev);
        let change = if sp.chain.is_empty() {
            change
        } else {
            let faulty = self.channel_rows(env, c, &s_dev, &channels)? + change;
            let end = sp.run_chain(graph, &self.gm.params, &gx, faulty)?;
            end - self.channel_rows(env, sp.end(c), &s_dev, &channels)?
        };
        let clean_d = env[sp.d]
            .as_ref()
            .ok_or_else(|| HartError::Model("fast engine: dense layer value missing".into()))?
            .index_select(0, &s_dev);
        graph.forward_nodes(
            &self.gm.params,
            &gx,
            sp.plan.shapes.iter().copied(),
            &mut genv,
            Mode::Eval,
        )?;
        genv[sp.d] = Some(sp.densify(graph, &self.gm.params, &clean_d, &channels, &change)?);
        graph.forward_nodes(
            &self.gm.params,
            &gx,
            sp.plan.after.iter().copied(),
            &mut genv,
            Mode::Eval,
        )?;
        self.correct_of(&genv, s_rel, s0)
    }

    fn correct_of(&self, genv: &[Option<Tensor>], s_rel: &Tensor, s0: usize) -> Result<Tensor> {
        let logits = genv[self.gm.graph.output]
            .as_ref()
            .ok_or_else(|| HartError::Model("fast engine: logits not computed".into()))?;
        let labels = self
            .ctx
            .clean
            .labels
            .index_select(0, &(s_rel + s0 as i64))
            .to_device(self.ctx.device);
        Ok(self.ctx.clean.policy.correct(logits, &labels).to_device(Device::Cpu))
    }

    /// The values the nodes after `plan`'s cut read, gathered for the pairs'
    /// samples `s_dev`, and the input to pass along (any rows: only shape ops read it).
    pub(super) fn gather(&self, plan: &Plan, env: &[Option<Tensor>], s_dev: &Tensor) -> (Env, Tensor) {
        let mut genv: Env = (0..self.gm.graph.nodes.len()).map(|_| None).collect();
        for &v in &plan.gather {
            genv[v] = env[v].as_ref().map(|t| t.index_select(0, s_dev));
        }
        for &v in &plan.statics {
            genv[v] = env[v].as_ref().map(|t| t.shallow_clone());
        }
        let x = genv[0].as_ref().map_or_else(
            || Tensor::zeros([1], (Kind::Float, self.ctx.device)),
            |t| t.shallow_clone(),
        );
        (genv, x)
    }

    /// The dense path: `c`'s whole faulty output, then every node after it.
    fn dense_pairs(&self, cut: &Cut, u: &UnitFlips, env: &[Option<Tensor>], pairs: &Pairs) -> Result<Tensor> {
        let Pairs { f_idx, s_rel, s0 } = *pairs;
        let graph = &self.gm.graph;
        let plan = &cut.plan;
        let dev = self.ctx.device;
        let s_dev = s_rel.to_device(dev);
        let (mut genv, x) = self.gather(plan, env, &s_dev);
        graph.forward_nodes(&self.gm.params, &x, plan.shapes.iter().copied(), &mut genv, Mode::Eval)?;
        let clean_c = env[plan.c]
            .as_ref()
            .ok_or_else(|| HartError::Model("fast engine: cut value missing".into()))?
            .index_select(0, &s_dev);
        let structured = cut.delta.structured();
        let out = if structured {
            let elements: Vec<i64> = f_idx.iter().map(|&f| u.flips[f as usize].index).collect();
            let deltas: Vec<f32> = f_idx.iter().map(|&f| u.delta32(f as usize)).collect();
            cut.delta.apply(&clean_c, env, &s_dev, &elements, &deltas)?
        } else {
            clean_c
        };
        // Runs of one flip: re-run `c` with the flip applied where no delta
        // rule applies or the new value is not finite (∞·0 must come out as
        // the real kernel computes it).
        let mut p0 = 0;
        while p0 < f_idx.len() {
            let f = f_idx[p0] as usize;
            let p1 = p0 + f_idx[p0..].iter().take_while(|&&g| g as usize == f).count();
            let (old, new) = u.values[f];
            if !structured || !new.is_finite() {
                // This flip's rows only; shape values are recomputed for that many rows.
                let mut env2: Vec<Option<Tensor>> = (0..graph.nodes.len()).map(|_| None).collect();
                for &v in &plan.gather {
                    env2[v] = genv[v].as_ref().map(|t| t.narrow(0, p0 as i64, (p1 - p0) as i64));
                }
                for &v in &plan.statics {
                    env2[v] = genv[v].as_ref().map(|t| t.shallow_clone());
                }
                let ids: Vec<usize> = plan.shapes.iter().copied().chain([plan.c]).collect();
                with_flip(u.tensor, u.flips[f].index, old, new, || {
                    graph.forward_nodes(&self.gm.params, &x, ids, &mut env2, Mode::Eval)
                })?;
                if let Some(y) = &env2[plan.c] {
                    out.narrow(0, p0 as i64, (p1 - p0) as i64).copy_(y);
                }
            }
            p0 = p1;
        }
        genv[plan.c] = Some(out);
        graph.forward_nodes(&self.gm.params, &x, plan.after.iter().copied(), &mut genv, Mode::Eval)?;
        self.correct_of(&genv, s_rel, s0)
    }
}
