//! `hart sweep`: single-bit-flip sweep of a model's float32 tensors.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use hart::data::Split;
use hart::eval::NanPolicy;
use hart::faults::sbatch::script;
use hart::faults::stats::leveugle_sample_size;
use hart::faults::{faultlist, prepare, sweep, BitSet, EngineKind, Format, Scope, Shard, Summary, SweepConfig};

use super::common::{parse_device, progress_bar, DataArgs, ModelArgs};

#[derive(Args, Debug)]
pub struct SweepArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, default_value = "test")]
    pub split: Split,
    /// all, sign, exponent, exponent-msb, mantissa, or positions such as 0,5,23-30 (0 = mantissa LSB, 31 = sign).
    #[arg(long, default_value = "all")]
    pub bits: String,
    /// Only tensors whose full name matches this regular expression.
    #[arg(long)]
    pub params: Option<String>,
    /// all: every float32 tensor (weights, biases, BatchNorm running statistics); params: trainable parameters only.
    #[arg(long, default_value = "all", value_parser = parse_scope)]
    pub scope: Scope,
    /// Sweep K randomly chosen elements (all selected bits of each) and report estimates with confidence intervals.
    #[arg(long, value_name = "K")]
    pub sample_params: Option<u64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Evaluate exactly the flips of this CSV `param,index,bit`.
    #[arg(long, value_name = "FILE.csv")]
    pub faults: Option<PathBuf>,
    /// Also write the sweep's flips as a fault list.
    #[arg(long, value_name = "FILE.csv")]
    pub write_faults: Option<PathBuf>,
    /// A flip is erratic when its RAD exceeds this.
    #[arg(long, default_value_t = 0.1)]
    pub threshold: f64,
    /// How a sample whose logits hold a NaN counts: wrong (HART's rule) or argmax (torch.argmax's: the first NaN's index is the prediction).
    #[arg(long, default_value = "wrong")]
    pub nan_policy: NanPolicy,
    /// Count every sample of every flip (otherwise counting stops once the erratic verdict is settled).
    #[arg(long)]
    pub exact_rad: bool,
    /// Output directory (resumes the sweep found there).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value = "parquet")]
    pub format: Format,
    /// Run shard I of N (default: the Slurm array task, if any).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Write a Slurm array script for this sweep instead of running it.
    #[arg(long, value_name = "FILE")]
    pub emit_sbatch: Option<PathBuf>,
    /// Array tasks (shards) for --emit-sbatch.
    #[arg(long, default_value_t = 8)]
    pub shards: u32,
    /// CPUs per array task for --emit-sbatch.
    #[arg(long, default_value_t = 2)]
    pub cpus_per_task: u32,
    /// auto (fast where the graph allows), generic, or reference (brute force).
    #[arg(long, default_value = "auto")]
    pub engine: EngineKind,
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print the statistical fault-injection sample size (Leveugle et al. 2009) for this error margin, e.g. 0.01.
    #[arg(long)]
    pub margin: Option<f64>,
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Parallel workers for the fast engine on the CPU, each with one libtorch thread (default: libtorch's thread count, i.e. the cores or OMP_NUM_THREADS).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    match s {
        "all" => Ok(Scope::All),
        "params" => Ok(Scope::Params),
        _ => Err(format!("unknown scope {s:?} (all or params)")),
    }
}

pub fn run(a: SweepArgs) -> Result<()> {
    let shard = match &a.shard {
        Some(s) => Shard::parse(s)?,
        None => Shard::from_env(|k| std::env::var(k).ok())?.unwrap_or(Shard::WHOLE),
    };
    if let Some(file) = &a.emit_sbatch {
        return emit_sbatch(&a, file);
    }
    let cfg = SweepConfig {
        bits: BitSet::parse(&a.bits)?,
        scope: a.scope,
        params: a.params.clone(),
        sample: a.sample_params.map(|k| (k, a.seed)),
        faults: a.faults.clone(),
        threshold: a.threshold,
        exact_rad: a.exact_rad,
        engine: a.engine,
        batch: a.batch_size,
        shard,
        confidence: a.confidence,
        jobs: a.jobs.map(|j| j as usize),
        nan_policy: a.nan_policy,
        ..SweepConfig::new()
    };
    if let Some(m) = a.margin {
        if !(m > 0.0 && m < 1.0) {
            bail!("--margin {m} must be in (0, 1)");
        }
    }
    let device = parse_device(&a.device)?;
    let data = a.data.load(a.split)?;
    let model = a.model.load(&data, device)?;
    let sw = prepare(&model, &data, &cfg)?;
    if let Some(m) = a.margin {
        let n = leveugle_sample_size(sw.space.population(), m, a.confidence);
        let per_element = sw.space.bits.len() as u64;
        println!(
            "sample size (Leveugle et al. 2009) for ±{:.2}% at {:.0}% confidence: {n} of {} flips (--sample-params {})",
            100.0 * m,
            100.0 * a.confidence,
            sw.space.population(),
            n.div_ceil(per_element.max(1))
        );
    }
    if let Some(path) = &a.write_faults {
        faultlist::write(path, &sw.space).with_context(|| format!("writing {}", path.display()))?;
    }
    let owned = sw.owned_flips();
    tracing::info!(flips = owned, units = sw.owned().len(), shard = ?shard, "sweeping");
    let bar = progress_bar(owned, "sweep");
    let started = Instant::now();
    sw.run(&a.out, &mut |n| {
        bar.inc(n);
        let rate = bar.position() as f64 / started.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!("{rate:.0} flips/s"));
    })?;
    bar.finish_and_clear();
    let summary = sweep::finish(&a.out, a.format)?;
    print_summary(&summary);
    println!(
        "{} flips in {:.1}s; table {} and summary.json in {}",
        owned,
        started.elapsed().as_secs_f64(),
        a.format.file_name(),
        a.out.display()
    );
    Ok(())
}

fn emit_sbatch(a: &SweepArgs, file: &std::path::Path) -> Result<()> {
    if a.shards == 0 {
        bail!("--shards must be at least 1");
    }
    // The same sweep minus what differs per task or only concerns emitting.
    let drop_with_value = ["--out", "--shard", "--emit-sbatch", "--shards", "--cpus-per-task"];
    let raw: Vec<String> = std::env::args().skip_while(|s| s != "sweep").skip(1).collect();
    let mut args = vec![];
    let mut it = raw.into_iter();
    while let Some(arg) = it.next() {
        let name = arg.split('=').next().unwrap_or("").to_string();
        if drop_with_value.contains(&name.as_str()) {
            if !arg.contains('=') {
                it.next();
            }
            continue;
        }
        args.push(absolute_if_path(&arg));
    }
    let hart = std::env::current_exe().context("locating the hart binary")?;
    let out = std::path::absolute(&a.out)?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let text = script(&hart, &args, &out, a.shards, a.cpus_per_task);
    hart::util::write_atomic(file, text.as_bytes())?;
    println!(
        "wrote {} ({} array tasks); submit with `sbatch {}`, then `hart merge {}/shard-* --out {}`",
        file.display(),
        a.shards,
        file.display(),
        out.display(),
        out.display()
    );
    Ok(())
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

pub fn print_summary(s: &Summary) {
    println!(
        "clean accuracy {:.2}% ({}/{}); {} flips, {} erratic bits (RAD > {}), {} of {} parameters erratic; {} rows stopped early",
        100.0 * s.clean_accuracy,
        s.clean_correct,
        s.total,
        s.counts.flips,
        s.counts.erratic_bits,
        s.threshold,
        s.counts.erratic_params,
        s.counts.params,
        s.early_exit_rows
    );
    if let Some(e) = &s.estimate {
        println!(
            "estimate over all {} flips: {:.3}% erratic ({:.3}–{:.3}% at {:.0}% confidence), about {:.0} ({:.0}–{:.0}) erratic bits",
            e.population_flips,
            100.0 * e.erratic_fraction,
            100.0 * e.erratic_fraction_ci.0,
            100.0 * e.erratic_fraction_ci.1,
            100.0 * e.confidence,
            e.erratic_bits_estimate,
            e.erratic_bits_ci.0,
            e.erratic_bits_ci.1
        );
    }
    println!(
        "\n{:<32} {:>10} {:>10} {:>8} {:>10}",
        "layer", "flips", "erratic", "params", "erratic"
    );
    for l in &s.per_layer {
        println!(
            "{:<32} {:>10} {:>10} {:>8} {:>10}",
            l.layer, l.counts.flips, l.counts.erratic_bits, l.counts.params, l.counts.erratic_params
        );
    }
    println!("\n{:>4} {:<9} {:>10} {:>10}", "bit", "field", "flips", "erratic");
    for b in &s.per_bit {
        println!("{:>4} {:<9} {:>10} {:>10}", b.bit, b.field, b.flips, b.erratic_bits);
    }
    println!("\nRAD histogram (5% bins): negative {}", s.rad_histogram.negative);
    for (k, c) in s.rad_histogram.counts.iter().enumerate().filter(|(_, c)| **c > 0) {
        println!(
            "  [{:>3}%, {:>3}%{} {c}",
            5 * k,
            5 * (k + 1),
            if k == 19 { "]" } else { ")" }
        );
    }
}
