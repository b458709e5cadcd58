//! ONNX import into HART's layer graph.
//!
//! The protobuf messages are declared by hand in [`proto`] (no `protoc` at
//! build time); [`convert`] maps the ONNX graph onto [`super::graph::Op`]s,
//! node by node through the op families in [`ops`], each built from the
//! steps in [`converter`].

mod attrs;
mod convert;
mod converter;
mod ops;
mod proto;
mod tensor;
mod write;

use std::path::Path;

use prost::bytes::Bytes;
use prost::Message;

pub use write::{check_writable, initializer_spans, write_back, InitializerSpan};

use super::GraphModel;
use crate::error::{HartError, Result};

/// Reads an ONNX model (weights inline or in external data files beside it).
pub fn import(path: &Path) -> Result<GraphModel> {
    let bytes = std::fs::read(path).map_err(|e| HartError::io(path, e))?;
    let model = proto::ModelProto::decode(Bytes::from(bytes)).map_err(|e| {
        HartError::data(
            path,
            format!("not a valid ONNX model: {}", e.to_string().replace('\n', " ")),
        )
    })?;
    convert::convert(path, &model)
}
