//! Runs an experiment's stages in order, each cached by its inputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use tch::Device;

use super::cache::{hash_json, Cache, Outcome};
use super::config::ExperimentConfig;
use super::recipe;
use crate::data::{self, DataSpec, Dataset, Split};
use crate::error::Result;
use crate::eval::evaluate;
use crate::model::{load, zoo, LoadOptions, Model, ModelInfo, Start};
use crate::train::tune::{tune_lambda, TuneConfig};
use crate::train::{train_with, RegularizerKind};

/// One trained model of the experiment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainedModel {
    pub arch: String,
    pub recipe: String,
    /// The recipe's regulariser and the λ it trained with (tuned or given).
    #[serde(default)]
    pub regularizer: String,
    #[serde(default)]
    pub lambda: Option<f64>,
    pub seed: u64,
    pub train_seconds: f64,
    pub test_accuracy: f64,
    /// Per-epoch training log (loss, accuracy, trace estimate, penalty firing).
    pub epochs: serde_json::Value,
    /// Hash of the training stage's inputs: later stages key on it.
    pub key: String,
    pub path: PathBuf,
}

impl TrainedModel {
    /// The trained model, loaded onto `device`.
    pub fn open(&self, device: Device) -> Result<Model> {
        let mut model = load(&self.path, &LoadOptions::default())?;
        model.to_device(device)?;
        Ok(model)
    }
}

/// What each stage did, for the caller's display and the tests.
#[derive(Debug, Default, Clone)]
pub struct StageLog {
    pub entries: Vec<(String, Outcome)>,
}

impl StageLog {
    pub fn record(&mut self, what: String, o: Outcome) {
        let verb = match o {
            Outcome::Cached => "cached",
            Outcome::Computed => "computed",
        };
        tracing::info!(stage = %what, "{verb}");
        self.entries.push((what, o));
    }
}

pub struct Runner<'a> {
    pub cfg: &'a ExperimentConfig,
    pub out: PathBuf,
    pub cache: Cache,
    pub device: Device,
    pub log: StageLog,
    pub bar: ProgressBar,
    train_data: Option<Dataset>,
    test_data: Option<Dataset>,
    /// The most test images any measurement reads.
    test_images: usize,
    /// The λ `[tune]` chose, by architecture and recipe, once read.
    tuned: BTreeMap<(String, usize), f64>,
}

impl<'a> Runner<'a> {
    /// `test_images`: the most test images a measurement reads (the test split is read once).
    pub fn new(
        cfg: &'a ExperimentConfig,
        out: &Path,
        device: Device,
        bar: ProgressBar,
        test_images: usize,
    ) -> Result<Self> {
        Ok(Runner {
            cfg,
            out: out.to_path_buf(),
            cache: Cache::new(out.join("cache"))?,
            device,
            log: StageLog::default(),
            bar,
            train_data: None,
            test_data: None,
            test_images,
            tuned: BTreeMap::new(),
        })
    }

    pub fn spec(&self, split: Split, limit: Option<usize>) -> DataSpec {
        let mut s = DataSpec::new(self.cfg.data.dataset.clone(), split);
        s.limit = limit;
        s.data_dir = self.cfg.data.data_dir.clone();
        s
    }

    pub fn train_data(&mut self) -> Result<&Dataset> {
        let d = match self.train_data.take() {
            Some(d) => d,
            None => data::load(&self.spec(Split::Train, self.cfg.data.train_limit))?,
        };
        Ok(self.train_data.insert(d))
    }

    /// The test split, first `data.test_limit` images; sweeps and analyses take prefixes of it.
    pub fn test_data(&mut self) -> Result<&Dataset> {
        let d = match self.test_data.take() {
            Some(d) => d,
            None => {
                let limit = Some(self.cfg.data.test_limit.max(self.test_images));
                data::load(&self.spec(Split::Test, limit))?
            }
        };
        Ok(self.test_data.insert(d))
    }

    /// The first `n` test images (a prefix, so every stage sees the same images).
    pub fn test_prefix(&mut self, n: usize) -> Result<Dataset> {
        let mut d = self.test_data()?.clone();
        d.truncate(n);
        Ok(d)
    }

    /// A measurement stage's cache key: the model's training key and the stage's own settings.
    pub fn key(&self, m: &TrainedModel, stage: &str, settings: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"stage": stage, "model": m.key, "settings": settings})
    }

    /// Logs a measurement stage and advances the progress bar.
    pub fn note(&mut self, stage: &str, m: &TrainedModel, outcome: Outcome) {
        self.log
            .record(format!("{stage} {}/{}/seed{}", m.arch, m.recipe, m.seed), outcome);
        self.bar.inc(1);
    }

    /// The `[tune]` search's λ for recipe `i` on `arch` (a cached stage, read
    /// once per run): candidates trained on the first `tune.limit` training
    /// images less the last `tune.val`, judged on those `tune.val` images,
    /// never on test images.
    pub fn tuned_lambda(&mut self, arch: &str, i: usize) -> Result<f64> {
        if let Some(&l) = self.tuned.get(&(arch.to_string(), i)) {
            return Ok(l);
        }
        let t = self.cfg.tune.clone();
        let r = &self.cfg.recipes[i];
        let key = serde_json::json!({
            "stage": "tune", "arch": arch, "recipe": r, "defaults": self.cfg.train, "tune": t,
            "dataset": self.cfg.data.dataset, "data_dir": self.cfg.data.data_dir,
        });
        // The λ of the grid stands in until the search picks one.
        let (mut train_cfg, reg) = recipe::training(self.cfg, i, t.seed, self.device, Some(t.grid[0]))?;
        train_cfg.epochs = t.epochs;
        let spec = self.spec(Split::Train, Some(t.limit));
        let bar = self.bar.clone();
        let (report, _, outcome) = self.cache.stage("tune", &key, |dir| {
            bar.set_message(format!("tuning λ for {arch} / {}", r.name));
            let mut train = data::load(&spec)?;
            let val = train.split_off(t.val);
            let cfg = TuneConfig {
                grid: t.grid.clone(),
                train: train_cfg,
                regularizer: reg,
                sweep_params: t.sweep_params,
                sweep_images: t.sweep_images,
                threshold: self.cfg.sweep.threshold,
                confidence: 0.95,
                accuracy_budget: t.accuracy_budget,
                freeze: None,
            };
            let info = ModelInfo::for_data(arch, &train);
            tune_lambda(
                &Start::Arch(info),
                &train,
                &val,
                &cfg,
                dir,
                &ProgressBar::hidden(),
                |_| {},
            )
        })?;
        self.log.record(format!("tune {arch}/{}", r.name), outcome);
        let lambda = report.chosen.unwrap_or_else(|| {
            tracing::warn!(arch, recipe = %r.name, "no λ within the accuracy budget; using the grid's smallest");
            t.grid.iter().copied().fold(f64::INFINITY, f64::min)
        });
        self.tuned.insert((arch.to_string(), i), lambda);
        Ok(lambda)
    }

    /// The λ recipe `i` trains with on `arch` when `[tune]` chooses it (None when the recipe gives its own).
    fn searched_lambda(&mut self, arch: &str, i: usize) -> Result<Option<f64>> {
        match &self.cfg.recipes[i].hessian_lambda {
            Some(l) if l.is_tuned() => Ok(Some(self.tuned_lambda(arch, i)?)),
            _ => Ok(None),
        }
    }

    /// Trains (or fetches from the cache) recipe `i` on `arch` with `seed`.
    pub fn train(&mut self, arch: &str, i: usize, seed: u64) -> Result<TrainedModel> {
        let tuned = self.searched_lambda(arch, i)?;
        let r = self.cfg.recipes[i].clone();
        let (train_cfg, reg) = recipe::training(self.cfg, i, seed, self.device, tuned)?;
        let key = serde_json::json!({
            "stage": "train", "arch": arch, "recipe": r, "defaults": self.cfg.train,
            "data": self.cfg.data, "seed": seed, "tuned_lambda": tuned,
        });
        let test_n = self.cfg.data.test_limit;
        let test = self.test_prefix(test_n)?;
        let train_data = self.train_data()?.clone();
        let device = self.device;
        let key_hash = hash_json(&key)?;
        let bar = self.bar.clone();
        let (mut m, dir, outcome) = self.cache.stage("train", &key, |dir| {
            bar.set_message(format!("training {arch} / {} / seed {seed}", r.name));
            let info = ModelInfo::for_data(arch, &train_data);
            tch::manual_seed(seed as i64);
            let mut model = Model::Graph(zoo::build(&info)?);
            model.to_device(device)?;
            let start = Instant::now();
            let logs = train_with(&model, &train_data, &train_cfg, &reg, &ProgressBar::hidden())?;
            let seconds = start.elapsed().as_secs_f64();
            let acc = evaluate(&model, &test, 512, device)?;
            model.save(&dir.join("model.safetensors"))?;
            Ok(TrainedModel {
                arch: arch.to_string(),
                recipe: r.name.clone(),
                regularizer: r.regularizer.clone(),
                lambda: matches!(reg.kind, RegularizerKind::Hessian | RegularizerKind::FdHessian).then_some(reg.lambda),
                seed,
                train_seconds: seconds,
                test_accuracy: acc.accuracy,
                epochs: serde_json::to_value(&logs).unwrap_or_default(),
                key: key_hash.clone(),
                path: PathBuf::new(),
            })
        })?;
        m.path = dir.join("model.safetensors");
        self.log.record(format!("train {arch}/{}/seed{seed}", r.name), outcome);
        self.bar.inc(1);
        Ok(m)
    }
}
