//! Matrix products: `MatMul`, and `Gemm` (a `Linear` layer where it is one).

use super::super::attrs::{decimal, Attrs};
use super::super::converter::Converter;
use super::super::proto::NodeProto;
use super::Convert;
use crate::error::Result;
use crate::model::graph::{Op, ValueId};

pub(super) const OPS: &[(&str, Convert)] = &[
    ("MatMul", |c, n, name, _| c.binary(n, name, Op::MatMul)),
    ("Gemm", |c, n, name, a| c.gemm(n, name, a)),
];

impl Converter<'_> {
    fn gemm(&mut self, node: &NodeProto, name: &str, a: &Attrs) -> Result<ValueId> {
        let x = self.input(node, name, 0)?;
        let alpha = decimal(a.float("alpha")?.unwrap_or(1.0));
        let beta = decimal(a.float("beta")?.unwrap_or(1.0));
        let trans_a = a.int("transA")?.unwrap_or(0) != 0;
        let trans_b = a.int("transB")?.unwrap_or(0) != 0;
        if !trans_a && trans_b && alpha == 1.0 && beta == 1.0 {
            let weight = self.param_input(node, 1).filter(|w| self.inits[w].dim() == 2);
            if let Some(weight) = weight {
                let out = self.inits[&weight].size()[0];
                let bias = self.param_input(node, 2);
                let bias_ok = match &bias {
                    None => !Self::has_input(node, 2),
                    Some(b) => self.inits[b].size() == [out],
                };
                if bias_ok {
                    return self.emit(name, Op::Linear { weight, bias }, vec![x]);
                }
            }
        }
        let mut inputs = vec![x, self.input(node, name, 1)?];
        inputs.extend(self.opt_input(node, name, 2)?);
        let op = Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        };
        self.emit(name, op, inputs)
    }
}
