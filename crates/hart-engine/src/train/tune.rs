//! The HAT paper's choice of λ: train briefly with each candidate, measure
//! how sensitive each model is to bit flips and how accurate it is on a
//! validation slice held out from the training split, and keep the least
//! sensitive λ whose accuracy stays within a budget of plain training.
//! The test split is never read, so a verdict later measured on it was not
//! tuned on it.

use std::path::Path;

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use super::{train_with, RegularizerConfig, RegularizerKind, TrainConfig};
use crate::data::Dataset;
use crate::error::{HartError, Result};
use crate::eval::evaluate;
use crate::faults::{self, Format};
use crate::model::Start;

#[derive(Debug, Clone)]
pub struct TuneConfig {
    /// Candidate λ values (plain training, λ = 0, is always trained as the reference).
    pub grid: Vec<f64>,
    pub train: TrainConfig,
    /// The regulariser every candidate uses, λ aside (`kind` must be `hessian` or `fd-hessian`).
    pub regularizer: RegularizerConfig,
    /// Elements sampled for the sensitivity sweep (all 32 bits of each).
    pub sweep_params: u64,
    /// Validation images the sweep evaluates (the first of the held-out slice).
    pub sweep_images: usize,
    pub threshold: f64,
    pub confidence: f64,
    /// Largest validation-accuracy loss against plain training a chosen λ may cost (a fraction).
    pub accuracy_budget: f64,
    /// Tensors every candidate holds fixed (`--freeze`, a whole-name regex).
    pub freeze: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TunePoint {
    /// 0 for the plain reference.
    pub lambda: f64,
    pub val_accuracy: f64,
    pub flips: u64,
    pub erratic_bits: u64,
    /// Erratic bits per flip, with its Wilson interval.
    pub sensitivity: f64,
    pub sensitivity_ci: (f64, f64),
    pub within_budget: bool,
    pub train_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TuneReport {
    pub points: Vec<TunePoint>,
    /// The least sensitive λ within the accuracy budget; None when none of the grid is.
    pub chosen: Option<f64>,
    pub accuracy_budget: f64,
    pub train_images: usize,
    pub val_images: usize,
    pub sweep_images: usize,
    pub seed: u64,
}

impl TuneConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(HartError::Invalid(m));
        if self.grid.is_empty() {
            return bad("--grid needs at least one λ".into());
        }
        if let Some(l) = self.grid.iter().find(|l| !(**l > 0.0 && l.is_finite())) {
            return bad(format!("--grid values must be positive, got {l}"));
        }
        if !matches!(
            self.regularizer.kind,
            RegularizerKind::Hessian | RegularizerKind::FdHessian
        ) {
            return bad("tuning λ needs --regularizer hessian or fd-hessian".into());
        }
        if !(0.0..1.0).contains(&self.accuracy_budget) {
            return bad(format!(
                "--accuracy-budget must be in [0, 1), got {}",
                self.accuracy_budget
            ));
        }
        if self.sweep_params == 0 || self.sweep_images == 0 {
            return bad("the sensitivity sweep needs at least one element and one image".into());
        }
        self.regularizer.validate()
    }
}

/// Trains plain and every λ of the grid on `train` (seeded identically, from
/// the same initial weights: `start` built afresh for each), measures each
/// on `val`, and picks λ.
/// `scratch` holds the sweeps' tables; `on_point` sees each result as it lands.
pub fn tune_lambda(
    start: &Start,
    train: &Dataset,
    val: &Dataset,
    cfg: &TuneConfig,
    scratch: &Path,
    bar: &ProgressBar,
    mut on_point: impl FnMut(&TunePoint),
) -> Result<TuneReport> {
    cfg.validate()?;
    if train.is_empty() || val.is_empty() {
        return Err(HartError::Invalid(
            "tuning λ needs training and validation images".into(),
        ));
    }
    let mut sweep_val = val.clone();
    sweep_val.truncate(cfg.sweep_images.min(val.len()));
    let mut points: Vec<TunePoint> = Vec::new();
    for (i, lambda) in std::iter::once(0.0).chain(cfg.grid.iter().copied()).enumerate() {
        let reg = if lambda == 0.0 {
            RegularizerConfig::default()
        } else {
            RegularizerConfig {
                lambda,
                ..cfg.regularizer.clone()
            }
        };
        let mut model = start.build(train, cfg.train.seed)?;
        if let Some(f) = &cfg.freeze {
            model.freeze(f)?;
        }
        model.to_device(cfg.train.device)?;
        bar.set_message(format!("λ = {lambda}"));
        let start = std::time::Instant::now();
        train_with(&model, train, &cfg.train, &reg, bar)?;
        let train_seconds = start.elapsed().as_secs_f64();
        let val_accuracy = evaluate(&model, val, 256, cfg.train.device)?.accuracy;
        let sweep_cfg = faults::SweepConfig {
            sample: Some((faults::SampleSize::Count(cfg.sweep_params), cfg.train.seed)),
            threshold: cfg.threshold,
            confidence: cfg.confidence,
            ..faults::SweepConfig::new()
        };
        let sweep = faults::prepare(&model, &sweep_val, &sweep_cfg)?;
        let dir = scratch.join(format!("sweep-{i}"));
        sweep.run(&dir, &mut |_| {})?;
        let summary = faults::sweep::finish(&dir, Format::Csv)?;
        let c = &summary.counts;
        let (sensitivity, sensitivity_ci) = match &summary.estimate {
            Some(e) => (e.erratic_fraction, e.erratic_fraction_ci),
            None => {
                let k = c.erratic_bits;
                let n = c.flips.max(1);
                (k as f64 / n as f64, faults::stats::wilson(k, n, 0, cfg.confidence))
            }
        };
        let plain_accuracy = points.first().map_or(val_accuracy, |p| p.val_accuracy);
        let point = TunePoint {
            lambda,
            val_accuracy,
            flips: c.flips,
            erratic_bits: c.erratic_bits,
            sensitivity,
            sensitivity_ci,
            within_budget: val_accuracy >= plain_accuracy - cfg.accuracy_budget,
            train_seconds,
        };
        on_point(&point);
        points.push(point);
    }
    let chosen = points
        .iter()
        .skip(1)
        .filter(|p| p.within_budget)
        .min_by(|a, b| a.sensitivity.total_cmp(&b.sensitivity))
        .map(|p| p.lambda);
    Ok(TuneReport {
        points,
        chosen,
        accuracy_budget: cfg.accuracy_budget,
        train_images: train.len(),
        val_images: val.len(),
        sweep_images: sweep_val.len(),
        seed: cfg.train.seed,
    })
}
