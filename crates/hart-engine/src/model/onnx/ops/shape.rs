//! Ops that move values around without arithmetic: reshaping, selecting,
//! concatenating, shape queries, and the identities.

use tch::Tensor;

use super::super::attrs::Attrs;
use super::super::converter::{unsupported, Converter};
use super::super::proto::NodeProto;
use super::Convert;
use crate::error::Result;
use crate::model::graph::{Const, Op, ValueId};

pub(super) const OPS: &[(&str, Convert)] = &[
    ("Identity", |c, n, name, _| c.input(n, name, 0)),
    ("Dropout", |c, n, name, a| c.dropout_node(n, name, a)),
    ("Flatten", |c, n, name, a| {
        let op = Op::Flatten {
            axis: a.int("axis")?.unwrap_or(1),
        };
        c.unary(n, name, op)
    }),
    ("Reshape", |c, n, name, a| c.reshape(n, name, a)),
    ("Transpose", |c, n, name, a| c.transpose(n, name, a)),
    ("Concat", |c, n, name, a| c.concat(n, name, a)),
    ("Shape", |c, n, name, a| {
        let op = Op::Shape {
            start: a.int("start")?.unwrap_or(0),
            end: a.int("end")?,
        };
        c.unary(n, name, op)
    }),
    ("Gather", |c, n, name, a| {
        let op = Op::Gather {
            axis: a.int("axis")?.unwrap_or(0),
        };
        c.binary(n, name, op)
    }),
    ("Unsqueeze", |c, n, name, a| c.squeeze(n, name, a)),
    ("Squeeze", |c, n, name, a| c.squeeze(n, name, a)),
    ("Slice", |c, n, name, a| c.slice(n, name, a)),
    ("Expand", |c, n, name, _| c.binary(n, name, Op::Expand)),
];

impl Converter<'_> {
    /// The ratio is an attribute before opset 12 and an optional input
    /// (a constant or initializer) after; the `training_mode` input is not
    /// read (the forward's mode decides) and the mask output is refused
    /// where a node reads it (see `Converter::secondary`).
    fn dropout_node(&mut self, node: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let x = self.input(node, name, 0)?;
        let ratio = match self.opt_input(node, name, 1)? {
            Some(id) => {
                let t = match &self.nodes[id].op {
                    Op::Constant(t) => t,
                    Op::Param(p) => &self.inits[p],
                    _ => return Err(unsupported("Dropout with a ratio computed at run time", name)),
                };
                t.f_double_value(&[])
                    .map_err(|_| self.bad(format!("node {name}: Dropout's ratio is not a scalar")))?
            }
            None => a.float("ratio")?.map_or(0.5, f64::from),
        };
        if !(0.0..1.0).contains(&ratio) {
            return Err(self.bad(format!("node {name}: Dropout ratio {ratio} is outside [0, 1)")));
        }
        self.emit(name, Op::Dropout { ratio }, vec![x])
    }

    fn reshape(&mut self, node: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let x = self.input(node, name, 0)?;
        let shape = self.input(node, name, 1)?;
        // HART's Reshape copies the input's size for a 0; with
        // allowzero a 0 would mean an empty dimension instead.
        if a.int("allowzero")? == Some(1) && self.const_ints(shape)?.is_some_and(|s| s.contains(&0)) {
            return Err(unsupported("Reshape with allowzero=1 to an empty dimension", name));
        }
        self.emit(name, Op::Reshape, vec![x, shape])
    }

    fn transpose(&mut self, node: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let perm = match a.ints("perm")? {
            Some(p) => p,
            None => match node.input.first().and_then(|v| self.declared.get(v)).and_then(|d| d.1) {
                Some(rank) => (0..rank as i64).rev().collect(),
                None => return Err(unsupported("Transpose without perm of a value of unknown rank", name)),
            },
        };
        self.unary(node, name, Op::Transpose { perm })
    }

    fn concat(&mut self, node: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let axis = a
            .int("axis")?
            .ok_or_else(|| self.bad(format!("node {name}: Concat without axis")))?;
        let mut xs = Vec::new();
        for k in 0..node.input.len() {
            if let Some(x) = self.opt_input(node, name, k)? {
                xs.push(x);
            }
        }
        self.emit(name, Op::Concat { axis }, xs)
    }

    /// `Unsqueeze` and `Squeeze`: axes an attribute before opset 13, an
    /// optional input after (kept as an input when computed at run time).
    fn squeeze(&mut self, node: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let op_type = node.op_type.as_str();
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
                None if op_type == "Unsqueeze" => return Err(self.bad(format!("node {name}: Unsqueeze without axes"))),
                None => None,
            },
        };
        let op = if op_type == "Unsqueeze" {
            Op::Unsqueeze { axes }
        } else {
            Op::Squeeze { axes }
        };
        self.emit(name, op, inputs)
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
}
