//! A user's own model as a starting point for training: an ONNX graph, a
//! TorchScript module, or a safetensors state dict of a zoo architecture.
//! Loading checks that the model takes the data (channels, size, classes)
//! before anything trains, and the output format is checked against what
//! the model can be written back as before anything trains either.

use std::path::{Path, PathBuf};

use tch::Tensor;

use super::info::{ModelInfo, Normalization};
use super::init::{reinit, Reinit};
use super::load::{load, LoadOptions};
use super::{onnx, zoo, Mode, Model};
use crate::data::Dataset;
use crate::error::{HartError, Result};

/// What kind of file a model source is, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    Onnx,
    TorchScript,
    /// `.safetensors`: a HART file, or a PyTorch state dict with `arch`.
    Safetensors,
}

impl SourceFormat {
    pub fn of(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        Ok(match ext.as_str() {
            "onnx" => Self::Onnx,
            "pt" | "pth" | "ts" | "jit" | "torchscript" => Self::TorchScript,
            "safetensors" => Self::Safetensors,
            other => {
                return Err(HartError::data(
                    path,
                    format!("unknown model format .{other} (expected .onnx, a TorchScript .pt or .safetensors)"),
                ))
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Onnx => "an ONNX graph",
            Self::TorchScript => "a TorchScript module",
            Self::Safetensors => "a safetensors state dict",
        }
    }
}

/// A model file to train from.
#[derive(Debug, Clone)]
pub struct ModelSource {
    pub path: PathBuf,
    pub format: SourceFormat,
    /// The zoo architecture (or `.onnx` graph) of a state dict without HART metadata.
    pub arch: Option<String>,
    /// A state dict's input normalisation (Some(None) = none); imported graphs keep theirs.
    pub normalize: Option<Option<Normalization>>,
}

impl ModelSource {
    /// Checks the combination of file and options; reads nothing yet.
    pub fn new(path: &Path, arch: Option<&str>, normalize: Option<Option<Normalization>>) -> Result<Self> {
        let format = SourceFormat::of(path)?;
        if format != SourceFormat::Safetensors {
            if let Some(a) = arch {
                return Err(HartError::Invalid(format!(
                    "--arch {a} with --model {}: {} carries its own architecture; pass one of the two",
                    path.display(),
                    format.name()
                )));
            }
            if normalize.is_some() {
                return Err(HartError::Invalid(format!(
                    "--normalize applies to --arch models only; {} keeps the input normalisation baked into it",
                    path.display()
                )));
            }
        }
        Ok(ModelSource {
            path: path.to_path_buf(),
            format,
            arch: arch.map(str::to_string),
            normalize,
        })
    }

    /// The file's stem, the name reports use.
    pub fn name(&self) -> String {
        self.path
            .file_stem()
            .map_or_else(|| self.path.display().to_string(), |s| s.to_string_lossy().into_owned())
    }

    /// Loads the file's weights and checks that the model takes `data`.
    pub fn load(&self, data: &Dataset) -> Result<Model> {
        let opts = LoadOptions {
            arch: self.arch.clone(),
            hint: Some(ModelInfo::for_data(self.arch.as_deref().unwrap_or("unknown"), data)),
            normalize: self.normalize.clone(),
        };
        let mut model = load(&self.path, &opts)?;
        let info = check_fit(&model, data, &self.path)?;
        *model.info_mut() = info;
        Ok(model)
    }

    /// Checks, before training, that `out` can hold `model` (loaded from
    /// this source) in its format, naming the formats that can.
    pub fn check_out(&self, model: &Model, out: &Path) -> Result<()> {
        let want = SourceFormat::of(out).ok();
        let ok: &[SourceFormat] = match self.format {
            SourceFormat::Onnx => &[SourceFormat::Onnx, SourceFormat::Safetensors],
            SourceFormat::TorchScript => &[SourceFormat::TorchScript],
            SourceFormat::Safetensors => &[SourceFormat::Safetensors],
        };
        if !want.is_some_and(|w| ok.contains(&w)) {
            let names: Vec<&str> = ok.iter().map(|f| f.extension()).collect();
            return Err(HartError::Invalid(format!(
                "--out {}: a model trained from {} ({}) is written as {}",
                out.display(),
                self.format.name(),
                self.path.display(),
                names.join(" or ")
            )));
        }
        if want == Some(SourceFormat::Onnx) {
            let names: Vec<String> = model.named_tensors().into_iter().map(|(n, _, _)| n).collect();
            onnx::check_writable(&self.path, &names)?;
        }
        Ok(())
    }

    /// Writes `model` (trained from this source) to `out`: an ONNX source's
    /// file with its initializers' trained values, a TorchScript module, or
    /// a HART safetensors file.
    pub fn save(&self, model: &Model, out: &Path) -> Result<()> {
        self.check_out(model, out)?;
        match SourceFormat::of(out)? {
            SourceFormat::Onnx => {
                let tensors: Vec<(String, Tensor)> =
                    model.named_tensors().into_iter().map(|(n, t, _)| (n, t)).collect();
                onnx::write_back(&self.path, out, &tensors)
            }
            _ => model.save(out),
        }
    }
}

impl SourceFormat {
    fn extension(self) -> &'static str {
        match self {
            Self::Onnx => ".onnx (the input graph with trained initializers)",
            Self::TorchScript => ".pt (the module with trained parameters and buffers)",
            Self::Safetensors => ".safetensors",
        }
    }
}

/// "3×32×32".
fn shape_text(c: i64, h: i64, w: i64) -> String {
    format!("{c}×{h}×{w}")
}

/// Checks that `model` takes `data`'s images and has an output for each of
/// its classes, by the declared input shape and one forward pass on the
/// first image (eval mode, nothing moves); returns the model's info with
/// what the pass showed. Errors name both shapes.
pub fn check_fit(model: &Model, data: &Dataset, path: &Path) -> Result<ModelInfo> {
    if data.is_empty() {
        return Err(HartError::Invalid(format!("{}: the data set is empty", data.name)));
    }
    let (c, h, w) = (data.channels as i64, data.height as i64, data.width as i64);
    let given = format!("{} gives {} images", data.name, shape_text(c, h, w));
    let mut info = model.info().clone();
    let declared_size = info.input_size;
    let takes = |ch: i64| {
        let size = if declared_size > 0 {
            format!("{declared_size}×{declared_size}")
        } else {
            "H×W".into()
        };
        let ch = if ch > 0 { ch.to_string() } else { "C".into() };
        format!("{ch}×{size}")
    };
    if (info.in_channels > 0 && info.in_channels != c)
        || (declared_size > 0 && (declared_size != h || declared_size != w))
    {
        return Err(HartError::data(
            path,
            format!("the model takes {} images, {given}", takes(info.in_channels)),
        ));
    }
    let (x, _) = data.batch(&[0]);
    let x = x.f_to_device(model.device())?;
    let logits = tch::no_grad(|| model.forward(&x, Mode::Eval)).map_err(|e| {
        HartError::data(
            path,
            format!(
                "the model fails on one image ({given}): {}",
                e.to_string().lines().next().unwrap_or("")
            ),
        )
    })?;
    let size = logits.size();
    let classes = match size.as_slice() {
        [1, k] => *k,
        _ => {
            return Err(HartError::data(
                path,
                format!("the model's output for one image has shape {size:?}; HART needs [1, classes] logits"),
            ))
        }
    };
    if classes < data.num_classes as i64 {
        return Err(HartError::data(
            path,
            format!(
                "the model has {classes} outputs, {} has {} classes",
                data.name, data.num_classes
            ),
        ));
    }
    info.num_classes = classes;
    info.in_channels = c;
    if h == w {
        info.input_size = h;
    }
    info.dataset = Some(data.name.clone());
    Ok(info)
}

/// Where a training run starts: a zoo architecture freshly initialised, a
/// model file's weights (fine-tuning), or a model file's graph freshly
/// initialised. The λ search and experiments build one model per run from it.
#[derive(Debug, Clone)]
pub enum Start {
    Arch(ModelInfo),
    Weights(ModelSource),
    Reinit(ModelSource),
}

impl Start {
    /// A fresh model for `data`, drawn from `seed` where initialised.
    pub fn build(&self, data: &Dataset, seed: u64) -> Result<Model> {
        Ok(self.build_reporting(data, seed)?.0)
    }

    /// [`Self::build`], also saying what `--reinit` re-initialised.
    pub fn build_reporting(&self, data: &Dataset, seed: u64) -> Result<(Model, Option<Reinit>)> {
        match self {
            Start::Arch(info) => {
                tch::manual_seed(seed as i64);
                Ok((Model::Graph(zoo::build(info)?), None))
            }
            Start::Weights(source) => Ok((source.load(data)?, None)),
            Start::Reinit(source) => {
                let mut model = source.load(data)?;
                tch::manual_seed(seed as i64);
                let report = reinit(&mut model)?;
                Ok((model, Some(report)))
            }
        }
    }

    pub fn source(&self) -> Option<&ModelSource> {
        match self {
            Start::Arch(_) => None,
            Start::Weights(s) | Start::Reinit(s) => Some(s),
        }
    }

    /// The name a report gives the model: the architecture or the file's stem.
    pub fn name(&self) -> String {
        match self {
            Start::Arch(info) => info.arch.clone(),
            Start::Weights(s) | Start::Reinit(s) => s.name(),
        }
    }
}
