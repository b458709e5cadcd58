//! `hart experiment CONFIG.toml`: the end-to-end comparison with a report,
//! whole or as shards of a Slurm job (docs/experiment.md, "On a cluster").

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use hart::experiment::sbatch::{self, Arrays};
use hart::experiment::units::{units, Phase};
use hart::experiment::{self, cache::Outcome, shards, ExperimentConfig, StageLog};
use hart::faults::Shard;

use super::common::{self, parse_device, progress_bar, ShardArgs};

#[derive(Args, Debug)]
pub struct ExperimentArgs {
    /// The experiment's TOML configuration (see configs/ and docs/experiment.md).
    pub config: PathBuf,
    /// Output directory (report.html, summary.json, summary.md, plots/, cache/); shards share it.
    #[arg(long, default_value = "hart-experiment")]
    pub out: PathBuf,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// train (every λ search and training), measure (every measurement of the trained models),
    /// report (assemble from the cache: a missing unit is an error naming it), or all.
    #[arg(long, default_value = "all", value_name = "PHASE")]
    pub phase: String,
    /// Let --phase report and --phase measure compute what the cache lacks instead of refusing.
    #[arg(long)]
    pub allow_compute: bool,
    #[command(flatten)]
    pub sharding: ShardArgs,
}

pub fn run(a: ExperimentArgs) -> Result<()> {
    let cfg = ExperimentConfig::from_file(&a.config)?;
    let phase: Phase = a.phase.parse()?;
    if let Some(file) = &a.sharding.emit_sbatch {
        return emit_sbatch(&a, &cfg, file);
    }
    let shard = match phase {
        Phase::Report if a.sharding.shard.is_some() => bail!("--phase report runs whole: drop --shard"),
        Phase::Report => Shard::WHOLE,
        _ => a.sharding.resolve()?,
    };
    match phase {
        Phase::Report => execute(&cfg, &a.out, &a.device, a.allow_compute),
        Phase::All if shard == Shard::WHOLE => execute(&cfg, &a.out, &a.device, true),
        _ => run_shard(&a, &cfg, phase, shard),
    }
}

/// The line `N stages: …` every run prints.
fn print_stages(log: &StageLog) {
    let cached = log.entries.iter().filter(|(_, o)| *o == Outcome::Cached).count();
    println!(
        "{} stages: {} computed, {cached} from the cache",
        log.entries.len(),
        log.entries.len() - cached
    );
}

/// Runs a parsed configuration and prints what happened; shared with `hart demo`.
/// `compute` false: every stage must be cached (the shards' assembly).
pub fn execute(cfg: &ExperimentConfig, out: &Path, device: &str, compute: bool) -> Result<()> {
    let device = parse_device(device)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let _out = common::hold_out(out, Shard::WHOLE)?;
    let bar = progress_bar(0, "experiment");
    let result = experiment::run(cfg, out, device, bar.clone(), compute);
    bar.finish_and_clear();
    let output = result?;
    print_stages(&output.log);
    for line in &output.console {
        println!("{line}");
    }
    println!("report: {}", output.report.display());
    Ok(())
}

fn run_shard(a: &ExperimentArgs, cfg: &ExperimentConfig, phase: Phase, shard: Shard) -> Result<()> {
    let device = parse_device(&a.device)?;
    let _out = common::hold_out(&a.out, shard)?;
    let started = Instant::now();
    let bar = progress_bar(0, &format!("{phase} {}/{}", shard.index, shard.count));
    let result = shards::run(cfg, &a.out, device, bar.clone(), phase, shard, a.allow_compute);
    bar.finish_and_clear();
    let output = result?;
    print_stages(&output.log);
    println!(
        "shard {}/{} of --phase {phase}: {} units in {:.1}s; once every shard has finished: hart experiment {} --out {} --phase {}",
        shard.index,
        shard.count,
        output.units.len(),
        started.elapsed().as_secs_f64(),
        a.config.display(),
        a.out.display(),
        if phase == Phase::Train { "measure --shard I/N" } else { "report" },
    );
    Ok(())
}

fn emit_sbatch(a: &ExperimentArgs, cfg: &ExperimentConfig, file: &Path) -> Result<()> {
    if a.phase != "all" || a.sharding.shard.is_some() {
        bail!("--emit-sbatch writes every phase's jobs: drop --phase and --shard");
    }
    let res = a.sharding.resources()?;
    // No array larger than its phase has units.
    let tasks = |p: Phase| (units(cfg, p).len() as u32).clamp(1, a.sharding.shards.max(1));
    let arrays = Arrays {
        train: tasks(Phase::Train),
        measure: tasks(Phase::Measure),
    };
    let out = common::emit_sbatch("experiment", &a.out, file, a.sharding.shards, |hart, args, out| {
        sbatch::script(hart, args, out, arrays, &res)
    })?;
    println!(
        "wrote {} ({} training and {} measurement shards, then the report); submit with `bash {}`; the report lands in {}",
        file.display(),
        arrays.train,
        arrays.measure,
        file.display(),
        out.display()
    );
    Ok(())
}
