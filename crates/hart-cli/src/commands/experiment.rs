//! `hart experiment CONFIG.toml`: the end-to-end comparison with a report.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use hart::experiment::results::Group;
use hart::experiment::stats::MeanCi;
use hart::experiment::{self, cache::Outcome, ExperimentConfig};

use super::common::{parse_device, progress_bar};

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
    println!(
        "{:<16} {:<12} {:>18} {:>22} {:>22}",
        "architecture", "recipe", "test accuracy", "erratic bits", "erratic params"
    );
    for g in &output.groups {
        println!(
            "{:<16} {:<12} {:>18} {:>22} {:>22}",
            g.arch,
            g.recipe,
            g.test_accuracy.percent(),
            g.erratic_bits.to_string(),
            g.erratic_params.to_string()
        );
    }
    print_faults(&output.groups);
    println!("report: {}", output.report.display());
    Ok(())
}

/// The fault sections' headline numbers, when they ran (the report has the rest).
fn print_faults(groups: &[Group]) {
    let change = |c: &Option<MeanCi>| c.map_or("baseline".into(), |c| c.signed_percent());
    if groups.iter().any(|g| !g.attack.is_empty()) {
        println!(
            "\n{:<16} {:<12} {:<7} {:>18} {:>9} {:>18}",
            "architecture", "recipe", "method", "flips to crush", "reached", "vs baseline"
        );
        for g in groups {
            for a in &g.attack {
                println!(
                    "{:<16} {:<12} {:<7} {:>18} {:>9} {:>18}",
                    g.arch,
                    g.recipe,
                    a.method,
                    a.flips.to_string(),
                    format!("{}/{}", a.reached, a.trials),
                    change(&a.change)
                );
            }
        }
    }
    if groups.iter().any(|g| !g.defended.is_empty()) {
        println!(
            "\n{:<16} {:<12} {:<10} {:>22} {:>18}",
            "architecture", "recipe", "defence", "erratic bits", "vs baseline"
        );
        for g in groups {
            for d in &g.defended {
                println!(
                    "{:<16} {:<12} {:<10} {:>22} {:>18}",
                    g.arch,
                    g.recipe,
                    d.defense,
                    d.erratic_bits.to_string(),
                    change(&d.change)
                );
            }
        }
    }
    for g in groups {
        let Some(c) = &g.campaign else { continue };
        let cells: Vec<String> = c
            .levels
            .iter()
            .map(|l| format!("{}: {}", l.level, l.accuracy.percent()))
            .collect();
        println!("{} {} {}: {}", g.arch, g.recipe, c.fault, cells.join(", "));
    }
}
