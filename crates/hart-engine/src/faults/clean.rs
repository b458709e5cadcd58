//! The fault-free pass every engine compares against: per-sample logits,
//! correctness and the margins the harmlessness bound is checked against.

use tch::{Device, Kind, Tensor};

use crate::data::Dataset;
use crate::error::{HartError, Result};
use crate::eval::{check_logits, correct_mask};
use crate::model::{Mode, Model};

pub struct Clean {
    /// `[N, classes]` on the CPU.
    pub logits: Tensor,
    pub labels: Tensor,
    /// `[N]` bool under `hart::eval::correct_mask`'s tie rule.
    pub correct: Tensor,
    pub correct_count: i64,
    /// `[N]` f32: how much the logits must move (in the sum of absolute
    /// changes) before this sample's correctness can change; −∞ for NaN rows.
    pub margins: Tensor,
    /// `[N]` f32: rounding slack added to every bound, about 64 ulps of the
    /// sample's largest logit (faulty and clean runs round differently).
    pub slack: Tensor,
    pub n: usize,
}

/// Runs the model over `data` in batches of `batch` (the batch size the
/// reference loop uses too, so the clean logits are the ones it would see).
pub fn clean_pass(model: &Model, data: &Dataset, batch: usize, device: Device) -> Result<Clean> {
    if data.is_empty() {
        return Err(HartError::Invalid("cannot sweep over an empty dataset".into()));
    }
    let mut parts = vec![];
    tch::no_grad(|| -> Result<()> {
        for start in (0..data.len()).step_by(batch.max(1)) {
            let end = (start + batch.max(1)).min(data.len());
            let (x, _) = data.batch_range(start, end);
            let logits = model.forward(&x.to_device(device), Mode::Eval)?;
            check_logits(&logits, data, end - start)?;
            parts.push(logits.to_device(Device::Cpu));
        }
        Ok(())
    })?;
    let logits = Tensor::cat(&parts, 0);
    let labels = Tensor::from_slice(&data.labels);
    Ok(from_logits(logits, labels))
}

impl Clean {
    /// Another handle on the same (never written) tensors, for a worker thread.
    pub fn share(&self) -> Clean {
        Clean {
            logits: self.logits.shallow_clone(),
            labels: self.labels.shallow_clone(),
            correct: self.correct.shallow_clone(),
            correct_count: self.correct_count,
            margins: self.margins.shallow_clone(),
            slack: self.slack.shallow_clone(),
            n: self.n,
        }
    }
}

pub fn from_logits(logits: Tensor, labels: Tensor) -> Clean {
    let correct = correct_mask(&logits, &labels);
    let correct_count = correct.sum(Kind::Int64).int64_value(&[]);
    let n = labels.size()[0] as usize;
    let label_logit = logits.gather(1, &labels.unsqueeze(1), false).squeeze_dim(1);
    // Best competitor of the label (for correct samples) or the winner (for wrong ones).
    let others = logits.scatter_value(1, &labels.unsqueeze(1), f64::NEG_INFINITY);
    let runner_up = others.amax([1i64].as_slice(), false);
    let top = logits.amax([1i64].as_slice(), false);
    let margins = (&label_logit - &runner_up).where_self(&correct, &(&top - &label_logit));
    let nan_row = logits.isnan().any_dim(1, false);
    let margins = margins.masked_fill(&nan_row, f64::NEG_INFINITY);
    let slack = (logits.abs().amax([1i64].as_slice(), false) + 1.0) * 2f64.powi(-17);
    Clean {
        logits,
        labels,
        correct,
        correct_count,
        margins,
        slack,
        n,
    }
}
