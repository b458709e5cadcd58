//! Accuracy and loss of a model on a dataset.

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::data::Dataset;
use crate::error::{HartError, Result};
use crate::loss::cross_entropy;
use crate::model::{Mode, Model};

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EvalResult {
    pub accuracy: f64,
    pub correct: i64,
    pub total: i64,
    /// Mean cross-entropy over the samples with finite logits.
    pub loss: f64,
}

/// How a row of logits holding a NaN is counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NanPolicy {
    /// HART's rule: any NaN makes the prediction wrong — a flipped exponent
    /// bit can produce NaN, and "NaN wins" would otherwise depend on the kernel.
    #[default]
    Wrong,
    /// `torch.argmax`'s rule: NaN compares greater than everything, so the
    /// prediction is the first NaN's index (what a PyTorch script counts).
    Argmax,
}

impl std::str::FromStr for NanPolicy {
    type Err = HartError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "wrong" => Ok(NanPolicy::Wrong),
            "argmax" => Ok(NanPolicy::Argmax),
            _ => Err(HartError::Invalid(format!(
                "unknown NaN policy {s:?} (wrong or argmax)"
            ))),
        }
    }
}

impl std::fmt::Display for NanPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NanPolicy::Wrong => "wrong",
            NanPolicy::Argmax => "argmax",
        })
    }
}

impl NanPolicy {
    /// Per-sample correctness: the prediction is the first index of the
    /// maximal logit (ties go to the lower index, as `torch.argmax`), with
    /// NaN rows counted by this policy.
    pub fn correct(self, logits: &Tensor, labels: &Tensor) -> Tensor {
        // libtorch's argmax already takes the first NaN as the maximum.
        let right = logits.argmax(1, false).eq_tensor(labels);
        match self {
            NanPolicy::Argmax => right,
            NanPolicy::Wrong => right.logical_and(&logits.isnan().any_dim(1, false).logical_not()),
        }
    }
}

/// Per-sample correctness under HART's default rule ([`NanPolicy::Wrong`]).
pub fn correct_mask(logits: &Tensor, labels: &Tensor) -> Tensor {
    NanPolicy::Wrong.correct(logits, labels)
}

/// Evaluates in eval mode (BatchNorm running statistics) without gradients.
pub fn evaluate(model: &Model, data: &Dataset, batch_size: usize, device: Device) -> Result<EvalResult> {
    evaluate_with(model, data, batch_size, device, NanPolicy::Wrong)
}

/// [`evaluate`] counting NaN rows by `policy`.
pub fn evaluate_with(
    model: &Model,
    data: &Dataset,
    batch_size: usize,
    device: Device,
    policy: NanPolicy,
) -> Result<EvalResult> {
    if data.is_empty() {
        return Err(HartError::Invalid("cannot evaluate on an empty dataset".into()));
    }
    let batch_size = batch_size.max(1);
    let (mut correct, mut loss_sum, mut loss_n) = (0i64, 0f64, 0i64);
    tch::no_grad(|| -> Result<()> {
        for start in (0..data.len()).step_by(batch_size) {
            // Every caller restores what it changed on an error, so a Python
            // caller's Ctrl-C may end an evaluation between batches.
            crate::interrupt::check()?;
            let end = (start + batch_size).min(data.len());
            let (x, y) = data.batch_range(start, end);
            let (x, y) = (x.to_device(device), y.to_device(device));
            let logits = model.forward(&x, Mode::Eval)?;
            check_logits(&logits, data, end - start)?;
            correct += policy.correct(&logits, &y).sum(Kind::Int64).f_int64_value(&[])?;
            let finite = logits.isfinite().all_dim(1, false);
            let n = finite.sum(Kind::Int64).f_int64_value(&[])?;
            if n > 0 {
                let idx = finite.nonzero().squeeze_dim(1);
                let ce = cross_entropy(&logits.index_select(0, &idx), &y.index_select(0, &idx))?;
                loss_sum += ce.f_double_value(&[])? * n as f64;
                loss_n += n;
            }
        }
        Ok(())
    })?;
    let total = data.len() as i64;
    Ok(EvalResult {
        accuracy: correct as f64 / total as f64,
        correct,
        total,
        loss: if loss_n > 0 { loss_sum / loss_n as f64 } else { f64::NAN },
    })
}

/// A model whose output is not `[batch, classes]` with enough classes for the
/// data's labels would silently count garbage; say so instead.
pub fn check_logits(logits: &Tensor, data: &Dataset, batch: usize) -> Result<()> {
    let s = logits.size();
    if s.len() != 2 || s[0] != batch as i64 {
        return Err(HartError::Invalid(format!(
            "model output has shape {s:?}, expected [{batch}, classes]"
        )));
    }
    if (s[1] as usize) < data.num_classes {
        return Err(HartError::Invalid(format!(
            "model predicts {} classes but {} has {}",
            s[1], data.name, data.num_classes
        )));
    }
    Ok(())
}
