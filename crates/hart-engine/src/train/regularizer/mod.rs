//! Training-time regularisers beyond plain cross-entropy: Hessian-aware
//! training (`hessian`: CE + λ·Tr(H) by Hutchinson with exact double
//! back-propagation, optionally selective), and the baselines SAM/ASAM
//! (`sam`) and a first-order finite-difference Hessian penalty
//! (`fd-hessian`, NSO-style), docs/hessian.md; and the hardware-fault
//! recipes, docs/hardening.md: Gaussian weight noise in every forward pass
//! (`noise`, Joshi et al. 2020) and random bit error training on quantised
//! weights (`randbet`, Stutz et al. 2021), with optional weight clipping.
//!
//! A regulariser owns the gradient computation of a step: it runs the
//! forward pass(es) and leaves the gradient of its objective in the
//! parameters' `.grad`, and the training loop's optimiser takes it from there.

pub mod audit;
mod buffers;
pub mod clip;
mod fd;
mod hat;
mod noise;
mod randbet;
mod sam;
pub mod selective;

use std::str::FromStr;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tch::Tensor;

use crate::error::{HartError, Result};
use crate::faults::{Scope, Storage};
pub use crate::hessian::gauss_newton::GnPenalty;
use crate::hessian::{LayerSelection, ParamSet};
use crate::loss::cross_entropy;
use crate::model::{Mode, Model};
pub use clip::WeightClip;
pub use hat::{hutchinson_penalty, Penalty};
pub use randbet::Injected;
pub use selective::{Reading, Selective};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegularizerKind {
    #[default]
    None,
    Hessian,
    Sam,
    FdHessian,
    /// Gaussian weight noise drawn afresh in every training forward pass.
    Noise,
    /// Quantised weights, the loss averaged with the loss at random bit errors.
    Randbet,
}

impl FromStr for RegularizerKind {
    type Err = HartError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Self::None),
            "hessian" => Ok(Self::Hessian),
            "sam" => Ok(Self::Sam),
            "fd-hessian" => Ok(Self::FdHessian),
            "noise" => Ok(Self::Noise),
            "randbet" => Ok(Self::Randbet),
            _ => Err(HartError::Invalid(format!(
                "unknown regularizer {s:?} (none, hessian, sam, fd-hessian, noise, randbet)"
            ))),
        }
    }
}

/// How HAT estimates the trace it penalises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HessianMethod {
    /// vᵀHv for Rademacher v, differentiated exactly (third-order back-propagation).
    Hutchinson,
    /// ‖Jᵀr‖² with E[rrᵀ] = the softmax Hessian: the Gauss–Newton trace, equal to
    /// Tr(H) for networks linear in each single weight; gradients by double back-propagation.
    #[default]
    GaussNewton,
}

impl FromStr for HessianMethod {
    type Err = HartError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "hutchinson" => Ok(Self::Hutchinson),
            "gauss-newton" | "gn" => Ok(Self::GaussNewton),
            _ => Err(HartError::Invalid(format!(
                "unknown Hessian method {s:?} (hutchinson, gauss-newton)"
            ))),
        }
    }
}

/// How `noise` scales its Gaussian draws ξ ~ N(0, 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoiseKind {
    /// w + η·max|W|·ξ, max over the tensor (aihwkit's additive noise
    /// relative to the actual max weight; `hart campaign --fault gaussian`).
    #[default]
    Additive,
    /// w·(1 + η·ξ): noise proportional to each weight.
    Relative,
}

impl FromStr for NoiseKind {
    type Err = HartError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "additive" => Ok(Self::Additive),
            "relative" => Ok(Self::Relative),
            _ => Err(HartError::Invalid(format!(
                "unknown noise kind {s:?} (additive, relative)"
            ))),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RegularizerConfig {
    pub kind: RegularizerKind,
    /// Weight λ of the trace penalty (`hessian`, `fd-hessian`).
    pub lambda: f64,
    /// Trace estimator of `hessian`.
    pub method: HessianMethod,
    /// λ rises linearly from λ/warmup to λ over the first `warmup` regularised steps (0 = off).
    pub warmup: usize,
    /// Hutchinson probes per penalised step (`hessian`, `fd-hessian`).
    pub probes: usize,
    /// Apply the regulariser on every K-th step only; the others are plain steps.
    pub every: usize,
    /// Parameters whose Hessian block is penalised (`hessian`, `fd-hessian`).
    pub layers: LayerSelection,
    /// Fire the penalty only when a curvature reading beats its running mean (`hessian`).
    pub selective: Option<Selective>,
    /// Take the penalty on the first N samples of the minibatch only (0 = all; `hessian`).
    pub sub_batch: usize,
    /// Audit the selective readings on every N-th penalised step (0 = off; `hessian`).
    pub audit_every: usize,
    /// SAM neighbourhood radius ρ.
    pub sam_rho: f64,
    /// ASAM: scale the SAM perturbation by |w| (Kwon et al. 2021).
    pub sam_adaptive: bool,
    /// Finite-difference step σ of `fd-hessian`.
    pub fd_sigma: f64,
    /// η of `noise`: σ = η·max|W| (additive) or η·|w| (relative).
    pub noise_std: f64,
    pub noise_kind: NoiseKind,
    /// The tensors `noise` perturbs and `randbet` puts errors into, chosen as
    /// `hart campaign --scope/--params` chooses them (trainable ones only).
    pub scope: Scope,
    pub params: Option<String>,
    /// The integer format `randbet` trains in (int8 or int4).
    pub storage: Storage,
    /// `randbet`'s bit-error rate p per stored bit.
    pub bit_error_rate: f64,
    /// Clamp every weight tensor to [−W, W] before training and after each
    /// update (any regulariser, or none).
    pub clip_weights: Option<f64>,
    /// The clip bound is W·max|W₀| per tensor, W₀ the weights training starts from.
    pub clip_relative: bool,
}

impl Default for RegularizerConfig {
    fn default() -> Self {
        RegularizerConfig {
            kind: RegularizerKind::None,
            lambda: 0.01,
            method: HessianMethod::default(),
            warmup: 0,
            probes: 1,
            every: 1,
            layers: LayerSelection::All,
            selective: None,
            sub_batch: 0,
            audit_every: 0,
            sam_rho: 0.05,
            sam_adaptive: false,
            fd_sigma: 0.01,
            noise_std: 0.05,
            noise_kind: NoiseKind::Additive,
            scope: Scope::All,
            params: None,
            storage: Storage::Int8,
            bit_error_rate: 0.01,
            clip_weights: None,
            clip_relative: false,
        }
    }
}

impl RegularizerConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(HartError::Invalid(msg));
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            return bad(format!(
                "--hessian-lambda must be a finite number ≥ 0, got {}",
                self.lambda
            ));
        }
        if self.probes == 0 {
            return bad("--hessian-probes must be at least 1".into());
        }
        if self.every == 0 {
            return bad("--hessian-every must be at least 1".into());
        }
        if !(self.sam_rho > 0.0 && self.sam_rho.is_finite()) {
            return bad(format!("--sam-rho must be positive, got {}", self.sam_rho));
        }
        if !(self.fd_sigma > 0.0 && self.fd_sigma.is_finite()) {
            return bad(format!("--fd-sigma must be positive, got {}", self.fd_sigma));
        }
        if let Some(s) = &self.selective {
            if self.kind != RegularizerKind::Hessian {
                return bad("--hessian-selective needs --regularizer hessian".into());
            }
            s.validate()?;
        }
        if self.audit_every > 0 && self.kind != RegularizerKind::Hessian {
            return bad("--audit-readings needs --regularizer hessian".into());
        }
        if !(self.noise_std >= 0.0 && self.noise_std.is_finite()) {
            return bad(format!(
                "--noise-std must be a finite number ≥ 0, got {}",
                self.noise_std
            ));
        }
        if !(0.0..=1.0).contains(&self.bit_error_rate) {
            return bad(format!(
                "--bit-error-rate must be in [0, 1], got {}",
                self.bit_error_rate
            ));
        }
        if self.kind == RegularizerKind::Randbet && self.storage.int_bits().is_none() {
            return bad(format!(
                "--storage {}: randbet trains on integer codes (int8 or int4)",
                self.storage
            ));
        }
        if let Some(w) = self.clip_weights {
            if !(w > 0.0 && w.is_finite()) {
                return bad(format!("--clip-weights must be positive, got {w}"));
            }
        } else if self.clip_relative {
            return bad("--clip-relative needs --clip-weights W".into());
        }
        Ok(())
    }
}

/// What one step computed, besides the gradients it left in `.grad`.
pub struct StepOutcome {
    /// Mean cross-entropy of the minibatch at the current weights.
    pub loss: f64,
    /// The minibatch logits at the current weights (for accuracy).
    pub logits: Tensor,
    /// The step's Hutchinson estimate of Tr(H) over the selected parameters, when evaluated.
    pub trace: Option<f64>,
    /// Whether the regulariser's gradient went into this step.
    pub fired: bool,
    /// The selective rule's curvature reading, when taken.
    pub reading: Option<f64>,
}

/// A regulariser bound to a model: its parameter selection and running state.
pub struct Regularizer {
    cfg: RegularizerConfig,
    /// Every trainable tensor: all of them receive the objective's gradient.
    all: Vec<Tensor>,
    /// The tensors whose Hessian block is penalised.
    selected: ParamSet,
    rng: ChaCha8Rng,
    selective: selective::State,
    audit: Option<audit::Audit>,
    step: usize,
    /// The tensors `noise` perturbs.
    noisy: Vec<Tensor>,
    /// `randbet`'s stored tensors and the bits errors can hit.
    randbet: Option<randbet::Targets>,
    injected: Option<Injected>,
}

impl Regularizer {
    pub fn new(model: &Model, cfg: &RegularizerConfig, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let selected = ParamSet::select(model, &cfg.layers)?;
        let s = cfg.selective.unwrap_or_default();
        let audit = match cfg.audit_every {
            0 => None,
            every => Some(audit::Audit::new(every, s.top_p, s.diag_frac, seed)?),
        };
        let noisy = match cfg.kind {
            RegularizerKind::Noise => noise::targets(model, cfg)?,
            _ => vec![],
        };
        let randbet = match cfg.kind {
            RegularizerKind::Randbet => Some(randbet::Targets::new(model, cfg)?),
            _ => None,
        };
        Ok(Regularizer {
            cfg: cfg.clone(),
            all: model.trainable().into_iter().map(|(_, t)| t).collect(),
            selected,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x4841_5254),
            selective: selective::State::default(),
            audit,
            step: 0,
            noisy,
            randbet,
            injected: None,
        })
    }

    pub fn config(&self) -> &RegularizerConfig {
        &self.cfg
    }

    /// The audit checkpoints recorded since the last call.
    pub fn take_audit(&mut self) -> Vec<audit::AuditRow> {
        self.audit
            .as_mut()
            .map(|a| std::mem::take(&mut a.rows))
            .unwrap_or_default()
    }

    /// What the last `randbet` step injected (None for other regularisers).
    pub fn take_injected(&mut self) -> Option<Injected> {
        self.injected.take()
    }

    /// The Hutchinson probes the next step will draw, per penalised tensor as
    /// `(name, [probes, ..shape])`, without consuming the draw; None when the
    /// next step is no Hutchinson HAT step. A reference implementation
    /// (PyTorch in tests/python/user_models_reference.py) replays the step
    /// with them.
    pub fn next_hutchinson_probes(&self) -> Result<Option<Vec<(String, Tensor)>>> {
        let hutchinson = self.cfg.kind == RegularizerKind::Hessian && self.cfg.method == HessianMethod::Hutchinson;
        if !hutchinson || !self.step.is_multiple_of(self.cfg.every) {
            return Ok(None);
        }
        let v = hat::hutchinson_probes(&mut self.rng.clone(), self.cfg.probes, &self.selected, tch::Device::Cpu);
        let mut parts = Vec::with_capacity(self.selected.len());
        for (i, (name, t)) in self.selected.names.iter().zip(&self.selected.tensors).enumerate() {
            let (start, len) = self.selected.range(i);
            let mut shape = vec![self.cfg.probes as i64];
            shape.extend(t.size());
            parts.push((name.clone(), v.f_narrow(1, start, len)?.f_reshape(shape.as_slice())?));
        }
        Ok(Some(parts))
    }

    /// The share of λ this step applies under the warm-up (`step` already counts it).
    fn warmup_factor(&self) -> f64 {
        if self.cfg.warmup == 0 {
            return 1.0;
        }
        let regularised = self.step.div_ceil(self.cfg.every);
        (regularised as f64 / self.cfg.warmup as f64).min(1.0)
    }

    /// Computes this step's gradients into `.grad` (zeroed by the caller).
    pub fn step(&mut self, model: &Model, x: &Tensor, y: &Tensor) -> Result<StepOutcome> {
        let active = self.cfg.kind != RegularizerKind::None && self.step.is_multiple_of(self.cfg.every);
        self.step += 1;
        if !active {
            return plain_step(model, x, y);
        }
        match self.cfg.kind {
            RegularizerKind::None => plain_step(model, x, y),
            RegularizerKind::Hessian => hat::step(self, model, x, y),
            RegularizerKind::Sam => sam::step(self, model, x, y),
            RegularizerKind::FdHessian => fd::step(self, model, x, y),
            RegularizerKind::Noise => noise::step(self, model, x, y),
            RegularizerKind::Randbet => randbet::step(self, model, x, y),
        }
    }
}

/// Cross-entropy and its gradient, exactly as plain training does it.
pub fn plain_step(model: &Model, x: &Tensor, y: &Tensor) -> Result<StepOutcome> {
    let logits = model.forward(x, Mode::Train)?;
    let loss = cross_entropy(&logits, y)?;
    let value = loss.f_double_value(&[])?;
    loss.f_backward()?;
    Ok(StepOutcome {
        loss: value,
        logits,
        trace: None,
        fired: false,
        reading: None,
    })
}
