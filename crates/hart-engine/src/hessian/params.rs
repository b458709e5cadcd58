//! Which parameters a Hessian is taken over, and the flat layout that lets
//! the linear algebra treat them as one vector while reports still speak
//! per tensor.

use std::fmt;
use std::str::FromStr;

use regex::Regex;
use tch::{Kind, Tensor};

use crate::error::{HartError, Result};
use crate::model::Model;

/// `--hessian-layers` / `--layers`: all trainable tensors, those of the last
/// K layers, or those whose name matches a regular expression.
#[derive(Debug, Clone, Default)]
pub enum LayerSelection {
    #[default]
    All,
    Last(usize),
    Regex(Regex),
}

impl FromStr for LayerSelection {
    type Err = HartError;
    fn from_str(s: &str) -> Result<Self> {
        if s == "all" {
            return Ok(Self::All);
        }
        if let Some(k) = s.strip_prefix("last:") {
            return match k.parse::<usize>() {
                Ok(k) if k >= 1 => Ok(Self::Last(k)),
                _ => Err(HartError::Invalid(format!(
                    "layer selection {s:?}: last:K needs an integer K ≥ 1"
                ))),
            };
        }
        Regex::new(s).map(Self::Regex).map_err(|e| {
            HartError::Invalid(format!(
                "layer selection {s:?} is not all, last:K or a valid regex: {}",
                last_line(&e.to_string())
            ))
        })
    }
}

// The regex crate puts the caret diagram first and the reason last.
fn last_line(s: &str) -> &str {
    s.lines().last().unwrap_or(s).trim()
}

impl fmt::Display for LayerSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::Last(k) => write!(f, "last:{k}"),
            Self::Regex(r) => f.write_str(r.as_str()),
        }
    }
}

impl serde::Serialize for LayerSelection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The layer a trainable tensor belongs to: the graph node that reads it, or
/// for TorchScript (no structure visible) its module path.
fn layer_name(model: &Model, param: &str) -> String {
    model
        .graph()
        .and_then(|g| g.graph.layer_of(param))
        .map(str::to_string)
        .unwrap_or_else(|| param.rsplit_once('.').map_or(param, |(m, _)| m).to_string())
}

/// Selected trainable tensors with their offsets in the flat vector.
pub struct ParamSet {
    pub names: Vec<String>,
    pub tensors: Vec<Tensor>,
    offsets: Vec<i64>,
    dim: i64,
}

impl ParamSet {
    /// The trainable floating-point tensors of `model` that `sel` picks, in state-dict order.
    pub fn select(model: &Model, sel: &LayerSelection) -> Result<Self> {
        let trainable: Vec<(String, Tensor)> = model
            .trainable()
            .into_iter()
            .filter(|(_, t)| t.is_floating_point())
            .collect();
        let chosen: Vec<(String, Tensor)> = match sel {
            LayerSelection::All => trainable,
            LayerSelection::Last(k) => {
                // Layers in the order their tensors first appear: forward order for zoo models.
                let mut layers: Vec<String> = Vec::new();
                for (n, _) in &trainable {
                    let l = layer_name(model, n);
                    if !layers.contains(&l) {
                        layers.push(l);
                    }
                }
                let keep = &layers[layers.len().saturating_sub(*k)..];
                trainable
                    .into_iter()
                    .filter(|(n, _)| keep.contains(&layer_name(model, n)))
                    .collect()
            }
            LayerSelection::Regex(r) => trainable.into_iter().filter(|(n, _)| r.is_match(n)).collect(),
        };
        if chosen.is_empty() {
            return Err(HartError::Invalid(format!(
                "layer selection {sel:?} matches no trainable parameter",
                sel = sel.to_string()
            )));
        }
        let (names, tensors): (Vec<_>, Vec<_>) = chosen.into_iter().unzip();
        Ok(Self::from_tensors(names, tensors))
    }

    pub fn from_tensors(names: Vec<String>, tensors: Vec<Tensor>) -> Self {
        let mut offsets = Vec::with_capacity(tensors.len() + 1);
        let mut dim = 0i64;
        for t in &tensors {
            offsets.push(dim);
            dim += t.numel() as i64;
        }
        offsets.push(dim);
        ParamSet {
            names,
            tensors,
            offsets,
            dim,
        }
    }

    /// Total number of scalars: the Hessian is `dim × dim`.
    pub fn dim(&self) -> i64 {
        self.dim
    }

    /// Where the tensors live (the CPU for an empty set).
    pub fn device(&self) -> tch::Device {
        self.tensors.first().map_or(tch::Device::Cpu, |t| t.device())
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Column range of tensor `i` in the flat layout.
    pub fn range(&self, i: usize) -> (i64, i64) {
        (self.offsets[i], self.offsets[i + 1] - self.offsets[i])
    }

    /// Views of a flat `[dim]` vector shaped like each tensor.
    pub fn split(&self, flat: &Tensor) -> Vec<Tensor> {
        self.tensors
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let (start, len) = self.range(i);
                flat.narrow(0, start, len).view(t.size().as_slice())
            })
            .collect()
    }

    /// Concatenates per-tensor values (undefined = no dependence = zeros) into one flat vector.
    pub fn flatten(&self, parts: &[Tensor]) -> Tensor {
        let flat: Vec<Tensor> = parts
            .iter()
            .zip(&self.tensors)
            .map(|(g, t)| {
                if g.defined() {
                    g.reshape([-1])
                } else {
                    Tensor::zeros([t.numel() as i64], (t.kind(), t.device()))
                }
            })
            .collect();
        Tensor::cat(&flat, 0)
    }

    /// Row sums of `a ⊙ b` per tensor, for `[k, dim]` blocks: `[k, len()]` in f64.
    pub fn blockwise_dot(&self, a: &Tensor, b: &Tensor) -> Tensor {
        let prod = (a * b).to_kind(Kind::Double);
        let cols: Vec<Tensor> = (0..self.len())
            .map(|i| {
                let (start, len) = self.range(i);
                prod.narrow(1, start, len).sum_dim_intlist(1, false, Kind::Double)
            })
            .collect();
        Tensor::stack(&cols, 1)
    }
}
