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
use hart::faults::ranger::DefenseChoice;
use hart::faults::{Format, Scope, Shard, Storage};

use super::common::{self, parse_device, parse_scope, progress_bar, DataArgs, ModelArgs, RangerArgs, ShardArgs};

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
    /// How weights are stored, one campaign each (comma-separated, e.g. fp32,int8): fp32 (IEEE bits 0-31) or int8 / int4 (the symmetric codes of `hart quantize` for rank ≥ 2 weights; other tensors stay fp32).
    #[arg(long, default_value = "fp32")]
    pub storage: String,
    /// Gaussian σ from each output channel's max|W| rather than the tensor's; integer storage: one scale per output channel.
    #[arg(long)]
    pub per_channel: bool,
    /// Bit faults: none, range or radar[:G], applied to the faulty stored words (as `hart sweep --defense`; RADAR's key is fixed by --seed); any fault: ranger (activations clamped to their range on --profile-limit training images).
    #[arg(long, default_value = "none")]
    pub defense: DefenseChoice,
    #[command(flatten)]
    pub ranger: RangerArgs,
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
    /// Output directory (resumes the campaign found there; all --shard runs share it).
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
    #[command(flatten)]
    pub sharding: ShardArgs,
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// `fp32,int8`: at least one format, none twice.
fn parse_storages(spec: &str) -> Result<Vec<Storage>> {
    let mut out = vec![];
    for part in spec.split(',').map(str::trim) {
        let s: Storage = part.parse().map_err(|e| anyhow::anyhow!("--storage: {e}"))?;
        if out.contains(&s) {
            bail!("--storage: {s} is listed twice");
        }
        out.push(s);
    }
    Ok(out)
}

pub fn run(a: CampaignArgs) -> Result<()> {
    let shard = a.sharding.resolve()?;
    let storages = parse_storages(&a.storage)?;
    let levels = parse_levels(&a.levels, a.fault)?;
    if let Some(file) = &a.sharding.emit_sbatch {
        return emit_sbatch(&a, file);
    }
    let _out = common::hold_out(&a.out, shard)?;
    let device = parse_device(&a.device)?;
    let data = a.data.load(a.split)?;
    let model = a.model.load(&data, device)?;
    let (model, defense) = a.ranger.defend(a.defense, model, &a.data, &a.out, a.batch_size)?;
    let mut done = vec![];
    let started = Instant::now();
    for &storage in &storages {
        // One storage writes into --out itself; several, into one folder each.
        let (dir, faults) = if storages.len() == 1 {
            (a.out.clone(), a.write_faults.clone())
        } else {
            let tagged = |p: &PathBuf| {
                p.with_file_name(format!(
                    "{storage}-{}",
                    p.file_name().unwrap_or_default().to_string_lossy()
                ))
            };
            (a.out.join(storage.to_string()), a.write_faults.as_ref().map(tagged))
        };
        let cfg = CampaignConfig {
            levels: levels.clone(),
            trials: a.trials,
            seed: a.seed,
            scope: a.scope,
            params: a.params.clone(),
            per_channel: a.per_channel,
            storage,
            defense,
            threshold: a.threshold,
            confidence: a.confidence,
            batch: a.batch_size,
            shard,
            ..CampaignConfig::new(a.fault, vec![])
        };
        let c = prepare(&model, &data, &cfg)?;
        if let Some(path) = &faults {
            replay::write_faults(path, &c).with_context(|| format!("writing {}", path.display()))?;
        }
        let owned = c.owned_trials();
        tracing::info!(trials = owned, %storage, shard = ?shard, "campaign");
        let bar = progress_bar(owned, &format!("campaign {storage}"));
        let t0 = Instant::now();
        c.run(&dir, &mut |n| {
            bar.inc(n);
            let rate = bar.position() as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("{rate:.1} trials/s"));
        })?;
        bar.finish_and_clear();
        if shard == Shard::WHOLE {
            done.push((storage, c.finish(&dir, a.format)?));
        }
    }
    if shard != Shard::WHOLE {
        println!(
            "shard {}/{} done in {:.1}s; once every shard has finished, run the same command without --shard to assemble {}",
            shard.index,
            shard.count,
            started.elapsed().as_secs_f64(),
            a.out.display()
        );
        return Ok(());
    }
    let plot_path = a.plot.clone().unwrap_or_else(|| a.out.join("accuracy.png"));
    let title = format!("{} on {}: {} faults", model.info().arch, data.name, a.fault.name());
    let curves: Vec<(String, &Summary)> = done.iter().map(|(st, s)| (st.to_string(), s)).collect();
    plot::plot(&curves, &title, &plot_path)?;
    if a.json {
        let mut rows = vec![];
        for (storage, s) in &done {
            for l in &s.levels {
                let mut v = serde_json::to_value(l)?;
                v["storage"] = serde_json::json!(storage);
                rows.push(v);
            }
        }
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    for (_, s) in &done {
        print_summary(s);
    }
    println!(
        "{} in {:.1}s; {} and summary.json in {}, plot {}",
        if done.len() == 1 { "campaign" } else { "campaigns" },
        started.elapsed().as_secs_f64(),
        hart::campaign::table::file_name(a.format),
        a.out.display(),
        plot_path.display()
    );
    Ok(())
}

fn emit_sbatch(a: &CampaignArgs, file: &std::path::Path) -> Result<()> {
    let res = a.sharding.resources()?;
    let out = common::emit_sbatch("campaign", &a.out, file, a.sharding.shards, |hart, args, out| {
        sbatch::script(hart, args, out, a.sharding.shards, &res)
    })?;
    println!(
        "wrote {} ({} array tasks); submit with `sbatch {}`; when all have finished, run this command without --emit-sbatch to assemble {}",
        file.display(),
        a.sharding.shards,
        file.display(),
        out.display()
    );
    Ok(())
}

/// A value or "n/a" where one trial leaves it undefined.
fn or_na(v: Option<String>) -> String {
    v.unwrap_or_else(|| "n/a".into())
}

pub fn print_summary(s: &Summary) {
    println!(
        "\n{} storage, defense {}: clean accuracy {:.2}% ({}/{}); {} faults over {} stored bits of {} weights; {} trials per level",
        s.storage,
        s.defense,
        100.0 * s.clean_accuracy,
        s.clean_correct,
        s.total,
        s.fault.name(),
        s.stored_bits,
        s.weights,
        s.trials
    );
    if let Some(r) = &s.ranger {
        println!("{}", common::ranger_line(s.clean_accuracy, r));
    }
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
