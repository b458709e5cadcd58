//! An audit of the selective rule's readings during a real training run: at
//! checkpoints, every offered reading beside the reference the paper's rule
//! is stated in — the mean of the minibatch Hessian's top-p eigenvalues by
//! Lanczos run to convergence — so the choice of default reading rests on a
//! measurement (docs/hessian.md quotes one).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tch::Tensor;

use super::hat::power_step;
use super::selective::{lanczos_reading, top_share_mean, State};
use crate::error::{HartError, Result};
use crate::hessian::lanczos::top_eigenvalues;
use crate::hessian::operator::GraphHessian;
use crate::hessian::ParamSet;

/// p of the audited `power` reading: the cheap setting the paper's rule is
/// usually approximated with, so the audit says what the approximation costs.
pub const AUDIT_POWER_P: usize = 5;

/// One checkpoint: each reading of the same minibatch Hessian.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    /// Penalised step (0-based, counted over the whole run).
    pub step: usize,
    pub diag: f64,
    /// Warm-started block power reading with p = [`AUDIT_POWER_P`].
    pub power: f64,
    pub lanczos: f64,
    /// Mean of the top-p eigenvalues by Lanczos to relative residual 1e-3.
    pub reference: f64,
    /// Whether the reference's Lanczos run met its tolerance.
    pub converged: bool,
}

pub struct Audit {
    every: usize,
    top_p: usize,
    diag_frac: f64,
    /// The power reading's subspace, advanced on every penalised step so it
    /// is as warm at a checkpoint as it would be in training.
    power: Option<Tensor>,
    seen: usize,
    rng: ChaCha8Rng,
    pub rows: Vec<AuditRow>,
}

impl Audit {
    pub fn new(every: usize, top_p: usize, diag_frac: f64, seed: u64) -> Result<Self> {
        if every == 0 {
            return Err(HartError::Invalid("--audit-readings must be at least 1".into()));
        }
        Ok(Audit {
            every,
            top_p,
            diag_frac,
            power: None,
            seen: 0,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x4155_4449),
            rows: vec![],
        })
    }

    /// Called on every penalised step with the step's diagonal estimate and
    /// ∇_S CE carrying its graph.
    pub fn observe(&mut self, params: &ParamSet, diag: &Tensor, grads: &[Tensor]) -> Result<()> {
        let (power, next) = power_step(params, grads, self.power.take(), AUDIT_POWER_P, &mut self.rng)?;
        self.power = Some(next);
        let step = self.seen;
        self.seen += 1;
        if !step.is_multiple_of(self.every) {
            return Ok(());
        }
        let kind = params.tensors[0].f_kind()?;
        let mut op = GraphHessian::new(params, grads);
        let lanczos = lanczos_reading(&mut op, self.top_p, kind, &mut self.rng)?;
        let p = self.top_p.min(params.dim() as usize);
        let top = top_eigenvalues(&mut op, p, 6 * p + 20, 1e-3, kind, &mut self.rng)?;
        self.rows.push(AuditRow {
            step,
            diag: top_share_mean(diag, self.diag_frac)?,
            power,
            lanczos,
            reference: top.values.iter().sum::<f64>() / top.values.len() as f64,
            converged: top.converged,
        });
        Ok(())
    }
}

/// How one reading follows the reference over the checkpoints.
#[derive(Debug, Clone, Serialize)]
pub struct Tracking {
    pub reading: &'static str,
    pub pearson: f64,
    pub spearman: f64,
    /// Share of checkpoints where the rule (reading above its running mean)
    /// decides as it would on the reference readings.
    pub agreement: f64,
    /// Share of checkpoints where the rule fires on this reading.
    pub fired: f64,
}

type Field = fn(&AuditRow) -> f64;

/// Each reading's tracking of the reference, and the reference's own firing share.
pub fn tracking(rows: &[AuditRow]) -> Vec<Tracking> {
    let reference: Vec<f64> = rows.iter().map(|r| r.reference).collect();
    let want = decisions(&reference);
    let readings: [(&'static str, Field); 4] = [
        ("diag", |r| r.diag),
        ("power", |r| r.power),
        ("lanczos", |r| r.lanczos),
        ("reference", |r| r.reference),
    ];
    readings
        .iter()
        .map(|(name, get)| {
            let xs: Vec<f64> = rows.iter().map(get).collect();
            let got = decisions(&xs);
            let n = rows.len().max(1) as f64;
            Tracking {
                reading: name,
                pearson: pearson(&xs, &reference),
                spearman: pearson(&ranks(&xs), &ranks(&reference)),
                agreement: got.iter().zip(&want).filter(|(a, b)| a == b).count() as f64 / n,
                fired: got.iter().filter(|d| **d).count() as f64 / n,
            }
        })
        .collect()
}

/// The selective rule's decisions on a sequence of readings.
fn decisions(xs: &[f64]) -> Vec<bool> {
    let mut state = State::default();
    xs.iter().map(|x| state.decide(*x)).collect()
}

/// Pearson's r; NaN when either side is constant or there are fewer than two points.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    if n < 2 {
        return f64::NAN;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n as f64, y.iter().sum::<f64>() / n as f64);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    sxy / (sxx * syy).sqrt()
}

/// Ranks from 1, ties given their mean rank (so Spearman's ρ is Pearson's r of ranks).
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut out = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        for k in i..=j {
            out[order[k]] = (i + j) as f64 / 2.0 + 1.0;
        }
        i = j + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_of_a_monotone_map_is_one_and_ties_share_ranks() {
        let x = [1.0, 5.0, 2.0, 9.0];
        let y: Vec<f64> = x.iter().map(|v: &f64| v.powi(3)).collect();
        assert!((pearson(&ranks(&x), &ranks(&y)) - 1.0).abs() < 1e-12);
        assert!(pearson(&x, &y) < 0.999);
        assert_eq!(ranks(&[3.0, 1.0, 3.0]), vec![2.5, 1.0, 2.5]);
        assert!(pearson(&[1.0, 1.0], &[1.0, 2.0]).is_nan());
    }

    #[test]
    fn tracking_counts_rule_agreement() {
        let row = |step, diag: f64, reference: f64| AuditRow {
            step,
            diag,
            power: reference,
            lanczos: reference,
            reference,
            converged: true,
        };
        // diag is the reference reversed: its rule fires where the reference's does not (after the first).
        let rows = [row(0, 4.0, 1.0), row(1, 3.0, 2.0), row(2, 2.0, 3.0), row(3, 1.0, 4.0)];
        let t = tracking(&rows);
        let diag = t.iter().find(|t| t.reading == "diag").unwrap();
        assert_eq!(diag.agreement, 0.25);
        assert!((diag.spearman + 1.0).abs() < 1e-12);
        let power = t.iter().find(|t| t.reading == "power").unwrap();
        assert_eq!((power.agreement, power.fired), (1.0, 1.0));
    }
}
