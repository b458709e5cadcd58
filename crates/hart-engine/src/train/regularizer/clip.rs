//! Weight clipping (Stutz et al. 2021): every weight tensor is kept inside
//! [−W, W], by clamping before the first step and after every update. With
//! symmetric per-tensor quantisation the scale follows max|W|, so a small W
//! keeps the codes' quantisation step small and bounds what a flipped high
//! bit can add; Stutz et al. find that clipping alone already buys bit-error
//! robustness, and that it helps random bit error training further.
//! "Weight tensors" are the ones integer storage keeps as codes: trainable
//! float tensors of rank ≥ 2 (biases and normalisation parameters are free).

use tch::Tensor;

use crate::error::Result;
use crate::faults::storage::stored_as_int;
use crate::model::Model;

pub struct WeightClip {
    tensors: Vec<Tensor>,
    /// Per tensor, the bound W (or W·max|W₀|).
    bounds: Vec<f64>,
}

impl WeightClip {
    /// Bounds for `model`'s weights as they are now (W₀ for `relative`).
    pub fn new(model: &Model, w: f64, relative: bool) -> Result<WeightClip> {
        let tensors: Vec<Tensor> = model
            .named_tensors()
            .into_iter()
            .filter(|(_, t, k)| stored_as_int(t, *k))
            .map(|(_, t, _)| t)
            .collect();
        let bounds = tensors
            .iter()
            .map(|t| -> Result<f64> {
                Ok(if relative {
                    w * t.f_detach()?.f_abs()?.f_max()?.f_double_value(&[])?
                } else {
                    w
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(WeightClip { tensors, bounds })
    }

    /// Clamps every weight tensor into its bound, in place.
    pub fn apply(&self) -> Result<()> {
        tch::no_grad(|| -> Result<()> {
            for (t, &b) in self.tensors.iter().zip(&self.bounds) {
                let _ = t.shallow_clone().f_clamp_(-b, b)?;
            }
            Ok(())
        })
    }
}
