//! Constants, and the ops HART's graph cannot run but which exporters emit
//! on constant shape data: those are evaluated once here.

use tch::{Device, Kind, Tensor};

use super::super::attrs::{node_attr_names, Attrs};
use super::super::converter::{unsupported, Converter};
use super::super::proto::NodeProto;
use super::Convert;
use crate::error::Result;
use crate::model::graph::{to_i64_vec, Const, Op, ValueId};

pub(super) const OPS: &[(&str, Convert)] = &[
    ("Constant", |c, _, name, a| {
        let t = c.constant_value(name, a)?;
        Ok(c.push(name, Op::Constant(Const(t)), vec![]))
    }),
    ("ConstantOfShape", |c, n, name, a| c.evaluated(n, name, a)),
    ("Equal", |c, n, name, a| c.evaluated(n, name, a)),
    ("Where", |c, n, name, a| c.evaluated(n, name, a)),
];

impl Converter<'_> {
    fn constant_value(&mut self, name: &str, a: &Attrs) -> Result<Tensor> {
        let scalar = |t: Tensor| t.f_reshape([0i64; 0]);
        if let Some(t) = a.tensor("value")? {
            return self.decode(t, &format!("node {name}"));
        }
        if let Some(v) = a.float("value_float")? {
            return Ok(scalar(Tensor::from_slice(&[v]))?);
        }
        if let Some(v) = a.floats("value_floats")? {
            return Ok(Tensor::from_slice(&v));
        }
        if let Some(v) = a.int("value_int")? {
            return Ok(scalar(Tensor::from_slice(&[v]))?);
        }
        if let Some(v) = a.ints("value_ints")? {
            return Ok(Tensor::from_slice(&v));
        }
        match node_attr_names(a.node).find(|n| n.starts_with("value") || *n == "sparse_value") {
            Some(other) => Err(unsupported(format!("Constant with {other}"), name)),
            None => Err(self.bad(format!("node {name}: Constant without a value"))),
        }
    }

    /// `ConstantOfShape`, `Equal` and `Where` on constant inputs, as a constant.
    fn evaluated(&mut self, node: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let op_type = node.op_type.as_str();
        let c = self.const_inputs(node, name)?;
        let t = match (op_type, c.as_slice()) {
            ("ConstantOfShape", [shape]) => {
                let value = match a.tensor("value")? {
                    Some(t) => self.decode(t, &format!("node {name}"))?,
                    None => Tensor::zeros([1], (Kind::Float, Device::Cpu)),
                };
                value
                    .f_reshape([0i64; 0])?
                    .f_expand(to_i64_vec(shape)?, false)?
                    .contiguous()
            }
            ("Equal", [x, y]) => x.f_eq_tensor(y)?,
            ("Where", [c, x, y]) => x.f_where_self(c, y)?,
            _ => return Err(self.bad(format!("node {name}: {op_type} with {} inputs", c.len()))),
        };
        Ok(self.push(name, Op::Constant(Const(t)), vec![]))
    }
}
