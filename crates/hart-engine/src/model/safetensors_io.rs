//! Reading and writing named tensors as safetensors, with string metadata.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use tch::{Kind, Tensor};

use crate::error::{HartError, Result};

fn dtype_of(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Int8 => Dtype::I8,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        k => {
            return Err(HartError::Model(format!(
                "cannot store tensors of kind {k:?} in safetensors"
            )))
        }
    })
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        _ => return None,
    })
}

fn tensor_bytes(t: &Tensor) -> Vec<u8> {
    let t = t.detach().to_device(tch::Device::Cpu).contiguous();
    let nbytes = t.numel() * t.kind().elt_size_in_bytes();
    let mut buf = vec![0u8; nbytes];
    t.copy_data_u8(&mut buf, t.numel());
    buf
}

/// Writes tensors (in the given order) and metadata. Writes to a temporary
/// file first so an interrupted save never leaves a truncated model behind.
pub fn write(path: &Path, tensors: &[(String, Tensor)], metadata: HashMap<String, String>) -> Result<()> {
    let data: Vec<(String, Vec<u8>, Dtype, Vec<usize>)> = tensors
        .iter()
        .map(|(n, t)| {
            let shape = t.size().iter().map(|&d| d as usize).collect();
            Ok((n.clone(), tensor_bytes(t), dtype_of(t.kind())?, shape))
        })
        .collect::<Result<_>>()?;
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(n, b, d, s)| {
            TensorView::new(*d, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| HartError::Model(format!("tensor {n}: {e}")))
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| HartError::Model(format!("{}: {e}", path.display())))?;
    crate::util::write_atomic(path, &bytes)
}

/// Named tensors in file order.
pub type NamedTensors = Vec<(String, Tensor)>;

/// Reads every tensor (in file order) and the metadata.
pub fn read(path: &Path) -> Result<(NamedTensors, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| HartError::io(path, e))?;
    let bad = |e: safetensors::SafeTensorError| HartError::data(path, format!("not a valid safetensors file: {e}"));
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(bad)?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(bad)?;
    let mut entries: Vec<(usize, String, Tensor)> = Vec::new();
    for (name, view) in st.tensors() {
        let kind = kind_of(view.dtype())
            .ok_or_else(|| HartError::data(path, format!("tensor {name} has unsupported dtype {:?}", view.dtype())))?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)?;
        let offset = view.data().as_ptr() as usize - bytes.as_ptr() as usize;
        entries.push((offset, name, t));
    }
    // Neither the header (sorted names) nor the data (grouped by alignment) keeps the
    // writer's order; offsets at least make the order stable. Callers that need the
    // state-dict order take it from the architecture.
    entries.sort_by_key(|e| e.0);
    let tensors = entries.into_iter().map(|(_, n, t)| (n, t)).collect();
    Ok((tensors, meta.metadata().clone().unwrap_or_default()))
}
