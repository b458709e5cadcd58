//! Normalisations: BatchNorm and LayerNorm with their weights as
//! parameters, and Softmax.

use super::super::attrs::{decimal, Attrs};
use super::super::converter::{unsupported, Converter};
use super::super::proto::NodeProto;
use super::Convert;
use crate::error::Result;
use crate::model::graph::{Op, ValueId};

pub(super) const OPS: &[(&str, Convert)] = &[
    ("BatchNormalization", |c, n, name, a| c.batch_norm(n, name, a)),
    ("LayerNormalization", |c, n, name, a| c.layer_norm(n, name, a)),
    ("Softmax", |c, n, name, a| c.softmax(n, name, a)),
];

impl Converter<'_> {
    fn batch_norm(&mut self, node: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let x = self.input(node, name, 0)?;
        let p = |k| self.param_input(node, k);
        let (Some(scale), Some(bias), Some(mean), Some(var)) = (p(1), p(2), p(3), p(4)) else {
            return Err(unsupported(
                "BatchNormalization with computed scale, bias or statistics",
                name,
            ));
        };
        // ONNX: running = m * running + (1 - m) * batch; PyTorch's momentum is 1 - m.
        let m = decimal(a.float("momentum")?.unwrap_or(0.9));
        let op = Op::BatchNorm {
            weight: Some(scale),
            bias: Some(bias),
            running_mean: mean,
            running_var: var,
            // ONNX does not carry PyTorch's step counter.
            num_batches_tracked: None,
            eps: decimal(a.float("epsilon")?.unwrap_or(1e-5)),
            momentum: 1.0 - m,
        };
        self.emit(name, op, vec![x])
    }

    fn layer_norm(&mut self, node: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let x = self.input(node, name, 0)?;
        let weight = self.param_input(node, 1);
        let bias = self.param_input(node, 2);
        if weight.is_none() || (Self::has_input(node, 2) && bias.is_none()) {
            return Err(unsupported("LayerNormalization with a computed scale or bias", name));
        }
        let op = Op::LayerNorm {
            weight,
            bias,
            eps: decimal(a.float("epsilon")?.unwrap_or(1e-5)),
            axis: a.int("axis")?.unwrap_or(-1),
        };
        self.emit(name, op, vec![x])
    }

    fn softmax(&mut self, node: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let x = self.input(node, name, 0)?;
        if self.opset >= 13 {
            return self.emit(
                name,
                Op::Softmax {
                    axis: a.int("axis")?.unwrap_or(-1),
                },
                vec![x],
            );
        }
        // Before opset 13 Softmax flattens to 2-D at `axis` and normalises
        // each row; on the last axis that is the same as opset 13's.
        let axis = a.int("axis")?.unwrap_or(1);
        let rank = node.input.first().and_then(|v| self.declared.get(v)).and_then(|d| d.1);
        if axis == -1 || rank.is_some_and(|r| axis == r as i64 - 1) {
            return self.emit(name, Op::Softmax { axis: -1 }, vec![x]);
        }
        let shape = self.emit(name, Op::Shape { start: 0, end: None }, vec![x])?;
        let flat = self.emit(name, Op::Flatten { axis }, vec![x])?;
        let y = self.emit(name, Op::Softmax { axis: 1 }, vec![flat])?;
        self.emit(name, Op::Reshape, vec![y, shape])
    }
}
