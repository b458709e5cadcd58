//! Eigenvalue spectral density by stochastic Lanczos quadrature (Ghorbani,
//! Krishnan & Xiao 2019; PyHessian): each Lanczos run from a random unit
//! vector gives nodes θᵢ (Ritz values) and weights τᵢ² (squared first
//! components) of a quadrature for vᵀ f(H) v; averaged over runs and smoothed
//! by a Gaussian, they estimate the density of eigenvalues.

use std::path::Path;

use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tch::Kind;

use super::lanczos::lanczos;
use super::operator::HvpOperator;
use super::probe::rademacher;
use crate::error::Result;
use crate::plot::{self, Figure, LinePlot, Series};

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Density {
    /// Eigenvalue grid and the smoothed density on it (integrates to 1).
    pub grid: Vec<f64>,
    pub density: Vec<f64>,
    /// Gaussian smoothing width (standard deviation, in eigenvalue units).
    pub sigma: f64,
    /// Per run: quadrature nodes (Ritz values) and weights (sum to 1).
    pub nodes: Vec<Vec<f64>>,
    pub weights: Vec<Vec<f64>>,
    pub hvps: usize,
}

/// Grid points of the smoothed density.
const GRID: usize = 1000;
/// Smoothing width as a fraction of the spectrum's span.
const SIGMA_FRACTION: f64 = 0.005;

pub fn spectral_density(
    op: &mut dyn HvpOperator,
    runs: usize,
    steps: usize,
    kind: Kind,
    rng: &mut ChaCha8Rng,
) -> Result<Density> {
    let start = op.hvps();
    let (mut nodes, mut weights) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        let v0 = rademacher(rng, 1, op.dim(), kind, op.device()).squeeze_dim(0);
        let tri = lanczos(op, &v0, steps, |_| Ok(false))?;
        let e = tri.eig()?;
        weights.push(e.first.iter().map(|c| c * c).collect());
        nodes.push(e.values);
    }
    let (grid, density, sigma) = smooth(&nodes, &weights);
    Ok(Density {
        grid,
        density,
        sigma,
        nodes,
        weights,
        hvps: op.hvps() - start,
    })
}

/// Gaussian-smoothed mixture of the quadrature rules, on a grid covering all nodes.
fn smooth(nodes: &[Vec<f64>], weights: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>, f64) {
    let all = nodes.iter().flatten();
    let lo = all.clone().fold(f64::INFINITY, |a, &b| a.min(b));
    let hi = all.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let sigma = (SIGMA_FRACTION * (hi - lo)).max(1e-12 * hi.abs().max(1.0));
    let (lo, hi) = (lo - 5.0 * sigma, hi + 5.0 * sigma);
    let grid: Vec<f64> = (0..GRID)
        .map(|i| lo + (hi - lo) * i as f64 / (GRID - 1) as f64)
        .collect();
    let norm = 1.0 / (sigma * (2.0 * std::f64::consts::PI).sqrt() * nodes.len() as f64);
    let density = grid
        .iter()
        .map(|&x| {
            nodes
                .iter()
                .zip(weights)
                .flat_map(|(n, w)| n.iter().zip(w))
                .map(|(t, w)| w * (-0.5 * ((x - t) / sigma).powi(2)).exp())
                .sum::<f64>()
                * norm
        })
        .collect();
    (grid, density, sigma)
}

impl Density {
    /// Writes the density (log scale, as it spans many decades) to a PNG or SVG file.
    pub fn plot(&self, path: &Path, title: &str) -> Result<()> {
        // Ten decades under the peak is the floor: the Gaussian tails below it say nothing but squash the axis.
        let floor = self.density.iter().fold(0f64, |a, &b| a.max(b)) * 1e-10;
        let points = self
            .grid
            .iter()
            .copied()
            .zip(self.density.iter().map(|&d| d.max(floor)))
            .collect();
        let chart = LinePlot::new(
            Figure::new(
                title,
                "eigenvalue λ of the loss Hessian (nats)",
                "density (per nat, log scale)",
            ),
            vec![Series::new(
                format!("SLQ, {} run(s), σ = {:.3e}", self.nodes.len(), self.sigma),
                points,
            )],
        )
        .log_y();
        plot::save(&chart, path)
    }
}
