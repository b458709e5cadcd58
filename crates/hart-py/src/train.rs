//! `hart._hart.train`: `hart train --model FILE` (from the file's weights, or
//! `reinit` from a fresh initialisation of its graph) with any regulariser,
//! the trained model written to `out` in the file's format as the CLI writes
//! it, with the training log beside it (`out` with extension .train.json).
//! The Python side reads the trained tensors back into the user's module.

use std::path::{Path, PathBuf};

use hart::data::Dataset;
use hart::eval::evaluate;
use hart::faults::Storage;
use hart::model::{ModelSource, Normalization, Start};
use hart::train::regularizer::audit::tracking;
use hart::train::regularizer::{Reading, Selective};
use hart::train::{
    train_with, HessianMethod, NoiseKind, OptimizerConfig, OptimizerKind, RegularizerConfig, RegularizerKind,
    TrainConfig,
};
use hart::HartError;
use pyo3::prelude::*;

use crate::data::Data;
use crate::sweep::parse;
use crate::{call, device};

/// The regulariser options of `hart train`, by their CLI names.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct RegularizerOptions {
    regularizer: String,
    hessian_lambda: f64,
    hessian_method: String,
    hessian_warmup: usize,
    hessian_probes: usize,
    hessian_every: usize,
    hessian_layers: String,
    hessian_selective: bool,
    hessian_reading: String,
    hessian_top_p: usize,
    hessian_diag_frac: f64,
    hessian_batch: usize,
    audit_readings: usize,
    sam_rho: f64,
    asam: bool,
    fd_sigma: f64,
    noise_std: f64,
    noise_kind: String,
    scope: String,
    params: Option<String>,
    storage: String,
    bit_error_rate: f64,
    clip_weights: Option<f64>,
    clip_relative: bool,
}

impl RegularizerOptions {
    /// The engine's configuration, parsed and checked as `hart train` does.
    pub fn config(&self) -> hart::Result<RegularizerConfig> {
        let cfg = RegularizerConfig {
            kind: self.regularizer.parse::<RegularizerKind>()?,
            lambda: self.hessian_lambda,
            method: self.hessian_method.parse::<HessianMethod>()?,
            warmup: self.hessian_warmup,
            probes: self.hessian_probes,
            every: self.hessian_every,
            layers: parse("--hessian-layers", &self.hessian_layers)?,
            selective: match self.hessian_selective {
                true => Some(Selective {
                    reading: self.hessian_reading.parse::<Reading>()?,
                    top_p: self.hessian_top_p,
                    diag_frac: self.hessian_diag_frac,
                }),
                false => None,
            },
            sub_batch: self.hessian_batch,
            audit_every: self.audit_readings,
            sam_rho: self.sam_rho,
            sam_adaptive: self.asam,
            fd_sigma: self.fd_sigma,
            noise_std: self.noise_std,
            noise_kind: self.noise_kind.parse::<NoiseKind>()?,
            scope: parse("--scope", &self.scope)?,
            params: self.params.clone(),
            storage: parse::<Storage>("--storage", &self.storage)?,
            bit_error_rate: self.bit_error_rate,
            clip_weights: self.clip_weights,
            clip_relative: self.clip_relative,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The optimiser and schedule of `hart train`, by their CLI names.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct TrainingOptions {
    epochs: usize,
    batch_size: usize,
    optimizer: String,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
    clip_grad_norm: Option<f64>,
    seed: u64,
    device: String,
}

impl TrainingOptions {
    pub fn config(&self) -> hart::Result<TrainConfig> {
        if self.epochs == 0 {
            return Err(HartError::Invalid("--epochs must be at least 1".into()));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(HartError::Invalid(format!(
                "--lr must be a positive number, got {}",
                self.lr
            )));
        }
        Ok(TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            optimizer: OptimizerConfig {
                kind: parse::<OptimizerKind>("--optimizer", &self.optimizer)?,
                lr: self.lr,
                momentum: self.momentum,
                weight_decay: self.weight_decay,
            },
            seed: self.seed,
            device: device::parse(&self.device)?,
            clip_grad_norm: self.clip_grad_norm,
        })
    }
}

/// Trains the model file `model` (path, arch, normalize: `--model`, `--arch`,
/// `--normalize`) on `data` and writes it to `out`; `test`, when given, is
/// evaluated after training (the CLI's first `--eval-limit` test images).
/// `training` and `regularizer` are dicts of the `hart train` options.
/// Returns the training log, train.json's JSON, which is also written.
#[pyfunction]
#[pyo3(signature = (model, data, out, *, training, regularizer, test=None, reinit=false, freeze=None, progress=None))]
#[allow(clippy::too_many_arguments)]
pub fn train(
    py: Python<'_>,
    model: (PathBuf, Option<String>, Option<String>),
    data: &Data,
    out: PathBuf,
    training: TrainingOptions,
    regularizer: RegularizerOptions,
    test: Option<&Data>,
    reinit: bool,
    freeze: Option<String>,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<String> {
    let data = data.inner.clone();
    let test = test.map(|t| t.inner.clone());
    call::run(py, progress.as_ref(), move |bar| {
        let (path, arch, normalize) = model;
        let normalize = normalize
            .map(|n| Normalization::parse(&n).map_err(|e| HartError::Invalid(format!("--normalize: {e}"))))
            .transpose()?;
        let source = ModelSource::new(&path, arch.as_deref(), normalize)?;
        let cfg = training.config()?;
        let reg = regularizer.config()?;
        let start = if reinit {
            Start::Reinit(source.clone())
        } else {
            Start::Weights(source.clone())
        };
        let (mut model, reinitialised) = start.build_reporting(&data, cfg.seed)?;
        source.check_out(&model, &out)?;
        let frozen = match &freeze {
            Some(f) => model.freeze(f)?,
            None => vec![],
        };
        model.to_device(cfg.device)?;
        let epochs = train_with(&model, &data, &cfg, &reg, bar)?;
        source.save(&model, &out)?;
        let test = test
            .as_deref()
            .map(|t: &Dataset| evaluate(&model, t, 256, cfg.device))
            .transpose()?;
        let audit: Vec<_> = epochs.iter().flat_map(|e| e.audit.iter().cloned()).collect();
        let audit_tracking = (!audit.is_empty()).then(|| tracking(&audit));
        // The keys of the CLI's train.json, plus what --reinit did (printed there).
        let mut log = serde_json::json!({
            "arch": start.name(),
            "model": path,
            "dataset": data.name,
            "samples": data.len(),
            "optimizer": cfg.optimizer.kind,
            "lr": cfg.optimizer.lr,
            "momentum": cfg.optimizer.momentum,
            "weight_decay": cfg.optimizer.weight_decay,
            "batch_size": cfg.batch_size,
            "seed": cfg.seed,
            "regularizer": reg,
            "epochs": epochs,
            "test": test,
        });
        let extra = [
            ("reinit", reinit.then_some(serde_json::Value::Bool(true))),
            ("frozen", (!frozen.is_empty()).then(|| serde_json::json!(frozen))),
            ("clip_grad_norm", cfg.clip_grad_norm.map(|c| serde_json::json!(c))),
            ("audit_tracking", audit_tracking.map(|t| serde_json::json!(t))),
            (
                "reinitialised",
                reinitialised.as_ref().map(|r| serde_json::json!(r.initialised)),
            ),
            ("kept", reinitialised.as_ref().map(|r| serde_json::json!(r.kept))),
        ];
        for (key, value) in extra {
            if let Some(v) = value {
                log[key] = v;
            }
        }
        let text = serde_json::to_string_pretty(&log).map_err(|e| HartError::Invalid(e.to_string()))?;
        write_log(&out, &text)?;
        Ok(text)
    })
}

fn write_log(out: &Path, text: &str) -> hart::Result<()> {
    hart::util::write_atomic(&out.with_extension("train.json"), text.as_bytes())
}
