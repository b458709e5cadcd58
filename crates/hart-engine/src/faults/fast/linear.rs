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

use tch::{Device, Kind, Tensor};

use super::delta::pad_with;
use super::plan::{affected, rearranging};
use super::Env;
use crate::error::{HartError, Result};
use crate::faults::axes::Axis;
use crate::model::graph::{Graph, Mode, Op};
use crate::model::{ParamKind, ParamStore};

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
                (_, op) if rearranging(op) || matches!(op, Op::Identity | Op::Dropout { .. }) => {
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
/// non-finite on inactive units, so the certificate's keep test rejects it.
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
pub(super) fn host(t: &Tensor) -> Result<Vec<f32>> {
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

#[cfg(test)]
mod tests {
    use super::relu_crossings;

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
}
