//! Models: HART's inspectable layer graph ([`GraphModel`], used by the zoo and
//! ONNX imports) and opaque TorchScript modules ([`ScriptModel`]), behind one
//! [`Model`] type that training, evaluation and fault injection use.

pub mod builder;
pub mod freeze;
pub mod graph;
pub mod info;
pub mod init;
pub mod input_check;
pub mod load;
pub mod onnx;
pub mod params;
pub mod safetensors_io;
pub mod script;
pub mod source;
pub mod zoo;

use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Kind, Tensor};

pub use graph::{Graph, Mode, Op};
pub use info::{ModelInfo, Normalization};
pub use input_check::check_input;
pub use load::{load, open, LoadOptions};
pub use params::{ParamKind, ParamStore};
pub use script::ScriptModel;
pub use source::{ModelSource, SourceFormat, Start};

use crate::error::{HartError, Result};

/// A model HART can see into: its graph plus named tensors.
#[derive(Debug)]
pub struct GraphModel {
    pub graph: Graph,
    pub params: ParamStore,
    pub info: ModelInfo,
}

impl GraphModel {
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.graph.forward(&self.params, x, mode)
    }
}

pub enum Model {
    Graph(GraphModel),
    Script(ScriptModel),
}

impl Model {
    /// Logits for a float32 NCHW batch in [0, 1].
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        match self {
            Model::Graph(g) => g.forward(x, mode),
            Model::Script(s) => s.forward(x, mode),
        }
    }

    pub fn info(&self) -> &ModelInfo {
        match self {
            Model::Graph(g) => &g.info,
            Model::Script(s) => &s.info,
        }
    }

    pub fn info_mut(&mut self) -> &mut ModelInfo {
        match self {
            Model::Graph(g) => &mut g.info,
            Model::Script(s) => &mut s.info,
        }
    }

    /// Every named tensor (parameters and, where visible, buffers), in state-dict order.
    pub fn named_tensors(&self) -> Vec<(String, Tensor, ParamKind)> {
        match self {
            Model::Graph(g) => g
                .params
                .iter()
                .map(|(n, t, k)| (n.to_string(), t.shallow_clone(), k))
                .collect(),
            Model::Script(s) => s
                .named_parameters()
                .into_iter()
                .map(|(n, t)| {
                    let kind = if s.is_frozen(&n) {
                        ParamKind::Frozen
                    } else {
                        ParamKind::Trainable
                    };
                    (n, t, kind)
                })
                .collect(),
        }
    }

    /// The tensors an optimiser updates.
    pub fn trainable(&self) -> Vec<(String, Tensor)> {
        self.named_tensors()
            .into_iter()
            .filter(|(_, _, k)| *k == ParamKind::Trainable)
            .map(|(n, t, _)| (n, t))
            .collect()
    }

    /// An independent copy of the model's weights (graph constants shared),
    /// for a worker that writes weights in place beside readers of this one.
    pub fn deep_copy(&self) -> Result<Model> {
        Ok(match self {
            Model::Graph(g) => Model::Graph(GraphModel {
                graph: g.graph.clone(),
                params: g.params.deep_copy(),
                info: g.info.clone(),
            }),
            Model::Script(s) => Model::Script(s.deep_copy(self.device())?),
        })
    }

    pub fn graph(&self) -> Option<&GraphModel> {
        match self {
            Model::Graph(g) => Some(g),
            Model::Script(_) => None,
        }
    }

    pub fn device(&self) -> Device {
        self.named_tensors().first().map_or(Device::Cpu, |(_, t, _)| t.device())
    }

    pub fn to_device(&mut self, device: Device) -> Result<()> {
        match self {
            Model::Graph(g) => g.params.to_device(device),
            Model::Script(s) => s.to_device(device)?,
        }
        Ok(())
    }

    /// Rejects NaN or infinite weights up front: every result computed from
    /// such a model would be meaningless.
    pub fn check_finite(&self) -> Result<()> {
        for (name, t, _) in self.named_tensors() {
            if t.is_floating_point() {
                let finite = t.detach().isfinite().all().f_int64_value(&[])? != 0;
                if !finite {
                    return Err(HartError::Model(format!(
                        "parameter {name} contains NaN or infinite values"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Saves as safetensors (graph models) or TorchScript (`.pt`, script models).
    pub fn save(&self, path: &Path) -> Result<()> {
        match self {
            Model::Graph(g) => {
                let tensors: Vec<(String, Tensor)> = g
                    .params
                    .iter()
                    .map(|(n, t, _)| (n.to_string(), t.shallow_clone()))
                    .collect();
                // One metadata key only: the crate serialises a HashMap, whose
                // order would make files from identical runs differ byte-wise.
                let info = serde_json::to_string(&g.info).map_err(|e| HartError::Model(e.to_string()))?;
                let meta = HashMap::from([("hart".to_string(), info)]);
                safetensors_io::write(path, &tensors, meta)
            }
            Model::Script(s) => s.save(path),
        }
    }

    /// Count of float scalars, what a bit-flip sweep can target.
    pub fn float_numel(&self) -> i64 {
        self.named_tensors()
            .iter()
            .filter(|(_, t, _)| t.kind() == Kind::Float)
            .map(|(_, t, _)| t.numel() as i64)
            .sum()
    }
}
