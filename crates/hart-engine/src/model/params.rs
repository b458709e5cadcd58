use std::collections::HashMap;

use tch::{Device, Kind, Tensor};

use crate::error::{HartError, Result};

/// Whether the optimiser updates a tensor. Buffers (BatchNorm running
/// statistics, `num_batches_tracked`) still sit in memory, so fault sweeps can
/// target them, but gradients never reach them. A frozen tensor is a
/// parameter `--freeze` holds fixed for one training run: no gradient, no
/// update, no clipping or noise ([`crate::model::Model::freeze`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    Trainable,
    Buffer,
    Frozen,
}

/// A model's named tensors, in the order PyTorch's `state_dict()` lists them.
/// Names are PyTorch's (`layer1.0.conv1.weight`), so fault lists, safetensors
/// files and ONNX initializers all address the same tensors.
#[derive(Debug, Default)]
pub struct ParamStore {
    names: Vec<String>,
    tensors: Vec<Tensor>,
    kinds: Vec<ParamKind>,
    index: HashMap<String, usize>,
}

impl ParamStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, name: &str, tensor: Tensor, kind: ParamKind) -> Result<()> {
        if self.index.contains_key(name) {
            return Err(HartError::Model(format!("duplicate parameter name {name}")));
        }
        let tensor = match kind {
            ParamKind::Trainable => tensor.detach().set_requires_grad(true),
            ParamKind::Buffer | ParamKind::Frozen => tensor.detach(),
        };
        self.index.insert(name.to_string(), self.names.len());
        self.names.push(name.to_string());
        self.tensors.push(tensor);
        self.kinds.push(kind);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.index
            .get(name)
            .map(|&i| &self.tensors[i])
            .ok_or_else(|| HartError::Model(format!("no parameter named {name}")))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    pub fn kind(&self, name: &str) -> Option<ParamKind> {
        self.index.get(name).map(|&i| self.kinds[i])
    }

    /// Freezes a parameter (`Frozen`) or frees it again (`Trainable`), in
    /// place: the tensor keeps its identity, only gradient tracking changes.
    /// Buffers stay buffers.
    pub fn set_frozen(&mut self, name: &str, frozen: bool) -> Result<()> {
        let &i = self
            .index
            .get(name)
            .ok_or_else(|| HartError::Model(format!("no parameter named {name}")))?;
        if self.kinds[i] == ParamKind::Buffer {
            return Ok(());
        }
        self.kinds[i] = if frozen {
            ParamKind::Frozen
        } else {
            ParamKind::Trainable
        };
        let _ = self.tensors[i].f_set_requires_grad(!frozen)?;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// All tensors, trainable and buffers, in state-dict order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor, ParamKind)> {
        self.names
            .iter()
            .zip(&self.tensors)
            .zip(&self.kinds)
            .map(|((n, t), k)| (n.as_str(), t, *k))
    }

    pub fn trainable(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.iter()
            .filter(|(_, _, k)| *k == ParamKind::Trainable)
            .map(|(n, t, _)| (n, t))
    }

    /// Overwrites a tensor's values in place, keeping its identity (autograd
    /// leaf, device) so graph nodes and optimiser state stay valid.
    pub fn assign(&mut self, name: &str, value: &Tensor) -> Result<()> {
        let t = self.get(name)?;
        if t.size() != value.size() {
            return Err(HartError::Model(format!(
                "parameter {name}: expected shape {:?}, file has {:?}",
                t.size(),
                value.size()
            )));
        }
        let value = value.to_kind(t.kind()).to_device(t.device());
        tch::no_grad(|| t.shallow_clone().copy_(&value));
        Ok(())
    }

    pub fn to_device(&mut self, device: Device) {
        for (t, k) in self.tensors.iter_mut().zip(&self.kinds) {
            let moved = t.detach().to_device(device);
            *t = match k {
                ParamKind::Trainable => moved.set_requires_grad(true),
                ParamKind::Buffer | ParamKind::Frozen => moved,
            };
        }
    }

    /// An independent copy of every tensor (same names, kinds and devices),
    /// for work that writes weights in place beside readers of the original.
    pub fn deep_copy(&self) -> ParamStore {
        let mut s = ParamStore::new();
        for (name, t, kind) in self.iter() {
            s.names.push(name.to_string());
            s.tensors.push(t.detach().copy());
            s.kinds.push(kind);
            s.index.insert(name.to_string(), s.names.len() - 1);
        }
        s
    }

    pub fn device(&self) -> Device {
        self.tensors.first().map_or(Device::Cpu, |t| t.device())
    }

    /// Number of scalar elements over the float tensors (what a sweep can flip).
    pub fn float_numel(&self) -> i64 {
        self.iter()
            .filter(|(_, t, _)| t.kind() == Kind::Float)
            .map(|(_, t, _)| t.numel() as i64)
            .sum()
    }
}
