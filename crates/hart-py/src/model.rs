//! Opening a model file as the CLI's `--model/--arch/--normalize` do, and
//! what the Python side shows of it (`hart.Model`'s repr, the check that an
//! exported graph imports before it is used).

use std::path::PathBuf;

use hart::data::Dataset;
use hart::model::{Model, ParamKind};
use indicatif::ProgressBar;
use pyo3::prelude::*;

use crate::data::Data;
use crate::{call, device};

/// Where a model comes from, as the Python side passes it to every call.
pub struct ModelSpec {
    pub path: PathBuf,
    pub arch: Option<String>,
    pub normalize: Option<String>,
}

impl ModelSpec {
    pub fn open(&self, data: &Dataset, device: tch::Device) -> hart::Result<Model> {
        hart::model::open(
            &self.path,
            self.arch.as_deref(),
            self.normalize.as_deref(),
            data,
            device,
        )
    }
}

/// [`call::run`] of `job` on the model `(path, arch, normalize)` opened for
/// `data` on `device` (the CLI's `--device`) and checked to take `data`'s
/// records and labels (`hart::model::check_input`, as the CLI's `--model`):
/// how every function that measures a model starts.
pub fn run_on<T: Send>(
    py: Python<'_>,
    model: (PathBuf, Option<String>, Option<String>),
    data: &Data,
    device: &str,
    progress: Option<&Bound<'_, PyAny>>,
    job: impl FnOnce(&ProgressBar, Model, &Dataset) -> hart::Result<T> + Send,
) -> PyResult<T> {
    open_then(py, model, data, device, true, progress, job)
}

fn open_then<T: Send>(
    py: Python<'_>,
    (path, arch, normalize): (PathBuf, Option<String>, Option<String>),
    data: &Data,
    device: &str,
    check: bool,
    progress: Option<&Bound<'_, PyAny>>,
    job: impl FnOnce(&ProgressBar, Model, &Dataset) -> hart::Result<T> + Send,
) -> PyResult<T> {
    let spec = ModelSpec { path, arch, normalize };
    let data = data.inner.clone();
    let device = device.to_string();
    call::run(py, progress, move |bar| {
        let model = spec.open(&data, device::parse(&device)?)?;
        if check {
            hart::model::check_input(&model, &data)?;
        }
        job(bar, model, &data)
    })
}

/// JSON `{"kind": "graph"|"torchscript", "arch", "tensors": [{"name", "shape", "trainable"}], "float_numel"}`
/// of the model at `path` opened for `data`; raises what loading it raises,
/// and with `check` what `hart::model::check_input` raises for `data`
/// (off while choosing an exporter: an export that imports but does not fit
/// is the caller's error, not a reason to fall back to TorchScript).
#[pyfunction]
#[pyo3(signature = (path, data, arch=None, normalize=None, check=false))]
pub fn describe_model(
    py: Python<'_>,
    path: PathBuf,
    data: &Data,
    arch: Option<String>,
    normalize: Option<String>,
    check: bool,
) -> PyResult<String> {
    open_then(py, (path, arch, normalize), data, "cpu", check, None, |_, model, _| {
        let tensors: Vec<serde_json::Value> = model
            .named_tensors()
            .iter()
            .map(|(name, t, kind)| {
                serde_json::json!({
                    "name": name,
                    "shape": t.size(),
                    "trainable": *kind == ParamKind::Trainable,
                })
            })
            .collect();
        let kind = match model {
            Model::Graph(_) => "graph",
            Model::Script(_) => "torchscript",
        };
        Ok(serde_json::json!({
            "kind": kind,
            "arch": model.info().arch,
            "tensors": tensors,
            "float_numel": model.float_numel(),
        })
        .to_string())
    })
}
