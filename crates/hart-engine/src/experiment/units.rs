//! The experiment's work units, its phases, and which shard of `--shard
//! I/N` runs which unit.
//!
//! A unit is what one shard does in one go: a `[tune]` search, a training
//! (architecture × recipe × seed), or one measurement of one trained model.
//! The assignment depends on the config and N alone, never on what the
//! cache holds, so a rerun of shard I does the same units and an assembling
//! run knows whose unit is missing.

use super::config::ExperimentConfig;
use super::measure::REGISTRY;
use super::recipe;
use crate::error::{HartError, Result};
use crate::faults::Shard;

/// Which of the experiment's stages a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Every `[tune]` search and training.
    Train,
    /// Every measurement of every trained model (the trainings must be cached).
    Measure,
    /// The report, from the cache alone (a missing unit is an error).
    Report,
    /// Everything a plain run does: train, measure, report.
    All,
}

impl std::str::FromStr for Phase {
    type Err = HartError;
    fn from_str(s: &str) -> Result<Phase> {
        match s {
            "train" => Ok(Phase::Train),
            "measure" => Ok(Phase::Measure),
            "report" => Ok(Phase::Report),
            "all" => Ok(Phase::All),
            _ => Err(HartError::Invalid(format!(
                "--phase {s:?}: expected train, measure, report or all"
            ))),
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Train => "train",
            Phase::Measure => "measure",
            Phase::Report => "report",
            Phase::All => "all",
        })
    }
}

/// One unit of work; `arch` is an architecture or a `[[model]]` entry's name
/// (they never clash), `recipe` indexes the config's recipes, `section` [`REGISTRY`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unit {
    Tune {
        arch: String,
        recipe: usize,
    },
    Train {
        arch: String,
        recipe: usize,
        seed: u64,
    },
    Measure {
        arch: String,
        recipe: usize,
        seed: u64,
        section: usize,
    },
}

impl Unit {
    /// How logs and errors name it: `tune lenet5/hat`, `train lenet5/hat/seed1`, `sweep lenet5/hat/seed1`.
    pub fn name(&self, cfg: &ExperimentConfig) -> String {
        let r = |i: &usize| cfg.recipes[*i].name.as_str();
        match self {
            Unit::Tune { arch, recipe } => format!("tune {arch}/{}", r(recipe)),
            Unit::Train { arch, recipe, seed } => format!("train {arch}/{}/seed{seed}", r(recipe)),
            Unit::Measure {
                arch,
                recipe,
                seed,
                section,
            } => format!("{} {arch}/{}/seed{seed}", REGISTRY[*section].name(), r(recipe)),
        }
    }

    /// The phase whose array runs it.
    pub fn phase(&self) -> Phase {
        match self {
            Unit::Measure { .. } => Phase::Measure,
            _ => Phase::Train,
        }
    }

    /// Expected cost (image passes), by which shards are balanced.
    fn cost(&self, cfg: &ExperimentConfig) -> f64 {
        match self {
            Unit::Tune { recipe, .. } => recipe::tune_cost(cfg, *recipe),
            Unit::Train { recipe, .. } => recipe::train_cost(cfg, *recipe),
            Unit::Measure { section, .. } => REGISTRY[*section].cost(cfg),
        }
    }
}

/// Every unit of `phase` (train or measure), in run order: an
/// architecture's recipes in config order, a tuned recipe's search before
/// its trainings; per model, the measurements in [`REGISTRY`] order.
pub fn units(cfg: &ExperimentConfig, phase: Phase) -> Vec<Unit> {
    let mut out = vec![];
    for arch in &cfg.model_names() {
        for (recipe, r) in cfg.recipes.iter().enumerate() {
            let arch = arch.clone();
            if phase == Phase::Train && r.hessian_lambda.as_ref().is_some_and(|l| l.is_tuned()) {
                out.push(Unit::Tune {
                    arch: arch.clone(),
                    recipe,
                });
            }
            for &seed in &cfg.seeds {
                match phase {
                    Phase::Train => out.push(Unit::Train {
                        arch: arch.clone(),
                        recipe,
                        seed,
                    }),
                    Phase::Measure => out.extend((0..REGISTRY.len()).filter(|&s| REGISTRY[s].stages(cfg) > 0).map(
                        |section| Unit::Measure {
                            arch: arch.clone(),
                            recipe,
                            seed,
                            section,
                        },
                    )),
                    Phase::Report | Phase::All => {}
                }
            }
        }
    }
    out
}

/// The shard (0-based) each of `costs`' units goes to, out of `count`: the
/// costliest unit first, each to the least loaded shard (lowest index on a
/// tie), so that no shard ends more than the costliest unit above the mean.
pub fn assign(costs: &[f64], count: u32) -> Vec<u32> {
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by(|&a, &b| costs[b].total_cmp(&costs[a]).then(a.cmp(&b)));
    let mut load = vec![0.0f64; count.max(1) as usize];
    let mut owner = vec![0u32; costs.len()];
    for u in order {
        let (s, _) = load
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1).then(a.0.cmp(&b.0)))
            .unwrap_or((0, &0.0));
        load[s] += costs[u].max(0.0);
        owner[u] = s as u32;
    }
    owner
}

/// The shard of `count` that runs each unit of `phase`, beside the unit.
pub fn owners(cfg: &ExperimentConfig, phase: Phase, count: u32) -> Vec<(Unit, u32)> {
    let all = units(cfg, phase);
    let costs: Vec<f64> = all.iter().map(|u| u.cost(cfg)).collect();
    all.into_iter().zip(assign(&costs, count)).collect()
}

/// The units of `phase` that `shard` runs, in run order.
pub fn owned(cfg: &ExperimentConfig, phase: Phase, shard: Shard) -> Vec<Unit> {
    owners(cfg, phase, shard.count)
        .into_iter()
        .filter(|(_, s)| *s == shard.index)
        .map(|(u, _)| u)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costliest_first_to_the_least_loaded_shard() {
        let owner = assign(&[3.0, 9.0, 4.0, 5.0, 1.0], 2);
        // By hand, loads after each: 9→s0 (9,0); 5→s1 (9,5); 4→s1 (9,9); 3→s0 on the tie (12,9); 1→s1.
        assert_eq!(owner, vec![0, 0, 1, 1, 1]);
        assert_eq!(assign(&[1.0; 4], 8), vec![0, 1, 2, 3]);
        assert_eq!(assign(&[], 3), Vec::<u32>::new());
    }

    /// Two architectures, two seeds, plain and HAT with a searched λ; no Hessian, no pruning.
    fn cfg() -> ExperimentConfig {
        let base = crate::experiment::config::tests::MINIMAL
            .replace("archs = [\"lenet5\"]", "archs = [\"mlp\", \"lenet5\"]\nseeds = [0, 1]");
        let text = format!("{base}hessian_lambda = \"tuned\"\n[analysis]\nhessian = false\nprune_sparsity = []\n");
        ExperimentConfig::parse(&text).unwrap()
    }

    #[test]
    fn every_unit_in_exactly_one_shard_and_reruns_agree() {
        let cfg = cfg();
        let train = units(&cfg, Phase::Train);
        // Two architectures × (plain × 2 seeds + one search + hat × 2 seeds).
        assert_eq!(train.len(), 10);
        assert_eq!(train[2].name(&cfg), "tune mlp/hat");
        let measure = units(&cfg, Phase::Measure);
        // 8 models × (sweep, quantize): hessian, pruning, landscape and the fault sections are off.
        assert_eq!(measure.len(), 16);
        for phase in [Phase::Train, Phase::Measure] {
            let all = units(&cfg, phase);
            let mut seen = vec![];
            for i in 0..3 {
                let mine = owned(&cfg, phase, Shard { index: i, count: 3 });
                assert_eq!(mine, owned(&cfg, phase, Shard { index: i, count: 3 }));
                seen.extend(mine);
            }
            assert_eq!(seen.len(), all.len());
            assert!(all.iter().all(|u| seen.contains(u)));
        }
        assert!("compute".parse::<Phase>().unwrap_err().to_string().contains("--phase"));
    }

    /// `[[model]]` entries are units as architectures are, after them, and every one lands in one shard.
    #[test]
    fn model_entries_are_units_beside_the_architectures() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("own.onnx");
        std::fs::write(&file, b"").unwrap();
        let base =
            crate::experiment::config::tests::MINIMAL.replace("archs = [\"lenet5\"]", "archs = [\"mlp\"]\nseeds = [0]");
        let text = format!(
            "{base}[analysis]\nhessian = false\nprune_sparsity = []\nquantize_bits = []\n[[model]]\nname = \"own\"\npath = {:?}\n",
            file.display().to_string()
        );
        let cfg = ExperimentConfig::parse(&text).unwrap();
        assert_eq!(cfg.model_names(), ["mlp", "own"]);
        let train: Vec<String> = units(&cfg, Phase::Train).iter().map(|u| u.name(&cfg)).collect();
        assert_eq!(
            train,
            [
                "train mlp/plain/seed0",
                "train mlp/hat/seed0",
                "train own/plain/seed0",
                "train own/hat/seed0"
            ]
        );
        let measure = units(&cfg, Phase::Measure);
        assert_eq!(measure.len(), 4, "the sweep of each of 4 models");
        let mut seen = vec![];
        for i in 0..2 {
            seen.extend(owned(&cfg, Phase::Measure, Shard { index: i, count: 2 }));
        }
        assert_eq!(seen.len(), measure.len());
        assert!(measure.iter().all(|u| seen.contains(u)));
    }
}
