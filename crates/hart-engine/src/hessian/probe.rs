//! Random probe vectors and the running statistics of the estimates they give.

use rand::RngCore;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

/// A `[k, dim]` block of Rademacher (±1) vectors in `kind` on `device`, drawn
/// on the CPU from HART's own seeded generator so a seed gives the same
/// probes on every device and in every thread.
pub fn rademacher(rng: &mut ChaCha8Rng, k: i64, dim: i64, kind: Kind, device: Device) -> Tensor {
    let n = (k * dim) as usize;
    let mut signs = vec![0i8; n];
    for chunk in signs.chunks_mut(64) {
        let bits = rng.next_u64();
        for (i, s) in chunk.iter_mut().enumerate() {
            *s = if (bits >> i) & 1 == 1 { 1 } else { -1 };
        }
    }
    Tensor::from_slice(&signs)
        .view([k, dim])
        .to_kind(kind)
        .to_device(device)
}

/// Welford's running mean and variance of a stream of estimates.
#[derive(Debug, Clone, Copy, Default)]
pub struct Running {
    n: usize,
    mean: f64,
    m2: f64,
}

impl Running {
    pub fn push(&mut self, x: f64) {
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
    }

    pub fn count(&self) -> usize {
        self.n
    }

    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Standard error of the mean (sample standard deviation / √n); infinite below two samples.
    pub fn stderr(&self) -> f64 {
        if self.n < 2 {
            return f64::INFINITY;
        }
        (self.m2 / (self.n - 1) as f64 / self.n as f64).sqrt()
    }
}
