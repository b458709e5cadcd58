//! Which of a graph's values are batched (rows along dimension 0 are
//! samples): the clean pass keeps only those per sample, and the fast
//! engine's cuts gather only those row by row.

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
