//! Analog noise, the simple model in-memory-computing studies start from:
//! w ← w + N(0, (level · max|W|)²) for every weight, max|W| taken over the
//! tensor or (`per_channel`) over each slice along dim 0. The normals come
//! from the trial's own generator on the CPU, so a trial is the same on
//! every device.

use rand::Rng;
use tch::{Kind, Tensor};

use crate::error::Result;

/// Standard normals by Box–Muller (two per pair of uniforms).
pub fn normals(n: usize, rng: &mut impl Rng) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
        let u2: f64 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        out.push((r * c) as f32);
        out.push((r * s) as f32);
    }
    out.truncate(n);
    out
}

/// σ per element's slice: `level · max|W|` over the tensor (shape `[]`) or
/// over each output channel (shape `[C, 1, …]`).
pub fn sigma(w: &Tensor, level: f64, per_channel: bool) -> Result<Tensor> {
    let a = w.f_abs()?;
    let amax = if per_channel && w.dim() >= 2 {
        let dims: Vec<i64> = (1..w.dim() as i64).collect();
        a.f_amax(dims.as_slice(), true)?
    } else {
        a.f_max()?
    };
    Ok(amax.f_mul_scalar(level)?)
}

/// Standard normals in `w`'s shape, on its device.
pub fn normals_like(w: &Tensor, rng: &mut impl Rng) -> Result<Tensor> {
    Ok(Tensor::from_slice(&normals(w.numel(), rng))
        .f_view(w.size().as_slice())?
        .f_to_device(w.device())?)
}

/// `w` plus this trial's noise (a new tensor; `w` is left alone).
pub fn noisy(w: &Tensor, level: f64, per_channel: bool, rng: &mut impl Rng) -> Result<Tensor> {
    let w = w.detach();
    let z = normals_like(&w, rng)?;
    let s = sigma(&w, level, per_channel)?;
    Ok(w.f_add(&z.f_mul(&s)?)?.f_to_kind(Kind::Float)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::draw::trial_rng;

    #[test]
    fn normals_have_unit_moments() {
        let z = normals(200_001, &mut trial_rng(0, 0.1, 0, 1));
        assert_eq!(z.len(), 200_001);
        let n = z.len() as f64;
        let mean = z.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = z.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.02, "{mean} {var}");
    }

    #[test]
    fn per_channel_sigma_follows_each_channel() {
        let w = Tensor::from_slice(&[1.0f32, -2.0, 0.5, 0.25]).view([2, 2]);
        let s = sigma(&w, 0.1, true).unwrap();
        assert_eq!(Vec::<f32>::try_from(s.flatten(0, -1)).unwrap(), vec![0.2, 0.05]);
        assert!((sigma(&w, 0.1, false).unwrap().double_value(&[]) - 0.2).abs() < 1e-7);
    }
}
