//! Worst-case bit flips: the progressive bit search of the bit-flip attack
//! (BFA, Rakin et al. ICCV 2019) and its baseline of uniformly random flips,
//! on a model's stored words (int8/int4 codes or fp32 bits), through a
//! run-time defence. See docs/attack.md.

pub mod output;
pub mod search;

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tch::{Device, Tensor};

use crate::compress::quantize::Granularity;
use crate::compress::targets::Snapshot;
use crate::data::Dataset;
use crate::error::{HartError, Result};
use crate::eval::evaluate;
use crate::faults::defense::Defense;
use crate::faults::inject::{BitFault, Injector};
use crate::faults::storage::{stored_as_int, Storage};
use crate::model::Model;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Bfa,
    Random,
}

impl std::str::FromStr for Method {
    type Err = HartError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "bfa" => Ok(Method::Bfa),
            "random" => Ok(Method::Random),
            _ => Err(HartError::Invalid(format!(
                "unknown attack method {s:?} (bfa or random)"
            ))),
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Bfa => "bfa",
            Method::Random => "random",
        })
    }
}

#[derive(Debug, Clone)]
pub struct AttackConfig {
    pub method: Method,
    pub storage: Storage,
    pub per_channel: bool,
    pub defense: Defense,
    pub max_flips: usize,
    /// Stop at or below this accuracy (None: chance + 1 point).
    pub target: Option<f64>,
    pub top_k: usize,
    pub trials: usize,
    pub seed: u64,
    /// Images in a trial's attack batch.
    pub attack_images: usize,
    /// Images per forward pass when measuring accuracy (as `hart sweep --batch-size`).
    pub batch: usize,
}

/// One committed flip, as flips.csv records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlipRecord {
    pub group: String,
    pub trial: usize,
    pub method: Method,
    pub iteration: usize,
    pub param: String,
    pub index: usize,
    pub bit: u8,
    /// The weight before and after this flip (decoded, before recovery).
    pub old: f32,
    pub new: f32,
    pub attack_loss: f64,
    pub accuracy: f64,
}

/// One trial of one method.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub trial: usize,
    pub method: Method,
    pub flips: usize,
    pub final_accuracy: f64,
    pub reached: bool,
    /// Accuracy after 0, 1, … flips.
    pub curve: Vec<f64>,
    pub detected_flips: u64,
    pub zeroed_weights: u64,
    pub zeroed_groups: u64,
    #[serde(skip)]
    pub records: Vec<FlipRecord>,
}

/// A model under attack: its stored words, the defence, the data.
pub struct Attack<'a> {
    pub model: &'a Model,
    pub train: &'a Dataset,
    pub eval: &'a Dataset,
    pub inject: Injector,
    pub cfg: AttackConfig,
    pub clean_accuracy: f64,
    /// Ranger's bounds and the clean accuracy without them, when the model carries them.
    pub ranger: Option<crate::faults::ranger::Report>,
    pub target: f64,
    /// Stored tensors the attack flips: the weights (the int-stored rule, whatever the storage).
    pub layers: Vec<usize>,
    device: Device,
    _restore: Snapshot,
}

impl<'a> Attack<'a> {
    pub fn new(model: &'a Model, train: &'a Dataset, eval: &'a Dataset, cfg: AttackConfig) -> Result<Self> {
        if cfg.max_flips == 0 || cfg.top_k == 0 || cfg.trials == 0 || cfg.attack_images == 0 || cfg.batch == 0 {
            return Err(HartError::Invalid(
                "--max-flips, --top-k, --trials, --limit and --batch-size must be at least 1".into(),
            ));
        }
        if let Some(t) = cfg.target {
            if !(0.0..=1.0).contains(&t) {
                return Err(HartError::Invalid(format!("--target-accuracy {t} must be in [0, 1]")));
            }
        }
        if train.is_empty() || eval.is_empty() {
            return Err(HartError::Invalid(
                "the attack needs training and evaluation images".into(),
            ));
        }
        model.check_finite()?;
        let floats: Vec<(String, Tensor)> = model
            .named_tensors()
            .into_iter()
            .filter(|(_, t, _)| t.is_floating_point())
            .map(|(n, t, _)| (n, t))
            .collect();
        let restore = Snapshot::take(&floats);
        let granularity = Granularity::of(cfg.per_channel);
        let inject = Injector::new(model, cfg.storage, granularity, cfg.defense, cfg.seed)?;
        let layers: Vec<usize> = model
            .named_tensors()
            .iter()
            .filter(|(_, t, k)| stored_as_int(t, *k))
            .filter_map(|(n, _, _)| inject.stored.index(n))
            .collect();
        if layers.is_empty() {
            return Err(HartError::Invalid("the model has no weight tensors to attack".into()));
        }
        let device = model.device();
        let clean_accuracy = evaluate(model, eval, cfg.batch, device)?.accuracy;
        let ranger = crate::faults::ranger::report(model, eval, cfg.batch, crate::eval::NanPolicy::Wrong)?;
        let target = cfg.target.unwrap_or(1.0 / eval.num_classes.max(1) as f64 + 0.01);
        Ok(Attack {
            model,
            train,
            eval,
            inject,
            cfg,
            clean_accuracy,
            ranger,
            target,
            layers,
            device,
            _restore: restore,
        })
    }

    /// Accuracy on the evaluation slice with `faults` applied and recovered.
    pub fn accuracy(&self, faults: &[BitFault]) -> Result<f64> {
        self.inject.with_faults(self.model, faults, |_| {
            Ok(evaluate(self.model, self.eval, self.cfg.batch, self.device)?.accuracy)
        })
    }

    /// Trial `t`'s attack batch: `attack_images` images drawn (seed + t)
    /// from the first ten times as many training images.
    pub fn attack_batch(&self, t: usize) -> Result<(Tensor, Tensor)> {
        let pool = (10 * self.cfg.attack_images).min(self.train.len());
        let n = self.cfg.attack_images.min(pool);
        let mut rng = ChaCha8Rng::seed_from_u64(self.cfg.seed.wrapping_add(t as u64));
        let mut idx = sample(&mut rng, pool, n).into_vec();
        idx.sort_unstable();
        let (x, y) = self.train.batch(&idx);
        Ok((x.f_to_device(self.device)?, y.f_to_device(self.device)?))
    }

    /// Every trial of the configured method; a BFA run adds, per trial, the
    /// random baseline with as many flips as that BFA trial used.
    /// `progress(flips)` after every committed flip.
    pub fn run(&self, progress: &mut dyn FnMut(u64)) -> Result<Vec<Trial>> {
        let mut out = vec![];
        for t in 0..self.cfg.trials {
            match self.cfg.method {
                Method::Bfa => {
                    let bfa = search::bfa(self, t, progress)?;
                    let budget = bfa.flips;
                    out.push(bfa);
                    out.push(search::random(self, t, budget, false, &mut |_| {})?);
                }
                Method::Random => out.push(search::random(self, t, self.cfg.max_flips, true, progress)?),
            }
        }
        Ok(out)
    }
}
