//! Channel-sparse propagation past the cut. A structured delta moves one
//! output channel (conv) or unit (linear) of node `c`; elementwise ops and
//! spatial pooling after it keep the change inside that channel, so only the
//! channel's slice is computed until the next convolution or linear layer
//! `d`. Its faulty output is its clean output plus the layer applied to the
//! slice's change with that channel's weights alone — for LeNet-5's conv2 a
//! 16→120 product instead of 400→120 after ReLU and pooling of 16 channels.

use tch::Tensor;

use super::delta::{pad, Delta};
use super::plan::{plan, Plan};
use crate::error::{HartError, Result};
use crate::faults::axes::Axis;
use crate::model::graph::{Graph, Mode, Op};
use crate::model::ParamStore;

#[derive(Debug)]
pub struct Sparse {
    /// Channelwise nodes after `c`, each consuming the previous one.
    pub chain: Vec<usize>,
    /// The layer the change densifies at.
    pub d: usize,
    /// `d` reads the chain's end through this `Flatten(axis 1)` node.
    pub flatten: Option<usize>,
    /// The cut at `d`: what the nodes after it read, and those nodes.
    pub plan: Plan,
}

fn consumers(graph: &Graph, v: usize) -> Vec<usize> {
    (v + 1..graph.nodes.len())
        .filter(|&u| graph.nodes[u].inputs.contains(&v))
        .collect()
}

/// Ops that act on each channel by itself, with no parameter per channel.
fn channelwise(op: &Op) -> bool {
    match op {
        Op::Relu
        | Op::Clip { .. }
        | Op::Sigmoid
        | Op::Tanh
        | Op::Identity
        | Op::Dropout { .. }
        | Op::AvgPool2d { .. } => true,
        Op::MaxPool2d { dilation, .. } => *dilation == [1, 1],
        _ => false,
    }
}

/// The sparse path after cut node `c`, if the graph has one. `rank_of(v)`
/// is the rank of value `v`.
pub fn find(graph: &Graph, ax: &[Axis], c: usize, delta: &Delta, rank_of: impl Fn(usize) -> usize) -> Option<Sparse> {
    if !delta.structured() || !matches!(graph.nodes[c].op, Op::Conv2d { .. } | Op::Linear { .. }) {
        return None;
    }
    let mut chain = vec![];
    let mut v = c;
    loop {
        if v == graph.output {
            return None;
        }
        let [u] = consumers(graph, v)[..] else { return None };
        let node = &graph.nodes[u];
        if node.inputs != [v] {
            return None;
        }
        match &node.op {
            op if channelwise(op) => {
                chain.push(u);
                v = u;
            }
            Op::Flatten { axis: 1 } if rank_of(v) == 4 && u != graph.output => {
                let [d] = consumers(graph, u)[..] else { return None };
                let dense = &graph.nodes[d];
                let ok = matches!(dense.op, Op::Linear { .. }) && dense.inputs == [u];
                return ok.then(|| plan(graph, ax, d)).flatten().map(|plan| Sparse {
                    chain,
                    d,
                    flatten: Some(u),
                    plan,
                });
            }
            Op::Conv2d { groups: 1, .. } if rank_of(v) == 4 => break,
            Op::Linear { .. } if rank_of(v) == 2 => break,
            _ => return None,
        }
    }
    let d = consumers(graph, v)[0];
    plan(graph, ax, d).map(|plan| Sparse {
        chain,
        d,
        flatten: None,
        plan,
    })
}

impl Sparse {
    /// The value whose channel slice the chain ends with.
    pub fn end(&self, c: usize) -> usize {
        self.chain.last().copied().unwrap_or(c)
    }

    /// True if every chain op acts on each element alone (no pooling).
    pub fn elementwise(&self, graph: &Graph) -> bool {
        self.chain.iter().all(|&u| {
            matches!(
                graph.nodes[u].op,
                Op::Relu | Op::Clip { .. } | Op::Sigmoid | Op::Tanh | Op::Identity | Op::Dropout { .. }
            )
        })
    }

    /// Runs the chain on per-pair channel slices `[P, 1, …]` (any shape
    /// when the chain is [`Sparse::elementwise`]).
    pub fn run_chain(&self, graph: &Graph, params: &ParamStore, x: &Tensor, start: Tensor) -> Result<Tensor> {
        let mut value = start;
        for &u in &self.chain {
            let mut env: Vec<Option<Tensor>> = (0..graph.nodes.len()).map(|_| None).collect();
            env[graph.nodes[u].inputs[0]] = Some(value);
            graph.forward_nodes(params, x, [u], &mut env, Mode::Eval)?;
            value = env[u]
                .take()
                .ok_or_else(|| HartError::Model("sparse chain: no output".into()))?;
        }
        Ok(value)
    }

    /// `d`'s faulty output: `clean_d` (its clean output per pair) plus `d`
    /// applied to `change` (`[P, 1, …]`, the chain end's change in channel
    /// `channels[p]`) with that channel's weights and no bias.
    pub fn densify(
        &self,
        graph: &Graph,
        params: &ParamStore,
        clean_d: &Tensor,
        channels: &[i64],
        change: &Tensor,
    ) -> Result<Tensor> {
        if let Op::Linear { weight, .. } = &graph.nodes[self.d].op {
            if change.numel() == channels.len() {
                // One number per pair (a linear cut): all pairs in one product.
                let rows = params
                    .get(weight)?
                    .f_tr()?
                    .f_contiguous()?
                    .f_index_select(0, &Tensor::from_slice(channels).to_device(clean_d.device()))?;
                return Ok(clean_d.f_addcmul(&change.f_reshape([-1, 1])?, &rows)?);
            }
        }
        let out = clean_d.copy();
        // Pairs come grouped by flip, so runs of one channel are long.
        let mut p0 = 0;
        while p0 < channels.len() {
            let ch = channels[p0];
            let p1 = p0 + channels[p0..].iter().take_while(|&&c| c == ch).count();
            let len = (p1 - p0) as i64;
            let part = change.narrow(0, p0 as i64, len);
            let add = match &graph.nodes[self.d].op {
                Op::Linear { weight, .. } => {
                    let w = params.get(weight)?;
                    let width: i64 = part.size()[2..].iter().product();
                    let cols = w.f_narrow(1, ch * width, width)?;
                    part.f_reshape([len, width])?.f_matmul(&cols.f_tr()?)?
                }
                Op::Conv2d {
                    weight,
                    stride,
                    padding,
                    dilation,
                    ..
                } => {
                    let w = params.get(weight)?.f_narrow(1, ch, 1)?;
                    pad(&part, padding)?.f_conv2d(&w, None::<Tensor>, stride, [0, 0], dilation, 1)?
                }
                _ => {
                    return Err(HartError::Model(
                        "sparse path: dense layer is not conv or linear".into(),
                    ))
                }
            };
            let _ = out.narrow(0, p0 as i64, len).f_add_(&add)?;
            p0 = p1;
        }
        Ok(out)
    }
}
