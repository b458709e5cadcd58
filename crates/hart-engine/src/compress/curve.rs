//! One model's compression curve: its accuracy at each quantization bit width
//! or pruning sparsity, as the rows `hart quantize` / `hart prune` write to
//! quantize.json / prune.json. The CLI and the Python package both call these,
//! so the two front ends cannot drift apart in what a row means.

use std::path::Path;

use serde::Serialize;
use tch::{Device, Tensor};

use super::prune::{prune_in_place, Pruned, Scope};
use super::quantize::{quantize_in_place, Granularity};
use super::sweep;
use crate::data::Dataset;
use crate::error::{HartError, Result};
use crate::eval::evaluate;
use crate::model::Model;

/// Where and how a curve is measured.
pub struct CurveRun<'a> {
    pub data: &'a Dataset,
    pub batch_size: usize,
    pub device: Device,
    /// A folder each compressed model is written to (`--save`), in the format it came in.
    pub save: Option<&'a Path>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuantizeRow {
    pub model: String,
    pub bits: u32,
    pub granularity: Granularity,
    pub accuracy: f64,
    pub loss: f64,
    pub float_accuracy: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PruneRow {
    pub model: String,
    /// Requested.
    pub sparsity: f64,
    /// Zero weights / selected weights after pruning.
    pub achieved_sparsity: f64,
    pub zeros: i64,
    pub weights: i64,
    pub scope: Scope,
    pub accuracy: f64,
    pub loss: f64,
}

/// Accuracy at each of `bits` after one float evaluation; `tick` runs after
/// every evaluation (`bits.len() + 1` times) so a front end can draw progress.
#[allow(clippy::too_many_arguments)]
pub fn quantize_curve(
    label: &str,
    model: &Model,
    targets: &[(String, Tensor)],
    bits: &[u32],
    granularity: Granularity,
    run: &CurveRun,
    mut tick: impl FnMut(),
) -> Result<Vec<QuantizeRow>> {
    let float = evaluate(model, run.data, run.batch_size, run.device)?;
    tick();
    let mut rows = Vec::with_capacity(bits.len());
    let apply = |t: &[(String, Tensor)], b| quantize_in_place(t, b, granularity);
    sweep(
        model,
        targets,
        bits,
        run.data,
        run.batch_size,
        run.device,
        apply,
        |b, (), r| {
            tracing::info!(model = %label, bits = b, accuracy = r.accuracy, "quantized");
            if let Some(dir) = run.save {
                save_compressed(model, dir, &format!("{label}-int{b}"))?;
            }
            rows.push(QuantizeRow {
                model: label.to_string(),
                bits: b,
                granularity,
                accuracy: r.accuracy,
                loss: r.loss,
                float_accuracy: float.accuracy,
            });
            tick();
            Ok(())
        },
    )?;
    Ok(rows)
}

/// The sparsities a pruning curve measures: the requested ones, with the
/// unpruned model (0) first when it is not among them, so every curve starts
/// at the model's own accuracy.
pub fn anchored(mut levels: Vec<f64>) -> Vec<f64> {
    if !levels.contains(&0.0) {
        levels.insert(0, 0.0);
    }
    levels
}

/// Accuracy at each of `levels` (pass them through [`anchored`] first for the
/// CLI's curve); `tick` after every evaluation. Sparsity 0 is never saved.
pub fn prune_curve(
    label: &str,
    model: &Model,
    targets: &[(String, Tensor)],
    levels: &[f64],
    scope: Scope,
    run: &CurveRun,
    mut tick: impl FnMut(),
) -> Result<Vec<PruneRow>> {
    let mut rows = Vec::with_capacity(levels.len());
    let apply = |t: &[(String, Tensor)], s| prune_in_place(t, s, scope);
    sweep(
        model,
        targets,
        levels,
        run.data,
        run.batch_size,
        run.device,
        apply,
        |s, p: Pruned, r| {
            tracing::info!(model = %label, sparsity = s, achieved = p.sparsity, accuracy = r.accuracy, "pruned");
            if let (Some(dir), true) = (run.save, s > 0.0) {
                save_compressed(model, dir, &format!("{label}-sparse{s}"))?;
            }
            rows.push(PruneRow {
                model: label.to_string(),
                sparsity: s,
                achieved_sparsity: p.sparsity,
                zeros: p.zeros,
                weights: p.total,
                scope,
                accuracy: r.accuracy,
                loss: r.loss,
            });
            tick();
            Ok(())
        },
    )?;
    Ok(rows)
}

/// Writes a compressed model as `{stem}.safetensors` (graph models: their
/// state dict) or `{stem}.pt` (TorchScript) into `dir`.
pub fn save_compressed(model: &Model, dir: &Path, stem: &str) -> Result<()> {
    let ext = if model.graph().is_some() { "safetensors" } else { "pt" };
    let path = dir.join(format!("{stem}.{ext}"));
    std::fs::create_dir_all(dir).map_err(|e| HartError::io(dir, e))?;
    model.save(&path)?;
    tracing::info!(path = %path.display(), "saved compressed model");
    Ok(())
}
