//! Sharpness-aware minimisation (Foret et al. 2021) and its adaptive form
//! ASAM (Kwon et al. 2021): the gradient is taken at the worst-case point
//! w + ε of a ρ-ball around the weights, ε = ρ·T²g/‖Tg‖ with T = I (SAM) or
//! T = diag(|w| + η) (ASAM), then applied at w.

use tch::{Kind, Tensor};

use super::buffers::with_shifted;
use super::{Regularizer, StepOutcome};
use crate::error::Result;
use crate::loss::cross_entropy;
use crate::model::{Mode, Model};

/// ASAM's η, as in the reference implementation.
const ASAM_ETA: f64 = 0.01;

pub(super) fn step(reg: &mut Regularizer, model: &Model, x: &Tensor, y: &Tensor) -> Result<StepOutcome> {
    let logits = model.forward(x, Mode::Train)?;
    let ce = cross_entropy(&logits, y)?;
    let loss = ce.f_double_value(&[])?;
    let grads = Tensor::f_run_backward(&[&ce], &reg.all, false, false)?;
    let scale: Vec<Option<Tensor>> = reg
        .all
        .iter()
        .map(|p| reg.cfg.sam_adaptive.then(|| p.detach().abs() + ASAM_ETA))
        .collect();
    let scaled = |g: &Tensor, t: &Option<Tensor>| match t {
        Some(t) => g * t,
        None => g.shallow_clone(),
    };
    let norm = grads
        .iter()
        .zip(&scale)
        .filter(|(g, _)| g.defined())
        .map(|(g, t)| scaled(g, t).square().sum(Kind::Double).f_double_value(&[]))
        .sum::<Result<f64, _>>()?
        .sqrt();
    let factor = reg.cfg.sam_rho / norm.max(1e-12);
    let eps: Vec<Tensor> = grads
        .iter()
        .zip(&scale)
        .zip(&reg.all)
        .map(|((g, t), p)| {
            if g.defined() {
                scaled(&scaled(g, t), t) * factor
            } else {
                p.zeros_like()
            }
        })
        .collect();
    with_shifted(model, &reg.all, &eps, || {
        let perturbed = cross_entropy(&model.forward(x, Mode::Train)?, y)?;
        Ok(perturbed.f_backward()?)
    })?;
    Ok(StepOutcome {
        loss,
        logits: logits.detach(),
        trace: None,
        fired: true,
        reading: None,
    })
}
