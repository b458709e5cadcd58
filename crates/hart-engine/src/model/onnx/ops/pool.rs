//! Pooling and averaging over axes.

use super::super::attrs::Attrs;
use super::super::converter::{unsupported, Converter};
use super::super::proto::NodeProto;
use super::Convert;
use crate::error::Result;
use crate::model::graph::{Op, ValueId};

pub(super) const OPS: &[(&str, Convert)] = &[
    ("MaxPool", |c, n, name, a| c.pool(n, name, a)),
    ("AveragePool", |c, n, name, a| c.pool(n, name, a)),
    ("GlobalAveragePool", |c, n, name, _| c.unary(n, name, Op::GlobalAvgPool)),
    ("ReduceMean", |c, n, name, a| c.reduce_mean(n, name, a)),
];

impl Converter<'_> {
    fn pool(&mut self, node: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let op_type = node.op_type.as_str();
        let kernel = a
            .ints("kernel_shape")?
            .ok_or_else(|| self.bad(format!("node {name}: {op_type} without kernel_shape")))?;
        let kernel = <[i64; 2]>::try_from(kernel.as_slice())
            .map_err(|_| unsupported(format!("{op_type} with kernel_shape {kernel:?}, not 2-D"), name))?;
        let stride = a.pair("strides", [1, 1])?;
        let padding = a.pads()?;
        let dilation = a.pair("dilations", [1, 1])?;
        let ceil_mode = a.int("ceil_mode")?.unwrap_or(0) != 0;
        let op = if op_type == "MaxPool" {
            Op::MaxPool2d {
                kernel,
                stride,
                padding,
                dilation,
                ceil_mode,
            }
        } else {
            let count_include_pad = a.int("count_include_pad")?.unwrap_or(0) != 0;
            if dilation != [1, 1] {
                return Err(unsupported("AveragePool with dilations", name));
            }
            // Uneven pads are applied as explicit zeros, which the average
            // would then count.
            if !count_include_pad && (padding[0] != padding[2] || padding[1] != padding[3]) {
                return Err(unsupported(
                    "AveragePool with uneven pads excluded from the average",
                    name,
                ));
            }
            Op::AvgPool2d {
                kernel,
                stride,
                padding,
                ceil_mode,
                count_include_pad,
            }
        };
        self.unary(node, name, op)
    }

    fn reduce_mean(&mut self, node: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let x = self.input(node, name, 0)?;
        let keepdims = a.int("keepdims")?.unwrap_or(1) != 0;
        let noop_if_empty = a.int("noop_with_empty_axes")?.unwrap_or(0) != 0;
        let (axes, mut inputs) = match a.ints("axes")? {
            Some(axes) => (Some(axes), vec![x]),
            None => match self.opt_input(node, name, 1)? {
                Some(id) => match self.const_ints(id)? {
                    Some(axes) => (Some(axes), vec![x]),
                    None => (None, vec![x, id]),
                },
                None => (None, vec![x]),
            },
        };
        let empty = match &axes {
            Some(v) => v.is_empty(),
            None => inputs.len() == 1,
        };
        if empty && noop_if_empty {
            return Ok(x);
        }
        // Opset 18 reads "reduce everything" from an absent axes input, so an
        // empty list must not reach the op as "no axes".
        let axes = axes.filter(|v| !v.is_empty());
        if axes.is_some() {
            inputs.truncate(1);
        }
        self.emit(name, Op::ReduceMean { axes, keepdims }, inputs)
    }
}
