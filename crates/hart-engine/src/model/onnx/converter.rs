//! The state of one ONNX import and the steps every op's conversion is made
//! of: resolving a node's inputs to HART values, and adding nodes, folding
//! those whose inputs are all constants into one constant. The ops
//! themselves are converted in [`super::ops`].

use std::collections::{HashMap, HashSet};
use std::path::Path;

use tch::{Device, Kind, Tensor};

use super::proto::{NodeProto, TensorProto};
use super::tensor::{self, ExternalData};
use crate::error::{HartError, Result};
use crate::model::graph::{to_i64_vec, Const, Graph, Mode, Node, Op, ValueId};
use crate::model::params::ParamStore;

pub(super) fn is_float(kind: Kind) -> bool {
    matches!(kind, Kind::Half | Kind::Float | Kind::Double | Kind::BFloat16)
}

pub(super) fn is_int(kind: Kind) -> bool {
    matches!(kind, Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int | Kind::Int64)
}

pub(super) fn unsupported(what: impl std::fmt::Display, node: &str) -> HartError {
    HartError::UnsupportedOp(format!("{what} (node {node})"))
}

pub(super) struct Converter<'a> {
    pub(super) path: &'a Path,
    pub(super) opset: i64,
    pub(super) external: ExternalData,
    /// Decoded initializers by name, and their file order (the state-dict order).
    pub(super) inits: HashMap<String, Tensor>,
    pub(super) init_order: Vec<String>,
    /// `Identity` outputs of initializers (the legacy exporter shares tied
    /// weights this way), so weight inputs still resolve to a parameter name.
    pub(super) aliases: HashMap<String, String>,
    /// Initializers read as BatchNorm running statistics.
    pub(super) buffers: HashSet<String>,
    /// Element type and rank from the graph's value infos.
    pub(super) declared: HashMap<String, (Option<Kind>, Option<usize>)>,
    pub(super) values: HashMap<String, ValueId>,
    /// Outputs after a node's first, which HART does not compute.
    pub(super) secondary: HashMap<String, String>,
    /// Graph inputs besides the image batch; an error only if something reads them.
    pub(super) extra_inputs: HashSet<String>,
    pub(super) nodes: Vec<Node>,
    /// Element kind of each node's value, where known.
    pub(super) kinds: Vec<Option<Kind>>,
    pub(super) names: HashSet<String>,
}

impl Converter<'_> {
    pub(super) fn bad(&self, msg: impl Into<String>) -> HartError {
        HartError::data(self.path, msg.into().replace('\n', " "))
    }

    pub(super) fn init_name<'n>(&'n self, name: &'n str) -> Option<&'n str> {
        let name = self.aliases.get(name).map_or(name, String::as_str);
        self.inits.contains_key(name).then_some(name)
    }

    pub(super) fn unique_name(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while self.names.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.names.insert(name.clone());
        name
    }

    pub(super) fn infer_kind(&self, op: &Op, inputs: &[ValueId]) -> Option<Kind> {
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

    pub(super) fn push(&mut self, name: &str, op: Op, inputs: Vec<ValueId>) -> ValueId {
        let kind = self.infer_kind(&op, &inputs);
        let name = self.unique_name(name);
        self.nodes.push(Node { name, op, inputs });
        self.kinds.push(kind);
        self.nodes.len() - 1
    }

    pub(super) fn constant(&self, id: ValueId) -> Option<&Tensor> {
        match &self.nodes[id].op {
            Op::Constant(t) => Some(t),
            _ => None,
        }
    }

    pub(super) fn const_ints(&self, id: ValueId) -> Result<Option<Vec<i64>>> {
        self.constant(id).map(to_i64_vec).transpose()
    }

    /// Adds a node, or just its value when it can be computed now.
    pub(super) fn emit(&mut self, name: &str, op: Op, inputs: Vec<ValueId>) -> Result<ValueId> {
        match self.fold(name, op, &inputs)? {
            Ok(t) => Ok(self.push(name, Op::Constant(Const(t)), vec![])),
            Err(op) => Ok(self.push(name, op, inputs)),
        }
    }

    /// The value of `op` when all its inputs are constants (or, for `Shape`,
    /// a parameter, whose shape is fixed); otherwise hands `op` back.
    pub(super) fn fold(&self, name: &str, op: Op, inputs: &[ValueId]) -> Result<Result<Tensor, Op>> {
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

    pub(super) fn resolve(&mut self, value: &str, node: &str) -> Result<ValueId> {
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

    pub(super) fn opt_input(&mut self, node: &NodeProto, name: &str, k: usize) -> Result<Option<ValueId>> {
        match node.input.get(k).filter(|s| !s.is_empty()) {
            Some(v) => Ok(Some(self.resolve(v, name)?)),
            None => Ok(None),
        }
    }

    pub(super) fn input(&mut self, node: &NodeProto, name: &str, k: usize) -> Result<ValueId> {
        self.opt_input(node, name, k)?
            .ok_or_else(|| self.bad(format!("node {name} ({}) lacks input {k}", node.op_type)))
    }

    pub(super) fn has_input(node: &NodeProto, k: usize) -> bool {
        node.input.get(k).is_some_and(|s| !s.is_empty())
    }

    /// The float initializer input `k` names, for ops that read weights directly.
    pub(super) fn param_input(&self, node: &NodeProto, k: usize) -> Option<String> {
        let init = self.init_name(node.input.get(k)?)?;
        is_float(self.inits[init].kind()).then(|| init.to_string())
    }

    pub(super) fn value_kind(&self, node: &NodeProto, k: usize, id: ValueId) -> Option<Kind> {
        self.kinds[id].or_else(|| node.input.get(k).and_then(|v| self.declared.get(v)).and_then(|d| d.0))
    }

    pub(super) fn decode(&mut self, t: &TensorProto, what: &str) -> Result<Tensor> {
        tensor::decode(t, &mut self.external).map_err(|e| self.bad(format!("{what}: {e}")))
    }

    pub(super) fn unary(&mut self, node: &NodeProto, name: &str, op: Op) -> Result<ValueId> {
        let x = self.input(node, name, 0)?;
        self.emit(name, op, vec![x])
    }

    pub(super) fn binary(&mut self, node: &NodeProto, name: &str, op: Op) -> Result<ValueId> {
        let x = self.input(node, name, 0)?;
        let y = self.input(node, name, 1)?;
        self.emit(name, op, vec![x, y])
    }

    /// Inputs of an op HART can only evaluate at import time.
    pub(super) fn const_inputs(&mut self, node: &NodeProto, name: &str) -> Result<Vec<Tensor>> {
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
}
