//! Everything measured for one trained model, and the per-recipe aggregates
//! (means and 95% intervals over seeds) that summary.json and the report show.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::fault_results::{self, AttackStats, CampaignStats, DefendedStats};
use super::run::TrainedModel;
use super::stages::{CurvePoint, LandscapePoint};
use super::stats::{mean_ci, MeanCi};
use crate::campaign::run::Summary as CampaignSummary;

/// One model's measurements.
#[derive(Debug, Clone)]
pub struct ModelResults {
    pub model: TrainedModel,
    pub sweep: Value,
    pub hessian: Option<Value>,
    pub quantize: Vec<CurvePoint>,
    pub prune: Vec<CurvePoint>,
    pub landscape: Option<Vec<LandscapePoint>>,
    /// Per attack method, `hart attack`'s summary.
    pub attacks: Vec<(String, Value)>,
    /// Per defence, the sweep's summary under it.
    pub defended: Vec<(String, Value)>,
    pub campaign: Option<CampaignSummary>,
}

pub(super) fn num(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_f64()
}

impl ModelResults {
    pub fn erratic_bits(&self) -> f64 {
        num(&self.sweep, &["erratic_bits"]).unwrap_or(f64::NAN)
    }
    pub fn erratic_params(&self) -> f64 {
        num(&self.sweep, &["erratic_params"]).unwrap_or(f64::NAN)
    }
    pub fn flips(&self) -> f64 {
        num(&self.sweep, &["flips"]).unwrap_or(f64::NAN)
    }
    pub fn trace(&self) -> Option<f64> {
        self.hessian.as_ref().and_then(|h| num(h, &["trace"]))
    }
    pub fn top_eigenvalue(&self) -> Option<f64> {
        self.hessian
            .as_ref()
            .and_then(|h| h.get("top_eigenvalues")?.as_array()?.first()?.as_f64())
    }
    /// RAD histogram counts: `[negative, 0–5 %, …, 95–100 %]`.
    pub fn rad_histogram(&self) -> Vec<f64> {
        let h = &self.sweep["rad_histogram"];
        let mut out = vec![h["negative"].as_f64().unwrap_or(0.0)];
        out.extend(
            h["counts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| c.as_f64().unwrap_or(0.0)),
        );
        out
    }
    /// Flips that cost 90–100% of the accuracy (the paper's catastrophic bin).
    pub fn severe_bits(&self) -> f64 {
        let h = self.rad_histogram();
        match (h.get(19), h.get(20)) {
            (Some(a), Some(b)) => a + b,
            _ => f64::NAN,
        }
    }
    pub fn erratic_per_bit(&self) -> Vec<f64> {
        let mut out = vec![0.0; 32];
        for b in self.sweep["per_bit"].as_array().into_iter().flatten() {
            if let (Some(bit), Some(e)) = (b["bit"].as_u64(), b["erratic_bits"].as_f64()) {
                out[bit as usize % 32] = e;
            }
        }
        out
    }
    pub fn erratic_per_layer(&self) -> BTreeMap<String, f64> {
        self.sweep["per_layer"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| Some((l["layer"].as_str()?.to_string(), l["erratic_bits"].as_f64()?)))
            .collect()
    }
}

/// A recipe's results on one architecture, aggregated over seeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Group {
    pub arch: String,
    pub recipe: String,
    pub baseline: bool,
    pub seeds: Vec<u64>,
    pub test_accuracy: MeanCi,
    pub train_seconds: MeanCi,
    pub flips: f64,
    pub erratic_bits: MeanCi,
    pub erratic_params: MeanCi,
    /// Per-seed relative change against the baseline recipe with the same seed.
    pub erratic_bits_change: Option<MeanCi>,
    pub erratic_params_change: Option<MeanCi>,
    /// Flips with RAD in 90–100%, and their per-seed relative change.
    pub severe_bits: MeanCi,
    pub severe_bits_change: Option<MeanCi>,
    /// Per-seed test-accuracy difference against the baseline (a fraction, not relative).
    pub accuracy_diff: Option<MeanCi>,
    /// The regulariser of the recipe (none, hessian, sam, fd-hessian) and the λ it trained with.
    pub regularizer: String,
    pub lambda: Option<f64>,
    pub hessian_trace: Option<MeanCi>,
    pub top_eigenvalue: Option<MeanCi>,
    /// Mean counts per RAD bin: `[negative, 0–5 %, …, 95–100 %]`.
    pub rad_histogram: Vec<f64>,
    pub erratic_per_bit: Vec<f64>,
    pub erratic_per_layer: BTreeMap<String, f64>,
    /// (bits, accuracy) means over seeds.
    pub quantize: Vec<(f64, MeanCi)>,
    pub prune: Vec<(f64, MeanCi)>,
    /// Loss along the direction for the first seed.
    pub landscape: Option<Vec<LandscapePoint>>,
    /// `[attack]`: flips to crush per method.
    #[serde(default)]
    pub attack: Vec<AttackStats>,
    /// `[defense]`: erratic bits under each defence.
    #[serde(default)]
    pub defended: Vec<DefendedStats>,
    /// `[campaign]`: accuracy per level.
    #[serde(default)]
    pub campaign: Option<CampaignStats>,
}

pub(super) fn mean_of(rows: &[&ModelResults], f: impl Fn(&ModelResults) -> f64) -> MeanCi {
    mean_ci(&rows.iter().map(|r| f(r)).collect::<Vec<_>>())
}

fn elementwise_mean(rows: &[Vec<f64>]) -> Vec<f64> {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    (0..n)
        .map(|i| rows.iter().map(|r| r.get(i).copied().unwrap_or(0.0)).sum::<f64>() / rows.len().max(1) as f64)
        .collect()
}

fn curve(rows: &[&ModelResults], get: impl Fn(&ModelResults) -> &Vec<CurvePoint>) -> Vec<(f64, MeanCi)> {
    let Some(first) = rows.first() else { return vec![] };
    get(first)
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                p.setting,
                mean_of(rows, |r| get(r).get(i).map_or(f64::NAN, |q| q.accuracy)),
            )
        })
        .collect()
}

/// Relative change `(x − base) / base` paired by seed.
pub(super) fn paired_change(
    rows: &[&ModelResults],
    base: &[&ModelResults],
    f: impl Fn(&ModelResults) -> f64,
) -> Option<MeanCi> {
    paired(rows, base, |x, y| (y != 0.0).then(|| (x - y) / y), f)
}

/// `combine(x, base)` over the seeds both recipes have, with its mean and interval.
pub(super) fn paired(
    rows: &[&ModelResults],
    base: &[&ModelResults],
    combine: impl Fn(f64, f64) -> Option<f64>,
    f: impl Fn(&ModelResults) -> f64,
) -> Option<MeanCi> {
    let values: Vec<f64> = rows
        .iter()
        .filter_map(|r| {
            let b = base.iter().find(|b| b.model.seed == r.model.seed)?;
            let (x, y) = (f(r), f(b));
            (x.is_finite() && y.is_finite()).then(|| combine(x, y)).flatten()
        })
        .collect();
    (!values.is_empty()).then(|| mean_ci(&values))
}

/// Per recipe: its name and regulariser.
pub struct RecipeInfo {
    pub name: String,
    pub regularizer: String,
}

pub fn aggregate(results: &[ModelResults], archs: &[String], recipes: &[RecipeInfo]) -> Vec<Group> {
    let mut groups = vec![];
    for arch in archs {
        let pick = |recipe: &str| -> Vec<&ModelResults> {
            results
                .iter()
                .filter(|r| &r.model.arch == arch && r.model.recipe == recipe)
                .collect()
        };
        let base = pick(&recipes[0].name);
        for (i, info) in recipes.iter().enumerate() {
            let recipe = &info.name;
            let rows = pick(recipe);
            if rows.is_empty() {
                continue;
            }
            let optional = |f: &dyn Fn(&ModelResults) -> Option<f64>| {
                rows.iter()
                    .all(|r| f(r).is_some())
                    .then(|| mean_of(&rows, |r| f(r).unwrap_or(f64::NAN)))
            };
            groups.push(Group {
                arch: arch.clone(),
                recipe: recipe.clone(),
                baseline: i == 0,
                seeds: rows.iter().map(|r| r.model.seed).collect(),
                test_accuracy: mean_of(&rows, |r| r.model.test_accuracy),
                train_seconds: mean_of(&rows, |r| r.model.train_seconds),
                flips: rows[0].flips(),
                erratic_bits: mean_of(&rows, ModelResults::erratic_bits),
                erratic_params: mean_of(&rows, ModelResults::erratic_params),
                erratic_bits_change: (i > 0)
                    .then(|| paired_change(&rows, &base, ModelResults::erratic_bits))
                    .flatten(),
                erratic_params_change: (i > 0)
                    .then(|| paired_change(&rows, &base, ModelResults::erratic_params))
                    .flatten(),
                severe_bits: mean_of(&rows, ModelResults::severe_bits),
                severe_bits_change: (i > 0)
                    .then(|| paired_change(&rows, &base, ModelResults::severe_bits))
                    .flatten(),
                accuracy_diff: (i > 0)
                    .then(|| paired(&rows, &base, |x, y| Some(x - y), |r| r.model.test_accuracy))
                    .flatten(),
                regularizer: info.regularizer.clone(),
                // As trained on this architecture (a tuned λ may differ per architecture).
                lambda: rows[0].model.lambda,
                hessian_trace: optional(&ModelResults::trace),
                top_eigenvalue: optional(&ModelResults::top_eigenvalue),
                rad_histogram: elementwise_mean(&rows.iter().map(|r| r.rad_histogram()).collect::<Vec<_>>()),
                erratic_per_bit: elementwise_mean(&rows.iter().map(|r| r.erratic_per_bit()).collect::<Vec<_>>()),
                erratic_per_layer: {
                    let mut m: BTreeMap<String, f64> = BTreeMap::new();
                    for r in &rows {
                        for (l, v) in r.erratic_per_layer() {
                            *m.entry(l).or_default() += v / rows.len() as f64;
                        }
                    }
                    m
                },
                quantize: curve(&rows, |r| &r.quantize),
                prune: curve(&rows, |r| &r.prune),
                landscape: rows[0].landscape.clone(),
                attack: fault_results::attacks(&rows, &base, i == 0),
                defended: fault_results::defended(&rows, &base, i == 0),
                campaign: fault_results::campaign(&rows, &base, i == 0),
            });
        }
    }
    groups
}
