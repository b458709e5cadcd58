//! HART's one model representation: a topologically ordered list of named
//! nodes over tch tensors. Zoo builders and the ONNX importer both produce it;
//! everything that needs to see structure (which layer owns a parameter,
//! running the network from a cut point on cached activations) reads it here.
//!
//! Every op is a differentiable libtorch call, so autograd — including the
//! double backward Hessian-vector products need — works through any graph.

mod eval;

use tch::{Kind, Tensor};

use self::eval::eval_node;
pub use self::eval::to_i64_vec;
use super::params::ParamStore;
use crate::error::{HartError, Result};

/// Index of a node; node `i` produces value `i`.
pub type ValueId = usize;

/// Padding as (top, left, bottom, right), so asymmetric ONNX pads survive.
pub type Pads = [i64; 4];

/// A constant tensor inside the graph. Copies of a graph share it: it is
/// never written, so sweep workers can each own a graph over the same data.
#[derive(Debug)]
pub struct Const(pub Tensor);

impl Clone for Const {
    fn clone(&self) -> Self {
        Const(self.0.shallow_clone())
    }
}

impl std::ops::Deref for Const {
    type Target = Tensor;
    fn deref(&self) -> &Tensor {
        &self.0
    }
}

#[derive(Debug, Clone)]
pub enum Op {
    /// The image batch, float32 NCHW in [0, 1].
    Input,
    /// A named tensor of the [`ParamStore`] used as a plain value (ONNX
    /// initializers feeding MatMul, DeiT's class token and position embedding).
    Param(String),
    /// A constant that is not a model parameter (ONNX `Constant`, shape data).
    Constant(Const),
    /// Per-channel `(x - mean) / std`, so zoo models take [0, 1] inputs.
    Normalize {
        mean: Vec<f64>,
        std: Vec<f64>,
    },
    Conv2d {
        weight: String,
        bias: Option<String>,
        stride: [i64; 2],
        padding: Pads,
        dilation: [i64; 2],
        groups: i64,
    },
    /// `x Wᵀ + b`, PyTorch `nn.Linear`.
    Linear {
        weight: String,
        bias: Option<String>,
    },
    BatchNorm {
        weight: Option<String>,
        bias: Option<String>,
        running_mean: String,
        running_var: String,
        /// PyTorch's step counter buffer, incremented in training mode.
        num_batches_tracked: Option<String>,
        eps: f64,
        momentum: f64,
    },
    /// Normalises over the dimensions from `axis` to the last.
    LayerNorm {
        weight: Option<String>,
        bias: Option<String>,
        eps: f64,
        axis: i64,
    },
    Relu,
    /// Clamp to [min, max] (ONNX `Clip`, PyTorch `ReLU6`/`Hardtanh`); NaN stays NaN.
    Clip {
        min: Option<f64>,
        max: Option<f64>,
    },
    Gelu {
        tanh: bool,
    },
    Sigmoid,
    Tanh,
    Erf,
    Sqrt,
    Neg,
    MaxPool2d {
        kernel: [i64; 2],
        stride: [i64; 2],
        padding: Pads,
        dilation: [i64; 2],
        ceil_mode: bool,
    },
    AvgPool2d {
        kernel: [i64; 2],
        stride: [i64; 2],
        padding: Pads,
        ceil_mode: bool,
        count_include_pad: bool,
    },
    /// Mean over H, W keeping them as size 1 (ONNX `GlobalAveragePool`).
    GlobalAvgPool,
    /// ONNX semantics: reshape to 2-D `[prod(dims < axis), prod(dims >= axis)]`.
    Flatten {
        axis: i64,
    },
    /// Inputs `[x, shape]`; ONNX semantics for 0 (copy) and -1 (infer).
    Reshape,
    Transpose {
        perm: Vec<i64>,
    },
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    MatMul,
    /// `alpha * A' B' + beta * C`, inputs `[A, B, C?]`.
    Gemm {
        alpha: f64,
        beta: f64,
        trans_a: bool,
        trans_b: bool,
    },
    Concat {
        axis: i64,
    },
    Softmax {
        axis: i64,
    },
    /// Axes from the attribute, or from a second input (opset 18); none = all.
    ReduceMean {
        axes: Option<Vec<i64>>,
        keepdims: bool,
    },
    /// The shape of the input as an int64 vector (`start..end` as in ONNX).
    Shape {
        start: i64,
        end: Option<i64>,
    },
    /// Inputs `[data, indices]`.
    Gather {
        axis: i64,
    },
    /// Axes from the attribute, or from a second input (opset 13+).
    Unsqueeze {
        axes: Option<Vec<i64>>,
    },
    Squeeze {
        axes: Option<Vec<i64>>,
    },
    /// Inputs `[data, starts, ends, axes?, steps?]`.
    Slice,
    /// Inputs `[x, shape]`, numpy-style broadcast.
    Expand,
    Cast {
        to: Kind,
    },
    Identity,
    /// Zeroes each element with probability `ratio` and scales the rest by
    /// 1 / (1 − ratio) in training; the identity in evaluation (and so in
    /// every sweep). An imported `training_mode` input is not read: the
    /// forward's [`Mode`] decides, as `module.train()` does in PyTorch.
    Dropout {
        ratio: f64,
    },
}

#[derive(Debug, Clone)]
pub struct Node {
    /// Unique, human-readable; for layers this is the PyTorch module path
    /// (`layer1.0.conv1`) so reports speak the user's names.
    pub name: String,
    pub op: Op,
    pub inputs: Vec<ValueId>,
}

#[derive(Debug, Default, Clone)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub output: ValueId,
}

/// Whether BatchNorm uses batch statistics (and updates its running ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

impl Op {
    /// Names of the parameters this op reads directly (not via `Param` nodes).
    pub fn param_names(&self) -> Vec<&str> {
        fn opt(o: &Option<String>) -> Option<&str> {
            o.as_deref()
        }
        match self {
            Op::Param(n) => vec![n.as_str()],
            Op::Conv2d { weight, bias, .. } | Op::Linear { weight, bias } => std::iter::once(Some(weight.as_str()))
                .chain([opt(bias)])
                .flatten()
                .collect(),
            Op::BatchNorm {
                weight,
                bias,
                running_mean,
                running_var,
                num_batches_tracked,
                ..
            } => [
                opt(weight),
                opt(bias),
                Some(running_mean.as_str()),
                Some(running_var.as_str()),
                opt(num_batches_tracked),
            ]
            .into_iter()
            .flatten()
            .collect(),
            Op::LayerNorm { weight, bias, .. } => [opt(weight), opt(bias)].into_iter().flatten().collect(),
            _ => vec![],
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self {
            Op::Input => "Input",
            Op::Param(_) => "Param",
            Op::Constant(_) => "Constant",
            Op::Normalize { .. } => "Normalize",
            Op::Conv2d { .. } => "Conv2d",
            Op::Linear { .. } => "Linear",
            Op::BatchNorm { .. } => "BatchNorm",
            Op::LayerNorm { .. } => "LayerNorm",
            Op::Relu => "Relu",
            Op::Clip { .. } => "Clip",
            Op::Gelu { .. } => "Gelu",
            Op::Sigmoid => "Sigmoid",
            Op::Tanh => "Tanh",
            Op::Erf => "Erf",
            Op::Sqrt => "Sqrt",
            Op::Neg => "Neg",
            Op::MaxPool2d { .. } => "MaxPool2d",
            Op::AvgPool2d { .. } => "AvgPool2d",
            Op::GlobalAvgPool => "GlobalAvgPool",
            Op::Flatten { .. } => "Flatten",
            Op::Reshape => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Add => "Add",
            Op::Sub => "Sub",
            Op::Mul => "Mul",
            Op::Div => "Div",
            Op::Pow => "Pow",
            Op::MatMul => "MatMul",
            Op::Gemm { .. } => "Gemm",
            Op::Concat { .. } => "Concat",
            Op::Softmax { .. } => "Softmax",
            Op::ReduceMean { .. } => "ReduceMean",
            Op::Shape { .. } => "Shape",
            Op::Gather { .. } => "Gather",
            Op::Unsqueeze { .. } => "Unsqueeze",
            Op::Squeeze { .. } => "Squeeze",
            Op::Slice => "Slice",
            Op::Expand => "Expand",
            Op::Cast { .. } => "Cast",
            Op::Identity => "Identity",
            Op::Dropout { .. } => "Dropout",
        }
    }
}

impl Graph {
    /// Runs the whole network on `x`, holding each value only until its last
    /// reader has run (autograd keeps what backward needs by itself).
    pub fn forward(&self, params: &ParamStore, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut env: Vec<Option<Tensor>> = Vec::with_capacity(self.nodes.len());
        env.resize_with(self.nodes.len(), || None);
        let ids: Vec<usize> = (0..self.nodes.len()).collect();
        self.forward_nodes_freeing(params, x, &ids, &mut env, mode, |v| v == self.output)?;
        env[self.output]
            .take()
            .ok_or_else(|| HartError::Model("graph output was not computed".into()))
    }

    /// Runs nodes `start..` given `env`, where every value an unevaluated node
    /// reads from before `start` is already cached. This is what lets a
    /// fault sweep re-run only the layers after a flipped weight.
    pub fn forward_from(
        &self,
        params: &ParamStore,
        x: &Tensor,
        start: usize,
        env: &mut [Option<Tensor>],
        mode: Mode,
    ) -> Result<Tensor> {
        self.forward_nodes(params, x, start..self.nodes.len(), env, mode)?;
        env[self.output]
            .as_ref()
            .map(|t| t.shallow_clone())
            .ok_or_else(|| HartError::Model("graph output was not computed".into()))
    }

    /// Runs exactly the nodes `ids` (ascending), storing their values in
    /// `env`. A fault sweep re-runs a cut's downstream nodes plus the few
    /// earlier shape computations that depend on the batch size.
    pub fn forward_nodes(
        &self,
        params: &ParamStore,
        x: &Tensor,
        ids: impl IntoIterator<Item = usize>,
        env: &mut [Option<Tensor>],
        mode: Mode,
    ) -> Result<()> {
        for i in ids {
            let node = &self.nodes[i];
            let value = eval_node(node, env, params, x, mode).map_err(|e| match e {
                HartError::Torch(t) => HartError::Model(format!(
                    "node {} ({}): {}",
                    node.name,
                    node.op.kind_name(),
                    HartError::Torch(t)
                )),
                other => other,
            })?;
            env[i] = Some(value);
        }
        Ok(())
    }

    /// [`Self::forward_nodes`] that drops each value from `env` once the last
    /// of `ids` reading it has run, unless `keep(value)`: an evaluation's
    /// peak memory is then its live values, not every activation of the pass
    /// (a ResNet-18 on 1,000 CIFAR images: ~7 GiB).
    pub fn forward_nodes_freeing(
        &self,
        params: &ParamStore,
        x: &Tensor,
        ids: &[usize],
        env: &mut [Option<Tensor>],
        mode: Mode,
        keep: impl Fn(usize) -> bool,
    ) -> Result<()> {
        let mut last_reader = vec![usize::MAX; self.nodes.len()];
        for (k, &u) in ids.iter().enumerate() {
            for &v in &self.nodes[u].inputs {
                last_reader[v] = k;
            }
        }
        for (k, &u) in ids.iter().enumerate() {
            self.forward_nodes(params, x, [u], env, mode)?;
            for &v in self.nodes[u].inputs.iter().chain([&u]) {
                let unread = last_reader[v] == usize::MAX && v == u;
                if (last_reader[v] == k || unread) && !keep(v) {
                    env[v] = None;
                }
            }
        }
        Ok(())
    }

    /// For each parameter name, the index of the first node that reads it
    /// (directly, or through a `Param` node's consumers).
    pub fn first_consumer(&self, param: &str) -> Option<usize> {
        self.nodes.iter().enumerate().find_map(|(i, n)| match &n.op {
            Op::Param(p) if p == param => self
                .nodes
                .iter()
                .enumerate()
                .skip(i + 1)
                .find(|(_, m)| m.inputs.contains(&i))
                .map(|(j, _)| j),
            op if op.param_names().contains(&param) => Some(i),
            _ => None,
        })
    }

    /// The layer (node name) that owns a parameter, for per-layer reports:
    /// the node reading it directly, which for a free-standing tensor such as
    /// a class token is its own `Param` node.
    pub fn layer_of(&self, param: &str) -> Option<&str> {
        self.nodes
            .iter()
            .find(|n| n.op.param_names().contains(&param))
            .map(|n| n.name.as_str())
    }
}
