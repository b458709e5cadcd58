//! Ranger (Chen et al., DSN 2021): activation range restriction. The output
//! of every ReLU, clip (ReLU6, Hardtanh), sigmoid and tanh is profiled on
//! clean images, and the protected model clamps it to the [min, max] seen
//! there. A fault that blows an activation up (an exponent flip in a weight
//! multiplies it by 2^k) is cut back to a value the network has met, which
//! masks most of such faults at the cost of one comparison per activation.
//!
//! The protection is part of the graph: after each bounded node a `Clip`
//! node named `<node>#ranger` holds its bounds, so every engine (the fast
//! sweep, the reference loop, campaigns, attacks) runs the defended network
//! as it runs any other, and a sweep's brute-force reference clamps the same
//! activations at the same bounds. Word-level defences (`range`, `radar`)
//! act on stored weights instead; see [`super::defense`].

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::hash::bytes_hash;
use super::Defense;
use crate::data::Dataset;
use crate::error::{HartError, Result};
use crate::eval::NanPolicy;
use crate::model::graph::{Graph, Node, Op};
use crate::model::{GraphModel, Mode, Model};

/// The suffix of the clamp nodes Ranger inserts.
pub const SUFFIX: &str = "#ranger";

/// What `--defense` names: a word-level defence, or Ranger's activation bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefenseChoice {
    Words(Defense),
    Ranger,
}

impl std::str::FromStr for DefenseChoice {
    type Err = HartError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ranger" => Ok(DefenseChoice::Ranger),
            _ => s
                .parse::<Defense>()
                .map(DefenseChoice::Words)
                .map_err(|e| match s.split_once(':') {
                    Some(("radar", _)) => e,
                    _ => HartError::Invalid(format!(
                        "unknown defense {s:?} (none, range, radar, radar:G with G ≥ 2, or ranger)"
                    )),
                }),
        }
    }
}

impl std::fmt::Display for DefenseChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DefenseChoice::Words(d) => d.fmt(f),
            DefenseChoice::Ranger => f.write_str("ranger"),
        }
    }
}

/// One bounded activation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerBound {
    /// The graph node whose output is clamped.
    pub node: String,
    /// Its op (Relu, Clip, Sigmoid, Tanh).
    pub op: String,
    pub min: f32,
    pub max: f32,
}

/// The profiled bounds (written as `ranger.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    /// Clean images the bounds were taken over.
    pub profile_images: usize,
    pub layers: Vec<LayerBound>,
}

/// Whether Ranger bounds the output of `op`.
pub fn bounded(op: &Op) -> bool {
    matches!(op, Op::Relu | Op::Clip { .. } | Op::Sigmoid | Op::Tanh)
}

fn is_ranger(node: &Node) -> bool {
    node.name.ends_with(SUFFIX) && matches!(node.op, Op::Clip { .. })
}

fn not_a_graph() -> HartError {
    HartError::Invalid(
        "--defense ranger needs a graph model (zoo or ONNX): a TorchScript model's activations are not visible".into(),
    )
}

/// What `--defense` leaves to run: the model a run measures (under Ranger,
/// with the bounds profiled on the data `profile` names, written to
/// `out/ranger.json` and built into its graph), the word-level defence for
/// the engine, and the bounds when Ranger took them. The CLI and the Python
/// binding both defend through here.
pub fn defend(
    choice: DefenseChoice,
    model: Model,
    profile: &crate::data::DataSpec,
    out: &std::path::Path,
    batch: usize,
) -> Result<(Model, Defense, Option<Bounds>)> {
    if let DefenseChoice::Words(d) = choice {
        return Ok((model, d, None));
    }
    if profile.limit == Some(0) {
        return Err(HartError::Invalid("--profile-limit must be at least 1".into()));
    }
    if model.graph().is_none() {
        return Err(not_a_graph());
    }
    let images = crate::data::load(profile)?;
    let bounds = self::profile(&model, &images, batch)?;
    let text = serde_json::to_string_pretty(&bounds).map_err(|e| HartError::Invalid(e.to_string()))?;
    crate::util::write_atomic(&out.join("ranger.json"), text.as_bytes())?;
    Ok((protect(model, &bounds)?, Defense::None, Some(bounds)))
}

/// The [min, max] of every bounded activation over `data` (eval mode, in
/// batches of `batch`).
pub fn profile(model: &Model, data: &Dataset, batch: usize) -> Result<Bounds> {
    let gm = model.graph().ok_or_else(not_a_graph)?;
    let graph = &gm.graph;
    if graph.nodes.iter().any(is_ranger) {
        return Err(HartError::Invalid("the model already carries Ranger's bounds".into()));
    }
    if data.is_empty() {
        return Err(HartError::Invalid(
            "ranger: no profile images (--profile-limit 0?)".into(),
        ));
    }
    let acts: Vec<usize> = (0..graph.nodes.len())
        .filter(|&i| bounded(&graph.nodes[i].op))
        .collect();
    if acts.is_empty() {
        return Err(HartError::Invalid(
            "ranger: the model has no ReLU, clip, sigmoid or tanh activation to bound".into(),
        ));
    }
    let mut is_act = vec![false; graph.nodes.len()];
    for &a in &acts {
        is_act[a] = true;
    }
    let ids: Vec<usize> = (0..graph.nodes.len()).collect();
    let mut lo = vec![f32::INFINITY; acts.len()];
    let mut hi = vec![f32::NEG_INFINITY; acts.len()];
    let device = model.device();
    tch::no_grad(|| -> Result<()> {
        for start in (0..data.len()).step_by(batch.max(1)) {
            let end = (start + batch.max(1)).min(data.len());
            let (x, _) = data.batch_range(start, end);
            let x = x.f_to_device(device)?;
            let mut env: Vec<Option<Tensor>> = (0..graph.nodes.len()).map(|_| None).collect();
            graph.forward_nodes_freeing(&gm.params, &x, &ids, &mut env, Mode::Eval, |v| is_act[v])?;
            for (k, &a) in acts.iter().enumerate() {
                let v = env[a]
                    .take()
                    .ok_or_else(|| HartError::Model(format!("ranger: {} was not computed", graph.nodes[a].name)))?
                    .f_to_kind(Kind::Float)?;
                lo[k] = lo[k].min(v.f_min()?.f_double_value(&[])? as f32);
                hi[k] = hi[k].max(v.f_max()?.f_double_value(&[])? as f32);
            }
        }
        Ok(())
    })?;
    let mut layers = vec![];
    for (k, &a) in acts.iter().enumerate() {
        let node = &graph.nodes[a];
        // f32::min/max skip NaN; a NaN anywhere must not be hidden.
        if !(lo[k].is_finite() && hi[k].is_finite()) {
            return Err(HartError::Invalid(format!(
                "ranger: activation {} is not finite on the clean profile images",
                node.name
            )));
        }
        layers.push(LayerBound {
            node: node.name.clone(),
            op: node.op.kind_name().to_string(),
            min: lo[k],
            max: hi[k],
        });
    }
    Ok(Bounds {
        profile_images: data.len(),
        layers,
    })
}

/// `model` with each bounded activation followed by its clamp.
pub fn protect(model: Model, bounds: &Bounds) -> Result<Model> {
    let gm = match model {
        Model::Graph(gm) => gm,
        Model::Script(_) => return Err(not_a_graph()),
    };
    let old = &gm.graph;
    let mut nodes: Vec<Node> = Vec::with_capacity(old.nodes.len() + bounds.layers.len());
    let mut new_id = vec![0usize; old.nodes.len()];
    let mut used = 0;
    for (i, node) in old.nodes.iter().enumerate() {
        let mut n = node.clone();
        n.inputs = node.inputs.iter().map(|&v| new_id[v]).collect();
        nodes.push(n);
        new_id[i] = nodes.len() - 1;
        if let Some(b) = bounds.layers.iter().find(|b| b.node == node.name) {
            if !bounded(&node.op) || b.op != node.op.kind_name() {
                return Err(HartError::Invalid(format!(
                    "ranger bounds name {} as a {}, but the model's node is a {}",
                    b.node,
                    b.op,
                    node.op.kind_name()
                )));
            }
            nodes.push(Node {
                name: format!("{}{SUFFIX}", node.name),
                op: Op::Clip {
                    min: Some(b.min as f64),
                    max: Some(b.max as f64),
                },
                inputs: vec![new_id[i]],
            });
            new_id[i] = nodes.len() - 1;
            used += 1;
        }
    }
    if used != bounds.layers.len() {
        return Err(HartError::Invalid(format!(
            "ranger bounds list {} activations, the model has {used} of them",
            bounds.layers.len()
        )));
    }
    Ok(Model::Graph(GraphModel {
        graph: Graph {
            nodes,
            output: new_id[old.output],
        },
        params: gm.params,
        info: gm.info,
    }))
}

/// The graph without Ranger's clamps (itself when it has none).
pub fn strip(graph: &Graph) -> Graph {
    let mut nodes: Vec<Node> = Vec::with_capacity(graph.nodes.len());
    let mut new_id = vec![0usize; graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        if is_ranger(node) {
            new_id[i] = new_id[node.inputs[0]];
            continue;
        }
        let mut n = node.clone();
        n.inputs = node.inputs.iter().map(|&v| new_id[v]).collect();
        nodes.push(n);
        new_id[i] = nodes.len() - 1;
    }
    Graph {
        nodes,
        output: new_id[graph.output],
    }
}

/// The bounds a protected graph carries (empty when unprotected).
pub fn carried(graph: &Graph) -> Vec<LayerBound> {
    graph
        .nodes
        .iter()
        .filter(|n| is_ranger(n))
        .filter_map(|n| match n.op {
            Op::Clip {
                min: Some(lo),
                max: Some(hi),
            } => Some(LayerBound {
                node: n.name.trim_end_matches(SUFFIX).to_string(),
                op: "Clip".into(),
                min: lo as f32,
                max: hi as f32,
            }),
            _ => None,
        })
        .collect()
}

/// What a run under Ranger records beside its own (defended) clean accuracy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Activations clamped.
    pub activations: usize,
    /// SHA-256 of the bounds (so a resume refuses other bounds).
    pub bounds_sha256: String,
    /// The same model and images without the clamps.
    pub undefended_correct: i64,
    pub undefended_accuracy: f64,
}

/// For a protected model, the undefended clean accuracy on `data` (counted
/// by `policy`, with the weights as they are now: a run in integer storage
/// calls this after encoding); None for a model without Ranger's clamps.
pub fn report(model: &Model, data: &Dataset, batch: usize, policy: NanPolicy) -> Result<Option<Report>> {
    let Some(gm) = model.graph() else { return Ok(None) };
    let bounds = carried(&gm.graph);
    if bounds.is_empty() {
        return Ok(None);
    }
    let plain = strip(&gm.graph);
    let device = model.device();
    let mut correct = 0i64;
    tch::no_grad(|| -> Result<()> {
        for start in (0..data.len()).step_by(batch.max(1)) {
            let end = (start + batch.max(1)).min(data.len());
            let (x, y) = data.batch_range(start, end);
            let logits = plain.forward(&gm.params, &x.f_to_device(device)?, Mode::Eval)?;
            correct += policy
                .correct(&logits, &y.f_to_device(device)?)
                .f_sum(Kind::Int64)?
                .f_int64_value(&[])?;
        }
        Ok(())
    })?;
    let json = serde_json::to_string(&bounds).map_err(|e| HartError::Invalid(e.to_string()))?;
    Ok(Some(Report {
        activations: bounds.len(),
        bounds_sha256: bytes_hash(json.as_bytes()),
        undefended_correct: correct,
        undefended_accuracy: correct as f64 / data.len().max(1) as f64,
    }))
}

/// The defence a summary names: the word-level one, Ranger, or both.
pub fn label(words: Defense, ranger: Option<&Report>) -> String {
    match (words, ranger) {
        (_, None) => words.to_string(),
        (Defense::None, Some(_)) => "ranger".into(),
        (w, Some(_)) => format!("{w}+ranger"),
    }
}
