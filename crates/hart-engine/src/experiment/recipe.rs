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
    if let Some(v) = r.noise_std {
        reg.noise_std = v;
    }
    if let Some(v) = &r.noise_kind {
        reg.noise_kind = keyed(i, "noise_kind", v.parse())?;
    }
    if let Some(v) = &r.scope {
        reg.scope = keyed(i, "scope", v.parse())?;
    }
    if let Some(v) = &r.params {
        reg.params = Some(v.clone());
    }
    if let Some(v) = &r.storage {
        reg.storage = keyed(i, "storage", v.parse())?;
    }
    if let Some(v) = r.bit_error_rate {
        reg.bit_error_rate = v;
    }
    reg.clip_weights = r.clip_weights;
    reg.clip_relative = r.clip_relative.unwrap_or(false);
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

/// Training images a cost estimate assumes when `data.train_limit` is absent
/// (Fashion-MNIST's training split).
const NOMINAL_TRAIN_IMAGES: usize = 60_000;

/// One training step of recipe `r` against a plain one: the Hessian
/// penalties add about two passes per probe every `hessian_every` steps;
/// SAM, noise and randbet take a second forward and backward pass.
fn step_factor(r: &Recipe) -> f64 {
    let every = r.hessian_every.unwrap_or(1).max(1) as f64;
    let probes = r.hessian_probes.unwrap_or(1) as f64;
    match r.regularizer.as_str() {
        "hessian" | "fd-hessian" => 1.0 + 2.0 * probes / every,
        "sam" | "noise" | "randbet" => 2.0,
        _ => 1.0,
    }
}

/// Expected cost of training recipe `i` once, in image passes (forward 1,
/// backward 2), for balancing `--shard`'s training units.
pub fn train_cost(cfg: &ExperimentConfig, i: usize) -> f64 {
    let r = &cfg.recipes[i];
    let images = cfg.data.train_limit.unwrap_or(NOMINAL_TRAIN_IMAGES);
    (r.epochs.unwrap_or(cfg.train.epochs) * images) as f64 * 3.0 * step_factor(r)
}

/// Expected cost of the `[tune]` search for recipe `i`: each candidate of
/// the grid and the plain reference trained on the search's slice, then its
/// sensitivity sweep (32 bits of `sweep_params` elements on `sweep_images`).
pub fn tune_cost(cfg: &ExperimentConfig, i: usize) -> f64 {
    let t = &cfg.tune;
    let train = (t.epochs * t.limit.saturating_sub(t.val)) as f64 * 3.0 * step_factor(&cfg.recipes[i]);
    let sweep = 32.0 * t.sweep_params as f64 * t.sweep_images as f64;
    (t.grid.len() + 1) as f64 * (train + sweep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::Storage;

    const HARDENING: &str = r#"
archs = ["lenet5"]
[data]
train_limit = 100
[[recipe]]
name = "plain"
[[recipe]]
name = "randbet"
regularizer = "randbet"
bit_error_rate = 0.03
storage = "int8"
clip_weights = 0.1
params = ".*weight"
[[recipe]]
name = "noise"
regularizer = "noise"
noise_std = 0.1
noise_kind = "relative"
"#;

    #[test]
    fn hardening_recipes_reach_the_training_configuration() {
        let c = ExperimentConfig::parse(HARDENING).unwrap();
        let (_, r) = training(&c, 1, 0, tch::Device::Cpu, None).unwrap();
        assert_eq!(r.kind, RegularizerKind::Randbet);
        assert_eq!(
            (r.bit_error_rate, r.storage, r.clip_weights),
            (0.03, Storage::Int8, Some(0.1))
        );
        assert_eq!(r.params.as_deref(), Some(".*weight"));
        let (_, r) = training(&c, 2, 0, tch::Device::Cpu, None).unwrap();
        assert_eq!((r.kind, r.noise_std), (RegularizerKind::Noise, 0.1));
        assert_eq!(r.noise_kind, crate::train::NoiseKind::Relative);
        // A recipe without the new keys serialises as before: its cache key is unchanged.
        let plain = serde_json::to_value(&c.recipes[0]).unwrap();
        assert!(plain.get("clip_weights").is_none() && plain.get("noise_std").is_none());
        let bad = ExperimentConfig::parse(&HARDENING.replace("0.03", "1.5")).unwrap();
        let e = training(&bad, 1, 0, tch::Device::Cpu, None).unwrap_err().to_string();
        assert!(e.contains("recipe[1]") && e.contains("1.5"), "{e}");
    }
}
