//! `hart experiment`: baseline vs Hessian-aware training, end to end —
//! train every architecture × recipe × seed, then run every measurement of
//! [`measure::REGISTRY`] (bit-flip sweeps, curvature, compression,
//! landscapes, attacks, defences, campaigns) on each trained model, and
//! report means and 95% intervals over seeds. Every stage is cached by its
//! inputs. This loop, the aggregation and the report name no measurement.

pub mod cache;
pub mod claims;
pub mod config;
pub mod matrix;
pub mod measure;
pub mod present;
pub mod recipe;
pub mod report;
pub mod results;
pub mod run;
pub mod sections;
pub mod verdicts;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;

pub use config::ExperimentConfig;
pub use run::{Runner, StageLog};

use crate::error::Result;
use crate::util::write_atomic;
use measure::REGISTRY;
use results::{aggregate, Group, ModelResults, RecipeInfo};

pub struct Output {
    pub groups: Vec<Group>,
    pub report: PathBuf,
    pub log: StageLog,
    /// What `hart experiment` prints after the stage count: each measurement's console lines.
    pub console: Vec<String>,
}

/// Stages per trained model (its training and every measurement's), for the overall progress bar.
fn stages_per_model(cfg: &ExperimentConfig) -> u64 {
    1 + REGISTRY.iter().map(|m| m.stages(cfg)).sum::<u64>()
}

pub fn run(cfg: &ExperimentConfig, out: &Path, device: tch::Device, bar: ProgressBar) -> Result<Output> {
    let models = (cfg.archs.len() * cfg.recipes.len() * cfg.seeds.len()) as u64;
    bar.set_length(models * stages_per_model(cfg));
    let test_images = REGISTRY.iter().filter_map(|m| m.test_images(cfg)).max().unwrap_or(0);
    let mut runner = Runner::new(cfg, out, device, bar, test_images)?;
    let trained = runner.train_all()?;
    let mut results = vec![];
    for model in trained {
        let mut measured = BTreeMap::new();
        for m in REGISTRY {
            measured.insert(m.name(), m.measure(&mut runner, &model)?);
        }
        results.push(ModelResults {
            model,
            results: measured,
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
    let sections = |rows: &[&ModelResults], base: &[&ModelResults], is_base: bool| {
        let mut map = serde_json::Map::new();
        for m in REGISTRY {
            map.extend(m.aggregate(rows, base, is_base)?);
        }
        Ok(map)
    };
    let groups = aggregate(&results, &cfg.archs, &recipes, &sections)?;
    let verdict = matrix::matrix(&groups, cfg.verdict.accuracy_tolerance)?;
    let report = report::build(&cfg.name, &groups, &verdict, &cfg.archs, &out.join("plots"))?;
    let html = out.join("report.html");
    write_atomic(&html, crate::report::to_html(&report).as_bytes())?;
    write_atomic(&out.join("summary.md"), crate::report::to_markdown(&report).as_bytes())?;
    let summary = serde_json::json!({
        "name": cfg.name,
        "config": cfg,
        "groups": groups,
        "verdict_table": verdict,
        "not_better": verdicts::not_better(&groups)?,
    });
    let text = serde_json::to_string_pretty(&summary).map_err(|e| crate::HartError::Invalid(e.to_string()))?;
    write_atomic(&out.join("summary.json"), text.as_bytes())?;
    let mut console = vec![];
    if let Some(t) = matrix::table(&verdict) {
        console.push("verdict per fault model (paired change vs the baseline, 95% interval):".to_string());
        console.extend(present::table_lines(&t).into_iter().skip(1));
        console.push(String::new());
    }
    for m in REGISTRY {
        console.extend(m.console(&groups)?);
    }
    Ok(Output {
        groups,
        report: html,
        log: runner.log,
        console,
    })
}
