//! Typed access to an ONNX node's attributes, with one-line errors naming
//! the node and the attribute.

use std::path::Path;

use super::converter::unsupported;
use super::proto::{attr_type, AttributeProto, NodeProto, TensorProto};
use crate::error::{HartError, Result};
use crate::model::graph::Pads;

/// ONNX stores float attributes as f32; PyTorch's values were decimal
/// doubles (eps = 1e-5), and the shortest decimal of the f32 recovers them.
pub(super) fn decimal(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(v as f64)
}

fn attr_type_name(t: i32) -> &'static str {
    match t {
        attr_type::FLOAT => "FLOAT",
        attr_type::INT => "INT",
        attr_type::STRING => "STRING",
        attr_type::TENSOR => "TENSOR",
        attr_type::FLOATS => "FLOATS",
        attr_type::INTS => "INTS",
        _ => "another type",
    }
}

/// Typed access to a node's attributes.
pub(super) struct Attrs<'a> {
    pub(super) node: &'a NodeProto,
    pub(super) name: &'a str,
    pub(super) path: &'a Path,
}

impl<'a> Attrs<'a> {
    pub(super) fn get(&self, key: &str, want: i32) -> Result<Option<&'a AttributeProto>> {
        match self.node.attribute.iter().find(|a| a.name == key) {
            Some(a) if a.r#type != 0 && a.r#type != want => Err(HartError::data(
                self.path,
                format!(
                    "node {}: attribute {key} is {}, expected {}",
                    self.name,
                    attr_type_name(a.r#type),
                    attr_type_name(want)
                ),
            )),
            // Without a declared type, only the member that is set counts.
            Some(a)
                if a.r#type == 0
                    && match want {
                        attr_type::FLOAT => a.f.is_none(),
                        attr_type::INT => a.i.is_none(),
                        attr_type::STRING => a.s.is_none(),
                        attr_type::TENSOR => a.t.is_none(),
                        attr_type::FLOATS => a.floats.is_empty(),
                        _ => a.ints.is_empty(),
                    } =>
            {
                Ok(None)
            }
            other => Ok(other),
        }
    }

    pub(super) fn int(&self, key: &str) -> Result<Option<i64>> {
        Ok(self.get(key, attr_type::INT)?.map(|a| a.i.unwrap_or(0)))
    }

    pub(super) fn float(&self, key: &str) -> Result<Option<f32>> {
        Ok(self.get(key, attr_type::FLOAT)?.map(|a| a.f.unwrap_or(0.0)))
    }

    pub(super) fn string(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .get(key, attr_type::STRING)?
            .map(|a| String::from_utf8_lossy(a.s.as_deref().unwrap_or_default()).into_owned()))
    }

    pub(super) fn ints(&self, key: &str) -> Result<Option<Vec<i64>>> {
        Ok(self.get(key, attr_type::INTS)?.map(|a| a.ints.clone()))
    }

    pub(super) fn floats(&self, key: &str) -> Result<Option<Vec<f32>>> {
        Ok(self.get(key, attr_type::FLOATS)?.map(|a| a.floats.clone()))
    }

    pub(super) fn tensor(&self, key: &str) -> Result<Option<&'a TensorProto>> {
        match self.get(key, attr_type::TENSOR)? {
            None => Ok(None),
            Some(a) => a.t.as_ref().map(Some).ok_or_else(|| {
                HartError::data(
                    self.path,
                    format!("node {}: attribute {key} holds no tensor", self.name),
                )
            }),
        }
    }

    /// A pair such as strides or dilations; other lengths mean a pooling or
    /// convolution over other than two spatial dimensions.
    pub(super) fn pair(&self, key: &str, default: [i64; 2]) -> Result<[i64; 2]> {
        match self.ints(key)? {
            None => Ok(default),
            Some(v) => <[i64; 2]>::try_from(v.as_slice())
                .map_err(|_| unsupported(format!("{} with {key} {v:?}, not 2-D", self.node.op_type), self.name)),
        }
    }

    /// ONNX pads `[top, left, bottom, right]`, HART's order too.
    pub(super) fn pads(&self) -> Result<Pads> {
        match self.string("auto_pad")?.as_deref() {
            None | Some("NOTSET") | Some("") => match self.ints("pads")? {
                None => Ok([0; 4]),
                Some(v) => <[i64; 4]>::try_from(v.as_slice())
                    .map_err(|_| unsupported(format!("{} with pads {v:?}, not 2-D", self.node.op_type), self.name)),
            },
            Some("VALID") => Ok([0; 4]),
            Some(other) => Err(unsupported(
                format!("{} with auto_pad {other}", self.node.op_type),
                self.name,
            )),
        }
    }
}

pub(super) fn node_attr_names(node: &NodeProto) -> impl Iterator<Item = &str> {
    node.attribute.iter().map(|a| a.name.as_str())
}
