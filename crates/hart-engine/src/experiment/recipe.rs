//! Turning a config recipe into the training configuration `hart train` uses.

use crate::error::{HartError, Result};
use crate::train::regularizer::Selective;
use crate::train::{OptimizerConfig, RegularizerConfig, RegularizerKind, TrainConfig};

use super::config::{ExperimentConfig, LambdaSetting, Recipe};

fn keyed<T>(i: usize, key: &str, r: Result<T>) -> Result<T> {
    r.map_err(|e| HartError::Invalid(format!("config key `recipe[{i}].{key}`: {e}")))
}

/// The optimiser and regulariser of recipe `i`, over the config's training
/// defaults. `tuned` is the λ the `[tune]` search chose, for `hessian_lambda = "tuned"`.
pub fn training(
    cfg: &ExperimentConfig,
    i: usize,
    seed: u64,
    device: tch::Device,
    tuned: Option<f64>,
) -> Result<(TrainConfig, RegularizerConfig)> {
    let r: &Recipe = &cfg.recipes[i];
    let d = &cfg.train;
    let optimizer = OptimizerConfig {
        kind: keyed(i, "optimizer", r.optimizer.as_deref().unwrap_or(&d.optimizer).parse())?,
        lr: r.lr.unwrap_or(d.lr),
        momentum: r.momentum.unwrap_or(d.momentum),
        weight_decay: r.weight_decay.unwrap_or(d.weight_decay),
    };
    let train = TrainConfig {
        epochs: r.epochs.unwrap_or(d.epochs),
        batch_size: d.batch_size,
        optimizer,
        seed,
        device,
        clip_grad_norm: r.clip_grad_norm.or(d.clip_grad_norm),
    };
    let mut reg = RegularizerConfig {
        kind: keyed(i, "regularizer", r.regularizer.parse::<RegularizerKind>())?,
        ..RegularizerConfig::default()
    };
    match &r.hessian_lambda {
        Some(LambdaSetting::Value(v)) => reg.lambda = *v,
        Some(LambdaSetting::Named(_)) => {
            reg.lambda = tuned.ok_or_else(|| {
                HartError::Invalid(format!("config key `recipe[{i}].hessian_lambda`: λ not tuned yet"))
            })?
        }
        None => {}
    }
    if let Some(v) = &r.hessian_method {
        reg.method = keyed(i, "hessian_method", v.parse())?;
    }
    if let Some(v) = r.hessian_warmup {
        reg.warmup = v;
    }
    if let Some(v) = r.hessian_probes {
        reg.probes = v;
    }
    if let Some(v) = r.hessian_every {
        reg.every = v;
    }
    if let Some(v) = &r.hessian_layers {
        reg.layers = keyed(i, "hessian_layers", v.parse())?;
    }
    if let Some(v) = r.hessian_sub_batch {
        reg.sub_batch = v;
    }
    if let Some(v) = r.sam_rho {
        reg.sam_rho = v;
    }
    if let Some(v) = r.fd_sigma {
        reg.fd_sigma = v;
    }
    if r.hessian_selective == Some(true) {
        let mut s = Selective::default();
        if let Some(p) = r.hessian_top_p {
            s.top_p = p;
        }
        if let Some(reading) = &r.hessian_reading {
            s.reading = keyed(i, "hessian_reading", reading.parse())?;
        }
        reg.selective = Some(s);
    }
    keyed(i, "regularizer", reg.validate())?;
    Ok((train, reg))
}
