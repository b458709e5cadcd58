//! Supervised training (`hart train`): plain, or with a regulariser
//! (Hessian-aware training and its baselines, see [`regularizer`]).

pub mod optim;
pub mod regularizer;
pub mod tune;

use std::time::Instant;

use indicatif::ProgressBar;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tch::{Device, Kind};

use crate::data::Dataset;
use crate::error::{HartError, Result};
use crate::eval::correct_mask;
use crate::model::Model;
pub use optim::{Optimizer, OptimizerConfig, OptimizerKind};
pub use regularizer::{HessianMethod, NoiseKind, Regularizer, RegularizerConfig, RegularizerKind, WeightClip};

#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerConfig,
    pub seed: u64,
    pub device: Device,
    /// Clip the joint gradient norm of each step to this (None = off).
    pub clip_grad_norm: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub seconds: f64,
    /// Mean over the epoch's regularised steps of the minibatch Tr(H) estimate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_estimate: Option<f64>,
    /// Steps on which the regulariser was evaluated, and on which its gradient was applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub penalty_evaluated: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub penalty_fired: Option<usize>,
    /// The selective rule's curvature readings, one per evaluated step, in order.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub readings: Vec<f64>,
    /// Readings audit checkpoints of this epoch (`audit_every`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit: Vec<regularizer::audit::AuditRow>,
    /// `randbet`: bit errors drawn over the epoch, the stored bits each step
    /// exposed to them, and the mean cross-entropy at the faulty weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bit_errors: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_bits: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perturbed_loss: Option<f64>,
}

/// The order in which an epoch visits the training set: a seeded shuffle, so
/// a run is reproducible from `--seed` alone.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ epoch as u64);
    order.shuffle(&mut rng);
    order
}

/// Trains `model` (already on `cfg.device`) in place. `bar` counts samples.
pub fn train(model: &Model, data: &Dataset, cfg: &TrainConfig, bar: &ProgressBar) -> Result<Vec<EpochLog>> {
    train_with(model, data, cfg, &RegularizerConfig::default(), bar)
}

/// [`train`] with a regulariser computing each step's gradients.
pub fn train_with(
    model: &Model,
    data: &Dataset,
    cfg: &TrainConfig,
    reg: &RegularizerConfig,
    bar: &ProgressBar,
) -> Result<Vec<EpochLog>> {
    if data.is_empty() {
        return Err(HartError::Invalid("cannot train on an empty dataset".into()));
    }
    if cfg.batch_size == 0 {
        return Err(HartError::Invalid("--batch-size must be at least 1".into()));
    }
    if let Some(c) = cfg.clip_grad_norm {
        if !(c > 0.0 && c.is_finite()) {
            return Err(HartError::Invalid(format!(
                "--clip-grad-norm must be positive, got {c}"
            )));
        }
    }
    let params: Vec<_> = model.trainable().into_iter().map(|(_, t)| t).collect();
    let mut opt = Optimizer::new(params, cfg.optimizer);
    let mut reg = Regularizer::new(model, reg, cfg.seed)?;
    let regularized = reg.config().kind != RegularizerKind::None;
    let clip = match reg.config().clip_weights {
        Some(w) => Some(WeightClip::new(model, w, reg.config().clip_relative)?),
        None => None,
    };
    if let Some(c) = &clip {
        c.apply()?;
    }
    bar.set_length((cfg.epochs * data.len()) as u64);
    let mut logs = Vec::with_capacity(cfg.epochs);
    for epoch in 1..=cfg.epochs {
        let start = Instant::now();
        let order = epoch_order(data.len(), cfg.seed, epoch);
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0i64, 0usize);
        let (mut trace_sum, mut traced, mut evaluated, mut fired) = (0f64, 0usize, 0usize, 0usize);
        let (mut readings, mut audit) = (vec![], vec![]);
        let mut injected: Option<(u64, u64, f64, usize)> = None;
        for (step, idx) in order.chunks(cfg.batch_size).enumerate() {
            // A Python caller's Ctrl-C ends training between steps (nothing is written).
            crate::interrupt::check()?;
            let (x, y) = data.batch(idx);
            let (x, y) = (x.to_device(cfg.device), y.to_device(cfg.device));
            opt.zero_grad();
            let out = reg.step(model, &x, &y)?;
            tracing::debug!(epoch, step, loss = out.loss, trace = ?out.trace, fired = out.fired, "step");
            let (loss_value, logits) = (out.loss, out.logits);
            if let Some(t) = out.trace {
                trace_sum += t;
                traced += 1;
            }
            readings.extend(out.reading);
            audit.extend(reg.take_audit());
            if let Some(i) = reg.take_injected() {
                let (errors, bits, loss, n) = injected.get_or_insert((0, 0, 0.0, 0));
                *errors += i.bit_errors;
                *bits = i.stored_bits;
                *loss += i.perturbed_loss;
                *n += 1;
            }
            evaluated += usize::from(out.trace.is_some() || out.fired);
            fired += usize::from(out.fired);
            if !loss_value.is_finite() {
                return Err(HartError::Invalid(format!(
                    "training diverged at epoch {epoch}, step {step}: loss is {loss_value}; lower --lr"
                )));
            }
            if let Some(max) = cfg.clip_grad_norm {
                opt.clip_grad_norm(max)?;
            }
            opt.step();
            if let Some(c) = &clip {
                c.apply()?;
            }
            loss_sum += loss_value * idx.len() as f64;
            correct += tch::no_grad(|| correct_mask(&logits, &y).sum(Kind::Int64).f_int64_value(&[]))?;
            seen += idx.len();
            bar.inc(idx.len() as u64);
            bar.set_message(format!(
                "epoch {epoch}/{} loss {:.4} acc {:.2}%",
                cfg.epochs,
                loss_sum / seen as f64,
                100.0 * correct as f64 / seen as f64
            ));
        }
        let log = EpochLog {
            epoch,
            loss: loss_sum / seen as f64,
            accuracy: correct as f64 / seen as f64,
            seconds: start.elapsed().as_secs_f64(),
            trace_estimate: (traced > 0).then(|| trace_sum / traced as f64),
            penalty_evaluated: regularized.then_some(evaluated),
            penalty_fired: regularized.then_some(fired),
            readings,
            audit,
            bit_errors: injected.map(|i| i.0),
            stored_bits: injected.map(|i| i.1),
            perturbed_loss: injected.map(|i| i.2 / i.3 as f64),
        };
        model
            .check_finite()
            .map_err(|e| HartError::Invalid(format!("training diverged in epoch {epoch} ({e}); lower --lr")))?;
        tracing::info!(
            epoch,
            loss = log.loss,
            accuracy = log.accuracy,
            seconds = log.seconds,
            "epoch done"
        );
        logs.push(log);
    }
    Ok(logs)
}
