//! A sound bound on how far the logits can move when the first affected
//! node's output moves: `Σ_j |Δlogit_j| ≤ Σ_e g_e |Δout_e|`, with `g`
//! propagated backwards from the logits using absolute weights (|W| for
//! convolution and linear layers, the BatchNorm scale), 1 through ReLU,
//! clip and tanh, ¼ through sigmoid, window sums through max-pooling, and the
//! coefficients of any other linear op. Ops with no such rule (softmax,
//! LayerNorm, GELU, products of two moving values) give no bound, and then
//! nothing is pruned. `g` does not depend on the sample.

use tch::{Kind, Tensor};

use super::delta::pad;
use super::plan::{affected, rearranging};
use crate::error::Result;
use crate::faults::axes::Axis;
use crate::model::graph::{Graph, Mode, Op};
use crate::model::{ParamKind, ParamStore};

/// The model's tensors with every float replaced by its absolute value.
pub fn abs_store(params: &ParamStore) -> Result<ParamStore> {
    let mut s = ParamStore::new();
    for (name, t, _) in params.iter() {
        let v = if t.is_floating_point() {
            t.detach().abs()
        } else {
            t.detach()
        };
        s.insert(name, v, ParamKind::Buffer)?;
    }
    Ok(s)
}

/// `g` at node `c`'s output (batch dimension 1), or None without a rule.
/// `env1` holds every value of a clean forward pass on one sample.
pub fn sensitivity(
    graph: &Graph,
    abs: &ParamStore,
    env1: &[Option<Tensor>],
    ax: &[Axis],
    c: usize,
) -> Result<Option<Tensor>> {
    let n = graph.nodes.len();
    let affected = affected(graph, c);
    let mut g: Vec<Option<Tensor>> = (0..n).map(|_| None).collect();
    let Some(out) = env1[graph.output].as_ref() else {
        return Ok(None);
    };
    if !affected[graph.output] {
        return Ok(Some(env1[c].as_ref().map_or_else(
            || Tensor::zeros([1], (Kind::Float, tch::Device::Cpu)),
            Tensor::zeros_like,
        )));
    }
    g[graph.output] = Some(out.ones_like());
    for u in (c + 1..n).rev() {
        let Some(gu) = g[u].take() else { continue };
        if !affected[u] {
            continue;
        }
        let mut inputs: Vec<usize> = graph.nodes[u].inputs.iter().copied().filter(|&v| affected[v]).collect();
        inputs.dedup();
        for v in inputs {
            let Some(contrib) = rule(graph, abs, env1, ax, u, v, &gu)? else {
                return Ok(None);
            };
            g[v] = Some(match g[v].take() {
                Some(acc) => acc + contrib,
                None => contrib,
            });
        }
    }
    Ok(Some(g[c].take().unwrap_or_else(|| {
        env1[c].as_ref().map_or_else(
            || Tensor::zeros([1], (Kind::Float, tch::Device::Cpu)),
            Tensor::zeros_like,
        )
    })))
}

/// Bound coefficients for input `v` of node `u` given `gu` at `u`'s output.
fn rule(
    graph: &Graph,
    abs: &ParamStore,
    env1: &[Option<Tensor>],
    ax: &[Axis],
    u: usize,
    v: usize,
    gu: &Tensor,
) -> Result<Option<Tensor>> {
    let node = &graph.nodes[u];
    Ok(match &node.op {
        // 1-Lipschitz elementwise: |f(a + d) − f(a)| ≤ |d| (clip covers Ranger's clamps).
        Op::Relu | Op::Clip { .. } | Op::Tanh | Op::Identity | Op::Dropout { .. } => Some(gu.shallow_clone()),
        Op::Sigmoid => Some(gu * 0.25),
        Op::MaxPool2d {
            kernel,
            stride,
            padding,
            dilation,
            ceil_mode,
        } if *dilation == [1, 1] => {
            // |max(a+d) − max(a)| ≤ max|d| ≤ Σ_window |d|: the transpose of sum-pooling.
            let Some(x) = env1[v].as_ref() else { return Ok(None) };
            let x0 = x.zeros_like().set_requires_grad(true);
            let xp = pad(&x0, padding)?;
            let y = xp.f_avg_pool2d(kernel, stride, [0, 0], *ceil_mode, true, Some(1))?;
            vjp(&x0, &y, gu)?
        }
        Op::Mul | Op::Div | Op::MatMul | Op::Gemm { .. } => {
            // Linear in `v` only if every other operand is fixed; use |operand|.
            let others_static = node.inputs.iter().all(|&w| w == v || ax[w] == Axis::Static);
            let numerator = !matches!(node.op, Op::Div) || node.inputs.get(1) != Some(&v);
            if others_static && numerator {
                linear_vjp(graph, abs, env1, u, v, gu, true)?
            } else {
                None
            }
        }
        Op::Conv2d { .. }
        | Op::Linear { .. }
        | Op::BatchNorm { .. }
        | Op::Normalize { .. }
        | Op::Add
        | Op::Sub
        | Op::Concat { .. } => linear_vjp(graph, abs, env1, u, v, gu, false)?,
        op if rearranging(op) => linear_vjp(graph, abs, env1, u, v, gu, false)?,
        _ => None,
    })
}

fn vjp(x0: &Tensor, y: &Tensor, gu: &Tensor) -> Result<Option<Tensor>> {
    let grads = Tensor::f_run_backward(&[(y * gu).sum(Kind::Float)], &[x0], false, false)?;
    Ok(grads.into_iter().next().map(|g| g.abs()))
}

/// `|Mᵀ| gu` for a node linear in `v`, evaluated with absolute weights (and,
/// when `abs_operands`, absolute fixed operands) so the map has no negative
/// coefficient that could cancel; ops whose coefficients are ±1 or diagonal
/// are exact after the final `abs`.
fn linear_vjp(
    graph: &Graph,
    abs: &ParamStore,
    env1: &[Option<Tensor>],
    u: usize,
    v: usize,
    gu: &Tensor,
    abs_operands: bool,
) -> Result<Option<Tensor>> {
    let Some(xv) = env1[v].as_ref() else { return Ok(None) };
    let mut env: Vec<Option<Tensor>> = env1.iter().map(|t| t.as_ref().map(|t| t.detach())).collect();
    if abs_operands {
        for &w in &graph.nodes[u].inputs {
            if w != v {
                env[w] = env[w].take().map(|t| if t.is_floating_point() { t.abs() } else { t });
            }
        }
    }
    let x0 = xv.zeros_like().set_requires_grad(true);
    env[v] = Some(x0.shallow_clone());
    let input = env1[0]
        .as_ref()
        .map_or_else(|| Tensor::zeros([1], (Kind::Float, tch::Device::Cpu)), |t| t.detach());
    graph.forward_nodes(abs, &input, [u], &mut env, Mode::Eval)?;
    let Some(y) = env[u].take() else { return Ok(None) };
    if !y.requires_grad() {
        return Ok(Some(x0.zeros_like()));
    }
    vjp(&x0, &y, gu)
}
