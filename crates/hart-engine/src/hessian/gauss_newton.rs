//! The Gauss–Newton (Fisher) trace of the cross-entropy, estimated from
//! gradients alone.
//!
//! For logits z(w) and softmax p, the Hessian of the cross-entropy is
//! `H = Jᵀ(diag p − ppᵀ)J + Σ_k (p_k − y_k)·∂²z_k/∂w²`. Where every logit is
//! linear in each single weight (linear, conv, ReLU, max/avg-pool, BatchNorm
//! in eval mode), `∂²z_k/∂wᵢ² = 0`, so the diagonals, and the traces, of H
//! and of the Gauss–Newton part `G = Jᵀ A J` (A = diag p − ppᵀ) agree. With
//! smooth activations (tanh, GELU) or BatchNorm in training mode they do not,
//! and G's trace is a positive semi-definite surrogate.
//!
//! `tr(G) = E‖Jᵀ r‖²` for any random r with `E[rrᵀ] = A`; we take
//! `r = B u` with `B = diag(√p) − p√pᵀ` (so `BBᵀ = A` because Σp = 1) and u
//! Rademacher, one per sample. Over a batch the cross terms between samples
//! have mean zero (independent u), so `‖∇_w Σᵢ rᵢ·zᵢ‖²` is unbiased for
//! `Σᵢ tr(Gᵢ)` with one backward pass — no Hessian-vector product, and its
//! gradient needs double, not triple, back-propagation.

use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use super::params::ParamSet;
use super::probe::rademacher;
use super::trace::{sample_until, TraceEstimate, TraceOptions};
use crate::data::Dataset;
use crate::error::{HartError, Result};
use crate::eval::check_logits;
use crate::loss::accumulate_grad;
use crate::model::{Mode, Model};

/// `r = B u` row by row, `B = diag(√p) − p√pᵀ`, p = softmax(logits): a draw
/// whose covariance over Rademacher u is the softmax Hessian diag p − ppᵀ.
/// Differentiable in the logits (the training penalty needs ∂r/∂w).
pub fn gn_residual(logits: &Tensor, u: &Tensor) -> Result<Tensor> {
    let p = logits.f_softmax(-1, logits.kind())?;
    let sp = p.f_sqrt()?;
    let proj = (&sp * u).f_sum_dim_intlist(-1, true, logits.kind())?;
    Ok(&sp * u - &p * proj)
}

/// Per-tensor squared norms `‖∇_l Σᵢ rᵢ·zᵢ‖²` of one draw (`[tensors]`, f64),
/// with the gradient graph kept or built as asked.
fn draw_norms(logits: &Tensor, r: &Tensor, params: &ParamSet, keep_graph: bool) -> Result<Tensor> {
    let s = (logits * r).f_sum(Kind::Double)?;
    let g = Tensor::f_run_backward(&[&s], &params.tensors, keep_graph, false)?;
    let norms: Vec<Tensor> = g
        .iter()
        .map(|g| {
            if g.defined() {
                g.f_square()?.f_sum(Kind::Double)
            } else {
                Tensor::f_zeros([], (Kind::Double, Device::Cpu))
            }
        })
        .collect::<std::result::Result<_, _>>()?;
    let norms = norms
        .iter()
        .map(|t| t.f_to_device(Device::Cpu))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Tensor::f_stack(&norms, 0)?)
}

/// Gauss–Newton trace of the mean cross-entropy of `model` over all of
/// `data` (eval mode), w.r.t. `params`, under the same stopping rule as
/// Hutchinson. One sample is one pass over the slice: a forward per batch
/// (shared by a block of samples) and one backward per sample and batch.
pub fn gauss_newton_trace(
    model: &Model,
    data: &Dataset,
    params: &ParamSet,
    batch_size: usize,
    opts: &TraceOptions,
    rng: &mut ChaCha8Rng,
    on_block: impl FnMut(f64, f64),
) -> Result<TraceEstimate> {
    if data.is_empty() {
        return Err(HartError::Invalid("cannot take a Hessian over an empty dataset".into()));
    }
    if batch_size == 0 {
        return Err(HartError::Invalid("--batch-size must be at least 1".into()));
    }
    let device = params.tensors.first().map_or(Device::Cpu, |t| t.device());
    let n = data.len();
    sample_until(
        params.len(),
        0.0,
        &vec![0.0; params.len()],
        opts,
        |k| {
            let total = Tensor::f_zeros([k, params.len() as i64], (Kind::Double, Device::Cpu))?;
            for start in (0..n).step_by(batch_size) {
                let end = (start + batch_size).min(n);
                let (x, _) = data.batch_range(start, end);
                let logits = model.forward(&x.f_to_device(device)?, Mode::Eval)?;
                check_logits(&logits, data, end - start)?;
                let classes = logits.size()[1];
                let fixed = logits.detach();
                for j in 0..k {
                    let u = rademacher(rng, (end - start) as i64, classes, logits.kind(), device);
                    let r = gn_residual(&fixed, &u)?;
                    let norms = draw_norms(&logits, &r, params, j < k - 1)?;
                    let _ = total.get(j).f_add_(&(norms / n as f64))?;
                }
            }
            Ok(total)
        },
        on_block,
    )
}

/// The Gauss–Newton penalty of one minibatch for training: the mean over
/// `probes` draws of `‖∇_S Σᵢ rᵢ·zᵢ‖² / n`, with the parts of its gradient.
pub struct GnPenalty {
    /// The estimate, differentiable w.r.t. every parameter with r held fixed.
    pub value: Tensor,
    /// The residuals r as built from the logits (in the graph).
    pub residual: Tensor,
    /// The same residuals as a leaf, through which `value` depends on r.
    pub residual_leaf: Tensor,
    /// Mean over draws of g⊙g/n (detached, flat): the diagonal estimate of G.
    pub diag: Tensor,
}

/// Builds the penalty of `logits` (`[n, classes]`) over the selected `params`.
/// `u` holds one Rademacher `[n, classes]` draw per probe, stacked `[probes, n, classes]`.
pub fn gauss_newton_penalty(logits: &Tensor, params: &ParamSet, u: &Tensor) -> Result<GnPenalty> {
    let n = logits.size()[0] as f64;
    let probes = u.size()[0];
    // One residual per probe: stacked, so one backward per probe reads the same forward graph.
    let residual = Tensor::f_stack(
        &(0..probes)
            .map(|j| gn_residual(logits, &u.get(j)))
            .collect::<Result<Vec<_>>>()?,
        0,
    )?;
    let residual_leaf = residual.detach().f_set_requires_grad(true)?;
    let mut value: Option<Tensor> = None;
    let like_logits = (logits.kind(), logits.device());
    let diag = Tensor::f_zeros([params.dim()], like_logits)?;
    // The penalty when no selected tensor reaches the logits.
    let zero = Tensor::f_zeros([], like_logits)?;
    for j in 0..probes {
        let s = (logits * residual_leaf.get(j)).f_sum(logits.kind())?;
        let g = Tensor::f_run_backward(&[&s], &params.tensors, true, true)?;
        let sq = g
            .iter()
            .filter(|g| g.defined())
            .map(|g| g.f_square().and_then(|s| s.f_sum(logits.kind())))
            .collect::<std::result::Result<Vec<_>, _>>()?
            .into_iter()
            .reduce(|a, b| a + b)
            .unwrap_or_else(|| zero.shallow_clone());
        let flat = params.flatten(
            &g.iter()
                .map(|t| if t.defined() { t.detach() } else { t.shallow_clone() })
                .collect::<Vec<_>>(),
        );
        let _ = diag.shallow_clone().f_add_(&flat.square())?;
        value = Some(match value {
            Some(v) => v + sq,
            None => sq,
        });
    }
    let scale = 1.0 / (n * probes as f64);
    Ok(GnPenalty {
        value: value.map_or(zero, |v| v * scale),
        residual,
        residual_leaf,
        diag: diag * scale,
    })
}

impl GnPenalty {
    /// Leaves the gradient of `base + λ·P(w, r(w))` in the `.grad` of `all`
    /// (every trainable tensor). P's own graph gives ∂P/∂w at fixed r and
    /// ∂P/∂r in one double backward; the dependence through r = B(p(w))u is
    /// then one ordinary backward of (∂P/∂r)·r alongside `base`. No third-order pass.
    pub fn backward_with(&self, base: &Tensor, all: &[Tensor], lambda: f64) -> Result<()> {
        let mut inputs: Vec<Tensor> = all.iter().map(Tensor::shallow_clone).collect();
        inputs.push(self.residual_leaf.shallow_clone());
        let mut grads = Tensor::f_run_backward(&[&self.value], &inputs, true, false)?;
        let d_residual = grads.pop().filter(Tensor::defined);
        let scaled: Vec<Tensor> = grads
            .iter()
            .map(|g| if g.defined() { g * lambda } else { g.shallow_clone() })
            .collect();
        accumulate_grad(all, &scaled)?;
        let objective = match d_residual {
            Some(c) => base + (&self.residual * c.detach()).f_sum(base.kind())? * lambda,
            None => base.shallow_clone(),
        };
        objective.f_backward()?;
        Ok(())
    }
}
