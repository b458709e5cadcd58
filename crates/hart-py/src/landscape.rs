//! `hart._hart.landscape`: `hart landscape` on one model (loss and accuracy
//! along one or two filter-normalised random directions), from the same
//! engine calls (`hart::landscape`); the grid as JSON, and as the CLI's CSV
//! when a path is given.

use std::path::PathBuf;
use std::time::Instant;

use hart::compress::{select, Selection};
use hart::landscape::{compute, csv::write_csv, random, GridSpec};
use pyo3::prelude::*;
use serde_json::json;

use crate::data::Data;
use crate::device;
use crate::model::run_on;

/// JSON `{"grid", "points": [{x, y, loss, accuracy}], "tensors", "clean_loss",
/// "clean_accuracy", "min_loss", "seconds"}` of `model` on `data`; every
/// option is the `hart landscape` option of that name; `csv`, when given,
/// gets the grid as the CLI writes `{label}.csv`.
#[pyfunction]
#[pyo3(signature = (
    model, data, *, dims=1, range="-1:1".to_string(), steps=51, layer=None, seed=0, include_bias_bn=false,
    batch_size=256, device="cpu".to_string(), csv=None, progress=None
))]
#[allow(clippy::too_many_arguments)]
pub fn landscape(
    py: Python<'_>,
    model: (PathBuf, Option<String>, Option<String>),
    data: &Data,
    dims: usize,
    range: String,
    steps: usize,
    layer: Option<String>,
    seed: u64,
    include_bias_bn: bool,
    batch_size: usize,
    device: String,
    csv: Option<PathBuf>,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<String> {
    run_on(py, model, data, &device, progress.as_ref(), |bar, model, data| {
        let grid = GridSpec::new(dims, &range, steps)?;
        let dev = device::parse(&device)?;
        let targets = select(&model, &Selection { include_bias_bn, layer })?;
        let dirs = random(&targets, seed, grid.dims);
        let clean = hart::eval::evaluate(&model, data, batch_size, dev)?;
        bar.set_length(grid.len() as u64);
        let start = Instant::now();
        let points = compute(&model, &targets, &dirs, &grid, data, batch_size, dev, || bar.inc(1))?;
        let seconds = start.elapsed().as_secs_f64();
        if let Some(path) = &csv {
            write_csv(path, &points)?;
        }
        Ok(json!({
            "grid": grid,
            "points": points,
            "tensors": targets.len(),
            "clean_loss": clean.loss,
            "clean_accuracy": clean.accuracy,
            "min_loss": points.iter().map(|p| p.loss).fold(f64::INFINITY, f64::min),
            "seconds": seconds,
        })
        .to_string())
    })
}
