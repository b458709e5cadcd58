//! `hart experiment CONFIG.toml`: the end-to-end comparison with a report.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use hart::experiment::fault_report;
use hart::experiment::results::Group;
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

/// Prints a table in columns as wide as their widest cell.
fn print_table((header, rows): (Vec<String>, Vec<Vec<String>>)) {
    let width = |i: usize| {
        rows.iter()
            .chain([&header])
            .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    println!();
    for row in [&header].into_iter().chain(&rows) {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, &w)| format!("{c:<w$}")).collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

/// The fault sections' headline tables, when they ran (the report has the rest).
fn print_faults(groups: &[Group]) {
    for table in [fault_report::attack_table(groups), fault_report::defended_table(groups)]
        .into_iter()
        .flatten()
    {
        print_table(table);
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
