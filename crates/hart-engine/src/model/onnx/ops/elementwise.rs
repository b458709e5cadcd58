//! Elementwise ops: activations, arithmetic and casts.

use super::super::attrs::Attrs;
use super::super::converter::{is_int, unsupported, Converter};
use super::super::proto::NodeProto;
use super::super::tensor;
use super::Convert;
use crate::error::Result;
use crate::model::graph::{Op, ValueId};

pub(super) const OPS: &[(&str, Convert)] = &[
    ("Relu", |c, n, name, _| c.unary(n, name, Op::Relu)),
    ("Clip", |c, n, name, a| c.clip(n, name, a)),
    ("Sigmoid", |c, n, name, _| c.unary(n, name, Op::Sigmoid)),
    ("Tanh", |c, n, name, _| c.unary(n, name, Op::Tanh)),
    ("Erf", |c, n, name, _| c.unary(n, name, Op::Erf)),
    ("Sqrt", |c, n, name, _| c.unary(n, name, Op::Sqrt)),
    ("Neg", |c, n, name, _| c.unary(n, name, Op::Neg)),
    ("Gelu", |c, n, name, a| c.gelu(n, name, a)),
    ("Add", |c, n, name, _| c.binary(n, name, Op::Add)),
    ("Sub", |c, n, name, _| c.binary(n, name, Op::Sub)),
    ("Mul", |c, n, name, _| c.binary(n, name, Op::Mul)),
    ("Pow", |c, n, name, _| c.binary(n, name, Op::Pow)),
    ("Div", |c, n, name, _| c.div(n, name)),
    ("Sum", |c, n, name, _| c.sum(n, name)),
    ("Cast", |c, n, name, a| c.cast(n, name, a)),
    ("CastLike", |c, n, name, _| c.cast_like(n, name)),
];

impl Converter<'_> {
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

    fn gelu(&mut self, node: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let tanh = match a.string("approximate")?.as_deref() {
            None | Some("none") => false,
            Some("tanh") => true,
            Some(other) => return Err(unsupported(format!("Gelu with approximate={other}"), name)),
        };
        self.unary(node, name, Op::Gelu { tanh })
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

    fn sum(&mut self, node: &NodeProto, name: &str) -> Result<ValueId> {
        let mut acc = self.input(node, name, 0)?;
        for k in 1..node.input.len() {
            let y = self.input(node, name, k)?;
            acc = self.emit(name, Op::Add, vec![acc, y])?;
        }
        Ok(acc)
    }

    fn cast(&mut self, node: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let to = a
            .int("to")?
            .ok_or_else(|| self.bad(format!("node {name}: Cast without to")))?;
        let to = i32::try_from(to)
            .ok()
            .and_then(tensor::kind_of)
            .ok_or_else(|| unsupported(format!("Cast to {}", tensor::type_name(to as i32)), name))?;
        self.unary(node, name, Op::Cast { to })
    }

    fn cast_like(&mut self, node: &NodeProto, name: &str) -> Result<ValueId> {
        let x = self.input(node, name, 0)?;
        let like = self.input(node, name, 1)?;
        let to = self
            .value_kind(node, 1, like)
            .ok_or_else(|| unsupported("CastLike to a value of unknown type", name))?;
        self.emit(name, Op::Cast { to }, vec![x])
    }
}
