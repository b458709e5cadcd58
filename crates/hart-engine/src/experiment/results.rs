//! Everything measured for one trained model, and the per-recipe groups
//! (means and 95% intervals over seeds) that summary.json and the report
//! show: the training's own numbers here, each measurement's statistics
//! from its module (flattened into the group, so summary.json keeps one
//! object per group).

use std::any::Any;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::run::TrainedModel;
use crate::error::Result;
use crate::stats::{mean_ci, MeanCi};

/// One model's measurements, by measurement name (typed per measurement,
/// see [`super::measure::Measurement::Result`]).
pub struct ModelResults {
    pub model: TrainedModel,
    pub results: BTreeMap<&'static str, Box<dyn Any + Send>>,
}

/// One trained model's result of one measurement.
pub struct Row<'a, T> {
    pub model: &'a TrainedModel,
    pub result: &'a T,
}

impl<T> Clone for Row<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Row<'_, T> {}

/// A recipe's results on one architecture, aggregated over seeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Group {
    pub arch: String,
    pub recipe: String,
    pub baseline: bool,
    pub seeds: Vec<u64>,
    pub test_accuracy: MeanCi,
    pub train_seconds: MeanCi,
    /// Per-seed test-accuracy difference against the baseline (a fraction, not relative).
    pub accuracy_diff: Option<MeanCi>,
    /// The regulariser of the recipe (none, hessian, sam, fd-hessian) and the λ it trained with.
    pub regularizer: String,
    pub lambda: Option<f64>,
    /// Every measurement's statistics, by their field names (read them typed
    /// with [`super::measure::stats`]).
    #[serde(flatten)]
    pub sections: Map<String, Value>,
}

/// Mean and interval over rows of `f`.
pub fn mean_of<T>(rows: &[Row<T>], f: impl Fn(&T) -> f64) -> MeanCi {
    mean_ci(&rows.iter().map(|r| f(r.result)).collect::<Vec<_>>())
}

/// `f` per row, in the rows' (seeds') order.
pub fn per_seed<T>(rows: &[Row<T>], f: impl Fn(&T) -> f64) -> Vec<f64> {
    rows.iter().map(|r| f(r.result)).collect()
}

/// Element-wise mean of vectors of unequal length (missing entries count 0).
pub fn elementwise_mean(rows: &[Vec<f64>]) -> Vec<f64> {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    (0..n)
        .map(|i| rows.iter().map(|r| r.get(i).copied().unwrap_or(0.0)).sum::<f64>() / rows.len().max(1) as f64)
        .collect()
}

/// Relative change `(x − base) / base` paired by seed.
pub fn paired_change<T>(rows: &[Row<T>], base: &[Row<T>], f: impl Fn(&T) -> f64) -> Option<MeanCi> {
    paired(rows, base, |x, y| (y != 0.0).then(|| (x - y) / y), f)
}

/// Difference `x − base` paired by seed.
pub fn paired_diff<T>(rows: &[Row<T>], base: &[Row<T>], f: impl Fn(&T) -> f64) -> Option<MeanCi> {
    paired(rows, base, |x, y| Some(x - y), f)
}

/// `combine(x, base)` over the seeds both recipes have, with its mean and interval.
pub fn paired<T>(
    rows: &[Row<T>],
    base: &[Row<T>],
    combine: impl Fn(f64, f64) -> Option<f64>,
    f: impl Fn(&T) -> f64,
) -> Option<MeanCi> {
    let values: Vec<f64> = rows
        .iter()
        .filter_map(|r| {
            let b = base.iter().find(|b| b.model.seed == r.model.seed)?;
            let (x, y) = (f(r.result), f(b.result));
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

/// The rows' trained models as rows of their own (for the training's numbers).
fn trained<'a>(rows: &[&'a ModelResults]) -> Vec<Row<'a, TrainedModel>> {
    rows.iter()
        .map(|r| Row {
            model: &r.model,
            result: &r.model,
        })
        .collect()
}

/// The statistics a recipe's rows add to its group, given the baseline's rows.
pub type Sections<'a> = dyn Fn(&[&ModelResults], &[&ModelResults], bool) -> Result<Map<String, Value>> + 'a;

/// Groups per architecture and recipe; `sections` adds the measurements' statistics.
pub fn aggregate(
    results: &[ModelResults],
    archs: &[String],
    recipes: &[RecipeInfo],
    sections: &Sections,
) -> Result<Vec<Group>> {
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
            let rows = pick(&info.name);
            if rows.is_empty() {
                continue;
            }
            let sections = sections(&rows, &base, i == 0)?;
            let (models, base_models) = (trained(&rows), trained(&base));
            groups.push(Group {
                arch: arch.clone(),
                recipe: info.name.clone(),
                baseline: i == 0,
                seeds: rows.iter().map(|r| r.model.seed).collect(),
                test_accuracy: mean_of(&models, |m| m.test_accuracy),
                train_seconds: mean_of(&models, |m| m.train_seconds),
                accuracy_diff: (i > 0)
                    .then(|| paired_diff(&models, &base_models, |m| m.test_accuracy))
                    .flatten(),
                regularizer: info.regularizer.clone(),
                // As trained on this architecture (a tuned λ may differ per architecture).
                lambda: rows[0].model.lambda,
                sections,
            });
        }
    }
    Ok(groups)
}
