//! `hart experiment --shard I/N --phase train|measure|all`: one shard's
//! units (see [`super::units`]), each written to the shared stage cache as
//! it finishes. Shards share `--out` and its cache: a stage two of them need
//! is computed by one while the other waits for it ([`super::cache`]), and
//! a killed shard is simply rerun — what it finished is read back, what it
//! left half-written is cleared and redone.

use std::any::Any;
use std::collections::BTreeMap;
use std::path::Path;

use indicatif::ProgressBar;

use super::config::ExperimentConfig;
use super::manifest;
use super::measure::REGISTRY;
use super::run::{Runner, StageLog, TrainedModel};
use super::units::{owned, Phase, Unit};
use crate::error::{HartError, Result};
use crate::faults::Shard;

/// What a shard did.
pub struct ShardOutput {
    /// Its units, by name.
    pub units: Vec<String>,
    pub log: StageLog,
}

/// The trained model of recipe `recipe` on `arch` with `seed`, or the unit
/// missing from the cache (its `[tune]` search or its training) when the
/// runner's cache may not compute it.
pub fn trained(
    runner: &mut Runner,
    arch: &str,
    recipe: usize,
    seed: u64,
) -> Result<std::result::Result<TrainedModel, Unit>> {
    match runner.train(arch, recipe, seed) {
        Ok(m) => Ok(Ok(m)),
        Err(HartError::NotCached(stage)) if stage.starts_with("tune-") => Ok(Err(Unit::Tune {
            arch: arch.to_string(),
            recipe,
        })),
        Err(HartError::NotCached(_)) => Ok(Err(Unit::Train {
            arch: arch.to_string(),
            recipe,
            seed,
        })),
        Err(e) => Err(e),
    }
}

/// Measurement `section` of `model`, or `None` when one of its stages is
/// missing from the cache and the runner's cache may not compute it.
pub fn measured(runner: &mut Runner, section: usize, model: &TrainedModel) -> Result<Option<Box<dyn Any + Send>>> {
    match REGISTRY[section].measure(runner, model) {
        Ok(r) => Ok(Some(r)),
        Err(HartError::NotCached(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Runs the units of `phase` (train, measure, or both for `all`) that
/// `shard` owns. A measurement's training, done by the training phase, must
/// be in the cache unless `allow_compute` (or `phase` is `all`): a missing
/// one is an error naming it rather than a silent training here.
pub fn run(
    cfg: &ExperimentConfig,
    out: &Path,
    device: tch::Device,
    bar: ProgressBar,
    phase: Phase,
    shard: Shard,
    allow_compute: bool,
) -> Result<ShardOutput> {
    let phases = match phase {
        Phase::Train => vec![Phase::Train],
        Phase::Measure => vec![Phase::Measure],
        Phase::All => vec![Phase::Train, Phase::Measure],
        Phase::Report => return Err(HartError::Invalid("--phase report runs whole: drop --shard".into())),
    };
    let mut mine: Vec<Unit> = phases.iter().flat_map(|&p| owned(cfg, p, shard)).collect();
    // Searches first and the trainings that wait for a search (maybe another
    // shard's) last, so that a shard waits only once it has nothing else to do.
    let tuned = |recipe: usize| {
        cfg.recipes[recipe]
            .hessian_lambda
            .as_ref()
            .is_some_and(|l| l.is_tuned())
    };
    mine.sort_by_key(|u| match u {
        Unit::Tune { .. } => 0,
        Unit::Train { recipe, .. } if !tuned(*recipe) => 1,
        Unit::Train { .. } => 2,
        Unit::Measure { .. } => 3,
    });
    // Trainings, measurement stages, and each measured model read once.
    let mut models_read = std::collections::BTreeSet::new();
    let stages: u64 = mine
        .iter()
        .map(|u| match u {
            Unit::Tune { .. } => 0,
            Unit::Train { .. } => 1,
            Unit::Measure {
                arch,
                recipe,
                seed,
                section,
            } => models_read.insert((arch, recipe, seed)) as u64 + REGISTRY[*section].stages(cfg),
        })
        .sum();
    bar.set_length(stages);
    let test_images = REGISTRY.iter().filter_map(|m| m.test_images(cfg)).max().unwrap_or(0);
    let mut runner = Runner::new(cfg, out, device, bar, test_images)?;
    manifest::started(out, cfg, phase, shard)?;
    let mut models: BTreeMap<(String, usize, u64), TrainedModel> = BTreeMap::new();
    for unit in &mine {
        match unit {
            Unit::Tune { arch, recipe } => {
                runner.tuned_lambda(arch, *recipe)?;
            }
            Unit::Train { arch, recipe, seed } => {
                runner.train(arch, *recipe, *seed)?;
            }
            Unit::Measure {
                arch,
                recipe,
                seed,
                section,
            } => {
                let id = (arch.clone(), *recipe, *seed);
                let model = match models.get(&id) {
                    Some(m) => m.clone(),
                    None => {
                        runner.cache.set_compute(allow_compute || phase == Phase::All);
                        let got = trained(&mut runner, arch, *recipe, *seed)?;
                        runner.cache.set_compute(true);
                        let m = got.map_err(|missing| manifest::missing(cfg, out, &[missing]))?;
                        models.insert(id, m.clone());
                        m
                    }
                };
                REGISTRY[*section].measure(&mut runner, &model)?;
            }
        }
    }
    manifest::finished(out, cfg, phase, shard)?;
    Ok(ShardOutput {
        units: mine.iter().map(|u| u.name(cfg)).collect(),
        log: runner.log,
    })
}
