//! `hart._hart.hessian`: what `hart hessian --json` prints, from the same
//! engine call (`hart::hessian::measure`).

use std::path::PathBuf;

use hart::hessian::{measure, AnalysisConfig, LayerSelection, ParamSet, TraceMethod, TraceOptions};
use hart::HartError;
use pyo3::prelude::*;

use crate::data::Data;
use crate::model::run_on;
use crate::sweep::parse;

/// The Hessian report of `model` on `data` as JSON; every option is the
/// `hart hessian` option of that name.
#[pyfunction]
#[pyo3(signature = (
    model, data, *, batch_size=128, rel_stderr=0.02, min_probes=10,
    max_probes=1000, method="hutchinson".to_string(), sketch=10, top_k=1, eig_tol=1e-3,
    max_lanczos=100, density=false, density_runs=1, density_steps=80, layers="all".to_string(),
    seed=0, device="cpu".to_string(), progress=None
))]
#[allow(clippy::too_many_arguments)]
pub fn hessian(
    py: Python<'_>,
    model: (PathBuf, Option<String>, Option<String>),
    data: &Data,
    batch_size: usize,
    rel_stderr: f64,
    min_probes: usize,
    max_probes: usize,
    method: String,
    sketch: usize,
    top_k: usize,
    eig_tol: f64,
    max_lanczos: usize,
    density: bool,
    density_runs: usize,
    density_steps: usize,
    layers: String,
    seed: u64,
    device: String,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<String> {
    run_on(py, model, data, &device, progress.as_ref(), |bar, model, data| {
        let layers: LayerSelection = parse("--layers", &layers)?;
        let cfg = AnalysisConfig {
            method: parse::<TraceMethod>("--method", &method)?,
            trace: TraceOptions {
                rel_stderr,
                min_probes,
                max_probes,
                ..TraceOptions::default()
            },
            sketch,
            top_k,
            eig_tol,
            max_lanczos_steps: max_lanczos,
            density: density.then_some((density_runs, density_steps)),
            seed,
        };
        let params = ParamSet::select(&model, &layers).map_err(|e| HartError::Invalid(format!("--layers: {e}")))?;
        bar.set_length(cfg.hvp_budget() as u64);
        let report = measure(&model, data, &params, batch_size, &cfg, bar)?;
        serde_json::to_string(&report).map_err(|e| HartError::Invalid(e.to_string()))
    })
}
