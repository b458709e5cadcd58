//! `[[model]]`: a user's own model files as starting points of the
//! experiment, beside the zoo's `archs`. Every recipe × seed trains from the
//! entry (its weights, or its graph re-initialised per seed), and every
//! measurement then runs on the trained models as on zoo ones.
//!
//! Everything that can be wrong with an entry is found before any stage
//! runs: the config's own checks (file, format, start, name; [`super::model_entry`]) when it is
//! parsed, the model against the data and against every recipe when the run
//! starts ([`prepare`]). A stage trained from an entry keys on a hash of the
//! file's bytes (and, for ONNX, of the weights it reads, which may live in
//! external data files), so a changed file is retrained, never read stale.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tch::Device;

use super::config::ExperimentConfig;
use super::model_entry::is_graph;
use super::recipe;
use super::sections::invalid;
use crate::data::Dataset;
use crate::error::{HartError, Result};
use crate::faults::ranger::DefenseChoice;
use crate::model::init::reinit;
use crate::model::{check_input, onnx, Model, ModelSource, SourceFormat, Start};
use crate::train::Regularizer;

/// An entry ready to train from: where training starts, and what the stages trained from it key on.
#[derive(Debug, Clone)]
pub struct UserModel {
    pub start: Start,
    pub format: SourceFormat,
    /// Name, start, arch and the hash of the file: the stage keys' `model`.
    pub key: serde_json::Value,
    /// The ONNX graph a `.safetensors` entry's weights belong to (HART's
    /// file of an imported model records it by name, beside the weights).
    pub graph: Option<PathBuf>,
}

/// Reads every `[[model]]` entry once, before any stage runs: it must take
/// the data (shape and classes, on both splits), every recipe must accept
/// it, and the measurements must be able to run on it. Errors name the
/// entry. Returns the entries by name.
pub fn prepare(
    cfg: &ExperimentConfig,
    train: &Dataset,
    test: &Dataset,
    device: Device,
) -> Result<BTreeMap<String, UserModel>> {
    let mut out = BTreeMap::new();
    for (i, m) in cfg.models.iter().enumerate() {
        let named = |e: HartError| HartError::Invalid(format!("config key `model[{i}]` ({}): {e}", m.name));
        let source = m.source().map_err(named)?;
        let format = source.format;
        let mut model = source.load(train).map_err(named)?;
        check_input(&model, train).map_err(named)?;
        check_input(&model, test).map_err(named)?;
        let ranger = cfg
            .defense
            .as_ref()
            .is_some_and(|d| d.defenses().contains(&DefenseChoice::Ranger));
        if ranger && model.graph().is_none() {
            return Err(invalid(
                "defense.sweep",
                format!(
                    "ranger needs a graph model (zoo or ONNX); model[{i}] ({}) is TorchScript, whose activations are not visible",
                    m.name
                ),
            ));
        }
        for r in 0..cfg.recipes.len() {
            // A searched λ is not known yet; any positive one checks the rest.
            let (_, reg) = recipe::training(cfg, r, 0, device, Some(cfg.tune.grid[0]))?;
            Regularizer::new(&model, &reg, 0).map_err(|e| {
                HartError::Invalid(format!(
                    "config key `recipe[{r}]` ({}) on model[{i}] ({}): {e}",
                    cfg.recipes[r].name, m.name
                ))
            })?;
        }
        let graph = graph_of(&source, &model)?;
        let hash = file_hash(
            &m.path,
            (format == SourceFormat::Onnx).then_some(&model),
            graph.as_deref(),
        )?;
        let start = if m.reinit() {
            reinit(&mut model).map_err(named)?;
            Start::Reinit(source)
        } else {
            Start::Weights(source)
        };
        let key = serde_json::json!({"name": m.name, "start": m.start, "arch": m.arch, "sha256": hash});
        out.insert(
            m.name.clone(),
            UserModel {
                start,
                format,
                key,
                graph,
            },
        );
    }
    Ok(out)
}

/// The ONNX graph file a safetensors entry was loaded onto (its `arch`, or
/// the graph HART's file names, beside it), made absolute: the trained
/// weights, saved in a stage directory, must still find it, and its bytes
/// are part of what the stages key on.
fn graph_of(source: &ModelSource, model: &Model) -> Result<Option<PathBuf>> {
    if source.format != SourceFormat::Safetensors {
        return Ok(None);
    }
    let graph = match (source.arch.as_deref(), model.info().arch.strip_prefix("onnx:")) {
        (Some(a), _) if is_graph(a) => PathBuf::from(a),
        (_, Some(file)) => source.path.parent().unwrap_or(Path::new(".")).join(file),
        _ => return Ok(None),
    };
    graph.canonicalize().map(Some).map_err(|e| HartError::io(&graph, e))
}

/// SHA-256 of the file's bytes, of `weights`' tensors where given (an
/// ONNX graph's initializers may sit in external data files beside it), and
/// of the graph file a state dict's weights are loaded onto.
fn file_hash(path: &Path, weights: Option<&Model>, graph: Option<&Path>) -> Result<String> {
    let mut h = Sha256::new();
    for file in std::iter::once(path).chain(graph) {
        let bytes = std::fs::read(file).map_err(|e| HartError::io(file, e))?;
        // Length-prefixed: a graph's bytes never read as the weights' tail.
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    for (name, t, _) in weights.map(|m| m.named_tensors()).unwrap_or_default() {
        let t = t.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?;
        let kind = t.f_kind()?;
        let mut data = vec![0u8; t.numel() * kind.elt_size_in_bytes()];
        t.f_copy_data_u8(&mut data, t.numel())?;
        h.update(name.as_bytes());
        h.update(format!("{kind:?}{:?}", t.size()).as_bytes());
        h.update(&data);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Writes `model`, trained from `user`, into the stage directory `dir` in
/// the format it came in where that can hold it: an ONNX source's file with
/// the trained initializers, a TorchScript module; otherwise (an ONNX graph
/// whose initializers are external or not float32, a state dict) HART's
/// safetensors. Returns the file's name in `dir` and, for safetensors of an
/// imported graph, the graph file the weights belong to.
pub fn save(user: &UserModel, model: &Model, dir: &Path) -> Result<(PathBuf, Option<PathBuf>)> {
    let source = user
        .start
        .source()
        .ok_or_else(|| HartError::Invalid("internal: a zoo start".into()))?;
    let file = match user.format {
        SourceFormat::Onnx => {
            let names: Vec<String> = model.named_tensors().into_iter().map(|(n, _, _)| n).collect();
            if onnx::check_writable(&source.path, &names).is_ok() {
                PathBuf::from("model.onnx")
            } else {
                model.save(&dir.join("model.safetensors"))?;
                let graph = source.path.canonicalize().map_err(|e| HartError::io(&source.path, e))?;
                return Ok((PathBuf::from("model.safetensors"), Some(graph)));
            }
        }
        SourceFormat::TorchScript => PathBuf::from("model.pt"),
        SourceFormat::Safetensors => {
            model.save(&dir.join("model.safetensors"))?;
            return Ok((PathBuf::from("model.safetensors"), user.graph.clone()));
        }
    };
    source.save(model, &dir.join(&file))?;
    Ok((file, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_entries_parse_with_their_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let (onnx, pt) = (dir.path().join("a.onnx"), dir.path().join("b.pt"));
        std::fs::write(&onnx, b"").unwrap();
        std::fs::write(&pt, b"").unwrap();
        let text = format!(
            "{}[[model]]\nname = \"a\"\npath = {:?}\nstart = \"reinit\"\n[[model]]\nname = \"b\"\npath = {:?}\n",
            crate::experiment::config::tests::MINIMAL.replace("archs = [\"lenet5\"]\n", ""),
            onnx.display().to_string(),
            pt.display().to_string()
        );
        let c = ExperimentConfig::parse(&text).unwrap();
        assert!(c.archs.is_empty());
        assert_eq!((c.models[0].reinit(), c.models[1].reinit()), (true, false));
        assert_eq!(c.models[1].start, "weights");
        assert_eq!(c.model_names(), ["a", "b"]);
    }
}
