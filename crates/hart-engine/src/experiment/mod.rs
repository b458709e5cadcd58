//! `hart experiment`: baseline vs Hessian-aware training, end to end —
//! train every architecture (and `[[model]]` file, [`user_models`]) × recipe × seed, then run every measurement of
//! [`measure::REGISTRY`] (bit-flip sweeps, curvature, compression,
//! landscapes, attacks, defences, campaigns) on each trained model, and
//! report means and 95% intervals over seeds. Every stage is cached by its
//! inputs. This loop, the aggregation and the report name no measurement.
//! On a cluster the stages run as shards first ([`shards`], `--shard I/N`
//! `--phase train|measure`), and this loop then assembles the report from
//! the shared cache.

pub mod cache;
pub mod claims;
pub mod config;
pub mod manifest;
pub mod matrix;
pub mod measure;
pub mod model_entry;
pub mod present;
pub mod recipe;
pub mod report;
pub mod results;
pub mod run;
pub mod sbatch;
pub mod sections;
pub mod shards;
pub mod units;
pub mod user_models;
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
use units::{units, Phase, Unit};

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

/// Trains, measures and reports. With `compute` false (an assembling run
/// after the shards) every stage must come from the cache: the units
/// missing are one error naming them all, and nothing is computed.
pub fn run(cfg: &ExperimentConfig, out: &Path, device: tch::Device, bar: ProgressBar, compute: bool) -> Result<Output> {
    let names = cfg.model_names();
    let models = (names.len() * cfg.recipes.len() * cfg.seeds.len()) as u64;
    bar.set_length(models * stages_per_model(cfg));
    let test_images = REGISTRY.iter().filter_map(|m| m.test_images(cfg)).max().unwrap_or(0);
    let mut runner = Runner::new(cfg, out, device, bar, test_images)?;
    runner.cache.set_compute(compute);
    let mut missing: Vec<Unit> = vec![];
    let mut trained = vec![];
    for unit in units(cfg, Phase::Train) {
        if let Unit::Train { arch, recipe, seed } = unit {
            match shards::trained(&mut runner, &arch, recipe, seed)? {
                Ok(m) => trained.push((recipe, m)),
                // A missing search stands for its recipe's trainings too.
                Err(u) if !missing.contains(&u) => missing.push(u),
                Err(_) => {}
            }
        }
    }
    let mut results = vec![];
    for (recipe, model) in trained {
        let mut measured = BTreeMap::new();
        for (section, m) in REGISTRY.iter().enumerate() {
            match shards::measured(&mut runner, section, &model)? {
                Some(r) => {
                    measured.insert(m.name(), r);
                }
                None => missing.push(Unit::Measure {
                    arch: model.arch.clone(),
                    recipe,
                    seed: model.seed,
                    section,
                }),
            }
        }
        results.push(ModelResults {
            model,
            results: measured,
        });
    }
    if !missing.is_empty() {
        return Err(manifest::missing(cfg, out, &missing));
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
    let groups = aggregate(&results, &names, &recipes, &sections)?;
    let verdict = matrix::matrix(&groups, cfg.verdict.accuracy_tolerance)?;
    let mut report = report::build(&cfg.name, &groups, &verdict, &names, &out.join("plots"))?;
    let mut console = vec![];
    if let Some(t) = matrix::table(&verdict) {
        console.push("verdict per fault model (paired change vs the baseline, 95% interval):".to_string());
        console.extend(present::table_lines(&t).into_iter().skip(1));
        console.push(String::new());
    }
    for m in REGISTRY {
        console.extend(m.console(&groups)?);
    }
    if !cfg.models.is_empty() {
        present::name_models(&mut report, &mut console);
    }
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
    Ok(Output {
        groups,
        report: html,
        log: runner.log,
        console,
    })
}
