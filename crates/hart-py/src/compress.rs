//! `hart._hart.quantize` / `hart._hart.prune`: `hart quantize` and `hart
//! prune` on one model (the Python side loops over several, as the CLI's
//! repeated `--model`), from the same engine calls (`hart::compress`);
//! each returns the rows the CLI writes to quantize.json / prune.json.

use std::path::{Path, PathBuf};

use hart::compress::prune::{parse_sparsities, Scope};
use hart::compress::quantize::{parse_bits, Granularity};
use hart::compress::{anchored, prune_curve, quantize_curve, select, CurveRun, Selection};
use hart::data::Dataset;
use hart::model::Model;
use pyo3::prelude::*;

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
        let granularity = Granularity::of(per_channel);
        let (targets, run) = prepared(&model, data, include_bias_bn, batch_size, &device, save.as_deref())?;
        bar.set_length(bits.len() as u64 + 1);
        let rows = quantize_curve(&label, &model, &targets, &bits, granularity, &run, || bar.inc(1))?;
        Ok(serde_json::json!(rows).to_string())
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
        let levels = anchored(parse_sparsities(&sparsity)?);
        let scope: Scope = parse("--scope", &scope)?;
        let (targets, run) = prepared(&model, data, include_bias_bn, batch_size, &device, save.as_deref())?;
        bar.set_length(levels.len() as u64);
        let rows = prune_curve(&label, &model, &targets, &levels, scope, &run, || bar.inc(1))?;
        Ok(serde_json::json!(rows).to_string())
    })
}

/// The weight tensors a curve compresses (`include_bias_bn`: the rank-1 ones
/// too) and where it runs.
fn prepared<'a>(
    model: &Model,
    data: &'a Dataset,
    include_bias_bn: bool,
    batch_size: usize,
    device: &str,
    save: Option<&'a Path>,
) -> hart::Result<(Vec<(String, tch::Tensor)>, CurveRun<'a>)> {
    let selection = Selection {
        include_bias_bn,
        layer: None,
    };
    let run = CurveRun {
        data,
        batch_size,
        device: device::parse(device)?,
        save,
    };
    Ok((select(model, &selection)?, run))
}
