//! `hart experiment`: baseline vs Hessian-aware training, end to end —
//! train every architecture × recipe × seed, sweep bit flips, measure
//! curvature, compression robustness and landscapes, and report means and
//! 95% intervals over seeds. Every stage is cached by its inputs.

pub mod cache;
pub mod claims;
pub mod config;
pub mod fault_config;
pub mod fault_report;
pub mod fault_results;
pub mod fault_stages;
pub mod recipe;
pub mod report;
pub mod results;
pub mod run;
pub mod stages;
// The seed statistics moved below attack/, which shares them; children still say `super::stats`.
use crate::stats;
pub mod verdicts;

use std::path::{Path, PathBuf};

use indicatif::ProgressBar;

pub use config::ExperimentConfig;
pub use run::{Runner, StageLog};

use crate::error::Result;
use crate::util::write_atomic;
use results::{aggregate, Group, ModelResults, RecipeInfo};

pub struct Output {
    pub groups: Vec<Group>,
    pub report: PathBuf,
    pub log: StageLog,
}

/// Stages per trained model, for the overall progress bar.
fn stages_per_model(cfg: &ExperimentConfig) -> u64 {
    let a = &cfg.analysis;
    2 + a.hessian as u64
        + !a.quantize_bits.is_empty() as u64
        + !a.prune_sparsity.is_empty() as u64
        + a.landscape.is_some() as u64
        + cfg.attack.as_ref().map_or(0, |a| a.methods().len() as u64)
        + cfg.defense.as_ref().map_or(0, |d| d.sweep.len() as u64)
        + cfg.campaign.is_some() as u64
}

pub fn run(cfg: &ExperimentConfig, out: &Path, device: tch::Device, bar: ProgressBar) -> Result<Output> {
    let models = (cfg.archs.len() * cfg.recipes.len() * cfg.seeds.len()) as u64;
    bar.set_length(models * stages_per_model(cfg));
    let mut runner = Runner::new(cfg, out, device, bar)?;
    let trained = runner.train_all()?;
    let mut results = vec![];
    for m in trained {
        let sweep = runner.sweep(&m)?;
        let hessian = if cfg.analysis.hessian {
            Some(runner.hessian(&m)?)
        } else {
            None
        };
        let quantize = if cfg.analysis.quantize_bits.is_empty() {
            vec![]
        } else {
            runner.quantize(&m)?
        };
        let prune = if cfg.analysis.prune_sparsity.is_empty() {
            vec![]
        } else {
            runner.prune(&m)?
        };
        let landscape = runner.landscape(&m)?;
        let attacks = runner.attacks(&m)?;
        let defended = runner.defended_sweeps(&m)?;
        let campaign = runner.campaign(&m)?;
        results.push(ModelResults {
            model: m,
            sweep,
            hessian,
            quantize,
            prune,
            landscape,
            attacks,
            defended,
            campaign,
        });
    }
    let recipes: Vec<RecipeInfo> = cfg
        .recipes
        .iter()
        .map(|r| RecipeInfo {
            name: r.name.clone(),
            regularizer: r.regularizer.clone(),
        })
        .collect();
    let groups = aggregate(&results, &cfg.archs, &recipes);
    let report = report::build(&cfg.name, &groups, &cfg.archs, &out.join("plots"))?;
    let html = out.join("report.html");
    write_atomic(&html, crate::report::to_html(&report).as_bytes())?;
    write_atomic(&out.join("summary.md"), crate::report::to_markdown(&report).as_bytes())?;
    let summary = serde_json::json!({
        "name": cfg.name,
        "config": cfg,
        "groups": groups,
        "not_better": verdicts::not_better(&groups),
    });
    let text = serde_json::to_string_pretty(&summary).map_err(|e| crate::HartError::Invalid(e.to_string()))?;
    write_atomic(&out.join("summary.json"), text.as_bytes())?;
    Ok(Output {
        groups,
        report: html,
        log: runner.log,
    })
}
