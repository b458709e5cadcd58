//! `hart experiment CONFIG.toml`: the end-to-end comparison with a report.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use hart::experiment::{self, cache::Outcome, ExperimentConfig};

use super::common::{self, parse_device, progress_bar};

#[derive(Args, Debug)]
pub struct ExperimentArgs {
    /// The experiment's TOML configuration (see configs/ and docs/experiment.md).
    pub config: PathBuf,
    /// Output directory (report.html, summary.json, summary.md, plots/, cache/).
    #[arg(long, default_value = "hart-experiment")]
    pub out: PathBuf,
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

pub fn run(a: ExperimentArgs) -> Result<()> {
    let cfg = ExperimentConfig::from_file(&a.config)?;
    execute(&cfg, &a.out, &a.device)
}

/// Runs a parsed configuration and prints what happened; shared with `hart demo`.
pub fn execute(cfg: &ExperimentConfig, out: &Path, device: &str) -> Result<()> {
    let device = parse_device(device)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let _out = common::hold_out(out, hart::faults::Shard::WHOLE)?;
    let bar = progress_bar(0, "experiment");
    let result = experiment::run(cfg, out, device, bar.clone());
    bar.finish_and_clear();
    let output = result?;
    let cached = output.log.entries.iter().filter(|(_, o)| *o == Outcome::Cached).count();
    println!(
        "{} stages: {} computed, {cached} from the cache",
        output.log.entries.len(),
        output.log.entries.len() - cached
    );
    for line in &output.console {
        println!("{line}");
    }
    println!("report: {}", output.report.display());
    Ok(())
}
