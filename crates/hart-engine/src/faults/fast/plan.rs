//! Where a tensor's flips can be cut into the graph: the first consumer `c`,
//! the earlier values the nodes from `c` on read (cached once per chunk of
//! images, then gathered row by row for any mix of samples), and the
//! batch-size-dependent shape computations that must be re-run.

use std::collections::BTreeSet;

use crate::faults::axes::Axis;
use crate::model::graph::{Graph, Op};

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
