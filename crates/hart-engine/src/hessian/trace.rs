//! Trace estimation: Hutchinson with a relative-standard-error stopping
//! rule, and Hutch++ (exact trace on a low-rank sketch, Hutchinson on the
//! rest). Both report per-tensor traces from the same probes.

use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tch::{Kind, Tensor};

use super::operator::HvpOperator;
use super::params::ParamSet;
use super::probe::{rademacher, Running};
use crate::error::{HartError, Result};

#[derive(Debug, Clone, Copy)]
pub struct TraceOptions {
    /// Stop once stderr ≤ rel_stderr · |trace| ...
    pub rel_stderr: f64,
    /// ... but not before this many probes (a standard error from a handful
    /// of samples is itself too noisy to stop on) ...
    pub min_probes: usize,
    /// ... and never after this many.
    pub max_probes: usize,
    /// Probes per operator call: one gradient graph per batch serves a whole block.
    pub block: usize,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions {
            rel_stderr: 0.02,
            min_probes: 10,
            max_probes: 1000,
            block: 8,
        }
    }
}

impl TraceOptions {
    pub fn validate(&self) -> Result<()> {
        if !(self.rel_stderr > 0.0 && self.rel_stderr.is_finite()) {
            return Err(HartError::Invalid(format!(
                "--rel-stderr must be positive, got {}",
                self.rel_stderr
            )));
        }
        if self.max_probes < 2 {
            return Err(HartError::Invalid(format!(
                "--max-probes must be at least 2, got {}",
                self.max_probes
            )));
        }
        if self.block == 0 {
            return Err(HartError::Invalid("probe block size must be at least 1".into()));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TraceEstimate {
    pub trace: f64,
    /// Standard error of `trace` (from the random part only; Hutch++'s sketch part is exact).
    pub stderr: f64,
    /// Random probes drawn (Hutch++: the residual probes, not counting the sketch).
    pub probes: usize,
    /// Hessian-vector products spent, sketch included.
    pub hvps: usize,
    /// Whether the stderr target was met before `max_probes`.
    pub converged: bool,
    pub per_tensor: Vec<f64>,
    pub per_tensor_stderr: Vec<f64>,
}

/// A deterministic part of the trace plus Hutchinson samples of the rest.
struct Sampler<'a> {
    params: &'a ParamSet,
    offset: f64,
    offset_per_tensor: Vec<f64>,
    /// Orthonormal rows `[s, dim]` whose span the probes are projected away from.
    deflate: Option<Tensor>,
}

impl Sampler<'_> {
    fn run(
        &self,
        op: &mut dyn HvpOperator,
        opts: &TraceOptions,
        rng: &mut ChaCha8Rng,
        on_block: impl FnMut(f64, f64),
    ) -> Result<TraceEstimate> {
        let kind = self.params.tensors[0].kind();
        let start_hvps = op.hvps();
        let mut est = sample_until(
            self.params.len(),
            self.offset,
            &self.offset_per_tensor,
            opts,
            |k| {
                let mut g = rademacher(rng, k, op.dim(), kind, op.device());
                if let Some(q) = &self.deflate {
                    g = &g - g.matmul(&q.tr()).matmul(q);
                }
                let hg = op.apply(&g)?;
                Ok(self.params.blockwise_dot(&g, &hg))
            },
            on_block,
        )?;
        est.hvps = op.hvps() - start_hvps;
        Ok(est)
    }
}

/// The stopping rule over blocks of random samples of a trace: `draw(k)`
/// returns `[k, tensors]` per-tensor contributions of k independent samples,
/// whose row sums are unbiased for the trace less `offset`. Samples until
/// stderr ≤ rel_stderr·|trace| (after `min_probes`) or `max_probes`.
/// `hvps` is left 0 for the caller to fill in.
pub(crate) fn sample_until(
    tensors_len: usize,
    offset: f64,
    offset_per_tensor: &[f64],
    opts: &TraceOptions,
    mut draw: impl FnMut(i64) -> Result<Tensor>,
    mut on_block: impl FnMut(f64, f64),
) -> Result<TraceEstimate> {
    opts.validate()?;
    let mut total = Running::default();
    let mut tensors = vec![Running::default(); tensors_len];
    let converged = loop {
        let n = total.count();
        let estimate = offset + total.mean();
        if n >= opts.min_probes.max(2) && total.stderr() <= opts.rel_stderr * estimate.abs() {
            break true;
        }
        if n >= opts.max_probes {
            break false;
        }
        let k = opts.block.min(opts.max_probes - n) as i64;
        let z = draw(k)?.f_to_kind(Kind::Double)?;
        let z_total = z.f_sum_dim_intlist(1, false, Kind::Double)?;
        let z_total = Vec::<f64>::try_from(&z_total)?;
        let z = Vec::<f64>::try_from(&z.f_reshape([-1])?)?;
        for (j, t) in z_total.iter().enumerate() {
            total.push(*t);
            for (i, r) in tensors.iter_mut().enumerate() {
                r.push(z[j * tensors_len + i]);
            }
        }
        on_block(offset + total.mean(), total.stderr());
    };
    Ok(TraceEstimate {
        trace: offset + total.mean(),
        stderr: total.stderr(),
        probes: total.count(),
        hvps: 0,
        converged,
        per_tensor: tensors
            .iter()
            .zip(offset_per_tensor)
            .map(|(r, o)| o + r.mean())
            .collect(),
        per_tensor_stderr: tensors.iter().map(Running::stderr).collect(),
    })
}

/// Hutchinson's estimator: the mean of vᵀHv over Rademacher probes v.
/// `on_block(trace, stderr)` reports progress after each block of probes.
pub fn hutchinson(
    op: &mut dyn HvpOperator,
    params: &ParamSet,
    opts: &TraceOptions,
    rng: &mut ChaCha8Rng,
    on_block: impl FnMut(f64, f64),
) -> Result<TraceEstimate> {
    let sampler = Sampler {
        params,
        offset: 0.0,
        offset_per_tensor: vec![0.0; params.len()],
        deflate: None,
    };
    sampler.run(op, opts, rng, on_block)
}

/// Hutch++ (Meyer, Musco, Musco & Woodruff 2021) with adaptive stopping:
/// Q = orth(H S) for a Rademacher sketch S of `sketch` columns; the trace is
/// tr(QᵀHQ) exactly plus Hutchinson on (I−QQᵀ)H(I−QQᵀ), sampled until the
/// same relative-stderr rule holds. When a few eigenvalues dominate, the
/// sketch removes most of the variance. Costs 2·sketch HVPs up front.
///
/// Per tensor l (rows P_l): tr(P_l H P_l) = diag-sum over l of
/// QQᵀH + HQQᵀ − QQᵀHQQᵀ, plus the residual samples restricted to l.
pub fn hutchpp(
    op: &mut dyn HvpOperator,
    params: &ParamSet,
    opts: &TraceOptions,
    sketch: usize,
    rng: &mut ChaCha8Rng,
    on_block: impl FnMut(f64, f64),
) -> Result<TraceEstimate> {
    if sketch == 0 || sketch as i64 >= op.dim() {
        return Err(HartError::Invalid(format!(
            "--sketch must be between 1 and the parameter count - 1 ({}), got {sketch}",
            op.dim() - 1
        )));
    }
    let start = op.hvps();
    let kind = params.tensors[0].kind();
    let s = rademacher(rng, sketch as i64, op.dim(), kind, op.device());
    let y = op.apply(&s)?;
    // Reduced QR of the dim × s matrix; rows of `q` are an orthonormal basis of range(HS).
    let (q, _) = Tensor::f_linalg_qr(&y.to_kind(Kind::Double).tr(), "reduced")?;
    let q = q.tr().to_kind(kind).contiguous();
    let w = op.apply(&q)?; // rows H qⱼ
    let (qd, wd) = (q.to_kind(Kind::Double), w.to_kind(Kind::Double));
    let m = qd.matmul(&wd.tr()); // QᵀHQ
    let m = (&m + m.tr()) * 0.5;
    let low = m.trace().f_double_value(&[])?;
    let mq = m.matmul(&qd).to_kind(kind);
    let both = params.blockwise_dot(&q, &w).sum_dim_intlist(0, false, Kind::Double);
    let inner = params.blockwise_dot(&q, &mq).sum_dim_intlist(0, false, Kind::Double);
    let per: Vec<f64> = Vec::<f64>::try_from(&(both * 2.0 - inner))?;
    let sampler = Sampler {
        params,
        offset: low,
        offset_per_tensor: per,
        deflate: Some(q),
    };
    let mut est = sampler.run(op, opts, rng, on_block)?;
    est.hvps = op.hvps() - start;
    Ok(est)
}
