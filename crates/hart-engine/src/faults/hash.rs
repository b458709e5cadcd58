//! Fingerprints recorded with every sweep, so resumes and merges refuse to
//! mix results of different models, data or settings.

use sha2::{Digest, Sha256};
use tch::Tensor;

use crate::data::Dataset;
use crate::error::Result;
use crate::model::Model;

fn hex(d: impl AsRef<[u8]>) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Every named tensor's name, dtype, shape and bytes, in state-dict order.
pub fn model_hash(model: &Model) -> Result<String> {
    let mut h = Sha256::new();
    for (name, t, _) in model.named_tensors() {
        h.update(name.as_bytes());
        h.update(format!("{:?}{:?}", t.kind(), t.size()).as_bytes());
        h.update(tensor_bytes(&t)?);
    }
    Ok(hex(h.finalize()))
}

fn tensor_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let t = t.detach().to_device(tch::Device::Cpu).contiguous();
    let n = t.numel() * t.kind().elt_size_in_bytes();
    let mut buf = vec![0u8; n];
    t.f_copy_data_u8(&mut buf, t.numel())?;
    Ok(buf)
}

/// The evaluation slice: name, shape, pixels and labels.
pub fn data_hash(data: &Dataset) -> String {
    let mut h = Sha256::new();
    h.update(
        format!(
            "{}:{}x{}x{}:{}",
            data.name,
            data.channels,
            data.height,
            data.width,
            data.len()
        )
        .as_bytes(),
    );
    data.images.hash_into(&mut h);
    for l in &data.labels {
        h.update(l.to_le_bytes());
    }
    hex(h.finalize())
}

pub fn bytes_hash(bytes: &[u8]) -> String {
    hex(Sha256::digest(bytes))
}
