//! Filter-normalised random directions (Li et al., "Visualizing the Loss
//! Landscape of Neural Nets", 2018). A raw Gaussian direction has a scale
//! unrelated to the weights, so surfaces of different models could not be
//! compared; rescaling each filter of the direction to the norm of the
//! matching weight filter makes a step of 1 mean "one filter-norm" in every
//! layer, whatever the layer's scale.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

/// One tensor per target, aligned with the targets it was drawn for.
#[derive(Debug)]
pub struct Direction(pub Vec<Tensor>);

/// Guards the division for an all-zero weight filter (as Li et al.'s code does).
const EPS: f64 = 1e-10;

/// `count` directions for `targets`, drawn from one ChaCha stream seeded with
/// `seed`: the same seed gives the same directions on any machine and device,
/// independently of libtorch's global generator.
///
/// Rank ≥ 2 tensors get a Gaussian direction whose every filter (slice along
/// dim 0) has the norm of the weight's filter. Rank ≤ 1 tensors (biases,
/// normalisation parameters, only present when the caller selected them) get
/// the weight itself, as in Li et al.'s reference code.
pub fn random(targets: &[(String, Tensor)], seed: u64, count: usize) -> Vec<Direction> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            Direction(
                targets
                    .iter()
                    .map(|(_, w)| {
                        let w = w.detach();
                        if w.dim() <= 1 {
                            return w.copy();
                        }
                        let raw = gaussian(&mut rng, w.numel());
                        let d = Tensor::from_slice(&raw).view(w.size().as_slice()).to_device(w.device());
                        filter_normalise(&d, &w)
                    })
                    .collect(),
            )
        })
        .collect()
}

/// Rescales each filter of `d` to the norm of the corresponding filter of `w`.
pub fn filter_normalise(d: &Tensor, w: &Tensor) -> Tensor {
    let rows = w.size()[0];
    let norm = |t: &Tensor| t.reshape([rows, -1]).norm_scalaropt_dim(2.0, [1i64].as_slice(), true);
    let ratio = norm(&w.to_kind(Kind::Float)) / (norm(d) + EPS);
    (d.reshape([rows, -1]) * ratio).view(w.size().as_slice())
}

/// Standard normal samples by Box–Muller: rand's own distributions crate is
/// not a dependency, and two uniforms per pair is all this needs.
fn gaussian(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        // 1 − U lies in (0, 1], so the logarithm is finite.
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        out.push((r * t.cos()) as f32);
        out.push((r * t.sin()) as f32);
    }
    out.truncate(n);
    out
}
