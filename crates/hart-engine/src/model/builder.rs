//! Helpers the zoo uses to emit graph nodes together with their parameters,
//! named and initialised as torchvision/timm do.

use tch::{Kind, Tensor};

use super::graph::{Const, Graph, Node, Op, ValueId};
use super::params::{ParamKind, ParamStore};
use crate::error::Result;

/// Weight initialisation schemes, matching the PyTorch reference models so a
/// freshly built HART model trains like its PyTorch twin.
#[derive(Debug, Clone, Copy)]
pub enum Init {
    /// PyTorch's default for `nn.Conv2d`/`nn.Linear`: U(±1/√fan_in).
    Default,
    /// torchvision ResNet convs: N(0, 2/fan_out).
    KaimingFanOut,
    /// timm ViT/DeiT: truncated N(0, 0.02²), zero bias.
    TruncNormal02,
}

pub struct GraphBuilder {
    nodes: Vec<Node>,
    pub params: ParamStore,
}

impl Default for GraphBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn uniform(shape: &[i64], bound: f64) -> Tensor {
    Tensor::empty(shape, (Kind::Float, tch::Device::Cpu)).uniform_(-bound, bound)
}

fn init_weight(shape: &[i64], init: Init) -> Tensor {
    let fan_in: i64 = shape[1..].iter().product();
    match init {
        Init::Default => uniform(shape, 1.0 / (fan_in as f64).sqrt()),
        Init::KaimingFanOut => {
            let fan_out: i64 = shape[0] * shape[2..].iter().product::<i64>();
            Tensor::randn(shape, (Kind::Float, tch::Device::Cpu)) * (2.0 / fan_out as f64).sqrt()
        }
        Init::TruncNormal02 => trunc_normal(shape),
    }
}

pub(crate) fn trunc_normal(shape: &[i64]) -> Tensor {
    (Tensor::randn(shape, (Kind::Float, tch::Device::Cpu)) * 0.02).clamp(-0.04, 0.04)
}

impl GraphBuilder {
    /// A builder whose node 0 is the input batch.
    pub fn new() -> Self {
        GraphBuilder {
            nodes: vec![Node {
                name: "input".into(),
                op: Op::Input,
                inputs: vec![],
            }],
            params: ParamStore::new(),
        }
    }

    pub const INPUT: ValueId = 0;

    pub fn push(&mut self, name: impl Into<String>, op: Op, inputs: &[ValueId]) -> ValueId {
        self.nodes.push(Node {
            name: name.into(),
            op,
            inputs: inputs.to_vec(),
        });
        self.nodes.len() - 1
    }

    /// An unnamed node (activation, arithmetic), named `<scope>.<kind><id>`.
    pub fn op(&mut self, scope: &str, op: Op, inputs: &[ValueId]) -> ValueId {
        let name = format!("{scope}.{}{}", op.kind_name().to_lowercase(), self.nodes.len());
        let name = name.trim_start_matches('.').to_string();
        self.push(name, op, inputs)
    }

    pub fn relu(&mut self, scope: &str, x: ValueId) -> ValueId {
        self.op(scope, Op::Relu, &[x])
    }

    pub fn constant(&mut self, scope: &str, t: Tensor) -> ValueId {
        self.op(scope, Op::Constant(Const(t)), &[])
    }

    pub fn shape_const(&mut self, scope: &str, shape: &[i64]) -> ValueId {
        self.constant(scope, Tensor::from_slice(shape))
    }

    fn param_name(layer: &str, p: &str) -> String {
        format!("{layer}.{p}")
    }

    pub fn add_param(&mut self, name: &str, t: Tensor, kind: ParamKind) -> Result<String> {
        self.params.insert(name, t, kind)?;
        Ok(name.to_string())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        name: &str,
        x: ValueId,
        cin: i64,
        cout: i64,
        kernel: i64,
        stride: i64,
        pad: i64,
        bias: bool,
        init: Init,
    ) -> Result<ValueId> {
        let shape = [cout, cin, kernel, kernel];
        let weight = self.add_param(
            &Self::param_name(name, "weight"),
            init_weight(&shape, init),
            ParamKind::Trainable,
        )?;
        let bias = if bias {
            let b = match init {
                Init::TruncNormal02 => Tensor::zeros([cout], (Kind::Float, tch::Device::Cpu)),
                _ => uniform(&[cout], 1.0 / ((cin * kernel * kernel) as f64).sqrt()),
            };
            Some(self.add_param(&Self::param_name(name, "bias"), b, ParamKind::Trainable)?)
        } else {
            None
        };
        let op = Op::Conv2d {
            weight,
            bias,
            stride: [stride; 2],
            padding: [pad; 4],
            dilation: [1, 1],
            groups: 1,
        };
        Ok(self.push(name, op, &[x]))
    }

    pub fn linear(&mut self, name: &str, x: ValueId, fin: i64, fout: i64, init: Init) -> Result<ValueId> {
        let weight = self.add_param(
            &Self::param_name(name, "weight"),
            init_weight(&[fout, fin], init),
            ParamKind::Trainable,
        )?;
        let b = match init {
            Init::TruncNormal02 => Tensor::zeros([fout], (Kind::Float, tch::Device::Cpu)),
            _ => uniform(&[fout], 1.0 / (fin as f64).sqrt()),
        };
        let bias = Some(self.add_param(&Self::param_name(name, "bias"), b, ParamKind::Trainable)?);
        Ok(self.push(name, Op::Linear { weight, bias }, &[x]))
    }

    /// `nn.BatchNorm2d(c)` with its running statistics and
    /// `num_batches_tracked`, so PyTorch state dicts load strictly.
    pub fn batch_norm(&mut self, name: &str, x: ValueId, c: i64) -> Result<ValueId> {
        let opts = (Kind::Float, tch::Device::Cpu);
        let weight = self.add_param(
            &Self::param_name(name, "weight"),
            Tensor::ones([c], opts),
            ParamKind::Trainable,
        )?;
        let bias = self.add_param(
            &Self::param_name(name, "bias"),
            Tensor::zeros([c], opts),
            ParamKind::Trainable,
        )?;
        let running_mean = self.add_param(
            &Self::param_name(name, "running_mean"),
            Tensor::zeros([c], opts),
            ParamKind::Buffer,
        )?;
        let running_var = self.add_param(
            &Self::param_name(name, "running_var"),
            Tensor::ones([c], opts),
            ParamKind::Buffer,
        )?;
        let num_batches_tracked = Some(self.add_param(
            &Self::param_name(name, "num_batches_tracked"),
            Tensor::zeros([], (Kind::Int64, tch::Device::Cpu)),
            ParamKind::Buffer,
        )?);
        let op = Op::BatchNorm {
            weight: Some(weight),
            bias: Some(bias),
            running_mean,
            running_var,
            num_batches_tracked,
            eps: 1e-5,
            momentum: 0.1,
        };
        Ok(self.push(name, op, &[x]))
    }

    pub fn layer_norm(&mut self, name: &str, x: ValueId, dim: i64, eps: f64) -> Result<ValueId> {
        let opts = (Kind::Float, tch::Device::Cpu);
        let weight = self.add_param(
            &Self::param_name(name, "weight"),
            Tensor::ones([dim], opts),
            ParamKind::Trainable,
        )?;
        let bias = self.add_param(
            &Self::param_name(name, "bias"),
            Tensor::zeros([dim], opts),
            ParamKind::Trainable,
        )?;
        let op = Op::LayerNorm {
            weight: Some(weight),
            bias: Some(bias),
            eps,
            axis: -1,
        };
        Ok(self.push(name, op, &[x]))
    }

    /// A free-standing trainable tensor used as a value (class token, position embedding).
    pub fn tensor_param(&mut self, name: &str, t: Tensor) -> Result<ValueId> {
        let n = self.add_param(name, t, ParamKind::Trainable)?;
        Ok(self.push(name, Op::Param(n), &[]))
    }

    pub fn finish(self, output: ValueId) -> (Graph, ParamStore) {
        (
            Graph {
                nodes: self.nodes,
                output,
            },
            self.params,
        )
    }
}

pub(crate) use trunc_normal as trunc_normal_02;
