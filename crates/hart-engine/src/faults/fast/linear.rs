//! The linear-region certificate. Along one weight element's direction the
//! nodes after the cut are piecewise linear in the flip's δ when every op is
//! linear, affine, a ReLU or a max-pool. Running the network's
//! linearisation at the clean point (the tangent: conv/linear without bias,
//! BatchNorm with zero mean and shift, ReLUs as their clean masks, max-pool
//! windows as their clean winners) on the unit change of the element gives,
//! per (element, sample), the logits' change per unit δ and the largest |δ|
//! (each sign apart) for which no ReLU input crosses zero and no window
//! changes winner. Below it the faulty logits are exactly clean + δ·tangent
//! (in real arithmetic), so one pass settles every bit of the element whose
//! |δ| is that small: the pair is harmless when those logits keep the
//! sample's correctness with room for rounding. Unlike |δ|·A, nothing here
//! grows with depth.

use std::rc::Rc;

use tch::{Device, Kind, Tensor};

use super::candidates::{Cand, Chunk};
use super::delta::{add_to_channel, pad_with};
use super::plan::{affected, rearranging, Axis};
use super::{Cut, Env, Fast, UnitFlips, BOUND_SAFETY};
use crate::error::{HartError, Result};
use crate::model::graph::{Graph, Mode, Op};
use crate::model::{ParamKind, ParamStore};

/// Relative rounding allowance on the tangent's logit change.
const TANGENT_SAFETY: f64 = 1.0 / 128.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Depends on the flip: run as its linearisation.
    Tangent,
    /// Static or shape arithmetic: run as it is.
    Plain,
    /// Batched but unaffected: its tangent is zero, never computed.
    Zero,
}

pub struct Linear {
    steps: Vec<(usize, Step)>,
    /// Inputs of the affected ReLUs and max-pools: the clean values their
    /// masks and window winners come from.
    pub clean_inputs: Vec<usize>,
    /// The model's tensors with the biases, BatchNorm means and shifts of
    /// the affected nodes zeroed (the rest shared).
    params: ParamStore,
    /// Values that carry a tangent: the cut and the nodes depending on it.
    affected: Vec<bool>,
    output: usize,
}

impl Linear {
    /// For cut `c`, if every affected node after it has a linearisation.
    /// `shape(v)` is value `v`'s shape on one sample.
    pub fn new(
        graph: &Graph,
        params: &ParamStore,
        ax: &[Axis],
        c: usize,
        shape: impl Fn(usize) -> Option<Vec<i64>>,
    ) -> Result<Option<Linear>> {
        let n = graph.nodes.len();
        let affected = affected(graph, c);
        if !affected[graph.output] || c == graph.output {
            return Ok(None);
        }
        let mut steps = vec![];
        let mut zeroed: Vec<&str> = vec![];
        let mut clean_inputs = vec![];
        let zero = |v: usize| v > c && ax[v] == Axis::Batch && !affected[v];
        for u in c + 1..n {
            let node = &graph.nodes[u];
            let step = match (affected[u], ax[u]) {
                (_, Axis::Static | Axis::Shape) => Step::Plain,
                (false, _) => Step::Zero,
                (true, Axis::Batch) => Step::Tangent,
                (true, Axis::Unknown) => return Ok(None),
            };
            let inputs = &node.inputs;
            let moving: Vec<usize> = inputs.iter().copied().filter(|&v| affected[v]).collect();
            let others_static = inputs.iter().all(|&v| affected[v] || ax[v] == Axis::Static);
            let ok = match (step, &node.op) {
                (Step::Zero, _) => true,
                (Step::Plain, _) => !inputs.iter().any(|&v| zero(v)),
                (_, Op::Add | Op::Sub) => {
                    // Unaffected operands add nothing to the change; a moving
                    // operand must already have the output's shape.
                    let out = shape(u);
                    out.is_some() && moving.iter().all(|&v| shape(v) == out)
                }
                (_, Op::Relu) => {
                    clean_inputs.push(inputs[0]);
                    true
                }
                (
                    _,
                    Op::MaxPool2d {
                        dilation, ceil_mode, ..
                    },
                ) if *dilation == [1, 1] && !ceil_mode => {
                    clean_inputs.push(inputs[0]);
                    true
                }
                (_, Op::Conv2d { bias, .. } | Op::Linear { bias, .. }) => {
                    zeroed.extend(bias.as_deref());
                    moving == [inputs[0]]
                }
                (_, Op::BatchNorm { bias, running_mean, .. }) => {
                    zeroed.extend(bias.as_deref());
                    zeroed.push(running_mean);
                    moving == [inputs[0]]
                }
                (_, Op::Mul | Op::MatMul) => moving.len() == 1 && others_static,
                (_, Op::Div) => moving == [inputs[0]] && others_static,
                (_, op) if rearranging(op) || matches!(op, Op::Identity) => {
                    moving == [inputs[0]] && !inputs.iter().any(|&v| zero(v))
                }
                (_, Op::Concat { .. }) => moving.len() == inputs.len(),
                _ => false,
            };
            if !ok {
                return Ok(None);
            }
            steps.push((u, step));
        }
        let mut store = ParamStore::new();
        for (name, t, _) in params.iter() {
            let v = if zeroed.contains(&name) {
                t.zeros_like()
            } else {
                t.shallow_clone()
            };
            store.insert(name, v, ParamKind::Buffer)?;
        }
        clean_inputs.sort_unstable();
        clean_inputs.dedup();
        Ok(Some(Linear {
            steps,
            clean_inputs,
            params: store,
            affected,
            output: graph.output,
        }))
    }
}

/// Per pair: the largest δ > 0 and the largest −δ > 0 that cross no ReLU or
/// window winner (NaN where a clean value is NaN), and the logits' change per unit δ.
pub struct Region {
    pub up: Vec<f32>,
    pub down: Vec<f32>,
    pub logits: Vec<f32>,
}

impl Linear {
    /// Propagates `genv[c]` (each pair's unit change at the cut; `genv`
    /// otherwise holds the pairs' gathered statics and shape values) through
    /// the linearisation. `clean(v)` is ReLU or max-pool input `v`'s clean value per
    /// pair; `last_use[v]` the last node reading `v`.
    pub fn run(
        &self,
        graph: &Graph,
        x: &Tensor,
        genv: &mut Env,
        clean: impl Fn(usize) -> Result<Tensor>,
        last_use: &[usize],
        pairs: i64,
    ) -> Result<Region> {
        let (mut up, mut down) = (vec![f32::INFINITY; pairs as usize], vec![f32::INFINITY; pairs as usize]);
        for &(u, step) in &self.steps {
            let node = &graph.nodes[u];
            match (step, &node.op) {
                (Step::Zero, _) => continue,
                (Step::Tangent, Op::Relu) => {
                    let v = node.inputs[0];
                    let (t, a) = (taken(genv, v)?, clean(v)?);
                    let (masked, near_up, near_down) = relu_crossings(&host(&a)?, &host(&t)?, pairs as usize);
                    fold(&mut up, &near_up);
                    fold(&mut down, &near_down);
                    genv[u] = Some(
                        Tensor::from_slice(&masked)
                            .view(t.size().as_slice())
                            .to_device(t.device()),
                    );
                }
                (
                    Step::Tangent,
                    Op::MaxPool2d {
                        kernel,
                        stride,
                        padding,
                        ..
                    },
                ) => {
                    let v = node.inputs[0];
                    let (t, a) = (taken(genv, v)?, clean(v)?);
                    let window = |x: &Tensor, fill: f64| -> Result<Tensor> {
                        let w = pad_with(x, padding, fill)?
                            .f_unfold(2, kernel[0], stride[0])?
                            .f_unfold(3, kernel[1], stride[1])?;
                        let s = w.size();
                        Ok(w.f_reshape([s[0], s[1], s[2], s[3], -1])?)
                    };
                    let (aw, tw) = (window(&a, f64::NEG_INFINITY)?, window(&t, 0.0)?);
                    // Each window's clean winner keeps winning until another
                    // element catches up: at δ = gap / (its slope − the winner's).
                    let (top, at) = aw.max_dim(4, true);
                    let t_top = tw.gather(4, &at, false);
                    let gap = top - &aw;
                    let slope = &tw - &t_top;
                    let ratio = (&gap / slope.abs()).flatten(1, -1);
                    let far = ratio.full_like(f64::INFINITY);
                    let nearest = |cross: Tensor| -> Tensor {
                        ratio
                            .where_self(&cross.flatten(1, -1), &far)
                            .amin([1i64].as_slice(), false)
                    };
                    // NaN gaps (NaN inputs) cross at NaN in both directions.
                    let nan = gap.isnan();
                    fold(&mut up, &host(&nearest(slope.gt(0.0).logical_or(&nan)))?);
                    fold(&mut down, &host(&nearest(slope.lt(0.0).logical_or(&nan)))?);
                    genv[u] = Some(t_top.squeeze_dim(4));
                }
                (Step::Tangent, Op::Add | Op::Sub) => {
                    let mut sum: Option<Tensor> = None;
                    for (k, &v) in node.inputs.iter().enumerate() {
                        let Some(t) = genv[v].as_ref().filter(|_| self.affected[v]) else {
                            continue;
                        };
                        let t = if k > 0 && matches!(node.op, Op::Sub) {
                            -t
                        } else {
                            t.shallow_clone()
                        };
                        sum = Some(match sum {
                            Some(s) => s + t,
                            None => t,
                        });
                    }
                    genv[u] = sum;
                }
                _ => graph.forward_nodes(&self.params, x, [u], genv, Mode::Eval)?,
            }
            for &v in &node.inputs {
                if last_use[v] == u && v != self.output {
                    genv[v] = None;
                }
            }
        }
        Ok(Region {
            up,
            down,
            logits: host(&taken(genv, self.output)?)?,
        })
    }
}

/// The tangent through a ReLU whose clean input is `a` (`pairs` rows of
/// equal width, `t` the tangent at its input): the masked tangent and per
/// row the nearest crossing each way. Unit i crosses at δ = −a/t, upwards
/// where t > 0 and it is off (a ≤ 0) or t < 0 and it is on; a NaN input
/// crosses at NaN (never certified). `t·0` keeps a non-finite tangent
/// non-finite on inactive units, so [`keeps`] rejects it.
fn relu_crossings(a: &[f32], t: &[f32], pairs: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let width = a.len() / pairs.max(1);
    let mut masked = vec![0f32; a.len()];
    let (mut up, mut down) = (vec![f32::INFINITY; pairs], vec![f32::INFINITY; pairs]);
    for p in 0..pairs {
        let row = p * width..(p + 1) * width;
        let (mut u, mut d) = (f32::INFINITY, f32::INFINITY);
        for ((&a, &t), m) in a[row.clone()].iter().zip(&t[row.clone()]).zip(&mut masked[row]) {
            let on = a > 0.0;
            *m = if on { t } else { t * 0.0 };
            if t == 0.0 || t.is_nan() {
                continue;
            }
            let r = a.abs() / t.abs();
            let off = a <= 0.0;
            if (t > 0.0 && !on) || (t < 0.0 && !off) {
                u = nan_min(u, r);
            }
            if (t > 0.0 && !off) || (t < 0.0 && !on) {
                d = nan_min(d, r);
            }
        }
        up[p] = u;
        down[p] = d;
    }
    (masked, up, down)
}

/// `t`'s values as f32 on the host, flattened.
fn host(t: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(
        t.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1),
    )?)
}

/// `min` that propagates NaN (`f32::min` drops it).
fn nan_min(m: f32, r: f32) -> f32 {
    if m.is_nan() || r.is_nan() {
        f32::NAN
    } else {
        m.min(r)
    }
}

fn fold(acc: &mut [f32], near: &[f32]) {
    for (a, &n) in acc.iter_mut().zip(near) {
        *a = nan_min(*a, n);
    }
}

fn taken(genv: &Env, v: usize) -> Result<Tensor> {
    genv[v]
        .as_ref()
        .map(Tensor::shallow_clone)
        .ok_or_else(|| HartError::Model(format!("linear certificate: value {v} missing")))
}

/// Whether a sample keeps its correctness when its logits move from `z` to
/// `z + d·v`: the label's logit stays strictly above (correct) or some other
/// class's strictly above the label's (wrong), by more than twice the
/// rounding slack plus an allowance on the computed change. NaN, or a
/// tangent that is not finite, never keeps. The reference for [`keep_limits`].
#[cfg(test)]
fn keeps(z: &[f32], v: &[f32], d: f64, label: usize, correct: bool, slack: f32) -> bool {
    if !v.iter().all(|x| x.is_finite()) {
        return false;
    }
    let vmax = v.iter().fold(0f64, |m, &x| m.max((x as f64).abs()));
    let err = slack as f64 + d.abs() * vmax * TANGENT_SAFETY;
    let moved = |j: usize| z[j] as f64 + d * v[j] as f64;
    let own = moved(label);
    let mut others = (0..z.len()).filter(|&j| j != label).map(moved);
    if correct {
        others.all(|o| own - o > 2.0 * err)
    } else {
        others.any(|o| o - own > 2.0 * err)
    }
}

/// The largest δ ≥ 0 and the largest −δ ≥ 0 below which [`keeps`] holds
/// for every smaller move that way (0 where it fails at once or anything is
/// NaN): each class's condition is linear in |δ| on either side, so the
/// set where it holds is a half-line, and the sample keeps on their
/// intersection (correct) or union (wrong). Two numbers per (element,
/// sample) instead of its logits' change, checked against every bit.
fn keep_limits(z: &[f32], v: &[f32], label: usize, correct: bool, slack: f32) -> (f32, f32) {
    if !v.iter().chain(z).all(|x| x.is_finite()) || !slack.is_finite() {
        return (0.0, 0.0);
    }
    let vmax = v.iter().fold(0f64, |m, &x| m.max((x as f64).abs()));
    let grow = 2.0 * vmax * TANGENT_SAFETY;
    let limit = |sign: f64| -> f64 {
        // Per class: lead(τ) = n + k·τ for τ = |δ| ≥ 0, with the label's
        // lead (correct) or the class's lead over the label (wrong).
        let lines = (0..z.len()).filter(|&j| j != label).map(|j| {
            let (gap, slope) = (z[label] as f64 - z[j] as f64, sign * (v[label] as f64 - v[j] as f64));
            let (n, k) = if correct { (gap, slope) } else { (-gap, -slope) };
            (n - 2.0 * slack as f64, k - grow)
        });
        if correct {
            lines.fold(f64::INFINITY, |m, (n, k)| match (n > 0.0, k < 0.0) {
                (false, _) => 0.0,
                (true, true) => m.min(-n / k),
                (true, false) => m,
            })
        } else {
            // Classes leading from the start keep it up to -n/k; classes that
            // take the lead later (n ≤ 0 < k) cover everything past -n/k.
            let (mut head, mut tail) = (0f64, f64::INFINITY);
            for (n, k) in lines {
                if n > 0.0 {
                    head = head.max(if k < 0.0 { -n / k } else { f64::INFINITY });
                } else if k > 0.0 {
                    tail = tail.min(-n / k);
                }
            }
            if tail < head {
                f64::INFINITY
            } else {
                head
            }
        }
    };
    (limit(1.0) as f32, limit(-1.0) as f32)
}

impl Fast<'_> {
    /// Removes from `cands` the pairs the linear-region certificate proves
    /// harmless. Runs one tangent pass per (element, sample) that has a
    /// candidate flip small enough to hope for (|δ| ≤ 2|old|, or subnormal).
    pub(super) fn certify(
        &self,
        cut: &Cut,
        lin: &Linear,
        u: &UnitFlips,
        chunk: &Chunk,
        cands: &mut [Cand],
    ) -> Result<()> {
        let Chunk { env, s0, s1 } = *chunk;
        let ns = s1 - s0;
        let hopeful = |f: usize| {
            let (old, new) = u.values[f];
            let d = (new as f64 - old as f64).abs();
            new.is_finite() && (d <= 2.0 * (old as f64).abs() || d < 1e-30)
        };
        // Runs of one element (a unit's flips come element by element); a
        // run's pairs are contiguous, found through `slot` (per chunk sample:
        // the pair's index, u32::MAX if none), filled for one run at a time.
        let mut elements: Vec<i64> = vec![];
        let mut run_of = Vec::with_capacity(u.flips.len());
        let mut run_pairs: Vec<std::ops::Range<usize>> = vec![];
        let mut slot: Vec<u32> = vec![u32::MAX; ns];
        let mut pairs: Vec<(u32, u32)> = vec![];
        for (f, flip) in u.flips.iter().enumerate() {
            if elements.last() != Some(&flip.index) {
                for &(_, s) in &pairs[run_pairs.last().map_or(0, |r| r.start)..] {
                    slot[s as usize] = u32::MAX;
                }
                elements.push(flip.index);
                run_pairs.push(pairs.len()..pairs.len());
            }
            let e = elements.len() - 1;
            run_of.push(e);
            if !hopeful(f) {
                continue;
            }
            for k in 0..cands[f].len() {
                let s = cands[f].get(k) as usize;
                if slot[s] == u32::MAX {
                    slot[s] = pairs.len() as u32;
                    pairs.push((e as u32, s as u32));
                }
            }
            run_pairs[e].end = pairs.len();
        }
        if pairs.is_empty() {
            return Ok(());
        }
        let clean_values = self.suffix(cut, lin, chunk)?;
        let out_shape = env[cut.plan.c]
            .as_ref()
            .ok_or_else(|| HartError::Model("fast engine: cut value missing".into()))?
            .size();
        let clean = self.ctx.clean;
        let k = clean.logits.size()[1] as usize;
        let rows = |t: &Tensor| t.narrow(0, s0 as i64, ns as i64).to_device(Device::Cpu);
        let z = host(&rows(&clean.logits))?;
        let labels = Vec::<i64>::try_from(rows(&clean.labels))?;
        let was = Vec::<bool>::try_from(rows(&clean.correct))?;
        let slack = host(&rows(&clean.slack))?;
        // Per pair, the largest |δ| each way that is both linear and keeps.
        let (mut up, mut down) = (Vec::with_capacity(pairs.len()), Vec::with_capacity(pairs.len()));
        for batch in pairs.chunks(cut.max_pairs as usize) {
            let s: Vec<i64> = batch.iter().map(|&(_, s)| s as i64).collect();
            let el: Vec<i64> = batch.iter().map(|&(e, _)| elements[e as usize]).collect();
            let s_dev = Tensor::from_slice(&s).to_device(self.ctx.device);
            let (mut genv, x) = self.gather(&cut.plan, env, &s_dev);
            let graph = &self.gm.graph;
            graph.forward_nodes(
                &self.gm.params,
                &x,
                cut.plan.shapes.iter().copied(),
                &mut genv,
                Mode::Eval,
            )?;
            let ones = vec![1f32; batch.len()];
            let change = cut.delta.change(&out_shape, env, &s_dev, &el, &ones)?;
            let mut shape = out_shape.clone();
            shape[0] = batch.len() as i64;
            let tangent = Tensor::zeros(shape.as_slice(), (Kind::Float, self.ctx.device));
            let channels: Vec<i64> = el.iter().map(|&e| cut.delta.channel(e)).collect();
            add_to_channel(&tangent, &channels, &change)?;
            genv[cut.plan.c] = Some(tangent);
            let clean = |v: usize| -> Result<Tensor> {
                Ok(clean_values[v]
                    .as_ref()
                    .ok_or_else(|| HartError::Model(format!("linear certificate: clean value {v} missing")))?
                    .index_select(0, &s_dev))
            };
            let r = lin.run(graph, &x, &mut genv, clean, &self.last_use, batch.len() as i64)?;
            for (q, &s) in s.iter().enumerate() {
                let s = s as usize;
                let (ku, kd) = keep_limits(
                    &z[s * k..][..k],
                    &r.logits[q * k..][..k],
                    labels[s] as usize,
                    was[s],
                    slack[s],
                );
                // NaN crossings (NaN clean values) certify nothing.
                let both = |cross: f32, keep: f32| if cross.is_nan() { 0.0 } else { cross.min(keep) };
                up.push(both(r.up[q], ku));
                down.push(both(r.down[q], kd));
            }
        }
        let before: usize = cands.iter().map(Cand::len).sum();
        let mut filled = usize::MAX;
        for (f, &e) in run_of.iter().enumerate() {
            if !hopeful(f) {
                continue;
            }
            if filled != e {
                for (p, &(_, s)) in pairs.iter().enumerate().take(run_pairs[e].end).skip(run_pairs[e].start) {
                    slot[s as usize] = p as u32;
                }
                filled = e;
            }
            let (old, new) = u.values[f];
            let d = new as f64 - old as f64;
            let limits = if d >= 0.0 { &up } else { &down };
            let kept: Vec<u32> = (0..cands[f].len())
                .map(|k| cands[f].get(k))
                .filter(|&s| d.abs() * BOUND_SAFETY >= limits[slot[s as usize] as usize] as f64)
                .collect();
            cands[f] = Cand::of(kept, ns);
        }
        let after: usize = cands.iter().map(Cand::len).sum();
        self.count(|s| s.certified_pairs += (before - after) as u64);
        tracing::debug!(
            tangents = pairs.len(),
            candidates = before,
            certified = before - after,
            "linear-region certificate"
        );
        Ok(())
    }

    /// The clean values of the ReLU and max-pool inputs after the cut on the
    /// chunk: views of the clean pass's stored values, or one pass over the
    /// nodes after the cut, kept for the next units on the same images (of
    /// this tensor or a later one).
    fn suffix(&self, cut: &Cut, lin: &Linear, chunk: &Chunk) -> Result<Rc<Env>> {
        let Chunk { env, s0, s1 } = *chunk;
        let graph = &self.gm.graph;
        let n = graph.nodes.len();
        let stored = &self.ctx.clean.values;
        if !stored.is_empty() {
            let mut out: Env = (0..n).map(|_| None).collect();
            for &v in &lin.clean_inputs {
                out[v] = stored[v].as_ref().map(|t| t.narrow(0, s0 as i64, (s1 - s0) as i64));
            }
            return Ok(Rc::new(out));
        }
        let key = (cut.plan.c, s0, s1);
        if let Some((k, values)) = self.suffix_cache.borrow().as_ref() {
            // A pass from an earlier cut on the same images holds every
            // ReLU and max-pool input after it; units come in graph order.
            let covers = k.0 <= key.0 && (k.1, k.2) == (s0, s1);
            if covers && lin.clean_inputs.iter().all(|&v| values[v].is_some()) {
                return Ok(values.clone());
            }
        }
        *self.suffix_cache.borrow_mut() = None;
        let (x, _) = self.ctx.images(s0, s1)?;
        let mut work: Env = env.iter().map(|t| t.as_ref().map(Tensor::shallow_clone)).collect();
        graph.forward_nodes(
            &self.gm.params,
            &x,
            cut.plan.shapes.iter().copied(),
            &mut work,
            Mode::Eval,
        )?;
        let mut out: Env = (0..n).map(|_| None).collect();
        // The cut's own output, when a ReLU reads it, is in the prefix.
        out[cut.plan.c] = env[cut.plan.c].as_ref().map(Tensor::shallow_clone);
        let masked = |v: usize| {
            (v + 1..n).any(|w| {
                graph.nodes[w].inputs.first() == Some(&v)
                    && matches!(graph.nodes[w].op, Op::Relu | Op::MaxPool2d { .. })
            })
        };
        let keep = |v: usize| lin.clean_inputs.binary_search(&v).is_ok() || masked(v);
        graph.forward_nodes_freeing(&self.gm.params, &x, &cut.plan.after, &mut work, Mode::Eval, keep)?;
        for &u in cut.plan.after.iter().filter(|&&u| keep(u)) {
            out[u] = work[u].take();
        }
        let out = Rc::new(out);
        *self.suffix_cache.borrow_mut() = Some((key, out.clone()));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::{keep_limits, keeps, relu_crossings};

    /// The crossings against their definition: just below them no unit
    /// changes state, just above one does.
    #[test]
    fn relu_crossings_are_the_nearest_state_changes() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let (pairs, width) = (50, 40);
        let mut a: Vec<f32> = (0..pairs * width).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let t: Vec<f32> = (0..pairs * width)
            .map(|i| {
                if i % 7 == 0 {
                    0.0
                } else {
                    rng.random_range(-3.0f32..3.0)
                }
            })
            .collect();
        a[3] = 0.0;
        let (masked, up, down) = relu_crossings(&a, &t, pairs);
        let state = |p: usize, d: f32| -> Vec<bool> {
            (0..width)
                .map(|i| a[p * width + i] + d * t[p * width + i] > 0.0)
                .collect()
        };
        for p in 0..pairs {
            for (limit, sign) in [(up[p], 1.0f32), (down[p], -1.0)] {
                assert!(limit.is_finite() && limit >= 0.0, "pair {p}: {limit}");
                let clean = state(p, 0.0);
                if limit > 0.0 {
                    assert_eq!(state(p, sign * limit * 0.999), clean, "pair {p} sign {sign}");
                }
                assert_ne!(state(p, sign * (limit * 1.001 + 1e-6)), clean, "pair {p} sign {sign}");
            }
            for i in 0..width {
                let k = p * width + i;
                assert_eq!(masked[k], if a[k] > 0.0 { t[k] } else { 0.0 });
            }
        }
        // Pair 0's unit 3 is off at exactly 0: any upward move of it turns it on.
        if t[3] > 0.0 {
            assert_eq!(up[0], 0.0);
        }
        let (_, up, down) = relu_crossings(&[f32::NAN, 1.0], &[1.0, 1.0], 1);
        assert!(up[0].is_nan() && down[0].is_nan());
    }

    /// The limits against the pointwise reference: every move below a limit
    /// keeps, and a finite limit is where keeping stops.
    #[test]
    fn keep_limits_match_the_pointwise_test() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut bounded = 0;
        for case in 0..2000 {
            let k = 2 + case % 5;
            let z: Vec<f32> = (0..k).map(|_| rng.random_range(-2.0f32..2.0)).collect();
            let v: Vec<f32> = (0..k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let label = case % k;
            let correct = case % 2 == 0;
            let slack = if case % 3 == 0 { 0.0 } else { 0.01 };
            let (up, down) = keep_limits(&z, &v, label, correct, slack);
            for (limit, sign) in [(up as f64, 1.0), (down as f64, -1.0)] {
                assert!(limit >= 0.0, "case {case}: {limit}");
                let probe = |d: f64| keeps(&z, &v, sign * d, label, correct, slack);
                let top = if limit.is_finite() { limit } else { 50.0 };
                for i in (0..200).filter(|_| limit > 0.0) {
                    let d = top * 0.999 * i as f64 / 200.0;
                    assert!(probe(d), "case {case} sign {sign}: limit {limit} but not kept at {d}");
                }
                if limit.is_finite() {
                    assert!(
                        !probe(limit * 1.001 + 1e-9),
                        "case {case} sign {sign}: kept past {limit}"
                    );
                    bounded += (limit > 0.0) as usize;
                }
            }
        }
        assert!(
            bounded > 500,
            "only {bounded} positive finite limits: the probes test little"
        );
        assert_eq!(keep_limits(&[1.0, 0.0], &[f32::NAN, 0.0], 0, true, 0.0), (0.0, 0.0));
    }

    #[test]
    fn keeps_needs_room_beyond_the_slack() {
        let z = [1.0f32, 0.0, -1.0];
        // Correct sample (label 0): the label's lead of 1 shrinks by 0.5·d.
        let v = [0.0f32, 0.5, 0.0];
        assert!(keeps(&z, &v, 1.0, 0, true, 0.1));
        assert!(!keeps(&z, &v, 1.9, 0, true, 0.1));
        assert!(!keeps(&z, &v, 1.0, 0, true, 0.3));
        // Wrong sample (label 2): stays wrong while another class leads it.
        let v = [0.0f32, 0.0, 1.0];
        assert!(keeps(&z, &v, 1.0, 2, false, 0.1));
        assert!(!keeps(&z, &v, 2.0, 2, false, 0.1));
        // NaN never keeps.
        assert!(!keeps(&[f32::NAN, 0.0, 0.0], &v, 0.0, 0, true, 0.0));
        assert!(!keeps(&z, &[f32::NAN, 0.0, 0.0], 1.0, 2, false, 0.0));
    }
}
