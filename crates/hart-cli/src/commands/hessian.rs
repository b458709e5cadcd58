//! `hart hessian`: curvature of any model on a data slice (trace with a
//! standard error, per-tensor traces, top eigenvalues, spectral density),
//! and the `hart train` flags of Hessian-aware training and its baselines.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use hart::data::Split;
use hart::faults::{Scope, Storage};
use hart::hessian::{measure, AnalysisConfig, LayerSelection, ParamSet, TraceMethod, TraceOptions};
use hart::train::regularizer::{Reading, Selective};
use hart::train::{HessianMethod, NoiseKind, RegularizerConfig, RegularizerKind};

use super::common::{parse_device, progress_bar, write_json, DataArgs, ModelArgs};

/// Images used when `--limit` is not given: the whole training set would take hours.
const DEFAULT_LIMIT: usize = 1000;

#[derive(Args, Debug)]
pub struct HessianArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Split whose loss is differentiated (default: the training loss).
    #[arg(long, default_value = "train")]
    pub split: Split,
    /// Images per forward pass; the Hessian is always of the mean loss over all --limit images.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Stop the trace estimate once its standard error is this fraction of it.
    #[arg(long, default_value_t = 0.02)]
    pub rel_stderr: f64,
    /// Never stop on fewer probes than this.
    #[arg(long, default_value_t = 10)]
    pub min_probes: usize,
    /// Never draw more probes than this (the report says if the target was missed).
    #[arg(long, default_value_t = 1000)]
    pub max_probes: usize,
    /// Trace estimator: hutchinson, hutchpp (Hutch++: exact on a low-rank sketch, Hutchinson on
    /// the rest) or gauss-newton (Σ_y p(y|x)‖∇log p(y|x)‖² from gradients only: equal to Tr(H)
    /// for networks linear in each single weight — linear, conv, ReLU, pooling, eval-mode
    /// BatchNorm — and a PSD surrogate, the Fisher/GN trace, with tanh, GELU and the like).
    #[arg(long, default_value = "hutchinson")]
    pub method: String,
    /// Hutch++ sketch size (costs 2× this many HVPs up front).
    #[arg(long, default_value_t = 10)]
    pub sketch: usize,
    /// Largest eigenvalues to compute by Lanczos (0 = skip).
    #[arg(long, default_value_t = 1)]
    pub top_k: usize,
    /// Relative residual at which an eigenvalue counts as converged.
    #[arg(long, default_value_t = 1e-3)]
    pub eig_tol: f64,
    /// Lanczos step budget for the eigenvalues.
    #[arg(long, default_value_t = 100)]
    pub max_lanczos: usize,
    /// Also estimate the eigenvalue density (stochastic Lanczos quadrature); plotted with --out.
    #[arg(long)]
    pub density: bool,
    #[arg(long, default_value_t = 1)]
    pub density_runs: usize,
    #[arg(long, default_value_t = 80)]
    pub density_steps: usize,
    /// Parameters to take the Hessian over: all, last:K (layers) or a REGEX on tensor names.
    #[arg(long, default_value = "all")]
    pub layers: String,
    /// Directory for hessian.json and the density plots (density.png, density.svg).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

pub fn run(a: HessianArgs) -> Result<()> {
    let device = parse_device(&a.device)?;
    let layers: LayerSelection = a.layers.parse().context("--layers")?;
    let mut data_args = a.data.clone();
    data_args.limit = Some(a.data.limit.unwrap_or(DEFAULT_LIMIT));
    let data = data_args.load(a.split)?;
    let model = a.model.load(&data, device)?;
    let params = ParamSet::select(&model, &layers).context("--layers")?;
    let cfg = AnalysisConfig {
        method: a.method.parse::<TraceMethod>()?,
        trace: TraceOptions {
            rel_stderr: a.rel_stderr,
            min_probes: a.min_probes,
            max_probes: a.max_probes,
            ..TraceOptions::default()
        },
        sketch: a.sketch,
        top_k: a.top_k,
        eig_tol: a.eig_tol,
        max_lanczos_steps: a.max_lanczos,
        density: a.density.then_some((a.density_runs, a.density_steps)),
        seed: a.seed,
    };
    let bar = progress_bar(cfg.hvp_budget() as u64, "HVPs");
    let report = measure(&model, &data, &params, a.batch_size, &cfg, &bar)?;
    bar.finish_and_clear();
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write_json(&dir.join("hessian.json"), &report)?;
        if let Some(d) = &report.density {
            let title = format!(
                "Hessian eigenvalue density: {} on {} ({} images)",
                a.model.model.display(),
                data.name,
                data.len()
            );
            for ext in ["png", "svg"] {
                d.plot(&dir.join(format!("density.{ext}")), &title)?;
            }
        }
    }
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "Hessian of the mean cross-entropy of {} over {} {} images ({}, eval mode)",
            a.model.model.display(),
            data.len(),
            data.name,
            a.split
        );
        println!("{}", report.table());
        if let Some(dir) = &a.out {
            println!("report written to {}", dir.display());
        }
    }
    Ok(())
}

/// `hart train` flags selecting and tuning the regulariser.
#[derive(Args, Debug, Clone)]
pub struct RegularizerArgs {
    /// none, hessian (HAT: CE + λ·Tr(H)), sam (SAM/ASAM), fd-hessian (finite-difference trace
    /// penalty), noise (Gaussian weight noise in every training forward pass) or randbet (random bit
    /// error training on integer codes); see docs/hessian.md and docs/hardening.md.
    #[arg(long, default_value = "none")]
    pub regularizer: String,
    /// λ, the weight of the trace penalty.
    #[arg(long, default_value_t = 0.01, allow_hyphen_values = true)]
    pub hessian_lambda: f64,
    /// Trace estimator of HAT: gauss-newton (‖Jᵀr‖², E[rrᵀ] = softmax Hessian; double
    /// back-propagation; equals Tr(H) for networks linear in each single weight, a PSD
    /// Fisher/GN surrogate with tanh/GELU or train-mode BatchNorm) or hutchinson (vᵀHv,
    /// triple back-propagation, exact but noisier).
    #[arg(long, default_value = "gauss-newton")]
    pub hessian_method: String,
    /// Regularised steps over which λ rises linearly to its value (0 = no warm-up).
    #[arg(long, default_value_t = 0)]
    pub hessian_warmup: usize,
    /// Hutchinson probes per penalised step.
    #[arg(long, default_value_t = 1)]
    pub hessian_probes: usize,
    /// Regularise every K-th step only (the others are plain steps).
    #[arg(long, default_value_t = 1)]
    pub hessian_every: usize,
    /// Penalised parameters: all, last:K (layers) or a REGEX on tensor names.
    #[arg(long, default_value = "all")]
    pub hessian_layers: String,
    /// Fire the penalty only when a curvature reading exceeds its running mean.
    #[arg(long)]
    pub hessian_selective: bool,
    /// Curvature reading of --hessian-selective: diag (top share of v⊙Hv, free), power (top-p
    /// Ritz values of one warm-started power step, p products) or lanczos (top-p Ritz values of
    /// a max(2p, p+10)-step Lanczos run, the paper's reading; the one that tracks the top-p
    /// eigenvalue mean, see docs/hessian.md).
    #[arg(long, default_value = "lanczos")]
    pub hessian_reading: String,
    /// p, the eigenvalues the power and lanczos readings average.
    #[arg(long, default_value_t = 50)]
    pub hessian_top_p: usize,
    /// Share of diagonal entries the diag reading averages.
    #[arg(long, default_value_t = 0.01)]
    pub hessian_diag_frac: f64,
    /// Take the penalty on the first N samples of each minibatch (0 = all of it).
    #[arg(long, default_value_t = 0)]
    pub hessian_batch: usize,
    /// Every N-th penalised step, record each selective reading (diag, power with p = 5,
    /// lanczos) beside the converged Lanczos mean of the top-p eigenvalues, and print how
    /// well each tracks it (0 = off; costly: for measuring the rule, not for training).
    #[arg(long, default_value_t = 0)]
    pub audit_readings: usize,
    /// SAM neighbourhood radius ρ.
    #[arg(long, default_value_t = 0.05)]
    pub sam_rho: f64,
    /// ASAM: scale SAM's perturbation by |w| (use a larger --sam-rho, e.g. 0.5).
    #[arg(long)]
    pub asam: bool,
    /// Finite-difference step σ of fd-hessian.
    #[arg(long, default_value_t = 0.01)]
    pub fd_sigma: f64,
    /// η of noise: each forward pass adds N(0, (η·max|W|)²) per tensor (additive) or
    /// multiplies by 1 + η·N(0, 1) (relative).
    #[arg(long, default_value_t = 0.05, allow_hyphen_values = true)]
    pub noise_std: f64,
    /// additive (σ = η·max|W| per tensor, as `hart campaign --fault gaussian`) or relative (σ = η·|w|).
    #[arg(long, default_value = "additive")]
    pub noise_kind: String,
    /// Tensors noise perturbs and randbet hits, as in `hart campaign`: all, params or conv
    /// (trainable tensors only; randbet only the integer-stored weights of rank ≥ 2).
    #[arg(long, default_value = "all", value_parser = super::common::parse_scope)]
    pub scope: Scope,
    /// Only tensors whose full name matches this regular expression (noise, randbet).
    #[arg(long)]
    pub params: Option<String>,
    /// Integer codes randbet trains on: int8 or int4 (the symmetric per-tensor codes of `hart quantize`).
    #[arg(long, default_value = "int8")]
    pub storage: String,
    /// randbet's bit-error rate p: each step, every stored bit of the chosen weights flips with
    /// probability p for the second of the two averaged losses.
    #[arg(long, default_value_t = 0.01, allow_hyphen_values = true)]
    pub bit_error_rate: f64,
    /// Clamp every weight tensor (rank ≥ 2) to [−W, W] before training and after each update,
    /// with any --regularizer or alone.
    #[arg(long, value_name = "W", allow_hyphen_values = true)]
    pub clip_weights: Option<f64>,
    /// --clip-weights W bounds each tensor by W·max|W₀| (W₀: its weights when training starts).
    #[arg(long)]
    pub clip_relative: bool,
}

// Enumerations are parsed here rather than by clap so a bad value ends in one
// `error:` line like every other bad input.
impl RegularizerArgs {
    pub fn config(&self) -> Result<RegularizerConfig> {
        let cfg = RegularizerConfig {
            kind: self.regularizer.parse::<RegularizerKind>()?,
            lambda: self.hessian_lambda,
            method: self.hessian_method.parse::<HessianMethod>()?,
            warmup: self.hessian_warmup,
            probes: self.hessian_probes,
            every: self.hessian_every,
            layers: self.hessian_layers.parse().context("--hessian-layers")?,
            selective: self.hessian_selective.then_some(Selective {
                reading: self.hessian_reading.parse::<Reading>()?,
                top_p: self.hessian_top_p,
                diag_frac: self.hessian_diag_frac,
            }),
            sub_batch: self.hessian_batch,
            audit_every: self.audit_readings,
            sam_rho: self.sam_rho,
            sam_adaptive: self.asam,
            fd_sigma: self.fd_sigma,
            noise_std: self.noise_std,
            noise_kind: self.noise_kind.parse::<NoiseKind>()?,
            scope: self.scope,
            params: self.params.clone(),
            storage: self
                .storage
                .parse::<Storage>()
                .map_err(|e| anyhow::anyhow!("--storage: {e}"))?,
            bit_error_rate: self.bit_error_rate,
            clip_weights: self.clip_weights,
            clip_relative: self.clip_relative,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}
