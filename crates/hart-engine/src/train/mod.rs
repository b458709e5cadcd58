//! Plain supervised training (`hart train`).

pub mod optim;

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
use crate::model::{Mode, Model};
pub use optim::{Optimizer, OptimizerConfig, OptimizerKind};

#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerConfig,
    pub seed: u64,
    pub device: Device,
}

#[derive(Debug, Clone, Serialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub seconds: f64,
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
    if data.is_empty() {
        return Err(HartError::Invalid("cannot train on an empty dataset".into()));
    }
    if cfg.batch_size == 0 {
        return Err(HartError::Invalid("--batch-size must be at least 1".into()));
    }
    let params: Vec<_> = model.trainable().into_iter().map(|(_, t)| t).collect();
    let mut opt = Optimizer::new(params, cfg.optimizer);
    bar.set_length((cfg.epochs * data.len()) as u64);
    let mut logs = Vec::with_capacity(cfg.epochs);
    for epoch in 1..=cfg.epochs {
        let start = Instant::now();
        let order = epoch_order(data.len(), cfg.seed, epoch);
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0i64, 0usize);
        for (step, idx) in order.chunks(cfg.batch_size).enumerate() {
            let (x, y) = data.batch(idx);
            let (x, y) = (x.to_device(cfg.device), y.to_device(cfg.device));
            opt.zero_grad();
            let logits = model.forward(&x, Mode::Train)?;
            let loss = logits
                .f_log_softmax(-1, Kind::Float)?
                .f_nll_loss(&y, None::<tch::Tensor>, tch::Reduction::Mean, -100)?;
            let loss_value = loss.double_value(&[]);
            if !loss_value.is_finite() {
                return Err(HartError::Invalid(format!(
                    "training diverged at epoch {epoch}, step {step}: loss is {loss_value}; lower --lr"
                )));
            }
            loss.f_backward()?;
            opt.step();
            loss_sum += loss_value * idx.len() as f64;
            correct += tch::no_grad(|| correct_mask(&logits, &y).sum(Kind::Int64).int64_value(&[]));
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
        };
        model
            .check_finite()
            .map_err(|e| HartError::Invalid(format!("training diverged in epoch {epoch} ({e}); lower --lr")))?;
        tracing::info!(epoch, loss = log.loss, accuracy = log.accuracy, seconds = log.seconds, "epoch done");
        logs.push(log);
    }
    Ok(logs)
}
