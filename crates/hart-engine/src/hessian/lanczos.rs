//! Lanczos with full reorthogonalisation: the top of the spectrum (Ritz
//! values with residual bounds) and the nodes and weights of stochastic
//! Lanczos quadrature.

use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::operator::HvpOperator;
use super::probe::rademacher;
use crate::error::{HartError, Result};

/// The Lanczos tridiagonal matrix: diagonal `alpha`, off-diagonal `beta`
/// (`beta[j]` couples steps j and j+1; one entry more than the matrix uses
/// when the run stopped on its step budget, which the residual bounds need).
#[derive(Debug, Clone, Default)]
pub struct Tridiagonal {
    pub alpha: Vec<f64>,
    pub beta: Vec<f64>,
}

/// Eigenpairs of a tridiagonal matrix, ascending, with each eigenvector's first and last components.
pub struct TridiagonalEig {
    pub values: Vec<f64>,
    pub first: Vec<f64>,
    pub last: Vec<f64>,
}

impl Tridiagonal {
    pub fn eig(&self) -> Result<TridiagonalEig> {
        let m = self.alpha.len() as i64;
        let opts = (Kind::Double, Device::Cpu);
        let t = Tensor::from_slice(&self.alpha).diag(0);
        let t = if m > 1 {
            let off = Tensor::from_slice(&self.beta[..(m - 1) as usize]);
            t + off.diag(1) + off.diag(-1)
        } else {
            t
        };
        let (values, vectors) = t.to_kind(opts.0).f_linalg_eigh("L")?;
        Ok(TridiagonalEig {
            values: Vec::<f64>::try_from(&values)?,
            first: Vec::<f64>::try_from(&vectors.get(0))?,
            last: Vec::<f64>::try_from(&vectors.get(m - 1))?,
        })
    }
}

/// Runs up to `steps` Lanczos steps from `v0` (`[dim]`). After each step
/// `stop(&tridiagonal)` may end the run early. Stops by itself on an
/// invariant subspace (β ≈ 0), where the Ritz values are exact.
pub fn lanczos(
    op: &mut dyn HvpOperator,
    v0: &Tensor,
    steps: usize,
    mut stop: impl FnMut(&Tridiagonal) -> Result<bool>,
) -> Result<Tridiagonal> {
    let dim = op.dim();
    let steps = steps.min(dim as usize).max(1);
    let basis = Tensor::zeros([steps as i64 + 1, dim], (v0.kind(), v0.device()));
    let q0 = v0 / v0.norm();
    basis.get(0).copy_(&q0);
    let mut tri = Tridiagonal::default();
    for j in 0..steps as i64 {
        let q = basis.get(j);
        let mut w = op.apply(&q.unsqueeze(0))?.squeeze_dim(0);
        let alpha = q.f_dot(&w)?.f_double_value(&[])?;
        // Two passes of classical Gram–Schmidt against every earlier vector:
        // without it, lost orthogonality makes converged eigenvalues reappear as ghosts.
        let prev = basis.narrow(0, 0, j + 1);
        for _ in 0..2 {
            w = &w - prev.tr().mv(&prev.mv(&w));
        }
        let beta = w.norm().f_double_value(&[])?;
        tri.alpha.push(alpha);
        tri.beta.push(beta);
        let scale = tri
            .alpha
            .iter()
            .fold(0f64, |a, x| a.max(x.abs()))
            .max(f64::MIN_POSITIVE);
        if !(alpha.is_finite() && beta.is_finite()) {
            return Err(HartError::Invalid(format!(
                "Lanczos step {j}: non-finite Hessian-vector product"
            )));
        }
        if beta <= 1e-6 * scale || j + 1 == steps as i64 {
            break;
        }
        basis.get(j + 1).copy_(&(w / beta));
        if stop(&tri)? {
            break;
        }
    }
    Ok(tri)
}

#[derive(Debug, Clone, Serialize)]
pub struct TopEigen {
    /// Largest eigenvalues, descending.
    pub values: Vec<f64>,
    /// Residual bounds ‖H y − θ y‖ of the Ritz pairs (|β| times the Ritz vector's last component).
    pub residuals: Vec<f64>,
    pub steps: usize,
    pub hvps: usize,
    pub converged: bool,
}

/// The `k` largest eigenvalues by Lanczos, stopping once every residual
/// bound is ≤ `tol · |θ|` (or after `max_steps` products).
pub fn top_eigenvalues(
    op: &mut dyn HvpOperator,
    k: usize,
    max_steps: usize,
    tol: f64,
    kind: Kind,
    rng: &mut ChaCha8Rng,
) -> Result<TopEigen> {
    if k == 0 || k as i64 > op.dim() {
        return Err(HartError::Invalid(format!(
            "--top-k must be between 1 and {}, got {k}",
            op.dim()
        )));
    }
    let start = op.hvps();
    let v0 = rademacher(rng, 1, op.dim(), kind, op.device()).squeeze_dim(0);
    let ritz = |tri: &Tridiagonal| -> Result<(Vec<f64>, Vec<f64>)> {
        let e = tri.eig()?;
        let beta = tri.beta.last().copied().unwrap_or(0.0);
        let n = e.values.len();
        let take = k.min(n);
        let values = e.values[n - take..].iter().rev().copied().collect();
        let residuals = e.last[n - take..].iter().rev().map(|s| (beta * s).abs()).collect();
        Ok((values, residuals))
    };
    let done = |values: &[f64], residuals: &[f64]| {
        values.len() == k
            && values
                .iter()
                .zip(residuals)
                .all(|(v, r)| *r <= tol * v.abs().max(f64::MIN_POSITIVE))
    };
    let tri = lanczos(op, &v0, max_steps, |tri| {
        if tri.alpha.len() < k {
            return Ok(false);
        }
        let (v, r) = ritz(tri)?;
        Ok(done(&v, &r))
    })?;
    let (values, residuals) = ritz(&tri)?;
    let converged = done(&values, &residuals) || tri.alpha.len() as i64 == op.dim();
    if values.len() < k {
        return Err(HartError::Invalid(format!(
            "Lanczos found only {} distinct eigenvalues (the Krylov space is exhausted); lower --top-k",
            values.len()
        )));
    }
    Ok(TopEigen {
        values,
        residuals,
        steps: tri.alpha.len(),
        hvps: op.hvps() - start,
        converged,
    })
}
