//! Convolution.

use tch::Tensor;

use super::super::attrs::Attrs;
use super::super::converter::{unsupported, Converter};
use super::super::proto::NodeProto;
use super::Convert;
use crate::error::Result;
use crate::model::graph::{Const, Op, ValueId};

pub(super) const OPS: &[(&str, Convert)] = &[("Conv", |c, n, name, a| c.conv(n, name, a))];

impl Converter<'_> {
    fn conv(&mut self, node: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let x = self.input(node, name, 0)?;
        let weight = self
            .param_input(node, 1)
            .ok_or_else(|| unsupported("Conv with a computed weight", name))?;
        let rank = self.inits[&weight].dim();
        if rank != 4 {
            return Err(unsupported(
                format!("Conv with {} spatial dimensions", rank.saturating_sub(2)),
                name,
            ));
        }
        let op = |bias| -> Result<Op> {
            Ok(Op::Conv2d {
                weight: weight.clone(),
                bias,
                stride: a.pair("strides", [1, 1])?,
                padding: a.pads()?,
                dilation: a.pair("dilations", [1, 1])?,
                groups: a.int("group")?.unwrap_or(1),
            })
        };
        if !Self::has_input(node, 2) {
            return self.emit(name, op(None)?, vec![x]);
        }
        if let Some(bias) = self.param_input(node, 2) {
            return self.emit(name, op(Some(bias))?, vec![x]);
        }
        // A bias computed in the graph (the unoptimised dynamo export builds
        // a zero one) is added as a value; when constant zero it is dropped.
        let b = self.input(node, name, 2)?;
        let y = self.emit(name, op(None)?, vec![x])?;
        if let Some(t) = self.constant(b) {
            if t.f_abs()?.f_max()?.f_double_value(&[])? == 0.0 {
                return Ok(y);
            }
        }
        let shape = self.push(name, Op::Constant(Const(Tensor::from_slice(&[1i64, -1, 1, 1]))), vec![]);
        let b = self.emit(name, Op::Reshape, vec![b, shape])?;
        self.emit(name, Op::Add, vec![y, b])
    }
}
