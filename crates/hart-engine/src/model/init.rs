//! `--reinit`: the same graph with fresh weights, each layer initialised as
//! PyTorch initialises a fresh module of its type (torch 2.x `reset_parameters`):
//!
//! - `Conv2d`, `Linear` (and ONNX `Gemm`/`MatMul` weights read through
//!   `Param` nodes): weight kaiming_uniform(a = √5), i.e. U(±1/√fan_in);
//!   bias U(±1/√fan_in) with the weight's fan_in (an `Add` right after a
//!   `MatMul` counts as that layer's bias);
//! - `BatchNorm`: weight 1, bias 0, running mean 0, running variance 1,
//!   `num_batches_tracked` 0; `LayerNorm`: weight 1, bias 0.
//!
//! Draws come from libtorch's default generator in graph order, so the
//! caller seeds it (`tch::manual_seed`) as zoo builds are seeded. Float
//! tensors that belong to none of these layers (a scale constant exported as
//! an initializer, a class token) keep the file's values and are reported.
//! TorchScript modules show parameter names but not layer types, so they are
//! refused rather than guessed at.

use std::collections::{HashMap, HashSet};

use super::graph::{Op, ValueId};
use super::{GraphModel, Model};
use crate::error::{HartError, Result};

/// What a reinitialisation did.
#[derive(Debug, Clone, Default)]
pub struct Reinit {
    /// Tensors given a fresh value.
    pub initialised: Vec<String>,
    /// Float tensors of no known layer, left as the file had them.
    pub kept: Vec<String>,
}

/// How one tensor is initialised.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// U(−b, b).
    Uniform(f64),
    Fill(f64),
}

fn bound(fan_in: i64) -> Option<f64> {
    (fan_in > 0).then(|| 1.0 / (fan_in as f64).sqrt())
}

/// Re-initialises `model` in place (see the module docs).
pub fn reinit(model: &mut Model) -> Result<Reinit> {
    match model {
        Model::Graph(g) => reinit_graph(g),
        Model::Script(_) => Err(HartError::Invalid(
            "--reinit: a TorchScript module shows its parameters but not their layer types, so HART cannot give them \
             PyTorch's per-layer initialisation; re-initialise it in PyTorch and save it again, or export it to ONNX"
                .into(),
        )),
    }
}

fn rules(g: &GraphModel) -> Result<Vec<(String, Rule)>> {
    let nodes = &g.graph.nodes;
    let param_of = |v: ValueId| match &nodes[v].op {
        Op::Param(n) => Some(n.clone()),
        _ => None,
    };
    let size = |name: &str| -> Result<Vec<i64>> { Ok(g.params.get(name)?.size()) };
    let mut out: Vec<(String, Rule)> = Vec::new();
    // The fan_in of nodes whose output a following `Add` may bias.
    let mut fan_in_of: HashMap<ValueId, i64> = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        match &node.op {
            Op::Conv2d { weight, bias, .. } | Op::Linear { weight, bias } => {
                let fan_in: i64 = size(weight)?[1..].iter().product();
                if let Some(b) = bound(fan_in) {
                    out.push((weight.clone(), Rule::Uniform(b)));
                    if let Some(bias) = bias {
                        out.push((bias.clone(), Rule::Uniform(b)));
                    }
                    fan_in_of.insert(i, fan_in);
                }
            }
            Op::BatchNorm {
                weight,
                bias,
                running_mean,
                running_var,
                num_batches_tracked,
                ..
            } => {
                out.extend(weight.iter().map(|w| (w.clone(), Rule::Fill(1.0))));
                out.extend(bias.iter().map(|b| (b.clone(), Rule::Fill(0.0))));
                out.push((running_mean.clone(), Rule::Fill(0.0)));
                out.push((running_var.clone(), Rule::Fill(1.0)));
                out.extend(num_batches_tracked.iter().map(|n| (n.clone(), Rule::Fill(0.0))));
            }
            Op::LayerNorm { weight, bias, .. } => {
                out.extend(weight.iter().map(|w| (w.clone(), Rule::Fill(1.0))));
                out.extend(bias.iter().map(|b| (b.clone(), Rule::Fill(0.0))));
            }
            Op::Gemm { trans_b, .. } => {
                if let Some(w) = node.inputs.get(1).and_then(|&v| param_of(v)) {
                    let s = size(&w)?;
                    if s.len() == 2 {
                        let fan_in = if *trans_b { s[1] } else { s[0] };
                        if let Some(b) = bound(fan_in) {
                            out.push((w, Rule::Uniform(b)));
                            if let Some(c) = node.inputs.get(2).and_then(|&v| param_of(v)) {
                                out.push((c, Rule::Uniform(b)));
                            }
                            fan_in_of.insert(i, fan_in);
                        }
                    }
                }
            }
            Op::MatMul => {
                // torch.onnx exports Linear as MatMul by the transposed weight [in, out].
                if let Some(w) = node.inputs.get(1).and_then(|&v| param_of(v)) {
                    let s = size(&w)?;
                    if s.len() == 2 {
                        if let Some(b) = bound(s[0]) {
                            out.push((w, Rule::Uniform(b)));
                            fan_in_of.insert(i, s[0]);
                        }
                    }
                }
            }
            Op::Add => {
                let (a, b) = match node.inputs.as_slice() {
                    [a, b] => (*a, *b),
                    _ => continue,
                };
                for (layer, bias) in [(a, b), (b, a)] {
                    if let (Some(&fan_in), Some(name)) = (fan_in_of.get(&layer), param_of(bias)) {
                        if size(&name)?.len() == 1 {
                            if let Some(bd) = bound(fan_in) {
                                out.push((name, Rule::Uniform(bd)));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn reinit_graph(g: &mut GraphModel) -> Result<Reinit> {
    let mut done: HashSet<String> = HashSet::new();
    let mut report = Reinit::default();
    for (name, rule) in rules(g)? {
        // A tensor read by two layers (tied weights) is drawn once.
        if !done.insert(name.clone()) {
            continue;
        }
        let t = g.params.get(&name)?;
        tch::no_grad(|| -> Result<()> {
            let mut t = t.shallow_clone();
            match rule {
                Rule::Uniform(b) => {
                    let _ = t.f_uniform_(-b, b)?;
                }
                Rule::Fill(v) => {
                    let _ = t.f_fill_(v)?;
                }
            }
            Ok(())
        })?;
        report.initialised.push(name);
    }
    report.kept = g
        .params
        .iter()
        .filter(|(n, t, _)| t.is_floating_point() && !done.contains(*n))
        .map(|(n, _, _)| n.to_string())
        .collect();
    Ok(report)
}
