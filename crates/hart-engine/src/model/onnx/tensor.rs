//! `TensorProto` → `tch::Tensor`, for initializers and `Constant` values,
//! including weights kept in external data files (what `torch.onnx.export`
//! writes by default).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use tch::{Kind, Tensor};

use super::proto::{data_type as dt, TensorProto, DATA_LOCATION_EXTERNAL};

/// The libtorch kind of an ONNX element type, where libtorch has one.
pub fn kind_of(data_type: i32) -> Option<Kind> {
    Some(match data_type {
        dt::FLOAT => Kind::Float,
        dt::UINT8 => Kind::Uint8,
        dt::INT8 => Kind::Int8,
        dt::INT16 => Kind::Int16,
        dt::INT32 => Kind::Int,
        dt::INT64 => Kind::Int64,
        dt::BOOL => Kind::Bool,
        dt::FLOAT16 => Kind::Half,
        dt::DOUBLE => Kind::Double,
        dt::BFLOAT16 => Kind::BFloat16,
        _ => return None,
    })
}

/// onnx.proto's name for an element type, for error messages.
pub fn type_name(data_type: i32) -> String {
    const NAMES: [&str; 24] = [
        "UNDEFINED",
        "FLOAT",
        "UINT8",
        "INT8",
        "UINT16",
        "INT16",
        "INT32",
        "INT64",
        "STRING",
        "BOOL",
        "FLOAT16",
        "DOUBLE",
        "UINT32",
        "UINT64",
        "COMPLEX64",
        "COMPLEX128",
        "BFLOAT16",
        "FLOAT8E4M3FN",
        "FLOAT8E4M3FNUZ",
        "FLOAT8E5M2",
        "FLOAT8E5M2FNUZ",
        "UINT4",
        "INT4",
        "FLOAT4E2M1",
    ];
    usize::try_from(data_type)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| format!("type {data_type}"), |s| s.to_string())
}

/// Open external data files, so a model whose thousands of tensors share one
/// `.data` file opens it once.
pub struct ExternalData {
    dir: PathBuf,
    files: HashMap<PathBuf, File>,
}

impl ExternalData {
    /// `model` is the `.onnx` file; locations are relative to its directory.
    pub fn new(model: &Path) -> Self {
        ExternalData {
            dir: model.parent().map(Path::to_path_buf).unwrap_or_default(),
            files: HashMap::new(),
        }
    }

    fn read(&mut self, t: &TensorProto, nbytes: usize) -> Result<Vec<u8>, String> {
        let entry = |key: &str| t.external_data.iter().find(|e| e.key == key).map(|e| e.value.as_str());
        let location = entry("location").ok_or("external data without a location")?;
        let rel = Path::new(location);
        // The ONNX spec keeps external data beside the model; refusing other
        // paths stops a crafted model from reading arbitrary files.
        if rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(format!(
                "external data location {location:?} leaves the model's directory"
            ));
        }
        let number = |key: &str| -> Result<Option<u64>, String> {
            entry(key)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| format!("external data {key} {v:?} is not a number"))
                })
                .transpose()
        };
        let offset = number("offset")?.unwrap_or(0);
        if let Some(len) = number("length")? {
            if len != nbytes as u64 {
                return Err(format!("external data holds {len} bytes, the shape needs {nbytes}"));
            }
        }
        let path = self.dir.join(rel);
        let file = match self.files.entry(path.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(File::open(&path).map_err(|err| format!("external data file {}: {err}", path.display()))?)
            }
        };
        let mut buf = vec![0u8; nbytes];
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(|err| format!("external data file {} at offset {offset}: {err}", path.display()))?;
        Ok(buf)
    }
}

fn count<T>(name: &str, data: &[T], numel: usize) -> Result<(), String> {
    if data.len() == numel {
        Ok(())
    } else {
        Err(format!("{name} holds {} values, the shape needs {numel}", data.len()))
    }
}

/// Decodes a tensor; errors are bare messages the caller prefixes with the
/// file and tensor name.
pub fn decode(t: &TensorProto, external: &mut ExternalData) -> Result<Tensor, String> {
    let kind =
        kind_of(t.data_type).ok_or_else(|| format!("element type {} is not supported", type_name(t.data_type)))?;
    if t.dims.iter().any(|&d| d < 0) {
        return Err(format!("negative dimension in shape {:?}", t.dims));
    }
    let numel = t
        .dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
        .ok_or_else(|| format!("shape {:?} is too large", t.dims))?;
    let nbytes = numel
        .checked_mul(kind.elt_size_in_bytes())
        .ok_or_else(|| format!("shape {:?} is too large", t.dims))?;
    let from_bytes = |bytes: &[u8]| -> Result<Tensor, String> {
        if bytes.len() != nbytes {
            return Err(format!("holds {} bytes, the shape needs {nbytes}", bytes.len()));
        }
        Tensor::f_from_data_size(bytes, &t.dims, kind).map_err(|e| e.to_string())
    };
    let shaped = |flat: Tensor| flat.f_reshape(&t.dims).map_err(|e| e.to_string());
    if t.data_location == DATA_LOCATION_EXTERNAL {
        return from_bytes(&external.read(t, nbytes)?);
    }
    // ONNX stores raw data little-endian, which is every host libtorch runs on.
    if !t.raw_data.is_empty() || numel == 0 {
        return from_bytes(&t.raw_data);
    }
    match kind {
        Kind::Float => {
            count("float_data", &t.float_data, numel)?;
            shaped(Tensor::from_slice(&t.float_data))
        }
        Kind::Double => {
            count("double_data", &t.double_data, numel)?;
            shaped(Tensor::from_slice(&t.double_data))
        }
        Kind::Int64 => {
            count("int64_data", &t.int64_data, numel)?;
            shaped(Tensor::from_slice(&t.int64_data))
        }
        // 16-bit floats sit in int32_data as their bit patterns, not values.
        Kind::Half | Kind::BFloat16 => {
            count("int32_data", &t.int32_data, numel)?;
            let bytes: Vec<u8> = t.int32_data.iter().flat_map(|&v| (v as u16).to_le_bytes()).collect();
            from_bytes(&bytes)
        }
        _ => {
            count("int32_data", &t.int32_data, numel)?;
            shaped(Tensor::from_slice(&t.int32_data).to_kind(kind))
        }
    }
}
