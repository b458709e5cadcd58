//! The cheap alternative to exact HAT: a two-point finite-difference trace
//! penalty in the spirit of NSO (noise stability optimisation, Zhang et al.
//! 2023). For a Rademacher probe v over the selected block and step σ,
//!   vᵀHv ≈ (L(w+σv) + L(w−σv) − 2L(w)) / σ²,
//! whose gradient needs first-order gradients only:
//!   ∇ ≈ (∇L(w+σv) + ∇L(w−σv) − 2∇L(w)) / σ²   (error O(σ²)).
//! Three gradient evaluations per probe-step instead of a double backward.

use tch::Tensor;

use super::buffers::with_shifted;
use super::{Regularizer, StepOutcome};
use crate::error::Result;
use crate::hessian::probe::rademacher;
use crate::loss::{accumulate_grad, cross_entropy};
use crate::model::{Mode, Model};

/// Loss and gradient w.r.t. all trainable tensors at the current weights.
fn loss_and_grad(model: &Model, params: &[Tensor], x: &Tensor, y: &Tensor) -> Result<(f64, Vec<Tensor>, Tensor)> {
    let logits = model.forward(x, Mode::Train)?;
    let loss = cross_entropy(&logits, y)?;
    let grads = Tensor::f_run_backward(&[&loss], params, false, false)?;
    Ok((loss.f_double_value(&[])?, grads, logits.detach()))
}

pub(super) fn step(reg: &mut Regularizer, model: &Model, x: &Tensor, y: &Tensor) -> Result<StepOutcome> {
    let (loss, g0, logits) = loss_and_grad(model, &reg.all, x, y)?;
    let sigma = reg.cfg.fd_sigma;
    let weight = reg.cfg.lambda * reg.warmup_factor() / (sigma * sigma * reg.cfg.probes as f64);
    let mut total: Vec<Tensor> = g0.iter().map(|g| g.shallow_clone()).collect();
    let mut trace = 0.0;
    for _ in 0..reg.cfg.probes {
        let kind = reg.selected.tensors[0].kind();
        let v = rademacher(&mut reg.rng, 1, reg.selected.dim(), kind, x.device()).squeeze_dim(0) * sigma;
        let plus = reg.selected.split(&v);
        let minus: Vec<Tensor> = plus.iter().map(|d| -d).collect();
        let (lp, gp, _) = with_shifted(model, &reg.selected.tensors, &plus, || {
            loss_and_grad(model, &reg.all, x, y)
        })?;
        let (lm, gm, _) = with_shifted(model, &reg.selected.tensors, &minus, || {
            loss_and_grad(model, &reg.all, x, y)
        })?;
        trace += (lp + lm - 2.0 * loss) / (sigma * sigma * reg.cfg.probes as f64);
        for (((t, g0), gp), gm) in total.iter_mut().zip(&g0).zip(&gp).zip(&gm) {
            if g0.defined() && gp.defined() && gm.defined() {
                // (g₊ − g₀) + (g₋ − g₀): differences first, to lose less to cancellation.
                *t = &*t + ((gp - g0) + (gm - g0)) * weight;
            }
        }
    }
    accumulate_grad(&reg.all, &total)?;
    Ok(StepOutcome {
        loss,
        logits,
        trace: Some(trace),
        fired: true,
        reading: None,
    })
}
