//! A campaign from start to finish: choose the tensors, run the clean pass
//! once, then for each level every trial of this shard (durably, in units of
//! a few trials, so a killed run resumes), then statistics, table and summary.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::draw::{trial_rng, BitFault, StoredBits};
use super::eval::Evaluator;
use super::model::FaultModel;
use super::noise::noisy;
use super::patch::{Change, Patch};
use super::stats::{level_stats, LevelStats, Trial};
use super::table;
use crate::compress::quantize::Granularity;
use crate::compress::targets::Snapshot;
use crate::data::Dataset;
use crate::error::{HartError, Result};
use crate::faults::clean::{clean_pass, Clean, STORE_BYTES};
use crate::faults::hash::{bytes_hash, data_hash, model_hash};
use crate::faults::inject::Injector;
use crate::faults::journal::Hashes;
use crate::faults::ranger::{self, Report};
use crate::faults::space::{select_targets, Scope, Target};
use crate::faults::sweep::float_tensors;
use crate::faults::verdict::rad;
use crate::faults::{Defense, Format, Shard, Storage};
use crate::model::Model;
use crate::util::write_atomic;

#[derive(Debug, Clone)]
pub struct CampaignConfig {
    pub fault: FaultModel,
    pub levels: Vec<f64>,
    pub trials: u64,
    pub seed: u64,
    pub scope: Scope,
    pub params: Option<String>,
    /// Gaussian σ from each output channel's max|W| instead of the tensor's,
    /// and one integer-storage scale per output channel.
    pub per_channel: bool,
    pub storage: Storage,
    /// Applied to the faulty stored words of bit-fault trials; RADAR's key is fixed by `seed`.
    pub defense: Defense,
    pub threshold: f64,
    pub confidence: f64,
    pub batch: usize,
    /// Not part of the configuration hash: shards of one campaign share a directory.
    pub shard: Shard,
}

impl CampaignConfig {
    pub fn new(fault: FaultModel, levels: Vec<f64>) -> Self {
        CampaignConfig {
            fault,
            levels,
            trials: 100,
            seed: 0,
            scope: Scope::All,
            params: None,
            per_channel: false,
            storage: Storage::Fp32,
            defense: Defense::None,
            threshold: 0.1,
            confidence: 0.95,
            batch: 1000,
            shard: Shard::WHOLE,
        }
    }
}

/// Trials per journal part: a kill loses at most this many.
pub const UNIT_TRIALS: u64 = 10;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub hashes: Hashes,
    pub config: serde_json::Value,
    pub units: usize,
    pub clean_correct: i64,
    pub total: i64,
    pub stored_bits: u64,
    pub weights: u64,
}

pub const MANIFEST: &str = "campaign.json";
const VERSION: u32 = 1;

/// Trials `trials` of level `level` (an index into the levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    pub id: usize,
    pub level: usize,
    pub first: u64,
    pub end: u64,
}

pub struct Campaign<'a> {
    pub model: &'a Model,
    pub data: &'a Dataset,
    pub targets: Vec<Target>,
    pub clean: Clean,
    pub bits: StoredBits,
    /// The stored words (and armed defence) of every float tensor.
    pub inject: Injector,
    /// Per target, its index in `inject.stored.tensors`.
    pub stored_of: Vec<usize>,
    pub cfg: CampaignConfig,
    pub manifest: Manifest,
    /// Ranger's bounds, when the model carries them.
    pub ranger: Option<Report>,
    /// Integer storage quantizes the model in place; this puts it back on drop.
    _restore: Option<Snapshot>,
}

/// Checks the settings, selects the tensors and runs the clean pass.
pub fn prepare<'a>(model: &'a Model, data: &'a Dataset, cfg: &CampaignConfig) -> Result<Campaign<'a>> {
    let bad = |m: String| Err(HartError::Invalid(m));
    if cfg.levels.is_empty() {
        return bad("--levels lists no level".into());
    }
    if cfg.trials == 0 {
        return bad("--trials must be at least 1".into());
    }
    if !(0.0..1.0).contains(&cfg.threshold) {
        return bad(format!("--threshold {} must be in [0, 1)", cfg.threshold));
    }
    if !(cfg.confidence > 0.0 && cfg.confidence < 1.0) {
        return bad(format!("--confidence {} must be in (0, 1)", cfg.confidence));
    }
    if cfg.batch == 0 {
        return bad("--batch-size must be at least 1".into());
    }
    if cfg.per_channel && cfg.fault.is_bit() && cfg.storage == Storage::Fp32 {
        return bad("--per-channel applies to --fault gaussian and to integer --storage scales".into());
    }
    if !cfg.fault.is_bit() && cfg.defense != Defense::None {
        return bad("--defense applies to bit faults, not to Gaussian noise".into());
    }
    model.check_finite()?;
    let targets = select_targets(model, cfg.scope, cfg.params.as_deref())?;
    let restore = (cfg.storage != Storage::Fp32).then(|| Snapshot::take(&float_tensors(model)));
    let granularity = Granularity::of(cfg.per_channel);
    let inject = Injector::new(model, cfg.storage, granularity, cfg.defense, cfg.seed)?;
    let stored_of = targets
        .iter()
        .map(|t| {
            inject
                .stored
                .index(&t.name)
                .ok_or_else(|| HartError::Invalid(format!("{} is not stored", t.name)))
        })
        .collect::<Result<Vec<_>>>()?;
    let numel: Vec<i64> = targets.iter().map(|t| t.numel).collect();
    let widths: Vec<u32> = stored_of
        .iter()
        .map(|&s| inject.stored.tensors[s].width as u32)
        .collect();
    let bits = StoredBits::new(&numel, &widths);
    let clean = clean_pass(model, data, cfg.batch, model.device(), STORE_BYTES)?;
    let ranger = ranger::report(model, data, cfg.batch, crate::eval::NanPolicy::Wrong)?;
    let mut config = serde_json::json!({
        "fault": cfg.fault,
        "levels": cfg.levels,
        "trials": cfg.trials,
        "seed": cfg.seed,
        "scope": cfg.scope,
        "params": cfg.params,
        "per_channel": cfg.per_channel,
        "storage": cfg.storage,
        "defense": cfg.defense.to_string(),
        "threshold": cfg.threshold,
        "batch_size": cfg.batch,
    });
    // Only present under Ranger, so campaigns begun before it resume.
    if let Some(r) = &ranger {
        config["ranger"] = serde_json::json!(r);
    }
    let manifest = Manifest {
        version: VERSION,
        hashes: Hashes {
            model: model_hash(model)?,
            data: data_hash(data),
            config: bytes_hash(config.to_string().as_bytes()),
        },
        config,
        units: 0,
        clean_correct: clean.correct_count,
        total: data.len() as i64,
        stored_bits: bits.total(),
        weights: numel.iter().sum::<i64>() as u64,
    };
    let mut c = Campaign {
        model,
        data,
        targets,
        clean,
        bits,
        inject,
        stored_of,
        cfg: cfg.clone(),
        manifest,
        ranger,
        _restore: restore,
    };
    c.manifest.units = c.units().len();
    Ok(c)
}

impl Campaign<'_> {
    pub fn units(&self) -> Vec<Unit> {
        let mut units = vec![];
        for level in 0..self.cfg.levels.len() {
            for first in (0..self.cfg.trials).step_by(UNIT_TRIALS as usize) {
                units.push(Unit {
                    id: units.len(),
                    level,
                    first,
                    end: (first + UNIT_TRIALS).min(self.cfg.trials),
                });
            }
        }
        units
    }

    /// This shard's units.
    pub fn owned(&self) -> Vec<Unit> {
        self.units().into_iter().filter(|u| self.cfg.shard.owns(u.id)).collect()
    }

    pub fn owned_trials(&self) -> u64 {
        self.owned().iter().map(|u| u.end - u.first).sum()
    }

    fn tensors(&self) -> Vec<Tensor> {
        self.targets.iter().map(|t| t.tensor.shallow_clone()).collect()
    }

    /// The bit faults of trial `trial` at `level` (empty for Gaussian noise).
    pub fn draw(&self, level: f64, trial: u64) -> Vec<BitFault> {
        if !self.cfg.fault.is_bit() {
            return vec![];
        }
        self.bits.draw(level, &mut trial_rng(self.cfg.seed, level, trial, 0))
    }

    /// The trial's changes and its fault count (drawn faults, or perturbed weights).
    pub fn patch(&self, level: f64, trial: u64) -> Result<(Patch, u64)> {
        if self.cfg.fault.is_bit() {
            let faults = self.draw(level, trial);
            let patch = Patch::from_bits(&self.inject, &self.stored_of, &faults, self.cfg.fault)?;
            return Ok((patch, faults.len() as u64));
        }
        let tensors = self.tensors();
        let mut patch = Patch::default();
        if level == 0.0 {
            return Ok((patch, 0));
        }
        let mut rng = trial_rng(self.cfg.seed, level, trial, 1);
        for (t, tensor) in tensors.iter().enumerate() {
            patch.changes.push(Change::Whole {
                target: t,
                old: tensor.detach().copy(),
                new: noisy(tensor, level, self.cfg.per_channel, &mut rng)?,
            });
        }
        Ok((patch, self.manifest.weights))
    }

    /// Runs one trial on the model (restored after).
    pub fn trial(&self, eval: &Evaluator, level: f64, trial: u64) -> Result<Trial> {
        let (patch, faults) = self.patch(level, trial)?;
        let mut changed: Vec<usize> = patch.changes.iter().map(Change::target).collect();
        changed.dedup();
        let correct = patch.with(&self.tensors(), || eval.correct(&changed))?;
        let n_changed = if self.cfg.fault.is_bit() {
            patch.effective.len() as u64
        } else {
            faults
        };
        Ok(Trial {
            level,
            trial,
            faults,
            changed: n_changed,
            detected: patch.detected,
            correct,
            total: self.manifest.total,
            rad: rad(self.clean.correct_count, correct),
        })
    }

    pub fn evaluator(&self) -> Evaluator<'_> {
        let names: Vec<String> = self.targets.iter().map(|t| t.name.clone()).collect();
        Evaluator::new(self.model, self.data, &self.clean, self.cfg.batch, &names)
    }

    /// Runs every unfinished unit of this shard into `dir`, calling
    /// `progress(trials)` as trials finish, then checks the weights came back intact.
    pub fn run(&self, dir: &Path, progress: &mut dyn FnMut(u64)) -> Result<()> {
        open_journal(dir, &self.manifest)?;
        let eval = self.evaluator();
        for unit in self.owned() {
            let part = part_path(dir, unit.id);
            if part.exists() {
                progress(unit.end - unit.first);
                continue;
            }
            let level = self.cfg.levels[unit.level];
            let mut rows = vec![];
            for trial in unit.first..unit.end {
                rows.push(self.trial(&eval, level, trial)?);
                progress(1);
            }
            write_atomic(&part, &table::to_csv(&rows, false)?)?;
            crate::interrupt::check()?;
        }
        if model_hash(self.model)? != self.manifest.hashes.model {
            return Err(HartError::Model(
                "model weights changed during the campaign (restore failed)".into(),
            ));
        }
        Ok(())
    }

    /// Expected faults per trial at `level`.
    pub fn expected_faults(&self, level: f64) -> f64 {
        if self.cfg.fault.is_bit() {
            level * self.bits.total() as f64
        } else if level > 0.0 {
            self.manifest.weights as f64
        } else {
            0.0
        }
    }

    /// Once every unit (all shards) is done: the trials table, per-level
    /// statistics and `summary.json` in `dir`.
    pub fn finish(&self, dir: &Path, format: Format) -> Result<Summary> {
        let mut trials = vec![];
        for unit in self.units() {
            let part = part_path(dir, unit.id);
            if !part.exists() {
                return Err(HartError::data(
                    &part,
                    "missing part: the campaign has not finished (run the shards or the same command again)",
                ));
            }
            trials.extend(table::read_csv(&part, false)?);
        }
        table::write(dir, format, &trials)?;
        let levels = self
            .cfg
            .levels
            .iter()
            .map(|&level| {
                let of_level: Vec<Trial> = trials.iter().copied().filter(|t| t.level == level).collect();
                level_stats(
                    level,
                    &of_level,
                    self.expected_faults(level),
                    self.cfg.threshold,
                    self.cfg.confidence,
                )
            })
            .collect();
        let summary = Summary {
            fault: self.cfg.fault,
            storage: self.cfg.storage,
            defense: ranger::label(self.cfg.defense, self.ranger.as_ref()),
            ranger: self.ranger.clone(),
            clean_accuracy: self.clean.correct_count as f64 / self.manifest.total as f64,
            clean_correct: self.clean.correct_count,
            total: self.manifest.total,
            stored_bits: self.bits.total(),
            weights: self.manifest.weights,
            trials: self.cfg.trials,
            seed: self.cfg.seed,
            threshold: self.cfg.threshold,
            confidence: self.cfg.confidence,
            levels,
        };
        let text = serde_json::to_string_pretty(&summary).map_err(|e| HartError::Invalid(e.to_string()))?;
        write_atomic(&dir.join("summary.json"), text.as_bytes())?;
        Ok(summary)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub fault: FaultModel,
    pub storage: Storage,
    pub defense: String,
    /// Under Ranger: its bounds and the clean accuracy without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranger: Option<Report>,
    pub clean_accuracy: f64,
    pub clean_correct: i64,
    pub total: i64,
    pub stored_bits: u64,
    pub weights: u64,
    pub trials: u64,
    pub seed: u64,
    pub threshold: f64,
    pub confidence: f64,
    pub levels: Vec<LevelStats>,
}

pub fn part_path(dir: &Path, unit: usize) -> PathBuf {
    dir.join("parts").join(format!("u{unit:07}.csv"))
}

/// Starts a campaign in `dir`, or resumes the identical one found there.
fn open_journal(dir: &Path, manifest: &Manifest) -> Result<()> {
    let path = dir.join(MANIFEST);
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(|e| HartError::io(&path, e))?;
        let old: Manifest = serde_json::from_str(&text)
            .map_err(|e| HartError::data(&path, format!("unreadable campaign manifest: {e}")))?;
        let version = [("format version", old.version != manifest.version)];
        old.hashes.check_resume(&manifest.hashes, dir, "campaign", &version)?;
    } else {
        let text = serde_json::to_string_pretty(manifest).map_err(|e| HartError::Invalid(e.to_string()))?;
        write_atomic(&path, text.as_bytes())?;
    }
    std::fs::create_dir_all(dir.join("parts")).map_err(|e| HartError::io(dir, e))
}
