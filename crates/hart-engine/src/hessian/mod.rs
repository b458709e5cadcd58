//! Curvature of a model's loss: Hessian-vector products by exact double
//! back-propagation over a whole data slice ([`operator`]), trace by
//! Hutchinson or Hutch++ with a relative-standard-error stopping rule
//! ([`trace`]), top eigenvalues by Lanczos ([`lanczos`]), the eigenvalue
//! density by stochastic Lanczos quadrature ([`density`]), and per-tensor
//! traces from the same probes. Works on any [`crate::model::Model`]: graph
//! models and TorchScript alike, as it needs only the named parameters.

pub mod density;
pub mod gauss_newton;
pub mod lanczos;
pub mod operator;
pub mod params;
pub mod probe;
mod report;
pub mod trace;

use std::str::FromStr;

use indicatif::ProgressBar;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use density::Density;
pub use lanczos::TopEigen;
pub use operator::{data_hessian, HvpOperator, LossHessian, Progressed};
pub use params::{LayerSelection, ParamSet};
pub use report::{HessianReport, Named};
pub use trace::{hutchinson, hutchpp, TraceEstimate, TraceOptions};

use crate::error::{HartError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceMethod {
    Hutchinson,
    #[serde(rename = "hutchpp")]
    HutchPlusPlus,
    /// The Gauss–Newton trace from gradients ([`gauss_newton`]): equal to
    /// Tr(H) for networks linear in each single weight, a PSD surrogate otherwise.
    #[serde(rename = "gauss-newton")]
    GaussNewton,
}

impl FromStr for TraceMethod {
    type Err = HartError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "hutchinson" => Ok(Self::Hutchinson),
            "hutchpp" | "hutch++" => Ok(Self::HutchPlusPlus),
            "gauss-newton" | "gn" => Ok(Self::GaussNewton),
            _ => Err(HartError::Invalid(format!(
                "unknown trace method {s:?} (hutchinson, hutchpp, gauss-newton)"
            ))),
        }
    }
}

/// The random stream of one part of an analysis (1 = trace, 2 = eigenvalues,
/// 3 = density): separate streams, so adding a part does not change the others.
pub fn seeded(seed: u64, part: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ part)
}

/// Everything `hart hessian` computes, and how hard it tries.
#[derive(Debug, Clone)]
pub struct AnalysisConfig {
    pub method: TraceMethod,
    pub trace: TraceOptions,
    /// Hutch++ sketch columns.
    pub sketch: usize,
    /// Top eigenvalues to compute (0 = none).
    pub top_k: usize,
    /// Relative residual at which a Ritz value counts as converged.
    pub eig_tol: f64,
    pub max_lanczos_steps: usize,
    /// Stochastic Lanczos quadrature: (runs, steps), or none.
    pub density: Option<(usize, usize)>,
    pub seed: u64,
}

impl AnalysisConfig {
    /// The most Hessian-vector products the analysis may take: a progress bar's length.
    pub fn hvp_budget(&self) -> usize {
        let density = self.density.map_or(0, |(runs, steps)| runs * steps);
        self.trace.max_probes + 2 * self.sketch + self.max_lanczos_steps + density
    }
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            method: TraceMethod::Hutchinson,
            trace: TraceOptions::default(),
            sketch: 10,
            top_k: 1,
            eig_tol: 1e-3,
            max_lanczos_steps: 100,
            density: None,
            seed: 0,
        }
    }
}

/// Trace, per-tensor traces, top eigenvalues and (optionally) the spectral
/// density of the operator `op` over `params`. `bar` counts HVPs.
/// [`TraceMethod::GaussNewton`] needs the model and data: use [`analyze_with_trace`].
pub fn analyze(
    op: &mut dyn HvpOperator,
    params: &ParamSet,
    cfg: &AnalysisConfig,
    bar: &ProgressBar,
) -> Result<HessianReport> {
    analyze_with_trace(op, params, cfg, None, bar)
}

/// Everything `cfg` asks for, of the mean loss of `model` over `data`
/// (batches of `batch_size`, on the model's device), whatever the trace
/// method: what `hart hessian` and `hart.hessian` compute. `bar` counts HVPs.
pub fn measure(
    model: &crate::model::Model,
    data: &crate::data::Dataset,
    params: &ParamSet,
    batch_size: usize,
    cfg: &AnalysisConfig,
    bar: &ProgressBar,
) -> Result<HessianReport> {
    let start = std::time::Instant::now();
    let trace = match cfg.method {
        TraceMethod::GaussNewton => {
            bar.set_message("Gauss–Newton trace");
            let on_block = |t: f64, se: f64| bar.set_message(format!("trace {t:.4e} ± {se:.2e}"));
            let mut rng = seeded(cfg.seed, 1);
            Some(gauss_newton::gauss_newton_trace(
                model, data, params, batch_size, &cfg.trace, &mut rng, on_block,
            )?)
        }
        _ => None,
    };
    let mut op = data_hessian(model, data, params, batch_size, model.device())?;
    let mut report = analyze_with_trace(&mut op, params, cfg, trace, bar)?;
    // The report's clock starts at the HVP operator; a Gauss–Newton trace ran before it.
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// [`analyze`], with the trace estimated by the caller when `trace` is given
/// (the Gauss–Newton estimator reads the model and data, not an HVP operator).
pub fn analyze_with_trace(
    op: &mut dyn HvpOperator,
    params: &ParamSet,
    cfg: &AnalysisConfig,
    trace: Option<TraceEstimate>,
    bar: &ProgressBar,
) -> Result<HessianReport> {
    cfg.trace.validate()?;
    let start = std::time::Instant::now();
    let kind = params.tensors[0].kind();
    let rng = |part: u64| seeded(cfg.seed, part);
    let mut op = Progressed { inner: op, bar };
    bar.set_message("trace");
    let on_block = |t: f64, se: f64| bar.set_message(format!("trace {t:.4e} ± {se:.2e}"));
    let trace = match (trace, cfg.method) {
        (Some(t), _) => t,
        (None, TraceMethod::Hutchinson) => hutchinson(&mut op, params, &cfg.trace, &mut rng(1), on_block)?,
        (None, TraceMethod::HutchPlusPlus) => hutchpp(&mut op, params, &cfg.trace, cfg.sketch, &mut rng(1), on_block)?,
        (None, TraceMethod::GaussNewton) => {
            return Err(HartError::Invalid(
                "the Gauss–Newton trace needs the model and data (analyze_with_trace)".into(),
            ))
        }
    };
    tracing::info!(
        trace = trace.trace,
        stderr = trace.stderr,
        hvps = trace.hvps,
        "trace done"
    );
    let top = if cfg.top_k > 0 {
        bar.set_message("top eigenvalues");
        let top = lanczos::top_eigenvalues(
            &mut op,
            cfg.top_k,
            cfg.max_lanczos_steps,
            cfg.eig_tol,
            kind,
            &mut rng(2),
        )?;
        if !top.converged {
            tracing::warn!(
                steps = top.steps,
                "top eigenvalues did not converge to --eig-tol; raise --max-lanczos"
            );
        }
        Some(top)
    } else {
        None
    };
    let density = match cfg.density {
        Some((runs, steps)) => {
            bar.set_message("spectral density");
            Some(density::spectral_density(&mut op, runs, steps, kind, &mut rng(3))?)
        }
        None => None,
    };
    Ok(HessianReport::new(
        params,
        cfg,
        trace,
        top,
        density,
        op.hvps(),
        start.elapsed().as_secs_f64(),
    ))
}
