//! The fast engine for graph models. Per tensor it cuts the graph at the
//! tensor's first consumer `c`, caches the clean values crossing the cut for
//! a chunk of images, and then, per round of samples:
//! - proves (flip, sample) pairs unaffected with the bound of [`bound`]
//!   (|δ|·A < margin, with slack for rounding): those keep their clean outcome;
//! - stacks the remaining pairs of many flips along the batch dimension,
//!   builds `c`'s faulty output from its clean one with a structured delta
//!   ([`delta`]) or by re-running `c` with the flip applied, and runs only
//!   the nodes after `c`;
//! - stops a flip once its erratic verdict is settled (unless `exact_rad`).
//!
//! Tensors whose cut cannot be gathered row by row use the generic engine.

pub mod bound;
pub mod delta;
pub mod plan;

use std::collections::HashMap;
use std::rc::Rc;

use tch::{Device, Kind, Tensor};

use self::delta::{delta_kind, Delta};
use self::plan::{axes, plan, Axis, Plan};
use super::engine::{old_new, with_flip, Ctx, Engine, Outcome};
use super::generic::Generic;
use super::space::{Flip, FlipSpace};
use super::verdict::Tally;
use crate::error::{HartError, Result};
use crate::eval::correct_mask;
use crate::model::{GraphModel, Mode, ParamStore};

/// Memory for the cached values of one chunk of images.
const CACHE_BYTES: i64 = 384 << 20;
/// Memory for the activations of one stacked batch of pairs.
const PAIR_BYTES: i64 = 192 << 20;
/// Samples per round between early-exit checks.
const ROUND: usize = 512;
/// Relative safety factor on the bound (its own float rounding).
const BOUND_SAFETY: f64 = 1.0 + 1.0 / 128.0;

struct Cut {
    plan: Plan,
    delta: Delta,
    /// Sensitivity at `c`'s output, when every op after it has a bound rule.
    g: Option<Tensor>,
    chunk: usize,
    max_pairs: i64,
}

pub struct Fast<'a> {
    ctx: Ctx<'a>,
    gm: &'a GraphModel,
    ax: Vec<Axis>,
    abs: Option<ParamStore>,
    env1: Option<Vec<Option<Tensor>>>,
    cuts: HashMap<String, Option<Rc<Cut>>>,
    generic: Generic<'a>,
}

fn numel(t: &Option<Tensor>) -> i64 {
    t.as_ref().map_or(0, |t| t.numel() as i64)
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
            generic: Generic { ctx },
        }
    }

    /// Every value of a clean pass on one image: shapes and bound inputs.
    fn env1(&mut self) -> Result<&[Option<Tensor>]> {
        if self.env1.is_none() {
            let (x, _) = self.ctx.images(0, 1);
            let mut env: Vec<Option<Tensor>> = (0..self.gm.graph.nodes.len()).map(|_| None).collect();
            let _ = tch::no_grad(|| self.gm.graph.forward_from(&self.gm.params, &x, 0, &mut env, Mode::Eval))?;
            self.env1 = Some(env);
        }
        Ok(self.env1.as_deref().unwrap_or_default())
    }

    fn cut(&mut self, name: &str) -> Result<Option<Rc<Cut>>> {
        if let Some(c) = self.cuts.get(name) {
            return Ok(c.clone());
        }
        let cut = self.build_cut(name)?.map(Rc::new);
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
        let cached: i64 = plan.gather.iter().chain([&c]).map(|&v| numel(&env1[v])).sum::<i64>() * 4;
        let per_pair: i64 = plan
            .gather
            .iter()
            .chain([&c])
            .chain(&plan.after)
            .map(|&v| numel(&env1[v]))
            .sum::<i64>()
            * 4;
        tracing::debug!(tensor = name, cut = %node.name, ?delta, bound = g.is_some(), "cut");
        Ok(Some(Cut {
            chunk: (CACHE_BYTES / cached.max(1)).clamp(1, self.ctx.clean.n as i64) as usize,
            max_pairs: (PAIR_BYTES / per_pair.max(1)).clamp(16, 8192),
            plan,
            delta,
            g,
        }))
    }

    /// Clean values of nodes `0..=c` on images `s0..s1`, keeping what the cut needs.
    fn prefix(&self, cut: &Cut, s0: usize, s1: usize) -> Result<Vec<Option<Tensor>>> {
        let (x, _) = self.ctx.images(s0, s1);
        let graph = &self.gm.graph;
        let mut env: Vec<Option<Tensor>> = (0..graph.nodes.len()).map(|_| None).collect();
        tch::no_grad(|| graph.forward_nodes(&self.gm.params, &x, 0..=cut.plan.c, &mut env, Mode::Eval))?;
        let keep: Vec<usize> = cut
            .plan
            .gather
            .iter()
            .chain(&cut.plan.statics)
            .copied()
            .chain([cut.plan.c])
            .collect();
        Ok(env
            .into_iter()
            .enumerate()
            .map(|(v, t)| if keep.contains(&v) { t } else { None })
            .collect())
    }
}

/// What is fixed for one unit's flips.
struct UnitFlips<'u> {
    flips: &'u [Flip],
    values: Vec<(f32, f32)>,
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
    fn run(&mut self, space: &FlipSpace, flips: &[Flip]) -> Result<Vec<Outcome>> {
        let Some(first) = flips.first() else { return Ok(vec![]) };
        let target = &space.targets[first.target];
        let Some(cut) = self.cut(&target.name)? else {
            return self.generic.run(space, flips);
        };
        let unit = UnitFlips {
            flips,
            values: old_new(space, flips)?,
            tensor: &target.tensor,
        };
        tch::no_grad(|| self.run_cut(&cut, &unit))
    }
}

impl Fast<'_> {
    fn run_cut(&self, cut: &Cut, u: &UnitFlips) -> Result<Vec<Outcome>> {
        let clean = self.ctx.clean;
        let (n, cc) = (clean.n, clean.correct_count);
        let nf = u.flips.len() as i64;
        let chunks: Vec<(usize, usize)> = (0..n).step_by(cut.chunk).map(|s| (s, (s + cut.chunk).min(n))).collect();
        let mut env_cache = None;
        let mut masks = vec![];
        let mut tallies = vec![Tally::default(); u.flips.len()];
        for &(s0, s1) in &chunks {
            let env = self.prefix(cut, s0, s1)?;
            let mask = self.candidates(cut, u, &env, s0, s1)?;
            let cc_s = clean.correct.narrow(0, s0 as i64, (s1 - s0) as i64);
            let open_c = Vec::<i64>::try_from(mask.logical_and(&cc_s.unsqueeze(0)).sum_dim_intlist(
                1,
                false,
                Kind::Int64,
            ))?;
            let open_all = Vec::<i64>::try_from(mask.sum_dim_intlist(1, false, Kind::Int64))?;
            for (t, (c, a)) in tallies.iter_mut().zip(open_c.iter().zip(&open_all)) {
                t.open_correct += c;
                t.open_wrong += a - c;
            }
            masks.push(mask);
            if chunks.len() == 1 {
                env_cache = Some(env);
            }
        }
        for (k, &(s0, s1)) in chunks.iter().enumerate() {
            let env = match env_cache.take() {
                Some(e) => e,
                None => self.prefix(cut, s0, s1)?,
            };
            let round = if self.ctx.exact_rad { s1 - s0 } else { ROUND };
            for r0 in (0..s1 - s0).step_by(round) {
                let open: Vec<bool> = tallies
                    .iter()
                    .map(|t| !t.exact() && (self.ctx.exact_rad || !t.decided(cc, self.ctx.threshold)))
                    .collect();
                if !open.contains(&true) {
                    break;
                }
                let len = round.min(s1 - s0 - r0) as i64;
                let sub = masks[k]
                    .narrow(1, r0 as i64, len)
                    .logical_and(&Tensor::from_slice(&open).view([nf, 1]));
                let pairs = sub.nonzero();
                let np = pairs.size()[0];
                for b0 in (0..np).step_by(cut.max_pairs as usize) {
                    let b = pairs.narrow(0, b0, cut.max_pairs.min(np - b0));
                    let f_idx = Vec::<i64>::try_from(b.select(1, 0).contiguous())?;
                    let s_rel = b.select(1, 1) + r0 as i64;
                    let faulty = Vec::<bool>::try_from(self.eval_pairs(cut, u, &env, &f_idx, &s_rel, s0)?)?;
                    let s_rel = Vec::<i64>::try_from(s_rel)?;
                    let was = Vec::<bool>::try_from(
                        clean.correct.index_select(0, &(Tensor::from_slice(&s_rel) + s0 as i64)),
                    )?;
                    for ((&f, &w), &fa) in f_idx.iter().zip(&was).zip(&faulty) {
                        let t = &mut tallies[f as usize];
                        if w {
                            t.open_correct -= 1;
                        } else {
                            t.open_wrong -= 1;
                        }
                        t.lost += w as i64 - fa as i64;
                    }
                }
            }
        }
        Ok(tallies
            .iter()
            .map(|t| Outcome {
                correct: t.correct(cc),
                exact: t.exact(),
            })
            .collect())
    }

    /// `[flips, samples]` bool: pairs the bound cannot prove unaffected.
    fn candidates(&self, cut: &Cut, u: &UnitFlips, env: &[Option<Tensor>], s0: usize, s1: usize) -> Result<Tensor> {
        let (nf, ns) = (u.flips.len() as i64, (s1 - s0) as i64);
        let all = || Tensor::ones([nf, ns], (Kind::Bool, Device::Cpu));
        let Some(g) = &cut.g else { return Ok(all()) };
        let mut elements: Vec<i64> = u.flips.iter().map(|f| f.index).collect();
        elements.dedup();
        let Some(a) = cut.delta.sensitivity(g, env, &elements, ns)? else {
            return Ok(all());
        };
        let a = a.to_device(Device::Cpu).to_kind(Kind::Float);
        let row: Vec<i64> = u
            .flips
            .iter()
            .map(|f| elements.iter().position(|&e| e == f.index).unwrap_or(0) as i64)
            .collect();
        let size: Vec<f64> = u
            .values
            .iter()
            .map(|&(old, new)| {
                if new.is_finite() {
                    (new as f64 - old as f64).abs() * BOUND_SAFETY
                } else {
                    f64::INFINITY
                }
            })
            .collect();
        let margin = self.ctx.clean.margins.narrow(0, s0 as i64, ns).unsqueeze(0);
        let slack = self.ctx.clean.slack.narrow(0, s0 as i64, ns).unsqueeze(0);
        let mut parts = vec![];
        for f0 in (0..nf).step_by(512) {
            let m = 512.min(nf - f0);
            let rows = Tensor::from_slice(&row[f0 as usize..(f0 + m) as usize]);
            let sz = Tensor::from_slice(&size[f0 as usize..(f0 + m) as usize])
                .to_kind(Kind::Float)
                .unsqueeze(1);
            let reach = a.index_select(0, &rows) * &sz + &slack;
            // NaN (∞·0) means no bound: a candidate.
            parts.push(
                reach
                    .ge_tensor(&margin)
                    .logical_or(&reach.isnan())
                    .logical_or(&sz.isinf()),
            );
        }
        Ok(Tensor::cat(&parts, 0))
    }

    /// Faulty correctness of pairs (flip `f_idx[p]`, chunk sample `s_rel[p]`).
    fn eval_pairs(
        &self,
        cut: &Cut,
        u: &UnitFlips,
        env: &[Option<Tensor>],
        f_idx: &[i64],
        s_rel: &Tensor,
        s0: usize,
    ) -> Result<Tensor> {
        let graph = &self.gm.graph;
        let plan = &cut.plan;
        let dev = self.ctx.device;
        let s_dev = s_rel.to_device(dev);
        let mut genv: Vec<Option<Tensor>> = (0..graph.nodes.len()).map(|_| None).collect();
        for &v in &plan.gather {
            genv[v] = env[v].as_ref().map(|t| t.index_select(0, &s_dev));
        }
        for &v in &plan.statics {
            genv[v] = env[v].as_ref().map(|t| t.shallow_clone());
        }
        let x = genv[0]
            .as_ref()
            .map_or_else(|| Tensor::zeros([1], (Kind::Float, dev)), |t| t.shallow_clone());
        graph.forward_nodes(&self.gm.params, &x, plan.shapes.iter().copied(), &mut genv, Mode::Eval)?;
        let clean_c = env[plan.c]
            .as_ref()
            .ok_or_else(|| HartError::Model("fast engine: cut value missing".into()))?
            .index_select(0, &s_dev);
        let structured = cut.delta.structured();
        let out = if structured {
            let elements: Vec<i64> = f_idx.iter().map(|&f| u.flips[f as usize].index).collect();
            let deltas: Vec<f32> = f_idx.iter().map(|&f| u.delta32(f as usize)).collect();
            cut.delta.apply(&clean_c, &genv, &elements, &deltas)?
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
        let logits = genv[graph.output]
            .as_ref()
            .ok_or_else(|| HartError::Model("fast engine: logits not computed".into()))?;
        let labels = self
            .ctx
            .clean
            .labels
            .index_select(0, &(s_rel + s0 as i64))
            .to_device(dev);
        Ok(correct_mask(logits, &labels).to_device(Device::Cpu))
    }
}
