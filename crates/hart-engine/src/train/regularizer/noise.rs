//! Hardware-aware noise training (Joshi et al., Nature Communications 2020;
//! IBM aihwkit's weight modifiers): every training forward pass runs on
//! w + δ with fresh Gaussian δ, σ = η·max|W| per tensor (additive, the
//! campaign's `--fault gaussian` model drawn by the same code) or η·|w|
//! (relative). δ is a constant of the step, so the gradient at the noisy
//! weights is the gradient of the clean ones (∂(w + δ)/∂w = 1) and the
//! optimiser updates the clean weights; evaluation never sees noise.

use tch::Tensor;

use super::buffers::with_values;
use super::{plain_step, NoiseKind, Regularizer, RegularizerConfig, StepOutcome};
use crate::error::{HartError, Result};
use crate::faults::noise::{noisy, normals_like};
use crate::faults::space::select_targets;
use crate::model::{Model, ParamKind};

/// The trainable tensors `--scope`/`--params` choose.
pub(super) fn targets(model: &Model, cfg: &RegularizerConfig) -> Result<Vec<Tensor>> {
    let chosen: Vec<Tensor> = select_targets(model, cfg.scope, cfg.params.as_deref())?
        .into_iter()
        .filter(|t| t.kind == ParamKind::Trainable)
        .map(|t| t.tensor)
        .collect();
    if chosen.is_empty() {
        return Err(HartError::Invalid(
            "--regularizer noise: --scope/--params choose no trainable tensor".into(),
        ));
    }
    Ok(chosen)
}

pub(super) fn step(reg: &mut Regularizer, model: &Model, x: &Tensor, y: &Tensor) -> Result<StepOutcome> {
    let eta = reg.cfg.noise_std;
    let mut values = Vec::with_capacity(reg.noisy.len());
    for w in &reg.noisy {
        values.push(match reg.cfg.noise_kind {
            NoiseKind::Additive => noisy(w, eta, false, &mut reg.rng)?,
            NoiseKind::Relative => {
                let w = w.f_detach()?;
                let z = normals_like(&w, &mut reg.rng)?.f_to_kind(w.f_kind()?)?;
                w.f_add(&w.f_mul(&z)?.f_mul_scalar(eta)?)?
            }
        });
    }
    // The noisy pass is the step itself: BatchNorm's statistics follow it.
    with_values(&reg.noisy, &values, || plain_step(model, x, y))
}
