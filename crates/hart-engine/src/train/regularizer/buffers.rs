//! Extra forward passes in training mode (SAM's perturbed pass, the finite
//! differences, a penalty sub-batch) would also move BatchNorm's running
//! statistics; a snapshot puts them back so only the real step counts.

use tch::Tensor;

use crate::error::Result;
use crate::model::{Model, ParamKind};

pub struct Snapshot {
    saved: Vec<(Tensor, Tensor)>,
}

impl Snapshot {
    /// Copies every buffer the model exposes (TorchScript models expose none).
    pub fn take(model: &Model) -> Self {
        let saved = model
            .named_tensors()
            .into_iter()
            .filter(|(_, _, k)| *k == ParamKind::Buffer)
            .map(|(_, t, _)| {
                let copy = t.detach().copy();
                (t, copy)
            })
            .collect();
        Snapshot { saved }
    }

    pub fn restore(self) -> Result<()> {
        tch::no_grad(|| -> Result<()> {
            for (t, copy) in &self.saved {
                t.shallow_clone().f_copy_(copy)?;
            }
            Ok(())
        })
    }
}

/// Runs `f` with the parameters shifted by `delta` (one per tensor), then
/// restores their exact values (not `p + δ − δ`, which rounds) and the buffers.
pub fn with_shifted<T>(model: &Model, params: &[Tensor], delta: &[Tensor], f: impl FnOnce() -> Result<T>) -> Result<T> {
    let originals: Vec<Tensor> = params.iter().map(|p| p.detach().copy()).collect();
    let buffers = Snapshot::take(model);
    tch::no_grad(|| -> Result<()> {
        for (p, d) in params.iter().zip(delta) {
            let _ = p.shallow_clone().f_add_(d)?;
        }
        Ok(())
    })?;
    let out = f();
    tch::no_grad(|| -> Result<()> {
        for (p, o) in params.iter().zip(&originals) {
            p.shallow_clone().f_copy_(o)?;
        }
        Ok(())
    })?;
    buffers.restore()?;
    out
}
