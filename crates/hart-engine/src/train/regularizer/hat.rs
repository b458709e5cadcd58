//! Hessian-aware training's penalty: λ·Tr(H_S) for the selected parameter
//! block S, estimated by Hutchinson on the minibatch, differentiated exactly
//! (the gradient of vᵀHv flows back through the Hessian-vector product's
//! own graph: third-order terms included, no approximation).

use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use super::buffers::Snapshot;
use super::selective::{lanczos_reading, power_update, top_share_mean, Reading};
use super::{HessianMethod, Regularizer, StepOutcome};
use crate::error::Result;
use crate::hessian::gauss_newton::gauss_newton_penalty;
use crate::hessian::operator::{dot_parts, GraphHessian, HvpOperator};
use crate::hessian::probe::rademacher;
use crate::hessian::ParamSet;
use crate::loss::cross_entropy;
use crate::model::{Mode, Model};

/// The Hutchinson penalty of one loss, with its graph kept for differentiation.
pub struct Penalty {
    /// Mean over the probes of vᵀHv: differentiable w.r.t. every parameter.
    pub value: Tensor,
    /// Mean over the probes of v ⊙ Hv (detached, flat): the diagonal estimate.
    pub diag: Tensor,
    /// ∇_S loss with its graph (create_graph), reusable for more HVPs.
    pub grads: Vec<Tensor>,
}

/// vᵀHv averaged over the rows of `v` (`[probes, dim]` in `params`' flat
/// layout), H the Hessian of `loss` w.r.t. `params`.
pub fn hutchinson_penalty(loss: &Tensor, params: &ParamSet, v: &Tensor) -> Result<Penalty> {
    let grads = Tensor::f_run_backward(&[loss], &params.tensors, true, true)?;
    let probes = v.size()[0];
    let mut total: Option<Tensor> = None;
    let diag = v.get(0).zeros_like();
    for j in 0..probes {
        let vj = v.get(j);
        let parts = params.split(&vj);
        let Some(gv) = dot_parts(&grads, &parts).filter(|t| t.requires_grad()) else {
            continue;
        };
        let hv = Tensor::f_run_backward(&[&gv], &params.tensors, true, true)?;
        let vhv = dot_parts(&hv, &parts).unwrap_or_else(|| gv.zeros_like());
        let _ = diag.shallow_clone().f_add_(&(&vj * params.flatten(&hv).detach()))?;
        total = Some(match total {
            Some(t) => t + vhv,
            None => vhv,
        });
    }
    let value = total.map_or_else(|| loss.zeros_like(), |t| t / probes as f64);
    Ok(Penalty {
        value,
        diag: diag / probes as f64,
        grads,
    })
}

/// The `[probes, dim]` Rademacher block of one Hutchinson step, in the
/// selected parameters' flat layout (their kind, on `device`).
pub(super) fn hutchinson_probes(rng: &mut ChaCha8Rng, probes: usize, selected: &ParamSet, device: Device) -> Tensor {
    let kind = selected.tensors[0].kind();
    rademacher(rng, probes as i64, selected.dim(), kind, device)
}

/// One HAT step: CE on the minibatch, the penalty on the minibatch (or its
/// first `sub_batch` samples), the selective decision, the backward passes.
pub(super) fn step(reg: &mut Regularizer, model: &Model, x: &Tensor, y: &Tensor) -> Result<StepOutcome> {
    let logits = model.forward(x, Mode::Train)?;
    let ce = cross_entropy(&logits, y)?;
    let loss = ce.f_double_value(&[])?;
    let n = x.size()[0];
    let sub = reg.cfg.sub_batch as i64;
    // The sub-batch pass moves BatchNorm's running statistics, which are put
    // back only after the backward passes: writing them in place earlier would
    // invalidate the graphs of both passes, which saved them.
    let (pen_logits, pen_y, buffers) = if sub > 0 && sub < n {
        let buffers = Snapshot::take(model);
        let sub_logits = model.forward(&x.narrow(0, 0, sub), Mode::Train)?;
        (sub_logits, y.narrow(0, 0, sub), Some(buffers))
    } else {
        (logits.shallow_clone(), y.shallow_clone(), None)
    };
    let lambda = reg.cfg.lambda * reg.warmup_factor();
    let (trace, reading, fired) = match reg.cfg.method {
        HessianMethod::Hutchinson => {
            let pen_loss = if sub > 0 && sub < n {
                cross_entropy(&pen_logits, &pen_y)?
            } else {
                ce.shallow_clone()
            };
            let v = hutchinson_probes(&mut reg.rng, reg.cfg.probes, &reg.selected, x.device());
            let pen = hutchinson_penalty(&pen_loss, &reg.selected, &v)?;
            let grads = || Ok(pen.grads.iter().map(Tensor::shallow_clone).collect());
            audit(reg, &pen.diag, grads)?;
            let reading = take_reading(reg, &pen.diag, grads)?;
            let fired = reading.is_none_or(|r| reg.selective.decide(r));
            let objective = if fired { &ce + &pen.value * lambda } else { ce };
            objective.f_backward()?;
            (pen.value.f_double_value(&[])?, reading, fired)
        }
        HessianMethod::GaussNewton => {
            let size = pen_logits.size();
            let u = rademacher(
                &mut reg.rng,
                reg.cfg.probes as i64,
                size[0] * size[1],
                pen_logits.kind(),
                x.device(),
            )
            .f_view([reg.cfg.probes as i64, size[0], size[1]])?;
            let pen = gauss_newton_penalty(&pen_logits, &reg.selected, &u)?;
            let selected: Vec<Tensor> = reg.selected.tensors.iter().map(Tensor::shallow_clone).collect();
            let grads = || {
                let pen_loss = cross_entropy(&pen_logits, &pen_y)?;
                Ok(Tensor::f_run_backward(&[&pen_loss], &selected, true, true)?)
            };
            audit(reg, &pen.diag, grads)?;
            let reading = take_reading(reg, &pen.diag, grads)?;
            let fired = reading.is_none_or(|r| reg.selective.decide(r));
            if fired {
                pen.backward_with(&ce, &reg.all, lambda)?;
            } else {
                ce.f_backward()?;
            }
            (pen.value.f_double_value(&[])?, reading, fired)
        }
    };
    if let Some(b) = buffers {
        b.restore()?;
    }
    Ok(StepOutcome {
        loss,
        logits,
        trace: Some(trace),
        fired,
        reading,
    })
}

/// Feeds the readings audit, when one is on.
fn audit(reg: &mut Regularizer, diag: &Tensor, grads: impl FnOnce() -> Result<Vec<Tensor>>) -> Result<()> {
    match reg.audit.as_mut() {
        Some(a) => a.observe(&reg.selected, diag, &grads()?),
        None => Ok(()),
    }
}

/// The selective rule's reading, when the rule is on. `grads` gives ∇_S CE
/// with its graph, for readings that need Hessian-vector products.
fn take_reading(
    reg: &mut Regularizer,
    diag: &Tensor,
    grads: impl FnOnce() -> Result<Vec<Tensor>>,
) -> Result<Option<f64>> {
    let Some(s) = reg.cfg.selective else {
        return Ok(None);
    };
    Ok(Some(match s.reading {
        Reading::Diag => top_share_mean(diag, s.diag_frac)?,
        Reading::Power => power_reading(reg, &grads()?, s.top_p)?,
        Reading::Lanczos => {
            let grads = grads()?;
            let mut op = GraphHessian::new(&reg.selected, &grads);
            let kind = reg.selected.tensors[0].f_kind()?;
            lanczos_reading(&mut op, s.top_p, kind, &mut reg.rng)?
        }
    }))
}

/// The mean of the top-p Ritz values after one power step from last time's subspace.
fn power_reading(reg: &mut Regularizer, grads: &[Tensor], p: usize) -> Result<f64> {
    let (reading, next) = power_step(&reg.selected, grads, reg.selective.power.take(), p, &mut reg.rng)?;
    reg.selective.power = Some(next);
    Ok(reading)
}

/// One warm-started block power step on the minibatch Hessian of `grads`:
/// the reading and the subspace to start from next time.
pub(super) fn power_step(
    params: &ParamSet,
    grads: &[Tensor],
    warm: Option<Tensor>,
    p: usize,
    rng: &mut ChaCha8Rng,
) -> Result<(f64, Tensor)> {
    let dim = params.dim();
    let p = (p as i64).min(dim);
    let v = match warm {
        Some(v) => v,
        None => {
            let r = rademacher(rng, p, dim, params.tensors[0].kind(), grads[0].device());
            let (q, _) = Tensor::f_linalg_qr(&r.to_kind(Kind::Double).tr(), "reduced")?;
            q.tr().to_kind(r.kind()).contiguous()
        }
    };
    let hv = GraphHessian::new(params, grads).apply(&v)?;
    power_update(&v, &hv)
}
