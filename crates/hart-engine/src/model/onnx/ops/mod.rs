//! The ONNX ops HART imports, one file per op family, each with a table of
//! the op types it converts. Adding an op: a function in its family's file
//! (built from [`Converter`]'s `input`, `emit`, `unary`, … steps) and one
//! line in that file's `OPS`; a new family is a new file and one entry in
//! [`FAMILIES`].

mod constant;
mod conv;
mod elementwise;
mod linear;
mod norm;
mod pool;
mod shape;

use super::attrs::Attrs;
use super::converter::Converter;
use super::proto::NodeProto;
use crate::error::Result;
use crate::model::graph::ValueId;

/// Converts one node (its inputs resolved through the converter, its
/// attributes through `Attrs`) and returns the HART value of its first output.
type Convert = fn(&mut Converter<'_>, &NodeProto, &str, &Attrs<'_>) -> Result<ValueId>;

const FAMILIES: &[&[(&str, Convert)]] = &[
    elementwise::OPS,
    conv::OPS,
    linear::OPS,
    norm::OPS,
    pool::OPS,
    shape::OPS,
    constant::OPS,
];

/// The conversion of ONNX op type `op_type`, if HART imports it.
pub(super) fn lookup(op_type: &str) -> Option<Convert> {
    FAMILIES
        .iter()
        .flat_map(|family| family.iter())
        .find(|(name, _)| *name == op_type)
        .map(|&(_, convert)| convert)
}
