//! `hart._hart.quantize` / `hart._hart.prune`: `hart quantize` and `hart
//! prune` on one model (the Python side loops over several, as the CLI's
//! repeated `--model`), from the same engine calls (`hart::compress`);
//! each returns the rows the CLI writes to quantize.json / prune.json.

use std::path::{Path, PathBuf};

use hart::compress::prune::{parse_sparsities, prune_in_place, Pruned, Scope};
use hart::compress::quantize::{parse_bits, quantize_in_place, Granularity};
use hart::compress::{select, sweep, Selection};
use hart::model::Model;
use hart::HartError;
use pyo3::prelude::*;
use serde_json::json;

use crate::data::Data;
use crate::device;
use crate::model::run_on;
use crate::sweep::parse;

type ModelArg = (PathBuf, Option<String>, Option<String>);

/// Accuracy of `model` on `data` with its weights quantized to each of
/// `bits` (the `hart quantize` options of those names); `save`: a folder
/// each quantized model is written to as `{label}-int{b}`. JSON rows.
#[pyfunction]
#[pyo3(signature = (
    model, data, *, label, bits="8,6,4,3,2".to_string(), per_channel=false, include_bias_bn=false,
    batch_size=256, device="cpu".to_string(), save=None, progress=None
))]
#[allow(clippy::too_many_arguments)]
pub fn quantize(
    py: Python<'_>,
    model: ModelArg,
    data: &Data,
    label: String,
    bits: String,
    per_channel: bool,
    include_bias_bn: bool,
    batch_size: usize,
    device: String,
    save: Option<PathBuf>,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<String> {
    run_on(py, model, data, &device, progress.as_ref(), |bar, model, data| {
        let bits = parse_bits(&bits)?;
        let granularity = if per_channel {
            Granularity::PerChannel
        } else {
            Granularity::PerTensor
        };
        let dev = device::parse(&device)?;
        let targets = selected(&model, include_bias_bn)?;
        bar.set_length(bits.len() as u64 + 1);
        let float = hart::eval::evaluate(&model, data, batch_size, dev)?;
        bar.inc(1);
        let mut rows = vec![];
        sweep(
            &model,
            &targets,
            &bits,
            data,
            batch_size,
            dev,
            |t, b| quantize_in_place(t, b, granularity),
            |b, (), r| {
                if let Some(dir) = &save {
                    save_model(&model, dir, &format!("{label}-int{b}"))?;
                }
                rows.push(json!({
                    "model": label, "bits": b, "granularity": granularity, "accuracy": r.accuracy,
                    "loss": r.loss, "float_accuracy": float.accuracy,
                }));
                bar.inc(1);
                Ok(())
            },
        )?;
        Ok(json!(rows).to_string())
    })
}

/// Accuracy of `model` on `data` with each fraction of `sparsity` of its
/// weights zeroed by magnitude (the `hart prune` options; 0 is always
/// measured first, as the CLI's); `save` as in [`quantize`]. JSON rows.
#[pyfunction]
#[pyo3(signature = (
    model, data, *, label, sparsity="0.5,0.7,0.9".to_string(), scope="global".to_string(),
    include_bias_bn=false, batch_size=256, device="cpu".to_string(), save=None, progress=None
))]
#[allow(clippy::too_many_arguments)]
pub fn prune(
    py: Python<'_>,
    model: ModelArg,
    data: &Data,
    label: String,
    sparsity: String,
    scope: String,
    include_bias_bn: bool,
    batch_size: usize,
    device: String,
    save: Option<PathBuf>,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<String> {
    run_on(py, model, data, &device, progress.as_ref(), |bar, model, data| {
        let mut levels = parse_sparsities(&sparsity)?;
        if !levels.contains(&0.0) {
            levels.insert(0, 0.0);
        }
        let scope: Scope = parse("--scope", &scope)?;
        let dev = device::parse(&device)?;
        let targets = selected(&model, include_bias_bn)?;
        bar.set_length(levels.len() as u64);
        let mut rows = vec![];
        sweep(
            &model,
            &targets,
            &levels,
            data,
            batch_size,
            dev,
            |t, s| prune_in_place(t, s, scope),
            |s, p: Pruned, r| {
                if save.is_some() && s > 0.0 {
                    save_model(
                        &model,
                        save.as_deref().unwrap_or(Path::new(".")),
                        &format!("{label}-sparse{s}"),
                    )?;
                }
                rows.push(json!({
                    "model": label, "sparsity": s, "achieved_sparsity": p.sparsity, "zeros": p.zeros,
                    "weights": p.total, "scope": scope, "accuracy": r.accuracy, "loss": r.loss,
                }));
                bar.inc(1);
                Ok(())
            },
        )?;
        Ok(json!(rows).to_string())
    })
}

/// The weight tensors a compression sweep changes (`--include-bias-bn`: the rank-1 ones too).
pub fn selected(model: &Model, include_bias_bn: bool) -> hart::Result<Vec<(String, tch::Tensor)>> {
    select(
        model,
        &Selection {
            include_bias_bn,
            layer: None,
        },
    )
}

/// A compressed model beside the results, in the format it came in (as the CLI's `--save`).
fn save_model(model: &Model, dir: &Path, stem: &str) -> hart::Result<()> {
    let ext = if model.graph().is_some() { "safetensors" } else { "pt" };
    std::fs::create_dir_all(dir).map_err(|e| HartError::io(dir, e))?;
    model.save(&dir.join(format!("{stem}.{ext}")))
}
