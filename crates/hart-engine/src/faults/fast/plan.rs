//! Where a tensor's flips can be cut into the graph: the first consumer `c`,
//! the earlier values the nodes from `c` on read (cached once per chunk of
//! images, then gathered row by row for any mix of samples), and the
//! batch-size-dependent shape computations that must be re-run.

use std::collections::BTreeSet;

use crate::model::graph::{to_i64_vec, Graph, Op};

/// How a value relates to the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// The same for every batch (parameters, constants and functions of them).
    Static,
    /// Rows along dimension 0 are samples.
    Batch,
    /// Depends on the batch only through its size (shape arithmetic).
    Shape,
    /// Batched along some other dimension: rows cannot be gathered.
    Unknown,
}

pub fn axes(graph: &Graph) -> Vec<Axis> {
    let mut ax: Vec<Axis> = Vec::with_capacity(graph.nodes.len());
    for n in &graph.nodes {
        let ins: Vec<Axis> = n.inputs.iter().map(|&v| ax[v]).collect();
        let a = match &n.op {
            Op::Input => Axis::Batch,
            Op::Param(_) | Op::Constant(_) => Axis::Static,
            _ if ins.iter().all(|a| *a == Axis::Static) => Axis::Static,
            _ if ins.contains(&Axis::Unknown) => Axis::Unknown,
            Op::Shape { .. } => Axis::Shape,
            _ if !ins.contains(&Axis::Batch) => Axis::Shape,
            op => batched(op, &n.inputs, &ins, graph),
        };
        ax.push(a);
    }
    ax
}

/// The axis of an op with at least one batched input.
fn batched(op: &Op, inputs: &[usize], ins: &[Axis], graph: &Graph) -> Axis {
    let keep = |ok: bool| if ok { Axis::Batch } else { Axis::Unknown };
    let no_zero = |axes: &Option<Vec<i64>>| axes.as_ref().is_some_and(|a| !a.contains(&0));
    match op {
        Op::Transpose { perm } => keep(perm.first() == Some(&0)),
        Op::Gather { axis } => keep(ins[0] == Axis::Batch && *axis != 0),
        Op::Concat { axis } | Op::Flatten { axis } | Op::Softmax { axis } => keep(*axis != 0),
        Op::ReduceMean { axes, .. } | Op::Squeeze { axes } | Op::Unsqueeze { axes } => keep(no_zero(axes)),
        Op::Reshape => {
            let shape_first = match inputs.get(1).map(|&v| &graph.nodes[v].op) {
                Some(Op::Constant(t)) => to_i64_vec(t).ok().and_then(|v| v.first().copied()),
                _ => None,
            };
            // ONNX exports compute dynamic shapes from Shape(x), batch first.
            keep(ins[0] == Axis::Batch && (shape_first == Some(0) || ins.get(1) == Some(&Axis::Shape)))
        }
        Op::MatMul => keep(ins[0] == Axis::Batch),
        Op::Gemm { trans_a, .. } => keep(ins[0] == Axis::Batch && !trans_a),
        Op::Slice => Axis::Unknown,
        _ => Axis::Batch,
    }
}

/// The values that depend on node `c`'s output (`c` included).
pub fn affected(graph: &Graph, c: usize) -> Vec<bool> {
    let n = graph.nodes.len();
    let mut affected = vec![false; n];
    affected[c] = true;
    for u in c + 1..n {
        affected[u] = graph.nodes[u].inputs.iter().any(|&v| affected[v]);
    }
    affected
}

/// Ops linear in their one batched input with no weights of their own
/// (reshaping, selecting, averaging, negating): the bound and the tangent
/// pass both run them as they are.
pub fn rearranging(op: &Op) -> bool {
    matches!(
        op,
        Op::Neg
            | Op::Flatten { .. }
            | Op::Reshape
            | Op::Transpose { .. }
            | Op::AvgPool2d { .. }
            | Op::GlobalAvgPool
            | Op::ReduceMean { .. }
            | Op::Gather { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Expand
    )
}

#[derive(Debug)]
pub struct Plan {
    pub c: usize,
    /// Batched values before `c` that nodes from `c` on read.
    pub gather: Vec<usize>,
    /// Batch-independent values before `c` that they read.
    pub statics: Vec<usize>,
    /// Shape computations before `c` re-run for every stacked batch (they depend on its size).
    pub shapes: Vec<usize>,
    /// `c+1..`: the nodes run on the faulty output.
    pub after: Vec<usize>,
}

/// The cut for a tensor first read by node `c`, if its crossing values allow one.
pub fn plan(graph: &Graph, ax: &[Axis], c: usize) -> Option<Plan> {
    if ax[c] != Axis::Batch {
        return None;
    }
    let mut todo: Vec<usize> = graph.nodes[c..]
        .iter()
        .flat_map(|n| n.inputs.iter().copied())
        .filter(|&v| v < c)
        .collect();
    let (mut gather, mut statics, mut shapes) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    while let Some(v) = todo.pop() {
        match ax[v] {
            Axis::Batch => {
                gather.insert(v);
            }
            Axis::Static => {
                statics.insert(v);
            }
            Axis::Shape => {
                if shapes.insert(v) {
                    todo.extend(graph.nodes[v].inputs.iter().copied());
                }
            }
            Axis::Unknown => return None,
        }
    }
    Some(Plan {
        c,
        gather: gather.into_iter().collect(),
        statics: statics.into_iter().collect(),
        shapes: shapes.into_iter().collect(),
        after: (c + 1..graph.nodes.len()).collect(),
    })
}
