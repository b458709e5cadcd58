//! Extra forward passes in training mode (SAM's perturbed pass, the finite
//! differences, a penalty sub-batch, randbet's pass at bit errors) would also
//! move BatchNorm's running statistics; a snapshot puts them back so only the
//! real step counts. Perturbed weights are put back bit for bit the same way.

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

/// Runs `f`, then writes back the exact values `params` had before it (not
/// `p + δ − δ`, which rounds), whatever `f` did to them in place.
pub fn with_restored<T>(params: &[Tensor], f: impl FnOnce() -> Result<T>) -> Result<T> {
    let originals: Vec<Tensor> = params.iter().map(|p| p.detach().copy()).collect();
    let out = f();
    tch::no_grad(|| -> Result<()> {
        for (p, o) in params.iter().zip(&originals) {
            p.shallow_clone().f_copy_(o)?;
        }
        Ok(())
    })?;
    out
}

/// Runs `f` with the parameters set to `values` (one per tensor), then
/// restores them; buffers are left as `f` moved them (a training forward
/// pass at perturbed weights that is the step itself).
pub fn with_values<T>(params: &[Tensor], values: &[Tensor], f: impl FnOnce() -> Result<T>) -> Result<T> {
    with_restored(params, || {
        tch::no_grad(|| -> Result<()> {
            for (p, v) in params.iter().zip(values) {
                p.shallow_clone().f_copy_(v)?;
            }
            Ok(())
        })?;
        f()
    })
}

/// Runs `f` with the parameters shifted by `delta` (one per tensor), then
/// restores their exact values and the buffers: an extra pass beside the step.
pub fn with_shifted<T>(model: &Model, params: &[Tensor], delta: &[Tensor], f: impl FnOnce() -> Result<T>) -> Result<T> {
    let buffers = Snapshot::take(model);
    let out = with_restored(params, || {
        tch::no_grad(|| -> Result<()> {
            for (p, d) in params.iter().zip(delta) {
                let _ = p.shallow_clone().f_add_(d)?;
            }
            Ok(())
        })?;
        f()
    });
    buffers.restore()?;
    out
}
