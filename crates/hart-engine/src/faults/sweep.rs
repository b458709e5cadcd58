//! A sweep from start to finish: build the flip space, measure the clean
//! model, process this shard's unfinished work units durably, then stream
//! the parts into the flips table and summary.json.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::bits::BitSet;
use super::clean::{clean_pass, Clean};
use super::defense::Defense;
use super::engine::{unit_rows, Ctx, Engine};
use super::faulted::Faulted;
use super::faultlist::Group;
use super::hash::{bytes_hash, data_hash, model_hash};
use super::inject::Injector;
use super::journal::{new_version, part_path, read_manifest, Hashes, Journal, Manifest};
use super::kind::EngineKind;
use super::output::{create, Format};
use super::record::{read_csv, Row};
use super::shard::Shard;
use super::space::{select_targets, FlipSpace, SampleSize, Scope, Unit};
use super::storage::Storage;
use super::summary::{Summary, SummaryBuilder};
use super::verdict::{Sequential, VerdictMode};
use super::{faultlist, workers};
use crate::compress::quantize::Granularity;
use crate::compress::targets::Snapshot;
use crate::data::Dataset;
use crate::error::{HartError, Result};
use crate::eval::NanPolicy;
use crate::model::Model;
use crate::util::write_atomic;

#[derive(Debug, Clone)]
pub struct SweepConfig {
    pub bits: BitSet,
    pub scope: Scope,
    pub params: Option<String>,
    /// `--sample-params K|SHARE --seed S`.
    pub sample: Option<(SampleSize, u64)>,
    pub faults: Option<PathBuf>,
    pub threshold: f64,
    pub exact_rad: bool,
    pub engine: EngineKind,
    pub batch: usize,
    pub shard: Shard,
    pub confidence: f64,
    /// Parallel workers (None: one per libtorch thread). Not part of the
    /// configuration hash: it changes how fast, not what.
    pub jobs: Option<usize>,
    /// Memory the clean pass may keep its per-node values in for the fast
    /// engine (0: keep none; prefixes are then recomputed). Also outside the hash.
    pub store_bytes: i64,
    /// Exact verdicts, or sequential ones at `confidence` (samples visited
    /// in the order of a shuffle seeded by `seed`).
    pub verdict: VerdictMode,
    /// How weights are stored: which bits exist and what a flip does.
    pub storage: Storage,
    /// Integer storage: one scale per output channel instead of per tensor.
    pub per_channel: bool,
    pub defense: Defense,
    /// Fixes the defence's secret key (RADAR).
    pub seed: u64,
    /// How a NaN row of logits counts (`--nan-policy`).
    pub nan_policy: NanPolicy,
}

impl SweepConfig {
    pub fn new() -> Self {
        SweepConfig {
            bits: BitSet::ALL,
            scope: Scope::All,
            params: None,
            sample: None,
            faults: None,
            threshold: 0.1,
            exact_rad: false,
            engine: EngineKind::Auto,
            batch: 1000,
            shard: Shard::WHOLE,
            confidence: 0.95,
            jobs: None,
            store_bytes: super::clean::STORE_BYTES,
            storage: Storage::Fp32,
            per_channel: false,
            defense: Defense::None,
            verdict: VerdictMode::Exact,
            seed: 0,
            nan_policy: NanPolicy::Wrong,
        }
    }
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self::new()
    }
}

pub struct Sweep<'a> {
    pub model: &'a Model,
    /// The evaluation images; shuffled for sequential verdicts.
    pub data: Cow<'a, Dataset>,
    pub space: FlipSpace,
    pub clean: Clean,
    pub manifest: Manifest,
    pub cfg: SweepConfig,
    /// Stored words and defence, unless the sweep is plain fp32 without
    /// defence over a list without groups.
    pub inject: Option<Arc<Injector>>,
    /// A grouped fault list's groups: one row per group (see [`super::groups`]).
    pub groups: Option<Vec<Group>>,
    /// Puts integer-stored tensors back to their float values when the sweep ends.
    _restore: Option<Snapshot>,
}

/// Checks the settings, builds the flip space and runs the clean pass.
pub fn prepare<'a>(model: &'a Model, data: &'a Dataset, cfg: &SweepConfig) -> Result<Sweep<'a>> {
    if !(0.0..1.0).contains(&cfg.threshold) {
        return Err(HartError::Invalid(format!(
            "--threshold {} must be in [0, 1)",
            cfg.threshold
        )));
    }
    if cfg.batch == 0 {
        return Err(HartError::Invalid("--batch-size must be at least 1".into()));
    }
    if !(cfg.confidence > 0.0 && cfg.confidence < 1.0) {
        return Err(HartError::Invalid(format!(
            "--confidence {} must be in (0, 1)",
            cfg.confidence
        )));
    }
    if cfg.verdict == VerdictMode::Sequential && cfg.exact_rad {
        return Err(HartError::Invalid(
            "--exact-rad and --verdict sequential exclude each other".into(),
        ));
    }
    let targets = select_targets(model, cfg.scope, cfg.params.as_deref())?;
    let grouped = match &cfg.faults {
        Some(path) => faultlist::has_groups(path)?,
        None => false,
    };
    let plain = cfg.storage == Storage::Fp32 && cfg.defense == Defense::None;
    let restore = (cfg.storage != Storage::Fp32).then(|| Snapshot::take(&float_tensors(model)));
    let inject = if plain && !grouped {
        None
    } else {
        let granularity = Granularity::of(cfg.per_channel);
        Some(Arc::new(Injector::new(
            model,
            cfg.storage,
            granularity,
            cfg.defense,
            cfg.seed,
        )?))
    };
    let mut faults_hash = None;
    let mut groups = None;
    let mut space = match (&cfg.faults, cfg.sample) {
        (Some(_), Some(_)) => {
            return Err(HartError::Invalid(
                "--faults and --sample-params exclude each other".into(),
            ))
        }
        (Some(path), None) => {
            faults_hash = Some(bytes_hash(&std::fs::read(path).map_err(|e| HartError::io(path, e))?));
            let list = faultlist::read(path, model, &targets, inject.as_ref().map(|i| &i.stored))?;
            groups = list.groups;
            FlipSpace::from_list(targets, list.flips)
        }
        (None, Some((k, seed))) => FlipSpace::sampled(targets, cfg.bits, k, seed)?,
        (None, None) => FlipSpace::exhaustive(targets, cfg.bits)?,
    };
    if let Some(inj) = &inject {
        if cfg.faults.is_none() {
            check_widths(&space, inj)?;
        }
        if !plain {
            space.inject = Some(inj.clone());
        }
    }
    let data_hash = data_hash(data);
    let data = match cfg.verdict {
        VerdictMode::Exact => Cow::Borrowed(data),
        VerdictMode::Sequential => Cow::Owned(shuffled(data, cfg.seed)),
    };
    let clean = clean_pass(model, &data, cfg.batch, model.device(), cfg.store_bytes)?.with_policy(cfg.nan_policy)?;
    let mut config = serde_json::json!({
        "bits": if cfg.faults.is_some() { serde_json::Value::Null } else { serde_json::json!(space.bits) },
        "scope": cfg.scope,
        "params": cfg.params,
        "sample_params": cfg.sample.map(|s| s.0.to_json()),
        "seed": cfg.sample.map(|s| s.1),
        "verdict": cfg.verdict,
        "order_seed": (cfg.verdict == VerdictMode::Sequential).then_some(cfg.seed),
        "faults_sha256": faults_hash,
        "threshold": cfg.threshold,
        "exact_rad": cfg.exact_rad,
        "engine": cfg.engine,
        "batch_size": cfg.batch,
        "confidence": cfg.confidence,
        "storage": cfg.storage,
        "per_channel": cfg.per_channel,
        "defense": cfg.defense.to_string(),
        "defense_seed": cfg.seed,
    });
    // Only a non-default policy enters the hash, so sweeps begun before the option resume.
    if cfg.nan_policy != NanPolicy::Wrong {
        config["nan_policy"] = serde_json::json!(cfg.nan_policy);
    }
    // Likewise Ranger's bounds (carried by the graph), with the clean accuracy without them.
    if let Some(r) = super::ranger::report(model, &data, cfg.batch, cfg.nan_policy)? {
        config["ranger"] = serde_json::json!(r);
    }
    let layers: BTreeMap<String, String> = space
        .targets
        .iter()
        .map(|t| {
            let layer = model.graph().and_then(|g| g.graph.layer_of(&t.name)).unwrap_or(&t.name);
            (t.name.clone(), layer.to_string())
        })
        .collect();
    let manifest = Manifest {
        version: new_version(),
        hashes: Hashes {
            model: model_hash(model)?,
            data: data_hash,
            config: bytes_hash(config.to_string().as_bytes()),
        },
        config,
        shard: cfg.shard,
        units: space.units().len(),
        flips: space.len(),
        population: space.population(),
        sampled: cfg.sample.is_some(),
        threshold: cfg.threshold,
        confidence: cfg.confidence,
        clean_correct: clean.correct_count,
        total: data.len() as i64,
        layers,
    };
    Ok(Sweep {
        model,
        data,
        space,
        clean,
        manifest,
        cfg: cfg.clone(),
        inject,
        groups,
        _restore: restore,
    })
}

/// Every float tensor of the model (what an integer storage may rewrite).
pub(crate) fn float_tensors(model: &Model) -> Vec<(String, tch::Tensor)> {
    model
        .named_tensors()
        .into_iter()
        .filter(|(_, t, _)| t.kind() == tch::Kind::Float)
        .map(|(n, t, _)| (n, t))
        .collect()
}

/// Every selected bit must exist in every target's words (an int8 tensor
/// has bits 0-7 only); fault lists are checked row by row when read.
fn check_widths(space: &FlipSpace, inject: &Injector) -> Result<()> {
    let Some(&top) = space.bits.iter().max() else {
        return Ok(());
    };
    for t in &space.targets {
        inject.stored.get(&t.name)?.check_bit(top).map_err(|e| {
            HartError::Invalid(format!(
                "--bits: {e} (select bits within it, e.g. --bits 0-7 --params for int weights only)"
            ))
        })?;
    }
    Ok(())
}

/// The images in one seeded random order: sequential verdicts visit every
/// flip's samples in this order, so those seen first are a uniform random
/// subset of all of them.
fn shuffled(data: &Dataset, seed: u64) -> Dataset {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    data.subset(&order)
}

impl Sweep<'_> {
    pub fn ctx(&self) -> Ctx<'_> {
        Ctx {
            model: self.model,
            data: &self.data,
            clean: &self.clean,
            batch: self.cfg.batch,
            device: self.model.device(),
            threshold: self.cfg.threshold,
            exact_rad: self.cfg.exact_rad,
            sequential: self.sequential(),
        }
    }

    /// Whether a flip's recovery may rewrite other elements (RADAR), so
    /// that only the faulted engine computes it exactly.
    pub fn multi_write(&self) -> bool {
        matches!(self.cfg.defense, Defense::Radar { .. })
    }

    /// The sequential rule's schedule over this sweep's images, if it applies.
    pub fn sequential(&self) -> Option<Sequential> {
        (self.cfg.verdict == VerdictMode::Sequential).then(|| Sequential::new(self.cfg.confidence, self.data.len()))
    }

    pub fn engine(&self) -> Box<dyn Engine + '_> {
        if let (true, Some(inject)) = (self.multi_write(), self.inject.as_deref()) {
            return Box::new(Faulted::new(self.ctx(), inject));
        }
        self.cfg.engine.build(self.ctx())
    }

    /// This shard's units.
    pub fn owned(&self) -> Vec<Unit> {
        self.space
            .units()
            .iter()
            .copied()
            .filter(|u| self.cfg.shard.owns(u.id))
            .collect()
    }

    /// Rows of one unit, computed by `engine`.
    pub fn rows(&self, engine: &mut dyn Engine, unit: &Unit) -> Result<Vec<Row>> {
        unit_rows(&self.space, &self.clean, engine, unit)
    }

    /// Every row of this shard in flip order, computed as [`Sweep::run`]
    /// computes them (workers included) but kept in memory, not journalled.
    pub fn collect(&self) -> Result<Vec<Row>> {
        let units = self.owned();
        let mut parts: Vec<Option<Vec<Row>>> = vec![None; units.len()];
        let mut done = |unit: &Unit, rows: Vec<Row>| -> Result<()> {
            if let Some(k) = units.iter().position(|u| u.id == unit.id) {
                parts[k] = Some(rows);
            }
            Ok(())
        };
        self.process(&units, &mut done)?;
        Ok(parts.into_iter().flatten().flatten().collect())
    }

    /// Computes `units`, in parallel where [`workers::count`] allows.
    fn process(&self, units: &[Unit], done: &mut dyn FnMut(&Unit, Vec<Row>) -> Result<()>) -> Result<()> {
        let workers = workers::count(
            &self.ctx(),
            self.cfg.engine,
            self.multi_write(),
            units.len(),
            self.cfg.jobs,
        );
        if workers > 1 {
            return workers::run(self.ctx(), self.cfg.engine, &self.space, units, workers, done);
        }
        let mut engine = self.engine();
        for unit in units {
            done(unit, self.rows(engine.as_mut(), unit)?)?;
        }
        Ok(())
    }

    /// Processes every unfinished unit of this shard into `dir`, calling
    /// `progress(flips)` after each, then checks the weights came back intact.
    pub fn run(&self, dir: &Path, progress: &mut dyn FnMut(u64)) -> Result<()> {
        let journal = Journal::open(dir, &self.manifest)?;
        let mut todo = vec![];
        for unit in self.owned() {
            if journal.is_done(unit.id) {
                progress(unit.len());
            } else {
                todo.push(unit);
            }
        }
        let mut done = |unit: &Unit, rows: Vec<Row>| -> Result<()> {
            journal.record(unit.id, &rows)?;
            progress(unit.len());
            crate::interrupt::check()
        };
        self.process(&todo, &mut done)?;
        if model_hash(self.model)? != self.manifest.hashes.model {
            return Err(HartError::Model(
                "model weights changed during the sweep (restore failed)".into(),
            ));
        }
        Ok(())
    }

    /// Flips this shard covers.
    pub fn owned_flips(&self) -> u64 {
        self.owned().iter().map(|u| u.len()).sum()
    }
}

/// Streams the parts of this shard's finished sweep into its table and summary.
pub fn finish(dir: &Path, format: Format) -> Result<Summary> {
    let m = read_manifest(dir)?;
    let parts = (0..m.units)
        .filter(|u| m.shard.owns(*u))
        .map(|u| part_path(dir, u))
        .collect();
    assemble(dir, &m, format, parts)
}

/// Writes `out/flips.*` and `out/summary.json` from `parts` in order.
pub fn assemble(out: &Path, m: &Manifest, format: Format, parts: Vec<PathBuf>) -> Result<Summary> {
    let mut table = create(out, format)?;
    let mut summary = SummaryBuilder::new(m);
    for p in &parts {
        if !p.exists() {
            return Err(HartError::data(
                p,
                "missing part: the sweep has not finished (run the same command again)",
            ));
        }
        for row in read_csv(p)? {
            summary.add(&row);
            table.push(row)?;
        }
    }
    table.finish()?;
    let summary = summary.finish(m.confidence);
    let text = serde_json::to_string_pretty(&summary).map_err(|e| HartError::Invalid(e.to_string()))?;
    write_atomic(&out.join("summary.json"), text.as_bytes())?;
    Ok(summary)
}
