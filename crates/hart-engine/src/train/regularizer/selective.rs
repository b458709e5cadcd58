//! The selective rule: add the Hessian penalty only on steps whose
//! curvature reading exceeds the running mean of the readings seen so far
//! (the HAT paper's rule: the mean of the minibatch Hessian's top-p
//! eigenvalues, read by Lanczos, or a cheaper reading; docs/hessian.md
//! quotes how well each tracks the Lanczos reference).

use std::str::FromStr;

use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tch::{Kind, Tensor};

use crate::error::{HartError, Result};
use crate::hessian::lanczos::lanczos;
use crate::hessian::operator::HvpOperator;
use crate::hessian::probe::rademacher;

/// How a step's curvature is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reading {
    /// Mean of the largest `diag_frac` share of the Hutchinson diagonal
    /// estimate v⊙Hv, from the penalty's own probes: free.
    Diag,
    /// Mean of the top-p Ritz values of one warm-started block power
    /// iteration on the minibatch Hessian: p extra HVPs per reading.
    Power,
    /// Mean of the top-p Ritz values of a fresh Lanczos run of
    /// max(2p, p + 10) steps on the minibatch Hessian: the paper's reading.
    Lanczos,
}

impl FromStr for Reading {
    type Err = HartError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "diag" => Ok(Self::Diag),
            "power" => Ok(Self::Power),
            "lanczos" => Ok(Self::Lanczos),
            _ => Err(HartError::Invalid(format!(
                "unknown curvature reading {s:?} (diag, power, lanczos)"
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Selective {
    pub reading: Reading,
    /// p: eigenvalues averaged by the `power` and `lanczos` readings.
    pub top_p: usize,
    /// Share of diagonal entries averaged by the `diag` reading.
    pub diag_frac: f64,
}

impl Default for Selective {
    fn default() -> Self {
        Selective {
            // The reading that tracks the paper's rule (docs/hessian.md, "the selective rule").
            reading: Reading::Lanczos,
            top_p: 50,
            diag_frac: 0.01,
        }
    }
}

impl Selective {
    pub fn validate(&self) -> Result<()> {
        if self.top_p == 0 {
            return Err(HartError::Invalid("--hessian-top-p must be at least 1".into()));
        }
        if !(self.diag_frac > 0.0 && self.diag_frac <= 1.0) {
            return Err(HartError::Invalid(format!(
                "--hessian-diag-frac must be in (0, 1], got {}",
                self.diag_frac
            )));
        }
        Ok(())
    }
}

/// Running mean of past readings, and the power iteration's warm start.
#[derive(Default)]
pub struct State {
    sum: f64,
    n: usize,
    /// Orthonormal rows `[p, dim]` carried from one reading to the next.
    pub power: Option<Tensor>,
}

impl State {
    /// Fires on the first reading (no history yet) and whenever the reading
    /// is above the mean of all earlier ones; then records the reading.
    pub fn decide(&mut self, reading: f64) -> bool {
        let fire = self.n == 0 || reading > self.sum / self.n as f64;
        if reading.is_finite() {
            self.sum += reading;
            self.n += 1;
        }
        fire
    }
}

/// Mean of the largest `frac` share (at least one) of the entries of `diag`.
pub fn top_share_mean(diag: &Tensor, frac: f64) -> Result<f64> {
    let n = diag.numel() as i64;
    let k = ((frac * n as f64).ceil() as i64).clamp(1, n.max(1));
    let (top, _) = diag.f_reshape([-1])?.f_topk(k, 0, true, false)?;
    Ok(top.f_mean(Kind::Double)?.f_double_value(&[])?)
}

/// One block power (subspace) iteration step: given rows `v` and `hv = H v`,
/// the mean of the top-p Ritz values and the next orthonormal rows.
pub fn power_update(v: &Tensor, hv: &Tensor) -> Result<(f64, Tensor)> {
    let (vd, hd) = (v.to_kind(Kind::Double), hv.to_kind(Kind::Double));
    let r = vd.matmul(&hd.tr());
    let r = (&r + r.tr()) * 0.5;
    let (ritz, _) = r.f_linalg_eigh("L")?;
    let reading = ritz.mean(Kind::Double).f_double_value(&[])?;
    let (q, _) = Tensor::f_linalg_qr(&hd.tr(), "reduced")?;
    Ok((reading, q.tr().to_kind(v.kind()).contiguous()))
}

/// Lanczos steps of the `lanczos` reading: enough beyond p that the top-p
/// Ritz values settle, few enough to read every few steps.
pub fn lanczos_steps(p: usize) -> usize {
    (2 * p).max(p + 10)
}

/// Mean of the top-p Ritz values of a Lanczos run from a random start.
pub fn lanczos_reading(op: &mut dyn HvpOperator, p: usize, kind: Kind, rng: &mut ChaCha8Rng) -> Result<f64> {
    let dim = op.dim();
    let v0 = rademacher(rng, 1, dim, kind, op.device()).f_squeeze_dim(0)?;
    let tri = lanczos(op, &v0, lanczos_steps(p), |_| Ok(false))?;
    let values = tri.eig()?.values;
    let take = p.min(values.len()).max(1);
    Ok(values[values.len() - take..].iter().sum::<f64>() / take as f64)
}
