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
use super::user_models::{self, UserModel};
use crate::data::{self, DataSpec, Dataset, Split};
use crate::error::Result;
use crate::eval::evaluate;
use crate::model::{load, LoadOptions, Model, ModelInfo, Start};
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
    /// The trained model's file: in result.json its name in the stage
    /// directory (empty: `model.safetensors`), once read its full path.
    pub path: PathBuf,
    /// A `[[model]]`'s info as fitted to the data (a TorchScript file records
    /// no classes or input shape); absent for architectures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<ModelInfo>,
    /// The ONNX graph a `.safetensors` of an imported model's weights belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<PathBuf>,
}

impl TrainedModel {
    /// The trained model, loaded onto `device`.
    pub fn open(&self, device: Device) -> Result<Model> {
        let opts = LoadOptions {
            arch: self.graph.as_ref().map(|g| g.display().to_string()),
            hint: self.info.clone(),
            normalize: None,
        };
        let mut model = load(&self.path, &opts)?;
        if let Some(info) = &self.info {
            *model.info_mut() = info.clone();
        }
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
    /// The `[[model]]` entries, read and checked when the runner starts.
    models: BTreeMap<String, UserModel>,
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
        let mut runner = Runner {
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
            models: BTreeMap::new(),
        };
        // Before any stage: a model that does not fit the data or a recipe
        // must not surface after hours of other trainings.
        if !cfg.models.is_empty() {
            let train = runner.train_data()?.clone();
            let test = runner.test_data()?.clone();
            runner.models = user_models::prepare(cfg, &train, &test, device)?;
        }
        Ok(runner)
    }

    /// Where training `name` (an architecture or a `[[model]]` entry) starts,
    /// and the entry (None for an architecture).
    fn start(&self, name: &str, data: &Dataset) -> (Start, Option<&UserModel>) {
        match self.models.get(name) {
            Some(u) => (u.start.clone(), Some(u)),
            None => (Start::Arch(ModelInfo::for_data(name, data)), None),
        }
    }

    /// A training or search stage's key: an architecture's as it always was,
    /// a `[[model]]`'s with the entry (and its file's hash) in place of `arch`.
    fn start_key(&self, name: &str, mut key: serde_json::Value) -> serde_json::Value {
        let user = self.models.get(name).map(|u| u.key.clone());
        if let (Some(user), Some(map)) = (user, key.as_object_mut()) {
            map.remove("arch");
            map.insert("model".into(), user);
        }
        key
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
        let key = self.start_key(
            arch,
            serde_json::json!({
                "stage": "tune", "arch": arch, "recipe": r, "defaults": self.cfg.train, "tune": t,
                "dataset": self.cfg.data.dataset, "data_dir": self.cfg.data.data_dir,
            }),
        );
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
            let (start, _) = self.start(arch, &train);
            tune_lambda(&start, &train, &val, &cfg, dir, &ProgressBar::hidden(), |_| {})
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

    /// The training stage's key; an architecture's is what it was before
    /// `[[model]]` existed, so existing caches stay valid.
    pub fn train_key(&self, arch: &str, i: usize, seed: u64, tuned: Option<f64>) -> serde_json::Value {
        self.start_key(
            arch,
            serde_json::json!({
                "stage": "train", "arch": arch, "recipe": self.cfg.recipes[i], "defaults": self.cfg.train,
                "data": self.cfg.data, "seed": seed, "tuned_lambda": tuned,
            }),
        )
    }

    /// Trains (or fetches from the cache) recipe `i` on `arch` with `seed`.
    pub fn train(&mut self, arch: &str, i: usize, seed: u64) -> Result<TrainedModel> {
        let tuned = self.searched_lambda(arch, i)?;
        let r = self.cfg.recipes[i].clone();
        let (train_cfg, reg) = recipe::training(self.cfg, i, seed, self.device, tuned)?;
        let key = self.train_key(arch, i, seed, tuned);
        let test_n = self.cfg.data.test_limit;
        let test = self.test_prefix(test_n)?;
        let train_data = self.train_data()?.clone();
        let device = self.device;
        let key_hash = hash_json(&key)?;
        let bar = self.bar.clone();
        let (start, user) = self.start(arch, &train_data);
        let (mut m, dir, outcome) = self.cache.stage("train", &key, |dir| {
            bar.set_message(format!("training {arch} / {} / seed {seed}", r.name));
            // Seeded: a zoo architecture's or a re-initialised graph's draws; a
            // fine-tune's per-seed difference is its data order (`train_cfg.seed`).
            let mut model = start.build(&train_data, seed)?;
            model.to_device(device)?;
            let start = Instant::now();
            let logs = train_with(&model, &train_data, &train_cfg, &reg, &ProgressBar::hidden())?;
            let seconds = start.elapsed().as_secs_f64();
            let acc = evaluate(&model, &test, 512, device)?;
            let (path, graph) = match user {
                Some(u) => user_models::save(u, &model, dir)?,
                None => {
                    model.save(&dir.join("model.safetensors"))?;
                    (PathBuf::new(), None)
                }
            };
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
                path,
                info: user.map(|_| model.info().clone()),
                graph,
            })
        })?;
        m.path = dir.join(if m.path.as_os_str().is_empty() {
            Path::new("model.safetensors")
        } else {
            &m.path
        });
        self.log.record(format!("train {arch}/{}/seed{seed}", r.name), outcome);
        self.bar.inc(1);
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An architecture's training key, field for field, as HART wrote it
    /// before `[[model]]` existed: caches of archs-only configs stay valid.
    #[test]
    fn an_architectures_training_key_is_unchanged() {
        let cfg = ExperimentConfig::parse(crate::experiment::config::tests::MINIMAL).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let runner = Runner::new(&cfg, dir.path(), Device::Cpu, ProgressBar::hidden(), 0).unwrap();
        let key = runner.train_key("lenet5", 1, 2, Some(0.5));
        let expected = serde_json::json!({
            "stage": "train", "arch": "lenet5", "recipe": cfg.recipes[1], "defaults": cfg.train,
            "data": cfg.data, "seed": 2, "tuned_lambda": 0.5,
        });
        assert_eq!(key, expected);
        // The config serialises without a `model` key, as before (summary.json, shard records).
        assert!(serde_json::to_value(&cfg).unwrap().get("model").is_none());
    }
}
