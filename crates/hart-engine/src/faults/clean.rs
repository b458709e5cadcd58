//! The fault-free pass every engine compares against: per-sample logits,
//! correctness and the margins the harmlessness bound is checked against.

use tch::{Device, Kind, Tensor};

use super::axes::{axes, Axis};
use crate::data::Dataset;
use crate::error::{HartError, Result};
use crate::eval::{check_logits, NanPolicy};
use crate::model::{Mode, Model};

pub struct Clean {
    /// `[N, classes]` on the CPU.
    pub logits: Tensor,
    pub labels: Tensor,
    /// `[N]` bool under `policy` (and `hart::eval`'s tie rule).
    pub correct: Tensor,
    /// How every engine counts a NaN row of logits.
    pub policy: NanPolicy,
    pub correct_count: i64,
    /// `[N]` f32: how much the logits must move (in the sum of absolute
    /// changes) before this sample's correctness can change; −∞ for NaN rows.
    pub margins: Tensor,
    /// `[N]` f32: rounding slack added to every bound, about 64 ulps of the
    /// sample's largest logit (faulty and clean runs round differently).
    pub slack: Tensor,
    pub n: usize,
    /// Every batched value of the clean forward pass over all `n` images,
    /// by graph node (graph models whose values fit the budget; empty
    /// otherwise): the fast engine's prefixes read them instead of running
    /// the layers before each cut again.
    pub values: Vec<Option<Tensor>>,
    /// The images as the model takes them (float, on the device), when they
    /// fit [`INPUT_BYTES`]: engines read rows of it instead of converting
    /// the same bytes again for every flip.
    pub inputs: Option<Tensor>,
}

/// Memory for [`Clean::inputs`].
pub const INPUT_BYTES: usize = 512 << 20;

/// Default memory for [`Clean::values`].
pub const STORE_BYTES: i64 = 256 << 20;

/// Runs the model over `data` in batches of `batch` (the batch size the
/// reference loop uses too, so the clean logits are the ones it would see),
/// keeping its values if they fit `store_bytes`.
pub fn clean_pass(model: &Model, data: &Dataset, batch: usize, device: Device, store_bytes: i64) -> Result<Clean> {
    if data.is_empty() {
        return Err(HartError::Invalid("cannot sweep over an empty dataset".into()));
    }
    let mut parts = vec![];
    let mut inputs = vec![];
    let keep_inputs = data.images.len() * 4 <= INPUT_BYTES;
    let graph = model.graph();
    let batched: Vec<bool> = graph.map_or(vec![], |gm| axes(&gm.graph).iter().map(|a| *a == Axis::Batch).collect());
    // Per node, the batches' values while they fit the budget, judged from
    // one image first: a batch holding every value of a large network costs
    // gigabytes only to be dropped.
    let mut store: Option<Vec<Vec<Tensor>>> = match graph {
        Some(gm) if store_bytes > 0 => {
            let x1 = data.batch_range(0, 1).0.f_to_device(device)?;
            let mut env: Vec<Option<Tensor>> = gm.graph.nodes.iter().map(|_| None).collect();
            let _ = tch::no_grad(|| gm.graph.forward_from(&gm.params, &x1, 0, &mut env, Mode::Eval))?;
            let mut per_image: i64 = 0;
            for t in env.iter().zip(&batched).filter_map(|(v, &b)| v.as_ref().filter(|_| b)) {
                per_image += t.numel() as i64 * t.f_kind()?.elt_size_in_bytes() as i64;
            }
            (per_image * data.len() as i64 <= store_bytes).then(|| gm.graph.nodes.iter().map(|_| vec![]).collect())
        }
        _ => None,
    };
    let mut stored: i64 = 0;
    tch::no_grad(|| -> Result<()> {
        for start in (0..data.len()).step_by(batch.max(1)) {
            let end = (start + batch.max(1)).min(data.len());
            let (x, _) = data.batch_range(start, end);
            let x = x.to_device(device);
            if keep_inputs {
                inputs.push(x.shallow_clone());
            }
            let logits = match (graph, store.as_mut()) {
                (Some(gm), Some(st)) => {
                    let mut env: Vec<Option<Tensor>> = gm.graph.nodes.iter().map(|_| None).collect();
                    let logits = gm.graph.forward_from(&gm.params, &x, 0, &mut env, Mode::Eval)?;
                    for ((parts, value), &b) in st.iter_mut().zip(env).zip(&batched) {
                        if let (true, Some(t)) = (b, value) {
                            stored += t.numel() as i64 * t.kind().elt_size_in_bytes() as i64;
                            parts.push(t);
                        }
                    }
                    if stored > store_bytes {
                        store = None;
                    }
                    logits
                }
                _ => model.forward(&x, Mode::Eval)?,
            };
            check_logits(&logits, data, end - start)?;
            parts.push(logits.to_device(Device::Cpu));
        }
        Ok(())
    })?;
    let logits = Tensor::f_cat(&parts, 0)?;
    let labels = Tensor::from_slice(&data.labels);
    let mut clean = from_logits(logits, labels, NanPolicy::Wrong)?;
    clean.inputs = keep_inputs.then(|| Tensor::f_cat(&inputs, 0)).transpose()?;
    clean.values = match store {
        None => vec![],
        Some(st) => st
            .into_iter()
            .map(|p| {
                if p.is_empty() {
                    Ok(None)
                } else {
                    Tensor::f_cat(&p, 0).map(Some)
                }
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(clean)
}

impl Clean {
    /// Another handle on the same (never written) tensors, for a worker thread.
    pub fn share(&self) -> Clean {
        Clean {
            logits: self.logits.shallow_clone(),
            labels: self.labels.shallow_clone(),
            correct: self.correct.shallow_clone(),
            policy: self.policy,
            correct_count: self.correct_count,
            margins: self.margins.shallow_clone(),
            slack: self.slack.shallow_clone(),
            n: self.n,
            inputs: self.inputs.as_ref().map(Tensor::shallow_clone),
            values: self
                .values
                .iter()
                .map(|v| v.as_ref().map(Tensor::shallow_clone))
                .collect(),
        }
    }

    /// The same clean pass counted under `policy`.
    pub fn with_policy(self, policy: NanPolicy) -> Result<Clean> {
        let (values, inputs) = (self.values, self.inputs);
        Ok(Clean {
            values,
            inputs,
            ..from_logits(self.logits, self.labels, policy)?
        })
    }
}

/// Correctness, margins and slack of clean `logits` (NaN rows: margin −∞
/// under either policy, so no bound ever vouches for them).
pub fn from_logits(logits: Tensor, labels: Tensor, policy: NanPolicy) -> Result<Clean> {
    let correct = policy.correct(&logits, &labels);
    let correct_count = correct.sum(Kind::Int64).f_int64_value(&[])?;
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
    Ok(Clean {
        logits,
        labels,
        correct,
        policy,
        correct_count,
        margins,
        slack,
        n,
        values: vec![],
        inputs: None,
    })
}
