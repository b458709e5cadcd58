//! `hart train`: training a zoo architecture from scratch, or a user's own
//! model (ONNX, TorchScript, safetensors state dict) from its weights or
//! re-initialised, with any regulariser; written back in the model's format.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use hart::data::Dataset;
use hart::data::Split;
use hart::eval::evaluate;
use hart::model::init::Reinit;
use hart::model::{LoadOptions, Model, ModelInfo, ModelSource, Normalization, Start};
use hart::train::regularizer::audit::{tracking, Tracking};
use hart::train::{train_with, OptimizerConfig, OptimizerKind, RegularizerConfig, TrainConfig};
use serde::Serialize;

use super::common::{parse_device, progress_bar, write_json, DataArgs};
use super::hessian::RegularizerArgs;

/// The optimiser and schedule of a training run (`hart train`, `hart tune-lambda`).
#[derive(Args, Debug, Clone)]
pub struct TrainingArgs {
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// sgd, adam or rmsprop (PyTorch update rules; the HAT paper uses rmsprop with --momentum 0).
    #[arg(long, default_value = "sgd")]
    pub optimizer: OptimizerKind,
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Clip each step's joint gradient L2 norm to this (torch's clip_grad_norm_); off when absent.
    #[arg(long, allow_hyphen_values = true)]
    pub clip_grad_norm: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

impl TrainingArgs {
    pub fn config(&self) -> Result<TrainConfig> {
        if self.epochs == 0 {
            bail!("--epochs must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("--lr must be a positive number, got {}", self.lr);
        }
        Ok(TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            optimizer: OptimizerConfig {
                kind: self.optimizer,
                lr: self.lr,
                momentum: self.momentum,
                weight_decay: self.weight_decay,
            },
            seed: self.seed,
            device: parse_device(&self.device)?,
            clip_grad_norm: self.clip_grad_norm,
        })
    }
}

/// The model a run trains: a zoo architecture, or a model file of the user's.
#[derive(Args, Debug, Clone)]
pub struct StartArgs {
    /// Zoo architecture (mlp, basenet, lenet5, resnet18-cifar, resnet18, resnet50, deit-tiny), trained from a
    /// fresh initialisation; with --model FILE.safetensors, the architecture of that state dict.
    #[arg(long)]
    pub arch: Option<String>,
    /// Your own model to train, from its weights (fine-tuning): ONNX (.onnx, HART's layer graph), TorchScript
    /// (.pt) or a safetensors state dict (with --arch). Checked against the data's shape and classes first.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// With --model: start from a fresh initialisation of the model's graph instead of its weights (PyTorch's
    /// default per layer type, see docs/models.md; ONNX and state dicts only).
    #[arg(long)]
    pub reinit: bool,
    /// Hold every trainable tensor whose whole name matches this regex fixed (e.g. 'conv.*|bn.*' to fine-tune the
    /// rest): no gradient, no update, no clipping, no noise or bit errors; it comes out bit for bit as it went in.
    #[arg(long, value_name = "REGEX")]
    pub freeze: Option<String>,
    /// Input normalisation baked into an --arch model: auto (the dataset's; a foreign state dict's: none), none,
    /// a dataset name, or MEAN,..:STD,..  Imported graphs keep their own.
    #[arg(long, default_value = "auto")]
    pub normalize: String,
}

impl StartArgs {
    /// The model file, with its combination of options checked (nothing read yet).
    pub fn source(&self) -> Result<Option<ModelSource>> {
        let normalize = match self.normalize.as_str() {
            "auto" => None,
            n => Some(Normalization::parse(n).map_err(anyhow::Error::msg)?),
        };
        match (&self.arch, &self.model) {
            (None, None) => bail!(
                "pass --arch A (a zoo architecture) or --model FILE (your ONNX, TorchScript or safetensors model)"
            ),
            (Some(_), None) if self.reinit => {
                bail!("--reinit needs --model FILE (an --arch model starts from a fresh initialisation already)")
            }
            (Some(_), None) => Ok(None),
            (arch, Some(path)) => Ok(Some(ModelSource::new(path, arch.as_deref(), normalize)?)),
        }
    }

    /// Where training starts, for `data`.
    pub fn start(&self, source: Option<ModelSource>, data: &Dataset) -> Result<Start> {
        Ok(match source {
            Some(s) if self.reinit => Start::Reinit(s),
            Some(s) => Start::Weights(s),
            None => {
                let arch = self.arch.as_deref().unwrap_or_default();
                let mut info = ModelInfo::for_data(arch, data);
                if self.normalize != "auto" {
                    info.normalize = Normalization::parse(&self.normalize).map_err(anyhow::Error::msg)?;
                }
                Start::Arch(info)
            }
        })
    }
}

/// What `--reinit` did and what `--freeze` holds, said before training.
pub fn print_start(reinit: Option<&Reinit>, frozen: &[String]) {
    if let Some(r) = reinit {
        print!(
            "re-initialised {} tensors (PyTorch's default per layer type)",
            r.initialised.len()
        );
        if r.kept.is_empty() {
            println!();
        } else {
            println!(
                "; kept {} of no known layer as in the file: {}",
                r.kept.len(),
                hart::model::freeze::name_list(&r.kept)
            );
        }
    }
    if !frozen.is_empty() {
        println!(
            "frozen: {} tensors ({})",
            frozen.len(),
            hart::model::freeze::name_list(frozen)
        );
    }
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub start: StartArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub regularizer: RegularizerArgs,
    #[command(flatten)]
    pub training: TrainingArgs,
    /// Start from this model's weights (a .safetensors of the same --arch) instead of a fresh
    /// initialisation: train plain first, then fine-tune with a regulariser.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Evaluate on the first N test images after training (0 = skip).
    #[arg(long, default_value_t = 10_000)]
    pub eval_limit: usize,
    /// Output model: .safetensors for --arch models; for --model, the input's own format (.onnx: the input file
    /// with every initializer's trained value, all else unchanged; .pt: the TorchScript module with trained
    /// parameters and buffers) or, for ONNX, .safetensors. The training log goes next to it as .train.json.
    #[arg(long)]
    pub out: PathBuf,
}

/// The `--init` model: a HART safetensors file of the architecture being trained.
fn initial_model(path: &std::path::Path, arch: &str, info: &ModelInfo) -> Result<Model> {
    let opts = LoadOptions {
        arch: Some(arch.to_string()),
        hint: Some(info.clone()),
        normalize: None,
    };
    let model = hart::model::load(path, &opts).context("--init")?;
    if model.graph().is_none() || model.info().arch != arch {
        bail!(
            "--init {}: expected a {arch} model saved by hart (.safetensors)",
            path.display()
        );
    }
    Ok(model)
}

#[derive(Serialize)]
struct TrainLog<'a> {
    arch: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a std::path::Path>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    reinit: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    frozen: Vec<String>,
    dataset: &'a str,
    samples: usize,
    optimizer: OptimizerKind,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
    batch_size: usize,
    seed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    clip_grad_norm: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    init: Option<&'a std::path::Path>,
    regularizer: &'a RegularizerConfig,
    epochs: Vec<hart::train::EpochLog>,
    test: Option<hart::eval::EvalResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audit_tracking: Option<Vec<Tracking>>,
}

/// The readings audit: how each reading follows the Lanczos reference.
fn print_tracking(rows: &[Tracking], checkpoints: usize, p: usize) {
    println!("selective readings against the top-{p} eigenvalue mean (Lanczos), {checkpoints} checkpoints:");
    println!("  reading     pearson  spearman  rule agrees  rule fires");
    for t in rows {
        println!(
            "  {:<10} {:>8.3} {:>9.3} {:>11.1}% {:>10.1}%",
            t.reading,
            t.pearson,
            t.spearman,
            100.0 * t.agreement,
            100.0 * t.fired
        );
    }
}

pub fn run(a: TrainArgs) -> Result<()> {
    let source = a.start.source()?;
    if source.is_none() && a.out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!(
            "--out {}: trained --arch models are saved as .safetensors",
            a.out.display()
        );
    }
    if source.is_some() && a.init.is_some() {
        bail!("--init is for --arch models; --model FILE already starts from FILE's weights");
    }
    let cfg = a.training.config()?;
    let device = cfg.device;
    let regularizer = a.regularizer.config()?;
    let data = a.data.load(Split::Train)?;
    let start = a.start.start(source, &data)?;
    let (mut model, reinit) = match (&a.init, &start) {
        (Some(path), Start::Arch(info)) => {
            tch::manual_seed(cfg.seed as i64);
            (initial_model(path, &info.arch, info)?, None)
        }
        _ => start.build_reporting(&data, cfg.seed)?,
    };
    if let Some(s) = start.source() {
        s.check_out(&model, &a.out)?;
    }
    let frozen = match &a.start.freeze {
        Some(f) => model.freeze(f)?,
        None => vec![],
    };
    print_start(reinit.as_ref(), &frozen);
    model.to_device(device)?;
    let bar = progress_bar(0, "train");
    let epochs = train_with(&model, &data, &cfg, &regularizer, &bar)?;
    bar.finish_and_clear();
    match start.source() {
        Some(s) => s.save(&model, &a.out)?,
        None => model.save(&a.out)?,
    }
    let test = if a.eval_limit > 0 {
        let mut test_args = a.data.clone();
        test_args.limit = Some(a.eval_limit);
        let test_data = test_args.load(Split::Test)?;
        Some(evaluate(&model, &test_data, 256, device)?)
    } else {
        None
    };
    for e in &epochs {
        println!(
            "epoch {:>3}  loss {:.4}  train acc {:6.2}%  {:.1}s",
            e.epoch,
            e.loss,
            100.0 * e.accuracy,
            e.seconds
        );
        if let (Some(errors), Some(bits), Some(loss)) = (e.bit_errors, e.stored_bits, e.perturbed_loss) {
            let steps = e.penalty_evaluated.unwrap_or(0).max(1);
            println!(
                "           {errors} bit errors over {steps} steps of {bits} stored bits (rate {:.3e}); loss at the errors {loss:.4}",
                errors as f64 / (steps as f64 * bits.max(1) as f64)
            );
        }
        if let (Some(t), Some(n), Some(f)) = (e.trace_estimate, e.penalty_evaluated, e.penalty_fired) {
            println!("           minibatch Tr(H) estimate {t:.4e}, penalty fired on {f} of {n} evaluated steps");
        }
    }
    if let Some(t) = &test {
        println!("test accuracy {:.2}% ({}/{})", 100.0 * t.accuracy, t.correct, t.total);
    }
    let audit: Vec<_> = epochs.iter().flat_map(|e| e.audit.iter().cloned()).collect();
    let audit_tracking = (!audit.is_empty()).then(|| tracking(&audit));
    if let Some(t) = &audit_tracking {
        print_tracking(t, audit.len(), regularizer.selective.unwrap_or_default().top_p);
    }
    let arch = start.name();
    let log = TrainLog {
        arch: &arch,
        model: a.start.model.as_deref(),
        reinit: a.start.reinit,
        frozen,
        dataset: &data.name,
        samples: data.len(),
        optimizer: cfg.optimizer.kind,
        lr: cfg.optimizer.lr,
        momentum: cfg.optimizer.momentum,
        weight_decay: cfg.optimizer.weight_decay,
        batch_size: cfg.batch_size,
        seed: cfg.seed,
        clip_grad_norm: cfg.clip_grad_norm,
        init: a.init.as_deref(),
        regularizer: &regularizer,
        epochs,
        test,
        audit_tracking,
    };
    write_json(&a.out.with_extension("train.json"), &log)?;
    println!("saved {}", a.out.display());
    Ok(())
}
