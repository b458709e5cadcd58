//! Which weight tensors compression and loss landscapes act on, and how they
//! are put back exactly afterwards.

use tch::Tensor;

use crate::error::{HartError, Result};
use crate::model::{Model, ParamKind};

/// Rank ≥ 2 tensors are weights (conv filters, linear matrices, embeddings);
/// rank ≤ 1 tensors are biases and normalisation parameters, which the
/// literature leaves uncompressed (and out of landscape directions) by default.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub include_bias_bn: bool,
    /// Restrict to the tensors of one layer (graph node name, or module path
    /// prefix for TorchScript models, which have no graph).
    pub layer: Option<String>,
}

/// Trainable float tensors matching `sel`, in state-dict order. The tensors
/// share storage with the model, so writing into them changes the model.
/// Buffers (BatchNorm running statistics) are never selected: they are not
/// weights a deployment would compress.
pub fn select(model: &Model, sel: &Selection) -> Result<Vec<(String, Tensor)>> {
    let graph = model.graph();
    let in_layer = |name: &str| match (&sel.layer, graph) {
        (None, _) => true,
        (Some(l), Some(g)) => g.graph.layer_of(name) == Some(l.as_str()),
        (Some(l), None) => name.strip_prefix(l.as_str()).is_some_and(|rest| rest.starts_with('.')),
    };
    let candidates: Vec<(String, Tensor)> = model
        .named_tensors()
        .into_iter()
        .filter(|(_, t, k)| *k == ParamKind::Trainable && t.is_floating_point())
        .map(|(n, t, _)| (n, t))
        .collect();
    let chosen: Vec<(String, Tensor)> = candidates
        .iter()
        .filter(|(n, t)| in_layer(n) && (sel.include_bias_bn || t.dim() >= 2))
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    if chosen.is_empty() {
        return Err(match &sel.layer {
            Some(l) => HartError::Invalid(format!(
                "--layer {l:?} matches no weight tensor (layers with weights: {})",
                layer_names(model, &candidates).join(", ")
            )),
            None => HartError::Invalid("the model has no trainable weight tensors".into()),
        });
    }
    Ok(chosen)
}

/// The layer names `--layer` accepts, for the error message.
fn layer_names(model: &Model, candidates: &[(String, Tensor)]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (n, t) in candidates {
        if t.dim() < 2 {
            continue;
        }
        let layer = match model.graph() {
            Some(g) => g.graph.layer_of(n).map(str::to_string),
            None => n.rsplit_once('.').map(|(m, _)| m.to_string()),
        };
        if let Some(l) = layer {
            if !names.contains(&l) {
                names.push(l);
            }
        }
    }
    names
}

/// Copies of the selected tensors; restores them bit-exactly on `restore` and
/// on drop, so an error half-way through a sweep cannot leave a model damaged.
pub struct Snapshot {
    saved: Vec<(Tensor, Tensor)>,
}

impl Snapshot {
    pub fn take(targets: &[(String, Tensor)]) -> Self {
        let saved = targets
            .iter()
            .map(|(_, t)| (t.shallow_clone(), t.detach().copy()))
            .collect();
        Snapshot { saved }
    }

    pub fn restore(&self) {
        tch::no_grad(|| {
            for (live, copy) in &self.saved {
                live.shallow_clone().copy_(copy);
            }
        });
    }

    /// The original values, aligned with the targets the snapshot was taken of.
    pub fn originals(&self) -> impl Iterator<Item = &Tensor> {
        self.saved.iter().map(|(_, c)| c)
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        self.restore();
    }
}
