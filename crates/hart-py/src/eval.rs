//! `hart._hart.evaluate`: what `hart eval --json` prints, from the same
//! engine call (`hart::eval::evaluate_with`).

use std::path::PathBuf;

use hart::eval::{evaluate_with, NanPolicy};
use pyo3::prelude::*;

use crate::data::Data;
use crate::device;
use crate::model::run_on;
use crate::sweep::parse;

/// Accuracy, correct, total and mean loss of `model` on `data` as JSON;
/// every option is the `hart eval` option of that name.
#[pyfunction]
#[pyo3(signature = (
    model, data, *, batch_size=256, nan_policy="wrong".to_string(), device="cpu".to_string(), progress=None
))]
pub fn evaluate(
    py: Python<'_>,
    model: (PathBuf, Option<String>, Option<String>),
    data: &Data,
    batch_size: usize,
    nan_policy: String,
    device: String,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<String> {
    run_on(py, model, data, &device, progress.as_ref(), |_, model, data| {
        let policy: NanPolicy = parse("--nan-policy", &nan_policy)?;
        let r = evaluate_with(&model, data, batch_size, device::parse(&device)?, policy)?;
        Ok(serde_json::json!(r).to_string())
    })
}
