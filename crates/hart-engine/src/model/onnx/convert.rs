//! ONNX `GraphProto` → HART [`Graph`] and [`ParamStore`].
//!
//! Nodes are converted in file order (ONNX requires a topological order).
//! Initializers keep their names so fault lists address the PyTorch tensors;
//! float initializers become parameters, integer ones (shapes, axes, indices)
//! constants. Shape arithmetic whose inputs are all constants is evaluated
//! here once, with the graph's own op implementations, instead of on every
//! forward pass.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use tch::{Device, Kind, Tensor};

use super::proto::{attr_type, AttributeProto, ModelProto, NodeProto, TensorProto, ValueInfoProto};
use super::tensor::{self, ExternalData};
use crate::error::{HartError, Result};
use crate::model::graph::{to_i64_vec, Const, Graph, Mode, Node, Op, Pads, ValueId};
use crate::model::info::ModelInfo;
use crate::model::params::{ParamKind, ParamStore};
use crate::model::GraphModel;

/// Opset assumed when a model does not declare the default domain's.
const DEFAULT_OPSET: i64 = 21;

fn is_float(kind: Kind) -> bool {
    matches!(kind, Kind::Half | Kind::Float | Kind::Double | Kind::BFloat16)
}

fn is_int(kind: Kind) -> bool {
    matches!(kind, Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int | Kind::Int64)
}

fn unsupported(what: impl std::fmt::Display, node: &str) -> HartError {
    HartError::UnsupportedOp(format!("{what} (node {node})"))
}

/// ONNX stores float attributes as f32; PyTorch's values were decimal
/// doubles (eps = 1e-5), and the shortest decimal of the f32 recovers them.
fn decimal(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(v as f64)
}

fn attr_type_name(t: i32) -> &'static str {
    match t {
        attr_type::FLOAT => "FLOAT",
        attr_type::INT => "INT",
        attr_type::STRING => "STRING",
        attr_type::TENSOR => "TENSOR",
        attr_type::FLOATS => "FLOATS",
        attr_type::INTS => "INTS",
        _ => "another type",
    }
}

/// Typed access to a node's attributes.
struct Attrs<'a> {
    node: &'a NodeProto,
    name: &'a str,
    path: &'a Path,
}

impl<'a> Attrs<'a> {
    fn get(&self, key: &str, want: i32) -> Result<Option<&'a AttributeProto>> {
        match self.node.attribute.iter().find(|a| a.name == key) {
            Some(a) if a.r#type != 0 && a.r#type != want => Err(HartError::data(
                self.path,
                format!(
                    "node {}: attribute {key} is {}, expected {}",
                    self.name,
                    attr_type_name(a.r#type),
                    attr_type_name(want)
                ),
            )),
            // Without a declared type, only the member that is set counts.
            Some(a)
                if a.r#type == 0
                    && match want {
                        attr_type::FLOAT => a.f.is_none(),
                        attr_type::INT => a.i.is_none(),
                        attr_type::STRING => a.s.is_none(),
                        attr_type::TENSOR => a.t.is_none(),
                        attr_type::FLOATS => a.floats.is_empty(),
                        _ => a.ints.is_empty(),
                    } =>
            {
                Ok(None)
            }
            other => Ok(other),
        }
    }

    fn int(&self, key: &str) -> Result<Option<i64>> {
        Ok(self.get(key, attr_type::INT)?.map(|a| a.i.unwrap_or(0)))
    }

    fn float(&self, key: &str) -> Result<Option<f32>> {
        Ok(self.get(key, attr_type::FLOAT)?.map(|a| a.f.unwrap_or(0.0)))
    }

    fn string(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .get(key, attr_type::STRING)?
            .map(|a| String::from_utf8_lossy(a.s.as_deref().unwrap_or_default()).into_owned()))
    }

    fn ints(&self, key: &str) -> Result<Option<Vec<i64>>> {
        Ok(self.get(key, attr_type::INTS)?.map(|a| a.ints.clone()))
    }

    fn floats(&self, key: &str) -> Result<Option<Vec<f32>>> {
        Ok(self.get(key, attr_type::FLOATS)?.map(|a| a.floats.clone()))
    }

    fn tensor(&self, key: &str) -> Result<Option<&'a TensorProto>> {
        match self.get(key, attr_type::TENSOR)? {
            None => Ok(None),
            Some(a) => a.t.as_ref().map(Some).ok_or_else(|| {
                HartError::data(
                    self.path,
                    format!("node {}: attribute {key} holds no tensor", self.name),
                )
            }),
        }
    }

    /// A pair such as strides or dilations; other lengths mean a pooling or
    /// convolution over other than two spatial dimensions.
    fn pair(&self, key: &str, default: [i64; 2]) -> Result<[i64; 2]> {
        match self.ints(key)? {
            None => Ok(default),
            Some(v) => <[i64; 2]>::try_from(v.as_slice())
                .map_err(|_| unsupported(format!("{} with {key} {v:?}, not 2-D", self.node.op_type), self.name)),
        }
    }

    /// ONNX pads `[top, left, bottom, right]`, HART's order too.
    fn pads(&self) -> Result<Pads> {
        match self.string("auto_pad")?.as_deref() {
            None | Some("NOTSET") | Some("") => match self.ints("pads")? {
                None => Ok([0; 4]),
                Some(v) => <[i64; 4]>::try_from(v.as_slice())
                    .map_err(|_| unsupported(format!("{} with pads {v:?}, not 2-D", self.node.op_type), self.name)),
            },
            Some("VALID") => Ok([0; 4]),
            Some(other) => Err(unsupported(
                format!("{} with auto_pad {other}", self.node.op_type),
                self.name,
            )),
        }
    }
}

struct Converter<'a> {
    path: &'a Path,
    opset: i64,
    external: ExternalData,
    /// Decoded initializers by name, and their file order (the state-dict order).
    inits: HashMap<String, Tensor>,
    init_order: Vec<String>,
    /// `Identity` outputs of initializers (the legacy exporter shares tied
    /// weights this way), so weight inputs still resolve to a parameter name.
    aliases: HashMap<String, String>,
    /// Initializers read as BatchNorm running statistics.
    buffers: HashSet<String>,
    /// Element type and rank from the graph's value infos.
    declared: HashMap<String, (Option<Kind>, Option<usize>)>,
    values: HashMap<String, ValueId>,
    /// Outputs after a node's first, which HART does not compute.
    secondary: HashMap<String, String>,
    /// Graph inputs besides the image batch; an error only if something reads them.
    extra_inputs: HashSet<String>,
    nodes: Vec<Node>,
    /// Element kind of each node's value, where known.
    kinds: Vec<Option<Kind>>,
    names: HashSet<String>,
}

impl<'a> Converter<'a> {
    fn bad(&self, msg: impl Into<String>) -> HartError {
        HartError::data(self.path, msg.into().replace('\n', " "))
    }

    fn init_name<'n>(&'n self, name: &'n str) -> Option<&'n str> {
        let name = self.aliases.get(name).map_or(name, String::as_str);
        self.inits.contains_key(name).then_some(name)
    }

    fn unique_name(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while self.names.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.names.insert(name.clone());
        name
    }

    fn infer_kind(&self, op: &Op, inputs: &[ValueId]) -> Option<Kind> {
        let k = |i: usize| inputs.get(i).and_then(|&v| self.kinds[v]);
        match op {
            Op::Input => Some(Kind::Float),
            Op::Param(n) => self.inits.get(n).map(Tensor::kind),
            Op::Constant(t) => Some(t.kind()),
            Op::Shape { .. } => Some(Kind::Int64),
            Op::Cast { to } => Some(*to),
            // torch.div divides integers into floats.
            Op::Div if k(0).is_some_and(is_int) && k(1).is_some_and(is_int) => Some(Kind::Float),
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Pow | Op::MatMul | Op::Gemm { .. } => {
                k(0).filter(|&a| k(1) == Some(a))
            }
            _ => k(0),
        }
    }

    fn push(&mut self, name: &str, op: Op, inputs: Vec<ValueId>) -> ValueId {
        let kind = self.infer_kind(&op, &inputs);
        let name = self.unique_name(name);
        self.nodes.push(Node { name, op, inputs });
        self.kinds.push(kind);
        self.nodes.len() - 1
    }

    fn constant(&self, id: ValueId) -> Option<&Tensor> {
        match &self.nodes[id].op {
            Op::Constant(t) => Some(t),
            _ => None,
        }
    }

    fn const_ints(&self, id: ValueId) -> Result<Option<Vec<i64>>> {
        self.constant(id).map(to_i64_vec).transpose()
    }

    /// Adds a node, or just its value when it can be computed now.
    fn emit(&mut self, name: &str, op: Op, inputs: Vec<ValueId>) -> Result<ValueId> {
        match self.fold(name, op, &inputs)? {
            Ok(t) => Ok(self.push(name, Op::Constant(Const(t)), vec![])),
            Err(op) => Ok(self.push(name, op, inputs)),
        }
    }

    /// The value of `op` when all its inputs are constants (or, for `Shape`,
    /// a parameter, whose shape is fixed); otherwise hands `op` back.
    fn fold(&self, name: &str, op: Op, inputs: &[ValueId]) -> Result<Result<Tensor, Op>> {
        if let (Op::Shape { start, end }, Some(Op::Param(p))) = (&op, inputs.first().map(|&i| &self.nodes[i].op)) {
            let size = self.inits[p].size();
            let r = size.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (s, e) = (clamp(*start), clamp(end.unwrap_or(r)));
            return Ok(Ok(Tensor::from_slice(&size[s..e.max(s)])));
        }
        let consts: Option<Vec<Tensor>> = inputs
            .iter()
            .map(|&i| self.constant(i).map(Tensor::shallow_clone))
            .collect();
        let consts = match consts {
            Some(c) if !c.is_empty() && op.param_names().is_empty() => c,
            _ => return Ok(Err(op)),
        };
        let n = consts.len();
        let mut nodes: Vec<Node> = consts
            .into_iter()
            .enumerate()
            .map(|(k, t)| Node {
                name: format!("{name}.input{k}"),
                op: Op::Constant(Const(t)),
                inputs: vec![],
            })
            .collect();
        nodes.push(Node {
            name: name.to_string(),
            op,
            inputs: (0..n).collect(),
        });
        let graph = Graph { nodes, output: n };
        let dummy = Tensor::zeros([0], (Kind::Float, Device::Cpu));
        Ok(Ok(graph.forward(&ParamStore::new(), &dummy, Mode::Eval)?))
    }

    fn resolve(&mut self, value: &str, node: &str) -> Result<ValueId> {
        if let Some(&id) = self.values.get(value) {
            return Ok(id);
        }
        if let Some(init) = self.init_name(value).map(str::to_string) {
            let t = &self.inits[&init];
            let op = if is_float(t.kind()) {
                Op::Param(init.clone())
            } else {
                Op::Constant(Const(t.shallow_clone()))
            };
            let id = self.push(&init, op, vec![]);
            self.values.insert(init, id);
            self.values.insert(value.to_string(), id);
            return Ok(id);
        }
        if let Some(what) = self.secondary.get(value) {
            return Err(HartError::UnsupportedOp(format!("{what}, read by node {node}")));
        }
        if self.extra_inputs.contains(value) {
            return Err(self.bad(format!(
                "node {node} reads graph input {value:?}; HART feeds a single image batch"
            )));
        }
        Err(self.bad(format!(
            "node {node} reads {value:?}, which is neither an initializer nor an earlier node's output"
        )))
    }

    fn opt_input(&mut self, node: &NodeProto, name: &str, k: usize) -> Result<Option<ValueId>> {
        match node.input.get(k).filter(|s| !s.is_empty()) {
            Some(v) => Ok(Some(self.resolve(v, name)?)),
            None => Ok(None),
        }
    }

    fn input(&mut self, node: &NodeProto, name: &str, k: usize) -> Result<ValueId> {
        self.opt_input(node, name, k)?
            .ok_or_else(|| self.bad(format!("node {name} ({}) lacks input {k}", node.op_type)))
    }

    fn has_input(node: &NodeProto, k: usize) -> bool {
        node.input.get(k).is_some_and(|s| !s.is_empty())
    }

    /// The float initializer input `k` names, for ops that read weights directly.
    fn param_input(&self, node: &NodeProto, k: usize) -> Option<String> {
        let init = self.init_name(node.input.get(k)?)?;
        is_float(self.inits[init].kind()).then(|| init.to_string())
    }

    fn value_kind(&self, node: &NodeProto, k: usize, id: ValueId) -> Option<Kind> {
        self.kinds[id].or_else(|| node.input.get(k).and_then(|v| self.declared.get(v)).and_then(|d| d.0))
    }

    fn decode(&mut self, t: &TensorProto, what: &str) -> Result<Tensor> {
        tensor::decode(t, &mut self.external).map_err(|e| self.bad(format!("{what}: {e}")))
    }

    /// Clip bounds are attributes before opset 11 and optional scalar inputs
    /// (constants or initializers) after; a bound computed at run time is refused.
    fn clip(&mut self, node: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let x = self.input(node, name, 0)?;
        let mut bounds = [None, None];
        for (k, attr) in [(1, "min"), (2, "max")] {
            bounds[k - 1] = match self.opt_input(node, name, k)? {
                Some(id) => {
                    let t = match &self.nodes[id].op {
                        Op::Constant(t) => t,
                        Op::Param(p) => &self.inits[p],
                        _ => return Err(unsupported("Clip with bounds computed at run time", name)),
                    };
                    Some(t.f_double_value(&[])?)
                }
                None => a.float(attr)?.map(f64::from),
            };
        }
        self.emit(
            name,
            Op::Clip {
                min: bounds[0],
                max: bounds[1],
            },
            vec![x],
        )
    }

    fn unary(&mut self, node: &NodeProto, name: &str, op: Op) -> Result<ValueId> {
        let x = self.input(node, name, 0)?;
        self.emit(name, op, vec![x])
    }

    fn binary(&mut self, node: &NodeProto, name: &str, op: Op) -> Result<ValueId> {
        let x = self.input(node, name, 0)?;
        let y = self.input(node, name, 1)?;
        self.emit(name, op, vec![x, y])
    }

    /// Inputs of an op HART can only evaluate at import time.
    fn const_inputs(&mut self, node: &NodeProto, name: &str) -> Result<Vec<Tensor>> {
        let mut out = Vec::new();
        for k in 0..node.input.len() {
            let id = self.input(node, name, k)?;
            let t = self
                .constant(id)
                .ok_or_else(|| unsupported(format!("{} on values computed at run time", node.op_type), name))?;
            out.push(t.shallow_clone());
        }
        Ok(out)
    }

    fn convert_node(&mut self, index: usize, node: &NodeProto) -> Result<()> {
        let op_type = node.op_type.as_str();
        let name = if node.name.is_empty() {
            format!("{op_type}{index}")
        } else {
            node.name.clone()
        };
        let name = name.as_str();
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(unsupported(format!("{}.{op_type}", node.domain), name));
        }
        let a = Attrs {
            node,
            name,
            path: self.path,
        };
        for (k, out) in node.output.iter().enumerate().skip(1).filter(|(_, o)| !o.is_empty()) {
            self.secondary
                .insert(out.clone(), format!("{op_type} output {k} (node {name})"));
        }
        let out = match op_type {
            "Identity" | "Dropout" => self.input(node, name, 0)?,
            "Relu" => self.unary(node, name, Op::Relu)?,
            "Clip" => self.clip(node, name, &a)?,
            "Sigmoid" => self.unary(node, name, Op::Sigmoid)?,
            "Tanh" => self.unary(node, name, Op::Tanh)?,
            "Erf" => self.unary(node, name, Op::Erf)?,
            "Sqrt" => self.unary(node, name, Op::Sqrt)?,
            "Neg" => self.unary(node, name, Op::Neg)?,
            "GlobalAveragePool" => self.unary(node, name, Op::GlobalAvgPool)?,
            "Add" => self.binary(node, name, Op::Add)?,
            "Sub" => self.binary(node, name, Op::Sub)?,
            "Mul" => self.binary(node, name, Op::Mul)?,
            "Pow" => self.binary(node, name, Op::Pow)?,
            "MatMul" => self.binary(node, name, Op::MatMul)?,
            "Div" => self.div(node, name)?,
            "Sum" => {
                let mut acc = self.input(node, name, 0)?;
                for k in 1..node.input.len() {
                    let y = self.input(node, name, k)?;
                    acc = self.emit(name, Op::Add, vec![acc, y])?;
                }
                acc
            }
            "Gelu" => {
                let tanh = match a.string("approximate")?.as_deref() {
                    None | Some("none") => false,
                    Some("tanh") => true,
                    Some(other) => return Err(unsupported(format!("Gelu with approximate={other}"), name)),
                };
                self.unary(node, name, Op::Gelu { tanh })?
            }
            "Conv" => self.conv(node, name, &a)?,
            "Gemm" => self.gemm(node, name, &a)?,
            "BatchNormalization" => {
                let x = self.input(node, name, 0)?;
                let p = |k| self.param_input(node, k);
                let (Some(scale), Some(bias), Some(mean), Some(var)) = (p(1), p(2), p(3), p(4)) else {
                    return Err(unsupported(
                        "BatchNormalization with computed scale, bias or statistics",
                        name,
                    ));
                };
                // ONNX: running = m * running + (1 - m) * batch; PyTorch's momentum is 1 - m.
                let m = decimal(a.float("momentum")?.unwrap_or(0.9));
                let op = Op::BatchNorm {
                    weight: Some(scale),
                    bias: Some(bias),
                    running_mean: mean,
                    running_var: var,
                    // ONNX does not carry PyTorch's step counter.
                    num_batches_tracked: None,
                    eps: decimal(a.float("epsilon")?.unwrap_or(1e-5)),
                    momentum: 1.0 - m,
                };
                self.emit(name, op, vec![x])?
            }
            "LayerNormalization" => {
                let x = self.input(node, name, 0)?;
                let weight = self.param_input(node, 1);
                let bias = self.param_input(node, 2);
                if weight.is_none() || (Self::has_input(node, 2) && bias.is_none()) {
                    return Err(unsupported("LayerNormalization with a computed scale or bias", name));
                }
                let op = Op::LayerNorm {
                    weight,
                    bias,
                    eps: decimal(a.float("epsilon")?.unwrap_or(1e-5)),
                    axis: a.int("axis")?.unwrap_or(-1),
                };
                self.emit(name, op, vec![x])?
            }
            "MaxPool" | "AveragePool" => self.pool(node, name, &a)?,
            "ReduceMean" => self.reduce_mean(node, name, &a)?,
            "Flatten" => self.unary(
                node,
                name,
                Op::Flatten {
                    axis: a.int("axis")?.unwrap_or(1),
                },
            )?,
            "Reshape" => {
                let x = self.input(node, name, 0)?;
                let shape = self.input(node, name, 1)?;
                // HART's Reshape copies the input's size for a 0; with
                // allowzero a 0 would mean an empty dimension instead.
                if a.int("allowzero")? == Some(1) && self.const_ints(shape)?.is_some_and(|s| s.contains(&0)) {
                    return Err(unsupported("Reshape with allowzero=1 to an empty dimension", name));
                }
                self.emit(name, Op::Reshape, vec![x, shape])?
            }
            "Transpose" => {
                let perm = match a.ints("perm")? {
                    Some(p) => p,
                    None => match node.input.first().and_then(|v| self.declared.get(v)).and_then(|d| d.1) {
                        Some(rank) => (0..rank as i64).rev().collect(),
                        None => return Err(unsupported("Transpose without perm of a value of unknown rank", name)),
                    },
                };
                self.unary(node, name, Op::Transpose { perm })?
            }
            "Concat" => {
                let axis = a
                    .int("axis")?
                    .ok_or_else(|| self.bad(format!("node {name}: Concat without axis")))?;
                let mut xs = Vec::new();
                for k in 0..node.input.len() {
                    if let Some(x) = self.opt_input(node, name, k)? {
                        xs.push(x);
                    }
                }
                self.emit(name, Op::Concat { axis }, xs)?
            }
            "Softmax" => self.softmax(node, name, &a)?,
            "Constant" => {
                let t = self.constant_value(name, &a)?;
                self.push(name, Op::Constant(Const(t)), vec![])
            }
            "Shape" => {
                let op = Op::Shape {
                    start: a.int("start")?.unwrap_or(0),
                    end: a.int("end")?,
                };
                self.unary(node, name, op)?
            }
            "Gather" => self.binary(
                node,
                name,
                Op::Gather {
                    axis: a.int("axis")?.unwrap_or(0),
                },
            )?,
            "Unsqueeze" | "Squeeze" => {
                let x = self.input(node, name, 0)?;
                let mut inputs = vec![x];
                let axes = match a.ints("axes")? {
                    Some(axes) => Some(axes),
                    None => match self.opt_input(node, name, 1)? {
                        Some(id) => {
                            let axes = self.const_ints(id)?;
                            if axes.is_none() {
                                inputs.push(id);
                            }
                            axes
                        }
                        None if op_type == "Unsqueeze" => {
                            return Err(self.bad(format!("node {name}: Unsqueeze without axes")))
                        }
                        None => None,
                    },
                };
                let op = if op_type == "Unsqueeze" {
                    Op::Unsqueeze { axes }
                } else {
                    Op::Squeeze { axes }
                };
                self.emit(name, op, inputs)?
            }
            "Slice" => self.slice(node, name, &a)?,
            "Expand" => self.binary(node, name, Op::Expand)?,
            "Cast" => {
                let to = a
                    .int("to")?
                    .ok_or_else(|| self.bad(format!("node {name}: Cast without to")))?;
                let to = i32::try_from(to)
                    .ok()
                    .and_then(tensor::kind_of)
                    .ok_or_else(|| unsupported(format!("Cast to {}", tensor::type_name(to as i32)), name))?;
                self.unary(node, name, Op::Cast { to })?
            }
            "CastLike" => {
                let x = self.input(node, name, 0)?;
                let like = self.input(node, name, 1)?;
                let to = self
                    .value_kind(node, 1, like)
                    .ok_or_else(|| unsupported("CastLike to a value of unknown type", name))?;
                self.emit(name, Op::Cast { to }, vec![x])?
            }
            // Ops HART's graph cannot run, but which exporters emit on
            // constant shape data that can be evaluated once here.
            "ConstantOfShape" | "Equal" | "Where" => {
                let c = self.const_inputs(node, name)?;
                let t = match (op_type, c.as_slice()) {
                    ("ConstantOfShape", [shape]) => {
                        let value = match a.tensor("value")? {
                            Some(t) => self.decode(t, &format!("node {name}"))?,
                            None => Tensor::zeros([1], (Kind::Float, Device::Cpu)),
                        };
                        value
                            .f_reshape([0i64; 0])?
                            .f_expand(to_i64_vec(shape)?, false)?
                            .contiguous()
                    }
                    ("Equal", [x, y]) => x.f_eq_tensor(y)?,
                    ("Where", [c, x, y]) => x.f_where_self(c, y)?,
                    _ => return Err(self.bad(format!("node {name}: {op_type} with {} inputs", c.len()))),
                };
                self.push(name, Op::Constant(Const(t)), vec![])
            }
            _ => return Err(unsupported(op_type, name)),
        };
        let first = node
            .output
            .first()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| self.bad(format!("node {name} has no output")))?;
        self.values.insert(first.clone(), out);
        Ok(())
    }

    fn div(&mut self, node: &NodeProto, name: &str) -> Result<ValueId> {
        let x = self.input(node, name, 0)?;
        let y = self.input(node, name, 1)?;
        let int = match (self.value_kind(node, 0, x), self.value_kind(node, 1, y)) {
            (Some(a), Some(b)) if is_int(a) && a == b => Some(a),
            _ => None,
        };
        let q = self.emit(name, Op::Div, vec![x, y])?;
        match int {
            // ONNX divides integers with truncation; torch.div returns floats.
            Some(to) => self.emit(name, Op::Cast { to }, vec![q]),
            None => Ok(q),
        }
    }

    fn conv(&mut self, node: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let x = self.input(node, name, 0)?;
        let weight = self
            .param_input(node, 1)
            .ok_or_else(|| unsupported("Conv with a computed weight", name))?;
        let rank = self.inits[&weight].dim();
        if rank != 4 {
            return Err(unsupported(
                format!("Conv with {} spatial dimensions", rank.saturating_sub(2)),
                name,
            ));
        }
        let op = |bias| -> Result<Op> {
            Ok(Op::Conv2d {
                weight: weight.clone(),
                bias,
                stride: a.pair("strides", [1, 1])?,
                padding: a.pads()?,
                dilation: a.pair("dilations", [1, 1])?,
                groups: a.int("group")?.unwrap_or(1),
            })
        };
        if !Self::has_input(node, 2) {
            return self.emit(name, op(None)?, vec![x]);
        }
        if let Some(bias) = self.param_input(node, 2) {
            return self.emit(name, op(Some(bias))?, vec![x]);
        }
        // A bias computed in the graph (the unoptimised dynamo export builds
        // a zero one) is added as a value; when constant zero it is dropped.
        let b = self.input(node, name, 2)?;
        let y = self.emit(name, op(None)?, vec![x])?;
        if let Some(t) = self.constant(b) {
            if t.f_abs()?.f_max()?.f_double_value(&[])? == 0.0 {
                return Ok(y);
            }
        }
        let shape = self.push(name, Op::Constant(Const(Tensor::from_slice(&[1i64, -1, 1, 1]))), vec![]);
        let b = self.emit(name, Op::Reshape, vec![b, shape])?;
        self.emit(name, Op::Add, vec![y, b])
    }

    fn gemm(&mut self, node: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let x = self.input(node, name, 0)?;
        let alpha = decimal(a.float("alpha")?.unwrap_or(1.0));
        let beta = decimal(a.float("beta")?.unwrap_or(1.0));
        let trans_a = a.int("transA")?.unwrap_or(0) != 0;
        let trans_b = a.int("transB")?.unwrap_or(0) != 0;
        if !trans_a && trans_b && alpha == 1.0 && beta == 1.0 {
            let weight = self.param_input(node, 1).filter(|w| self.inits[w].dim() == 2);
            if let Some(weight) = weight {
                let out = self.inits[&weight].size()[0];
                let bias = self.param_input(node, 2);
                let bias_ok = match &bias {
                    None => !Self::has_input(node, 2),
                    Some(b) => self.inits[b].size() == [out],
                };
                if bias_ok {
                    return self.emit(name, Op::Linear { weight, bias }, vec![x]);
                }
            }
        }
        let mut inputs = vec![x, self.input(node, name, 1)?];
        inputs.extend(self.opt_input(node, name, 2)?);
        let op = Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        };
        self.emit(name, op, inputs)
    }

    fn pool(&mut self, node: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let op_type = node.op_type.as_str();
        let kernel = a
            .ints("kernel_shape")?
            .ok_or_else(|| self.bad(format!("node {name}: {op_type} without kernel_shape")))?;
        let kernel = <[i64; 2]>::try_from(kernel.as_slice())
            .map_err(|_| unsupported(format!("{op_type} with kernel_shape {kernel:?}, not 2-D"), name))?;
        let stride = a.pair("strides", [1, 1])?;
        let padding = a.pads()?;
        let dilation = a.pair("dilations", [1, 1])?;
        let ceil_mode = a.int("ceil_mode")?.unwrap_or(0) != 0;
        let op = if op_type == "MaxPool" {
            Op::MaxPool2d {
                kernel,
                stride,
                padding,
                dilation,
                ceil_mode,
            }
        } else {
            let count_include_pad = a.int("count_include_pad")?.unwrap_or(0) != 0;
            if dilation != [1, 1] {
                return Err(unsupported("AveragePool with dilations", name));
            }
            // Uneven pads are applied as explicit zeros, which the average
            // would then count.
            if !count_include_pad && (padding[0] != padding[2] || padding[1] != padding[3]) {
                return Err(unsupported(
                    "AveragePool with uneven pads excluded from the average",
                    name,
                ));
            }
            Op::AvgPool2d {
                kernel,
                stride,
                padding,
                ceil_mode,
                count_include_pad,
            }
        };
        self.unary(node, name, op)
    }

    fn reduce_mean(&mut self, node: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let x = self.input(node, name, 0)?;
        let keepdims = a.int("keepdims")?.unwrap_or(1) != 0;
        let noop_if_empty = a.int("noop_with_empty_axes")?.unwrap_or(0) != 0;
        let (axes, mut inputs) = match a.ints("axes")? {
            Some(axes) => (Some(axes), vec![x]),
            None => match self.opt_input(node, name, 1)? {
                Some(id) => match self.const_ints(id)? {
                    Some(axes) => (Some(axes), vec![x]),
                    None => (None, vec![x, id]),
                },
                None => (None, vec![x]),
            },
        };
        let empty = match &axes {
            Some(v) => v.is_empty(),
            None => inputs.len() == 1,
        };
        if empty && noop_if_empty {
            return Ok(x);
        }
        // Opset 18 reads "reduce everything" from an absent axes input, so an
        // empty list must not reach the op as "no axes".
        let axes = axes.filter(|v| !v.is_empty());
        if axes.is_some() {
            inputs.truncate(1);
        }
        self.emit(name, Op::ReduceMean { axes, keepdims }, inputs)
    }

    fn softmax(&mut self, node: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let x = self.input(node, name, 0)?;
        if self.opset >= 13 {
            return self.emit(
                name,
                Op::Softmax {
                    axis: a.int("axis")?.unwrap_or(-1),
                },
                vec![x],
            );
        }
        // Before opset 13 Softmax flattens to 2-D at `axis` and normalises
        // each row; on the last axis that is the same as opset 13's.
        let axis = a.int("axis")?.unwrap_or(1);
        let rank = node.input.first().and_then(|v| self.declared.get(v)).and_then(|d| d.1);
        if axis == -1 || rank.is_some_and(|r| axis == r as i64 - 1) {
            return self.emit(name, Op::Softmax { axis: -1 }, vec![x]);
        }
        let shape = self.emit(name, Op::Shape { start: 0, end: None }, vec![x])?;
        let flat = self.emit(name, Op::Flatten { axis }, vec![x])?;
        let y = self.emit(name, Op::Softmax { axis: 1 }, vec![flat])?;
        self.emit(name, Op::Reshape, vec![y, shape])
    }

    fn slice(&mut self, node: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let x = self.input(node, name, 0)?;
        let mut inputs = vec![x];
        if node.input.len() == 1 {
            // Opset < 10 passes the bounds as attributes.
            let starts = a.ints("starts")?;
            let ends = a.ints("ends")?;
            let (Some(starts), Some(ends)) = (starts, ends) else {
                return Err(self.bad(format!("node {name}: Slice without starts or ends")));
            };
            for v in [Some(starts), Some(ends), a.ints("axes")?].into_iter().flatten() {
                inputs.push(self.push(name, Op::Constant(Const(Tensor::from_slice(&v))), vec![]));
            }
            return self.emit(name, Op::Slice, inputs);
        }
        for k in 1..4 {
            match self.opt_input(node, name, k)? {
                Some(id) => inputs.push(id),
                None if k < 3 => return Err(self.bad(format!("node {name}: Slice lacks input {k}"))),
                None => {}
            }
        }
        // HART slices with step 1 only; anything else is refused here rather
        // than on the first forward pass.
        if let Some(id) = self.opt_input(node, name, 4)? {
            let steps = self
                .const_ints(id)?
                .ok_or_else(|| unsupported("Slice with steps computed at run time", name))?;
            if let Some(s) = steps.iter().find(|&&s| s != 1) {
                return Err(unsupported(format!("Slice with step {s}"), name));
            }
        }
        self.emit(name, Op::Slice, inputs)
    }

    fn constant_value(&mut self, name: &str, a: &Attrs) -> Result<Tensor> {
        let scalar = |t: Tensor| t.f_reshape([0i64; 0]);
        if let Some(t) = a.tensor("value")? {
            return self.decode(t, &format!("node {name}"));
        }
        if let Some(v) = a.float("value_float")? {
            return Ok(scalar(Tensor::from_slice(&[v]))?);
        }
        if let Some(v) = a.floats("value_floats")? {
            return Ok(Tensor::from_slice(&v));
        }
        if let Some(v) = a.int("value_int")? {
            return Ok(scalar(Tensor::from_slice(&[v]))?);
        }
        if let Some(v) = a.ints("value_ints")? {
            return Ok(Tensor::from_slice(&v));
        }
        match node_attr_names(a.node).find(|n| n.starts_with("value") || *n == "sparse_value") {
            Some(other) => Err(unsupported(format!("Constant with {other}"), name)),
            None => Err(self.bad(format!("node {name}: Constant without a value"))),
        }
    }
}

fn node_attr_names(node: &NodeProto) -> impl Iterator<Item = &str> {
    node.attribute.iter().map(|a| a.name.as_str())
}

fn declared_type(v: &ValueInfoProto) -> (Option<Kind>, Option<usize>) {
    let tt = v.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
    let kind = tt.and_then(|t| tensor::kind_of(t.elem_type));
    let rank = tt.and_then(|t| t.shape.as_ref()).map(|s| s.dim.len());
    (kind, rank)
}

/// Dimensions of a declared shape, `None` where symbolic or unknown.
fn static_dims(v: &ValueInfoProto) -> Option<Vec<Option<i64>>> {
    let shape = v.r#type.as_ref()?.tensor_type.as_ref()?.shape.as_ref()?;
    Some(shape.dim.iter().map(|d| d.dim_value.filter(|&x| x > 0)).collect())
}

/// Removes nodes the output does not depend on (constants folded away,
/// unused branches), keeping the input node first.
fn prune(nodes: Vec<Node>, output: ValueId) -> (Vec<Node>, ValueId) {
    let mut live = vec![false; nodes.len()];
    live[0] = true;
    live[output] = true;
    for i in (0..nodes.len()).rev() {
        if live[i] {
            for &j in &nodes[i].inputs {
                live[j] = true;
            }
        }
    }
    let mut remap = vec![0; nodes.len()];
    let mut kept = Vec::new();
    for (i, mut node) in nodes.into_iter().enumerate() {
        if live[i] {
            node.inputs = node.inputs.iter().map(|&j| remap[j]).collect();
            remap[i] = kept.len();
            kept.push(node);
        }
    }
    (kept, remap[output])
}

pub fn convert(path: &Path, model: &ModelProto) -> Result<GraphModel> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| HartError::data(path, "not an ONNX model: it holds no graph"))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(DEFAULT_OPSET, |o| o.version);
    let mut cv = Converter {
        path,
        opset,
        external: ExternalData::new(path),
        inits: HashMap::new(),
        init_order: Vec::new(),
        aliases: HashMap::new(),
        buffers: HashSet::new(),
        declared: HashMap::new(),
        values: HashMap::new(),
        secondary: HashMap::new(),
        extra_inputs: HashSet::new(),
        nodes: Vec::new(),
        kinds: Vec::new(),
        names: HashSet::new(),
    };
    for init in &graph.initializer {
        if cv.inits.contains_key(&init.name) {
            return Err(cv.bad(format!("initializer {} appears twice", init.name)));
        }
        let t = cv.decode(init, &format!("initializer {}", init.name))?;
        cv.inits.insert(init.name.clone(), t);
        cv.init_order.push(init.name.clone());
    }
    for v in graph.input.iter().chain(&graph.value_info).chain(&graph.output) {
        cv.declared.insert(v.name.clone(), declared_type(v));
    }

    let mut inputs = graph.input.iter().filter(|v| !cv.inits.contains_key(&v.name));
    let input = inputs
        .next()
        .ok_or_else(|| cv.bad("the graph has no input besides its initializers"))?;
    let extra: HashSet<String> = inputs.map(|v| v.name.clone()).collect();
    cv.extra_inputs = extra;
    let elem = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .map(|t| t.elem_type);
    if let Some(e) = elem.filter(|&e| e != super::proto::data_type::FLOAT && e != 0) {
        return Err(cv.bad(format!(
            "input {} has element type {}; HART feeds float32 images",
            input.name,
            tensor::type_name(e)
        )));
    }
    let id = cv.push(&input.name, Op::Input, vec![]);
    cv.values.insert(input.name.clone(), id);

    // Aliases and BatchNorm statistics must be known before the first node
    // that reads them is converted.
    for node in &graph.node {
        let first_init = |k: usize| node.input.get(k).and_then(|n| cv.init_name(n)).map(str::to_string);
        match node.op_type.as_str() {
            "Identity" | "Dropout" => {
                if let (Some(init), Some(out)) = (first_init(0), node.output.first()) {
                    cv.aliases.insert(out.clone(), init);
                }
            }
            "BatchNormalization" => {
                let stats: Vec<String> = [3, 4].into_iter().filter_map(first_init).collect();
                cv.buffers.extend(stats);
            }
            _ => {}
        }
    }
    for (i, node) in graph.node.iter().enumerate() {
        cv.convert_node(i, node)?;
    }

    let output = match graph.output.as_slice() {
        [o] => o,
        outs => {
            return Err(cv.bad(format!(
                "the graph has {} outputs; HART needs exactly one (the logits)",
                outs.len()
            )))
        }
    };
    let out_id = cv.resolve(&output.name, "graph output")?;
    let (nodes, out_id) = prune(std::mem::take(&mut cv.nodes), out_id);

    let used: HashSet<&str> = nodes.iter().flat_map(|n| n.op.param_names()).collect();
    let mut params = ParamStore::new();
    for name in cv.init_order.iter().filter(|n| used.contains(n.as_str())) {
        let kind = if cv.buffers.contains(name) {
            ParamKind::Buffer
        } else {
            ParamKind::Trainable
        };
        params.insert(name, cv.inits[name].shallow_clone(), kind)?;
    }

    let in_dims = static_dims(input).unwrap_or_default();
    let (in_channels, input_size) = match in_dims.as_slice() {
        // input_size describes square images; other shapes leave it unknown.
        [_, c, h, w] => (c.unwrap_or(0), if h == w { h.unwrap_or(0) } else { 0 }),
        _ => (0, 0),
    };
    let num_classes = static_dims(output)
        .and_then(|d| d.last().copied().flatten())
        .unwrap_or(0);
    let file = path
        .file_name()
        .map_or_else(|| path.display().to_string(), |f| f.to_string_lossy().into_owned());
    let info = ModelInfo {
        arch: format!("onnx:{file}"),
        num_classes,
        in_channels,
        input_size,
        normalize: None,
        dataset: None,
    };
    Ok(GraphModel {
        graph: Graph { nodes, output: out_id },
        params,
        info,
    })
}
