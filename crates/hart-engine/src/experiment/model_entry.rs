//! A `[[model]]` table of the experiment config: a user's own model file to
//! train and measure beside the zoo's `archs` (see [`super::user_models`]
//! for what the run does with it). Its checks read no model, only whether
//! the file is there, so a config parses in an instant.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::sections::invalid;
use crate::error::Result;
use crate::model::{zoo, ModelSource, SourceFormat};

/// One `[[model]]` table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// How units, the report and summary.json name it, where they name an architecture.
    pub name: String,
    /// An ONNX graph, a TorchScript `.pt`, or a `.safetensors` (HART's, or a
    /// PyTorch state dict with `arch`); relative to the working directory, as `data.dataset` is.
    pub path: PathBuf,
    /// `weights` (fine-tune from the file's weights) or `reinit` (the same
    /// graph with PyTorch's default initialisation, drawn per seed).
    #[serde(default = "default_start")]
    pub start: String,
    /// The zoo architecture of a state dict that records none, or the
    /// `.onnx` graph its weights belong to (as `--arch` of `hart train`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
}

fn default_start() -> String {
    "weights".into()
}

impl ModelEntry {
    pub fn reinit(&self) -> bool {
        self.start == "reinit"
    }

    pub fn source(&self) -> Result<ModelSource> {
        ModelSource::new(&self.path, self.arch.as_deref(), None)
    }
}

/// An `arch` naming the ONNX graph a state dict's weights belong to, as `--arch PATH.onnx` does.
pub fn is_graph(arch: &str) -> bool {
    arch.to_lowercase().ends_with(".onnx")
}

/// A model name units and files can carry: no `/` (unit names), no spaces (plot files).
fn plain_name(n: &str) -> bool {
    n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// The config's checks of its `[[model]]` entries (reads no model, only
/// whether each file is there).
pub fn validate(models: &[ModelEntry], archs: &[String]) -> Result<()> {
    for (i, m) in models.iter().enumerate() {
        let key = |k: &str| format!("model[{i}].{k}");
        if !plain_name(&m.name) {
            return Err(invalid(
                &key("name"),
                format!("{:?}: use letters, digits, '.', '_' and '-'", m.name),
            ));
        }
        // Units and report rows are named by architecture or entry alike.
        if archs.contains(&m.name) {
            return Err(invalid(
                &key("name"),
                format!("{:?} is also in archs; give your model another name", m.name),
            ));
        }
        if models[..i].iter().any(|o| o.name == m.name) {
            return Err(invalid(&key("name"), format!("duplicate name {:?}", m.name)));
        }
        if !["weights", "reinit"].contains(&m.start.as_str()) {
            return Err(invalid(
                &key("start"),
                format!("{:?} is not weights or reinit", m.start),
            ));
        }
        if !m.path.is_file() {
            return Err(invalid(
                &key("path"),
                format!("{}: no such model file", m.path.display()),
            ));
        }
        let format = SourceFormat::of(&m.path).map_err(|e| invalid(&key("path"), e))?;
        match &m.arch {
            Some(_) if format != SourceFormat::Safetensors => {
                return Err(invalid(
                    &key("arch"),
                    "only a .safetensors state dict takes an arch; ONNX and TorchScript files carry their own",
                ))
            }
            Some(a) if is_graph(a) && !Path::new(a).is_file() => {
                return Err(invalid(&key("arch"), format!("{a}: no such ONNX graph")));
            }
            Some(a) if is_graph(a) => {}
            Some(a) if !zoo::ARCHS.contains(&a.as_str()) => {
                return Err(invalid(
                    &key("arch"),
                    format!(
                        "unknown architecture {a:?} (one of {}, or the .onnx graph the weights belong to)",
                        zoo::ARCHS.join(", ")
                    ),
                ))
            }
            _ => {}
        }
        if format == SourceFormat::TorchScript && m.reinit() {
            return Err(invalid(
                &key("start"),
                "\"reinit\" needs the layer types, which a TorchScript module does not show; \
                 use start = \"weights\", or export the model to ONNX",
            ));
        }
    }
    Ok(())
}
