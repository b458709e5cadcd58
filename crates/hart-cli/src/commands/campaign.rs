//! `hart campaign`: accuracy under random faults at several levels (bit-error
//! rates of flips or stuck-at cells, or analog Gaussian noise), many trials
//! per level, with per-level statistics, a table, a summary and a plot.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use hart::campaign::model::parse_levels;
use hart::campaign::run::Summary;
use hart::campaign::{plot, prepare, replay, sbatch, CampaignConfig, FaultModel, LevelStats};
use hart::data::Split;
use hart::faults::{Format, Scope, Shard};

use super::common::{forwarded_args, parse_device, progress_bar, DataArgs, ModelArgs};

#[derive(Args, Debug)]
pub struct CampaignArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, default_value = "test")]
    pub split: Split,
    /// bitflip, stuck-at-0, stuck-at-1 (levels are bit-error rates per stored bit) or gaussian (levels are σ / max|W|).
    #[arg(long)]
    pub fault: FaultModel,
    /// Comma-separated levels, e.g. 1e-6,1e-5,1e-4 (rates) or 0.01,0.05,0.1 (σ).
    #[arg(long, allow_hyphen_values = true)]
    pub levels: String,
    /// How the weights are stored: fp32 (IEEE-754 bits, as `hart sweep`).
    #[arg(long, default_value = "fp32")]
    pub storage: String,
    /// Gaussian σ from each output channel's max|W| rather than the tensor's.
    #[arg(long)]
    pub per_channel: bool,
    /// Random trials per level.
    #[arg(long, default_value_t = 100)]
    pub trials: u64,
    /// Every trial's faults follow from (seed, level, trial).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// all: every float32 tensor (weights, biases, BatchNorm statistics); params: trainable parameters only.
    #[arg(long, default_value = "all", value_parser = parse_scope)]
    pub scope: Scope,
    /// Only tensors whose full name matches this regular expression.
    #[arg(long)]
    pub params: Option<String>,
    /// A trial is erratic when its RAD exceeds this.
    #[arg(long, default_value_t = 0.1)]
    pub threshold: f64,
    /// Confidence of the intervals (Student t for the mean accuracy, Wilson for the erratic share).
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Output directory (resumes the campaign found there).
    #[arg(long)]
    pub out: PathBuf,
    /// Table format of DIR/trials.*: parquet or csv.
    #[arg(long, default_value = "parquet")]
    pub format: Format,
    /// The plot (.png or .svg; default DIR/accuracy.png).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Write every trial's changed bits as a grouped fault list (group = LEVEL:TRIAL) for `hart sweep --faults`.
    #[arg(long, value_name = "FILE.csv")]
    pub write_faults: Option<PathBuf>,
    /// Print the per-level statistics as JSON.
    #[arg(long)]
    pub json: bool,
    /// Run shard I of N (default: the Slurm array task, if any); all shards share --out.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Write a Slurm array script for this campaign instead of running it.
    #[arg(long, value_name = "FILE")]
    pub emit_sbatch: Option<PathBuf>,
    /// Array tasks (shards) for --emit-sbatch.
    #[arg(long, default_value_t = 8)]
    pub shards: u32,
    /// CPUs per array task for --emit-sbatch.
    #[arg(long, default_value_t = 2)]
    pub cpus_per_task: u32,
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    match s {
        "all" => Ok(Scope::All),
        "params" => Ok(Scope::Params),
        _ => Err(format!("unknown scope {s:?} (all or params)")),
    }
}

pub fn run(a: CampaignArgs) -> Result<()> {
    let shard = match &a.shard {
        Some(s) => Shard::parse(s)?,
        None => Shard::from_env(|k| std::env::var(k).ok())?.unwrap_or(Shard::WHOLE),
    };
    if a.storage != "fp32" {
        bail!("--storage {:?}: only fp32 is available", a.storage);
    }
    let cfg = CampaignConfig {
        levels: parse_levels(&a.levels, a.fault)?,
        trials: a.trials,
        seed: a.seed,
        scope: a.scope,
        params: a.params.clone(),
        per_channel: a.per_channel,
        threshold: a.threshold,
        confidence: a.confidence,
        batch: a.batch_size,
        shard,
        ..CampaignConfig::new(a.fault, vec![])
    };
    if let Some(file) = &a.emit_sbatch {
        return emit_sbatch(&a, file);
    }
    let device = parse_device(&a.device)?;
    let data = a.data.load(a.split)?;
    let model = a.model.load(&data, device)?;
    let c = prepare(&model, &data, &cfg)?;
    if let Some(path) = &a.write_faults {
        replay::write_faults(path, &c).with_context(|| format!("writing {}", path.display()))?;
    }
    let owned = c.owned_trials();
    tracing::info!(trials = owned, shard = ?shard, "campaign");
    let bar = progress_bar(owned, "campaign");
    let started = Instant::now();
    c.run(&a.out, &mut |n| {
        bar.inc(n);
        let rate = bar.position() as f64 / started.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!("{rate:.1} trials/s"));
    })?;
    bar.finish_and_clear();
    if shard != Shard::WHOLE {
        println!(
            "shard {}/{} done ({owned} trials in {:.1}s); once every shard has finished, run the same command without --shard to assemble {}",
            shard.index,
            shard.count,
            started.elapsed().as_secs_f64(),
            a.out.display()
        );
        return Ok(());
    }
    let summary = c.finish(&a.out, a.format)?;
    let plot_path = a.plot.clone().unwrap_or_else(|| a.out.join("accuracy.png"));
    let title = format!(
        "{} on {}: {} faults, {} storage",
        model.info().arch,
        data.name,
        a.fault.name(),
        a.storage
    );
    plot::plot(&[(a.storage.clone(), &summary)], &title, &plot_path)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary.levels)?);
        return Ok(());
    }
    print_summary(&summary);
    println!(
        "{owned} trials in {:.1}s; {} and summary.json in {}, plot {}",
        started.elapsed().as_secs_f64(),
        hart::campaign::table::file_name(a.format),
        a.out.display(),
        plot_path.display()
    );
    Ok(())
}

fn emit_sbatch(a: &CampaignArgs, file: &std::path::Path) -> Result<()> {
    if a.shards == 0 {
        bail!("--shards must be at least 1");
    }
    let args = forwarded_args(
        "campaign",
        &["--out", "--shard", "--emit-sbatch", "--shards", "--cpus-per-task"],
    );
    let hart = std::env::current_exe().context("locating the hart binary")?;
    let out = std::path::absolute(&a.out)?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let text = sbatch::script(&hart, &args, &out, a.shards, a.cpus_per_task);
    hart::util::write_atomic(file, text.as_bytes())?;
    println!(
        "wrote {} ({} array tasks); submit with `sbatch {}`, then run this command without --emit-sbatch to assemble",
        file.display(),
        a.shards,
        file.display()
    );
    Ok(())
}

/// A value or "n/a" where one trial leaves it undefined.
fn or_na(v: Option<String>) -> String {
    v.unwrap_or_else(|| "n/a".into())
}

pub fn print_summary(s: &Summary) {
    println!(
        "clean accuracy {:.2}% ({}/{}); {} faults over {} stored bits of {} weights; {} trials per level",
        100.0 * s.clean_accuracy,
        s.clean_correct,
        s.total,
        s.fault.name(),
        s.stored_bits,
        s.weights,
        s.trials
    );
    let conf = format!("{:.0}% CI", 100.0 * s.confidence);
    println!(
        "\n{:>10} {:>9} {:>8} {:>9} {:>17} {:>24} {:>12} {:>12}",
        "level", "mean acc", "sd", "p5 acc", conf, "erratic share", "faults", "expected"
    );
    for l in &s.levels {
        print_level(l);
    }
}

fn print_level(l: &LevelStats) {
    let pct = |v: f64| format!("{:.2}%", 100.0 * v);
    let sd = or_na(l.sd_accuracy.map(|v| format!("{:.2}", 100.0 * v)));
    let ci = or_na(l.ci95.map(|(lo, hi)| format!("{:.2}–{:.2}", 100.0 * lo, 100.0 * hi)));
    let share = format!(
        "{:.1}% ({:.1}–{:.1})",
        100.0 * l.share_erratic,
        100.0 * l.share_erratic_ci.0,
        100.0 * l.share_erratic_ci.1
    );
    println!(
        "{:>10} {:>9} {:>8} {:>9} {:>17} {:>24} {:>12.2} {:>12.2}",
        format!("{:e}", l.level),
        pct(l.mean_accuracy),
        sd,
        pct(l.p5_accuracy),
        ci,
        share,
        l.mean_faults,
        l.expected_faults
    );
}
