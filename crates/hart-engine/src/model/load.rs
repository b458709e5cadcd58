//! Loading any model file HART accepts: safetensors (zoo architectures or an
//! ONNX graph, with weights), ONNX, TorchScript.

use std::path::{Path, PathBuf};

use tch::Tensor;

use super::graph::Op;
use super::info::{ModelInfo, Normalization};
use super::script::ScriptModel;
use super::{onnx, safetensors_io, zoo, GraphModel, Model};
use crate::error::{HartError, Result};

/// What the caller knows that the model file may not record.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// A zoo architecture, or an `.onnx` file whose graph the weights belong to.
    pub arch: Option<String>,
    /// Input channels, size, classes and dataset taken from the data; used
    /// when the file does not record them (a plain PyTorch state dict).
    pub hint: Option<ModelInfo>,
    /// Overrides the normalisation (Some(None) = none).
    pub normalize: Option<Option<Normalization>>,
}

fn ext(path: &Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default()
}

pub fn load(path: &Path, opts: &LoadOptions) -> Result<Model> {
    if !path.exists() {
        return Err(HartError::data(path, "no such model file"));
    }
    let model = match ext(path).as_str() {
        "safetensors" => Model::Graph(load_safetensors(path, opts)?),
        "onnx" => Model::Graph(onnx::import(path)?),
        "pt" | "pth" | "ts" | "jit" | "torchscript" => {
            let mut info = opts.hint.clone().unwrap_or_else(|| default_info("torchscript"));
            info.arch = "torchscript".into();
            info.normalize = None;
            Model::Script(ScriptModel::load(path, info)?)
        }
        other => {
            return Err(HartError::data(
                path,
                format!("unknown model format .{other} (expected .safetensors, .onnx or a TorchScript .pt)"),
            ))
        }
    };
    model.check_finite()?;
    Ok(model)
}

/// The model a command runs on `data`: `path` as [`load`] reads it, with
/// `arch` (a zoo architecture or the `.onnx` graph of a weights file) and
/// `normalize` (`none`, a dataset name or `MEAN,..:STD,..`) as `--arch` and
/// `--normalize` give them, the data's shape and classes as the hint for a
/// file that records none, moved to `device`. The CLI and the Python binding
/// both open models through here.
pub fn open(
    path: &Path,
    arch: Option<&str>,
    normalize: Option<&str>,
    data: &crate::data::Dataset,
    device: tch::Device,
) -> Result<Model> {
    let normalize = normalize
        .map(Normalization::parse)
        .transpose()
        .map_err(HartError::Invalid)?;
    let opts = LoadOptions {
        arch: arch.map(str::to_string),
        hint: Some(ModelInfo::for_data(arch.unwrap_or("unknown"), data)),
        normalize,
    };
    let mut model = load(path, &opts)?;
    model.to_device(device)?;
    Ok(model)
}

fn default_info(arch: &str) -> ModelInfo {
    ModelInfo {
        arch: arch.into(),
        num_classes: 10,
        in_channels: 1,
        input_size: 28,
        normalize: None,
        dataset: None,
    }
}

fn load_safetensors(path: &Path, opts: &LoadOptions) -> Result<GraphModel> {
    let (tensors, meta) = safetensors_io::read(path)?;
    let recorded: Option<ModelInfo> = match meta.get("hart") {
        Some(s) => {
            Some(serde_json::from_str(s).map_err(|e| HartError::data(path, format!("unreadable HART metadata: {e}")))?)
        }
        None => None,
    };
    let arch = match (&opts.arch, &recorded) {
        (Some(a), Some(r)) if !r.arch.starts_with("onnx") && a != &r.arch => {
            return Err(HartError::Invalid(format!(
                "{}: file holds a {} model, --arch says {a}",
                path.display(),
                r.arch
            )))
        }
        (Some(a), _) => a.clone(),
        (None, Some(r)) => r.arch.clone(),
        (None, None) => {
            return Err(HartError::Invalid(format!(
                "{}: no architecture recorded in the file; pass --arch (one of {}, or an .onnx graph)",
                path.display(),
                zoo::ARCHS.join(", ")
            )))
        }
    };
    let mut model = if let Some(graph) = onnx_graph_path(path, &arch) {
        if !graph.exists() {
            return Err(HartError::Invalid(format!(
                "{}: the weights belong to the ONNX graph {}, which is missing; name the graph as the arch (--arch PATH.onnx, arch = \"PATH.onnx\" in a [[model]], arch= in Python)",
                path.display(),
                graph.display()
            )));
        }
        onnx::import(&graph)?
    } else {
        let mut info = recorded
            .clone()
            .or_else(|| opts.hint.clone())
            .unwrap_or_else(|| default_info(&arch));
        info.arch = arch.clone();
        if let Some(n) = &opts.normalize {
            info.normalize = n.clone();
        } else if recorded.is_none() {
            // A foreign state dict carries no normalisation; the user adds one with --normalize.
            info.normalize = None;
        }
        if recorded.is_none() {
            fit_info_to_file(&mut info, &tensors)?;
        }
        zoo::build(&info)?
    };
    assign_strict(path, &mut model, &tensors)?;
    Ok(model)
}

/// The ONNX graph that weights saved from an imported model belong to:
/// `--arch model.onnx`, or the `onnx:<file>` recorded at save time, looked
/// up next to the weights file.
fn onnx_graph_path(weights: &Path, arch: &str) -> Option<PathBuf> {
    if arch.to_lowercase().ends_with(".onnx") && !arch.starts_with("onnx:") {
        return Some(PathBuf::from(arch));
    }
    let file = arch.strip_prefix("onnx:")?;
    Some(weights.parent().unwrap_or(Path::new(".")).join(file))
}

/// Reads the class count and input channels off a state dict's first
/// convolution and last linear layer, so e.g. a 1000-class torchvision file
/// loads whatever dataset is named.
fn fit_info_to_file(info: &mut ModelInfo, tensors: &[(String, Tensor)]) -> Result<()> {
    let probe = zoo::build(info)?;
    let file_shape = |name: &str| tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t.size());
    if let Op::Linear { weight, .. } = &probe.graph.nodes[probe.graph.output].op {
        if let Some(s) = file_shape(weight) {
            info.num_classes = s[0];
        }
    }
    if let Some(Op::Conv2d { weight, .. }) = probe
        .graph
        .nodes
        .iter()
        .map(|n| &n.op)
        .find(|op| matches!(op, Op::Conv2d { .. }))
    {
        if let Some(s) = file_shape(weight) {
            info.in_channels = s[1];
            if let Some(n) = &info.normalize {
                if n.mean.len() as i64 != s[1] {
                    info.normalize = None;
                }
            }
        }
    }
    Ok(())
}

fn assign_strict(path: &Path, model: &mut GraphModel, tensors: &[(String, Tensor)]) -> Result<()> {
    let mut unexpected: Vec<&str> = tensors
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !model.params.contains(n))
        .collect();
    // Name weights before BatchNorm bookkeeping: they say more about the mismatch.
    unexpected.sort_by_key(|n| n.ends_with("num_batches_tracked") || n.contains(".running_"));
    let missing: Vec<String> = model
        .params
        .iter()
        .map(|(n, _, _)| n.to_string())
        .filter(|n| !tensors.iter().any(|(m, _)| m == n))
        .collect();
    let list = |v: &[&str]| v.iter().take(4).copied().collect::<Vec<_>>().join(", ");
    if !unexpected.is_empty() {
        return Err(HartError::data(
            path,
            format!(
                "{} tensor(s) not in a {} model: {}",
                unexpected.len(),
                model.info.arch,
                list(&unexpected)
            ),
        ));
    }
    if !missing.is_empty() {
        let m: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        return Err(HartError::data(
            path,
            format!(
                "{} tensor(s) of the {} model missing: {}",
                m.len(),
                model.info.arch,
                list(&m)
            ),
        ));
    }
    for (name, t) in tensors {
        model
            .params
            .assign(name, t)
            .map_err(|e| HartError::data(path, e.to_string()))?;
    }
    Ok(())
}
