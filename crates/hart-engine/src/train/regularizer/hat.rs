//! Hessian-aware training's penalty: λ·Tr(H_S) for the selected parameter
//! block S, estimated by Hutchinson on the minibatch, differentiated exactly
//! (the gradient of vᵀHv flows back through the Hessian-vector product's
//! own graph: third-order terms included, no approximation).

use tch::{Kind, Tensor};

use super::buffers::Snapshot;
use super::selective::{power_update, top_share_mean, Reading};
use super::{cross_entropy, Regularizer, StepOutcome};
use crate::error::Result;
use crate::hessian::operator::dot_parts;
use crate::hessian::probe::rademacher;
use crate::hessian::ParamSet;
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

/// One HAT step: CE on the minibatch, the penalty on the minibatch (or its
/// first `sub_batch` samples), the selective decision, one backward.
pub(super) fn step(reg: &mut Regularizer, model: &Model, x: &Tensor, y: &Tensor) -> Result<StepOutcome> {
    let logits = model.forward(x, Mode::Train)?;
    let ce = cross_entropy(&logits, y)?;
    let loss = ce.f_double_value(&[])?;
    let n = x.size()[0];
    let sub = reg.cfg.sub_batch as i64;
    let pen_loss = if sub > 0 && sub < n {
        let buffers = Snapshot::take(model);
        let sub_logits = model.forward(&x.narrow(0, 0, sub), Mode::Train)?;
        buffers.restore()?;
        cross_entropy(&sub_logits, &y.narrow(0, 0, sub))?
    } else {
        ce.shallow_clone()
    };
    let kind = reg.selected.tensors[0].kind();
    let device = x.device();
    let v = rademacher(&mut reg.rng, reg.cfg.probes as i64, reg.selected.dim(), kind, device);
    let pen = hutchinson_penalty(&pen_loss, &reg.selected, &v)?;
    let trace = pen.value.f_double_value(&[])?;
    let reading = match reg.cfg.selective {
        None => None,
        Some(s) => Some(match s.reading {
            Reading::Diag => top_share_mean(&pen.diag, s.diag_frac)?,
            Reading::Power => power_reading(reg, &pen.grads, s.top_p)?,
        }),
    };
    let fired = reading.is_none_or(|r| reg.selective.decide(r));
    let objective = if fired { &ce + &pen.value * reg.cfg.lambda } else { ce };
    objective.f_backward()?;
    Ok(StepOutcome {
        loss,
        logits,
        trace: Some(trace),
        fired,
        reading,
    })
}

/// The mean of the top-p Ritz values after one power step from last time's subspace.
fn power_reading(reg: &mut Regularizer, grads: &[Tensor], p: usize) -> Result<f64> {
    let params = &reg.selected;
    let dim = params.dim();
    let p = (p as i64).min(dim);
    let v = match reg.selective.power.take() {
        Some(v) => v,
        None => {
            let r = rademacher(&mut reg.rng, p, dim, params.tensors[0].kind(), grads[0].device());
            let (q, _) = Tensor::f_linalg_qr(&r.to_kind(Kind::Double).tr(), "reduced")?;
            q.tr().to_kind(r.kind()).contiguous()
        }
    };
    let rows: Vec<Tensor> = (0..p)
        .map(|j| -> Result<Tensor> {
            let parts = params.split(&v.get(j));
            match dot_parts(grads, &parts).filter(|t| t.requires_grad()) {
                Some(gv) => Ok(params.flatten(&Tensor::f_run_backward(&[&gv], &params.tensors, true, false)?)),
                None => Ok(v.get(j).zeros_like()),
            }
        })
        .collect::<Result<_>>()?;
    let hv = Tensor::f_stack(&rows, 0)?;
    let (reading, next) = power_update(&v, &hv)?;
    reg.selective.power = Some(next);
    Ok(reading)
}
