//! Arguments and helpers shared by several subcommands.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use hart::data::{self, DataSpec, Dataset, Split};
use hart::faults::ranger::{self, DefenseChoice};
use hart::faults::Defense;
use hart::model::Model;
use indicatif::{ProgressBar, ProgressStyle};
use tch::Device;

/// Splitting a long job over a Slurm job array: run one shard of it, or
/// write the array script (`hart sweep`, `hart campaign`, `hart experiment`).
#[derive(Args, Debug, Clone)]
pub struct ShardArgs {
    /// Run shard I of N (default: the Slurm array task, if any).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Write a Slurm array script for this job instead of running it.
    #[arg(long, value_name = "FILE")]
    pub emit_sbatch: Option<PathBuf>,
    /// Array tasks (shards) for --emit-sbatch.
    #[arg(long, default_value_t = 8)]
    pub shards: u32,
    /// CPUs per array task for --emit-sbatch.
    #[arg(long, default_value_t = 2)]
    pub cpus_per_task: u32,
    /// Time limit of each job for --emit-sbatch (Slurm's format: 30, 2:00:00, 1-12:00:00).
    #[arg(long, value_name = "LIMIT")]
    pub time: Option<String>,
    /// Partition the jobs go to for --emit-sbatch (default: the cluster's).
    #[arg(long)]
    pub partition: Option<String>,
}

impl ShardArgs {
    /// The shard to run: `--shard`, else the Slurm array task, else the whole job.
    pub fn resolve(&self) -> Result<hart::faults::Shard> {
        Ok(match &self.shard {
            Some(s) => hart::faults::Shard::parse(s)?,
            None => hart::faults::Shard::from_env(|k| std::env::var(k).ok())?.unwrap_or(hart::faults::Shard::WHOLE),
        })
    }

    /// What each emitted job asks for (--cpus-per-task, --time, --partition), checked.
    pub fn resources(&self) -> Result<hart::faults::sbatch::Resources> {
        Ok(hart::faults::sbatch::Resources::new(
            self.cpus_per_task,
            self.time.clone(),
            self.partition.clone(),
        )?)
    }
}

#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// fashion-mnist, mnist, kmnist, cifar10, cifar100, imagenet, a directory (format detected), or a .npz/.safetensors file with arrays x, y [, x_test, y_test].
    #[arg(long, default_value = "fashion-mnist")]
    pub dataset: String,
    /// Root of the named datasets other than fashion-mnist.
    #[arg(long, env = "HART_DATA")]
    pub data_dir: Option<PathBuf>,
    /// Use only the first N records (deterministic order).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Crop size for ImageNet-style folders.
    #[arg(long, default_value_t = 224)]
    pub image_size: usize,
}

impl DataArgs {
    pub fn load(&self, split: Split) -> Result<Dataset> {
        if self.limit == Some(0) {
            bail!("--limit must be at least 1");
        }
        let spec = DataSpec {
            dataset: self.dataset.clone(),
            split,
            limit: self.limit,
            data_dir: self.data_dir.clone(),
            image_size: self.image_size,
        };
        let data = data::load(&spec)?;
        tracing::info!(dataset = %data.name, split = %split, n = data.len(), "loaded data");
        Ok(data)
    }
}

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model file: .safetensors (HART or a PyTorch state dict with --arch), .onnx, or TorchScript .pt.
    #[arg(long)]
    pub model: PathBuf,
    /// Zoo architecture for a state dict without HART metadata, or an .onnx graph the weights belong to.
    #[arg(long)]
    pub arch: Option<String>,
    /// Input normalisation for foreign state dicts: none, a dataset name, or MEAN,..:STD,..
    #[arg(long)]
    pub normalize: Option<String>,
}

impl ModelArgs {
    pub fn load(&self, data: &Dataset, device: Device) -> Result<Model> {
        let model = hart::model::open(
            &self.model,
            self.arch.as_deref(),
            self.normalize.as_deref(),
            data,
            device,
        )?;
        hart::model::check_input(&model, data).with_context(|| format!("--model {}", self.model.display()))?;
        Ok(model)
    }
}

pub fn parse_device(s: &str) -> Result<Device> {
    let device = match s {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        s => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => Device::Cuda(i),
            _ => bail!("unknown device {s:?} (cpu, cuda or cuda:N)"),
        },
    };
    if let Device::Cuda(i) = device {
        let n = tch::Cuda::device_count();
        if i as i64 >= n {
            bail!("--device {s}: CUDA is not available here ({n} GPU(s) visible)");
        }
    }
    Ok(device)
}

/// Holds `--out` for this run of a resumable command, taken before any work
/// so that a second run on the same directory is refused at once; dropping
/// it (on success or error) releases the directory.
pub fn hold_out(out: &std::path::Path, shard: hart::faults::Shard) -> Result<hart::outdir::OutDirLock> {
    Ok(hart::outdir::OutDirLock::acquire(out, shard.index, shard.count)?)
}

pub fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(&format!(
        "{what} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} ETA {{eta}} {{msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

pub fn write_json(path: &std::path::Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    hart::util::write_atomic(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// `--emit-sbatch FILE`: writes `script(hart, args, out)` for this command's
/// arguments minus `--out`, `--shard`, `--phase` and the emitting options;
/// returns the absolute output directory (created).
pub fn emit_sbatch(
    subcommand: &str,
    out: &std::path::Path,
    file: &std::path::Path,
    shards: u32,
    script: impl Fn(&std::path::Path, &[String], &std::path::Path) -> String,
) -> Result<PathBuf> {
    if shards == 0 {
        bail!("--shards must be at least 1");
    }
    // The script is written by a rename, which would replace a device such as /dev/null.
    if file.exists() && !file.is_file() {
        bail!("--emit-sbatch {}: not a regular file", file.display());
    }
    // The same command minus what differs per task or only concerns emitting.
    let args = forwarded_args(
        subcommand,
        &[
            "--out",
            "--shard",
            "--phase",
            "--emit-sbatch",
            "--shards",
            "--cpus-per-task",
            "--time",
            "--partition",
        ],
    );
    let hart = std::env::current_exe().context("locating the hart binary")?;
    let out = std::path::absolute(out)?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    hart::util::write_atomic(file, script(&hart, &args, &out).as_bytes())?;
    Ok(out)
}

/// This process's arguments after `subcommand`, without the options in
/// `drop` (and their values), existing relative paths made absolute: the
/// command each Slurm array task runs, wherever it starts.
fn forwarded_args(subcommand: &str, drop: &[&str]) -> Vec<String> {
    let raw: Vec<String> = std::env::args().skip_while(|s| s != subcommand).skip(1).collect();
    let mut args = vec![];
    let mut it = raw.into_iter();
    while let Some(arg) = it.next() {
        let name = arg.split('=').next().unwrap_or("").to_string();
        if drop.contains(&name.as_str()) {
            if !arg.contains('=') {
                it.next();
            }
            continue;
        }
        args.push(absolute_if_path(&arg));
    }
    args
}

/// Array tasks may start in another directory: make existing relative paths absolute.
fn absolute_if_path(arg: &str) -> String {
    let p = std::path::Path::new(arg);
    if !arg.starts_with('-') && p.is_relative() && p.exists() {
        if let Ok(abs) = std::path::absolute(p) {
            return abs.display().to_string();
        }
    }
    arg.to_string()
}

/// `--scope`: all or params.
pub fn parse_scope(s: &str) -> Result<hart::faults::Scope, String> {
    s.parse().map_err(|e: hart::HartError| e.to_string())
}

/// `--defense ranger`'s profile (`hart sweep`, `attack`, `campaign`).
#[derive(Args, Debug, Clone)]
pub struct RangerArgs {
    /// --defense ranger: each activation's bounds are its [min, max] over the first N training images.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub profile_limit: usize,
}

impl RangerArgs {
    /// The model the run measures and the word-level defence left to the
    /// engine. Under `ranger` the bounds are profiled on the first
    /// --profile-limit training images of `data`'s dataset, written to
    /// `out/ranger.json` and built into the model's graph.
    pub fn defend(
        &self,
        choice: DefenseChoice,
        model: Model,
        data: &DataArgs,
        out: &std::path::Path,
        batch: usize,
    ) -> Result<(Model, Defense)> {
        let profile = DataSpec {
            dataset: data.dataset.clone(),
            split: Split::Train,
            limit: Some(self.profile_limit),
            data_dir: data.data_dir.clone(),
            image_size: data.image_size,
        };
        let (model, defense, bounds) = ranger::defend(choice, model, &profile, out, batch)?;
        if let Some(bounds) = bounds {
            println!(
                "ranger: {} activations clamped to their range on {} training images ({})",
                bounds.layers.len(),
                bounds.profile_images,
                out.join("ranger.json").display()
            );
        }
        Ok((model, defense))
    }
}

/// The clean accuracy line of a run under Ranger: defended beside undefended.
pub fn ranger_line(clean_accuracy: f64, r: &ranger::Report) -> String {
    format!(
        "clean accuracy {:.2}% under ranger's bounds ({} activations), {:.2}% without them",
        100.0 * clean_accuracy,
        r.activations,
        100.0 * r.undefended_accuracy
    )
}
