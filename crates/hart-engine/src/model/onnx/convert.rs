//! ONNX `GraphProto` → HART [`Graph`] and [`ParamStore`].
//!
//! Nodes are converted in file order (ONNX requires a topological order),
//! each by its op family's conversion in [`super::ops`].
//! Initializers keep their names so fault lists address the PyTorch tensors;
//! float initializers become parameters, integer ones (shapes, axes, indices)
//! constants. Shape arithmetic whose inputs are all constants is evaluated
//! here once, with the graph's own op implementations, instead of on every
//! forward pass.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use tch::Kind;

use super::attrs::Attrs;
use super::converter::{unsupported, Converter};
use super::ops;
use super::proto::{ModelProto, NodeProto, ValueInfoProto};
use super::tensor::{self, ExternalData};
use crate::error::{HartError, Result};
use crate::model::graph::{Graph, Node, Op, ValueId};
use crate::model::info::ModelInfo;
use crate::model::params::{ParamKind, ParamStore};
use crate::model::GraphModel;

/// Opset assumed when a model does not declare the default domain's.
const DEFAULT_OPSET: i64 = 21;

impl Converter<'_> {
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
        let convert = ops::lookup(op_type).ok_or_else(|| unsupported(op_type, name))?;
        let out = convert(self, node, name, &a)?;
        let first = node
            .output
            .first()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| self.bad(format!("node {name} has no output")))?;
        self.values.insert(first.clone(), out);
        Ok(())
    }
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
