//! Writing a trained model back into the ONNX file it was imported from.
//!
//! The importer's prost structs leave out every field HART does not read
//! (doc strings, metadata, value infos' details, training info, …), so
//! re-encoding them would lose those. Instead the file is walked at the
//! protobuf wire level (ModelProto.graph = 7 → GraphProto.initializer = 5 →
//! TensorProto) and only the bytes of each trained initializer's values
//! (`raw_data`, or the fixed32 words of `float_data`) are overwritten in
//! place. The values keep their size, so every other byte of the file, the
//! node names, op set, opset version, inputs, outputs and metadata, is
//! unchanged.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use tch::{Kind, Tensor};

use super::proto::{data_type, DATA_LOCATION_EXTERNAL};
use crate::error::{HartError, Result};

const MODEL_GRAPH: u64 = 7;
const GRAPH_INITIALIZER: u64 = 5;
const TENSOR_DIMS: u64 = 1;
const TENSOR_DATA_TYPE: u64 = 2;
const TENSOR_FLOAT_DATA: u64 = 4;
const TENSOR_NAME: u64 = 8;
const TENSOR_RAW_DATA: u64 = 9;
const TENSOR_DATA_LOCATION: u64 = 14;

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;
const FIXED32: u64 = 5;

/// Where one initializer's values sit in the file.
#[derive(Debug, Clone)]
pub struct InitializerSpan {
    pub name: String,
    pub data_type: i32,
    pub numel: i64,
    pub external: bool,
    /// Byte ranges holding the values, in element order, 4 bytes per float.
    pub data: Vec<Range<usize>>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

fn malformed(what: &str) -> String {
    format!("malformed protobuf ({what})")
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], range: Range<usize>) -> Self {
        Reader {
            buf,
            pos: range.start,
            end: range.end,
        }
    }

    fn done(&self) -> bool {
        self.pos >= self.end
    }

    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf[..self.end]
                .get(self.pos)
                .ok_or_else(|| malformed("truncated varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(malformed("varint longer than 10 bytes"))
    }

    /// The next field: its number, wire type, and the range of its payload
    /// (for varints, the varint's value is returned in `value`).
    fn field(&mut self) -> std::result::Result<(u64, u64, Range<usize>, u64), String> {
        let key = self.varint()?;
        let (number, wire) = (key >> 3, key & 7);
        let start = self.pos;
        let (range, value) = match wire {
            VARINT => {
                let v = self.varint()?;
                (start..self.pos, v)
            }
            FIXED64 => (start..start + 8, 0),
            FIXED32 => (start..start + 4, 0),
            LEN => {
                let n = usize::try_from(self.varint()?).map_err(|_| malformed("length"))?;
                let s = self.pos;
                (s..s.checked_add(n).ok_or_else(|| malformed("length"))?, 0)
            }
            _ => return Err(malformed(&format!("wire type {wire}"))),
        };
        if range.end > self.end {
            return Err(malformed("field runs past its message"));
        }
        self.pos = range.end;
        Ok((number, wire, range, value))
    }
}

/// Every initializer of the file's graph with where its values are.
pub fn initializer_spans(bytes: &[u8]) -> std::result::Result<Vec<InitializerSpan>, String> {
    let mut out = Vec::new();
    let mut model = Reader::new(bytes, 0..bytes.len());
    while !model.done() {
        let (number, wire, range, _) = model.field()?;
        if number != MODEL_GRAPH || wire != LEN {
            continue;
        }
        let mut graph = Reader::new(bytes, range);
        while !graph.done() {
            let (number, wire, range, _) = graph.field()?;
            if number == GRAPH_INITIALIZER && wire == LEN {
                out.push(tensor_span(bytes, range)?);
            }
        }
    }
    Ok(out)
}

fn tensor_span(bytes: &[u8], range: Range<usize>) -> std::result::Result<InitializerSpan, String> {
    let mut r = Reader::new(bytes, range);
    let mut span = InitializerSpan {
        name: String::new(),
        data_type: 0,
        numel: 1,
        external: false,
        data: Vec::new(),
    };
    while !r.done() {
        let (number, wire, range, value) = r.field()?;
        match (number, wire) {
            (TENSOR_DIMS, VARINT) => span.numel = span.numel.saturating_mul(value as i64),
            (TENSOR_DIMS, LEN) => {
                let mut d = Reader::new(bytes, range);
                while !d.done() {
                    span.numel = span.numel.saturating_mul(d.varint()? as i64);
                }
            }
            (TENSOR_DATA_TYPE, VARINT) => span.data_type = value as i32,
            (TENSOR_NAME, LEN) => span.name = String::from_utf8_lossy(&bytes[range]).into_owned(),
            (TENSOR_RAW_DATA, LEN) | (TENSOR_FLOAT_DATA, LEN) | (TENSOR_FLOAT_DATA, FIXED32) => span.data.push(range),
            (TENSOR_DATA_LOCATION, VARINT) => span.external = value as i32 == DATA_LOCATION_EXTERNAL,
            _ => {}
        }
    }
    Ok(span)
}

/// Checks that every tensor of `names` is a float32 initializer stored in
/// the file itself, so [`write_back`] can hold its trained value.
pub fn check_writable(path: &Path, names: &[String]) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| HartError::io(path, e))?;
    let spans = initializer_spans(&bytes).map_err(|e| HartError::data(path, e))?;
    for name in names {
        let Some(s) = spans.iter().find(|s| &s.name == name) else {
            return Err(HartError::data(
                path,
                format!("tensor {name} is not an initializer of the graph, so the .onnx cannot hold its trained value; write .safetensors"),
            ));
        };
        if s.external || s.data_type != data_type::FLOAT {
            return Err(HartError::data(
                path,
                format!(
                    "initializer {name} is {}: HART writes back float32 initializers stored in the file; write .safetensors",
                    if s.external { "in an external data file" } else { "not float32" }
                ),
            ));
        }
    }
    Ok(())
}

/// Writes `source` to `out` with the values of `tensors` (float32, by
/// initializer name) in place of the file's; every other byte is copied.
pub fn write_back(source: &Path, out: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let mut bytes = std::fs::read(source).map_err(|e| HartError::io(source, e))?;
    let spans = initializer_spans(&bytes).map_err(|e| HartError::data(source, e))?;
    let by_name: HashMap<&str, &InitializerSpan> = spans.iter().map(|s| (s.name.as_str(), s)).collect();
    for (name, t) in tensors {
        let span = by_name
            .get(name.as_str())
            .ok_or_else(|| HartError::data(source, format!("tensor {name} is not an initializer of the graph")))?;
        let values = t
            .f_detach()?
            .f_to_device(tch::Device::Cpu)?
            .f_to_kind(Kind::Float)?
            .f_contiguous()?;
        let numel = values.numel();
        let stored: usize = span.data.iter().map(|r| r.len()).sum();
        if span.data_type != data_type::FLOAT || span.external || stored != 4 * numel || span.numel != numel as i64 {
            return Err(HartError::data(
                source,
                format!("initializer {name} does not hold {numel} float32 values in the file"),
            ));
        }
        let mut data = vec![0f32; numel];
        values.f_copy_data(&mut data, numel)?;
        let new: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut at = 0;
        for r in &span.data {
            bytes[r.clone()].copy_from_slice(&new[at..at + r.len()]);
            at += r.len();
        }
    }
    crate::util::write_atomic(out, &bytes)
}
