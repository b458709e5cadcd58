//! The experiment's measurements, one module each.
//!
//! A measurement is everything the experiment does with one kind of result:
//! its cached stage(s) on every trained
//! model, its typed per-model result (the type its command writes as
//! summary.json, read back from the stage cache), its per-recipe statistics,
//! its report and console sections, its "not better" comparisons and its
//! claims. The run loop, the progress count, the aggregation, the report and
//! the claims table iterate over [`REGISTRY`] and name no measurement.
//!
//! **Adding a measurement** is one new file here implementing
//! [`Measurement`] and one line in [`REGISTRY`] (plus, when it has a config
//! table of its own, its struct in `experiment/sections.rs` and its field in
//! [`ExperimentConfig`]); see docs/architecture.md.

pub mod attack;
pub mod campaign;
pub mod compress;
pub mod defense;
pub mod hessian;
pub mod landscape;
pub mod sweep;

use std::any::Any;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use super::claims::{Claim, ClaimContext};
use super::config::ExperimentConfig;
use super::results::{Group, ModelResults, Row};
use super::run::{Runner, TrainedModel};
use crate::error::{HartError, Result};
use crate::report::Report;
use crate::stats::MeanCi;

/// Every measurement, in the order their stages run and their report
/// sections, comparisons and claims appear. The first is the primary one
/// (the sweep): its comparisons and claims come before the accuracy's.
pub static REGISTRY: &[&dyn Section] = &[
    &sweep::Sweep,
    &hessian::Hessian,
    &compress::Compress,
    &landscape::Landscape,
    &attack::AttackSection,
    &defense::DefenseSection,
    &campaign::CampaignSection,
];

/// The parameters a cost estimate assumes (about LeNet-5's 61k): costs
/// come from the config alone, never from a trained model, so that every
/// shard computes the same assignment whatever the cache holds.
pub const NOMINAL_PARAMS: f64 = 60_000.0;

/// Which way a quantity improves, for the "not better" statements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

/// One quantity of a recipe set against the baseline's (None where the
/// baseline lacks it): the report states it when the recipe is not better.
pub struct Comparison {
    pub what: String,
    pub value: MeanCi,
    pub baseline: Option<MeanCi>,
    pub better: Better,
}

impl Comparison {
    pub fn new(what: impl Into<String>, value: MeanCi, baseline: Option<MeanCi>, better: Better) -> Self {
        Comparison {
            what: what.into(),
            value,
            baseline,
            better,
        }
    }
}

/// How a headline figure's paired change against the baseline is expressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// `(x − base) / base` per seed (counts: erratic bits, flips to crush).
    Relative,
    /// `x − base` per seed, a difference of fractions shown in points (accuracies).
    Points,
}

/// One headline resilience figure of a section for one recipe, as the
/// cross-recipe × fault-model verdict table reads it.
pub struct Headline {
    /// The fault model (and defence) it measures: the table's row.
    pub fault: String,
    pub value: MeanCi,
    /// Paired per seed against the baseline recipe (None for the baseline itself).
    pub change: Option<MeanCi>,
    pub unit: Change,
    pub better: Better,
    /// What qualifies the cell's value, printed after it (an attack whose
    /// trials hit their budget reports a lower bound).
    pub note: Option<String>,
}

/// A measurement with its own result and statistics types.
pub trait Measurement: Sync {
    /// Keys the per-model result, and names the measurement's units in
    /// shard logs and missing-unit errors (`sweep lenet5/hat/seed1`).
    const NAME: &'static str;
    /// One trained model's result, as its stage(s) cache it. A measurement
    /// whose section is off returns its empty value (None, an empty list).
    type Result: Send + 'static;
    /// One recipe's statistics over seeds, flattened into the group's JSON
    /// (summary.json's `groups`), so its field names are summary.json's keys.
    type Stats: Serialize + DeserializeOwned;

    /// Cached stages per trained model (0 when the section is off).
    fn stages(&self, cfg: &ExperimentConfig) -> u64;
    /// Expected cost of its stages on one model, in image passes (a forward
    /// pass of one image is 1, a backward pass 2), from the config alone:
    /// `hart experiment --shard` balances the measurement units by it, so
    /// only the ratios between measurements matter.
    fn cost(&self, cfg: &ExperimentConfig) -> f64;
    /// Test images it reads (a prefix of the test split).
    fn test_images(&self, _cfg: &ExperimentConfig) -> Option<usize> {
        None
    }
    /// Runs (or reads from the cache) its stages on one trained model.
    fn measure(&self, run: &mut Runner, m: &TrainedModel) -> Result<Self::Result>;
    /// A recipe's statistics; `base` is the baseline recipe's models (the
    /// rows themselves for the baseline, with `is_base`).
    fn aggregate(&self, rows: &[Row<Self::Result>], base: &[Row<Self::Result>], is_base: bool) -> Self::Stats;
    /// Quantities the "not better" statements compare with the baseline.
    fn comparisons(&self, _g: &Self::Stats, _base: &Self::Stats) -> Vec<Comparison> {
        vec![]
    }
    /// Its headline resilience figure(s) (none for what is not a fault
    /// model: curvature, compression, landscapes), and which way is better.
    fn headlines(&self, _s: &Self::Stats) -> Vec<Headline> {
        vec![]
    }
    /// Claims rows for one Hessian-aware recipe.
    fn claims(&self, _cx: &ClaimContext, _groups: &[Group]) -> Result<Vec<Claim>> {
        Ok(vec![])
    }
    /// Its sections of report.html / summary.md.
    fn report(&self, r: &mut Report, groups: &[Group], archs: &[String], plots: &Path) -> Result<()>;
    /// Lines `hart experiment` prints after the headline table.
    fn console(&self, _groups: &[Group]) -> Result<Vec<String>> {
        Ok(vec![])
    }
}

/// A measurement's statistics in a group, typed (an error, not a NaN, when
/// they do not read back).
pub fn stats<M: Measurement>(g: &Group) -> Result<M::Stats> {
    serde_json::from_value(Value::Object(g.sections.clone())).map_err(|e| {
        HartError::Invalid(format!(
            "{}/{}: the {} statistics do not read back: {e}",
            g.arch,
            g.recipe,
            M::NAME
        ))
    })
}

/// The object-safe face of [`Measurement`] the shared code iterates over;
/// implemented for every measurement.
pub trait Section: Sync {
    fn name(&self) -> &'static str;
    fn stages(&self, cfg: &ExperimentConfig) -> u64;
    fn cost(&self, cfg: &ExperimentConfig) -> f64;
    fn test_images(&self, cfg: &ExperimentConfig) -> Option<usize>;
    fn measure(&self, run: &mut Runner, m: &TrainedModel) -> Result<Box<dyn Any + Send>>;
    fn aggregate(&self, rows: &[&ModelResults], base: &[&ModelResults], is_base: bool) -> Result<Map<String, Value>>;
    fn comparisons(&self, g: &Group, base: &Group) -> Result<Vec<Comparison>>;
    fn headlines(&self, g: &Group) -> Result<Vec<Headline>>;
    fn claims(&self, cx: &ClaimContext, groups: &[Group]) -> Result<Vec<Claim>>;
    fn report(&self, r: &mut Report, groups: &[Group], archs: &[String], plots: &Path) -> Result<()>;
    fn console(&self, groups: &[Group]) -> Result<Vec<String>>;
}

/// The rows' results of measurement `M`, paired with their models.
fn typed<'a, M: Measurement>(rows: &[&'a ModelResults]) -> Result<Vec<Row<'a, M::Result>>> {
    rows.iter()
        .map(|r| {
            let result = r
                .results
                .get(M::NAME)
                .and_then(|b| b.downcast_ref::<M::Result>())
                .ok_or_else(|| HartError::Invalid(format!("internal: no {} result for {}", M::NAME, r.model.key)))?;
            Ok(Row {
                model: &r.model,
                result,
            })
        })
        .collect()
}

impl<M: Measurement> Section for M {
    fn name(&self) -> &'static str {
        M::NAME
    }
    fn stages(&self, cfg: &ExperimentConfig) -> u64 {
        Measurement::stages(self, cfg)
    }
    fn cost(&self, cfg: &ExperimentConfig) -> f64 {
        Measurement::cost(self, cfg)
    }
    fn test_images(&self, cfg: &ExperimentConfig) -> Option<usize> {
        Measurement::test_images(self, cfg)
    }
    fn measure(&self, run: &mut Runner, m: &TrainedModel) -> Result<Box<dyn Any + Send>> {
        Ok(Box::new(Measurement::measure(self, run, m)?))
    }
    fn aggregate(&self, rows: &[&ModelResults], base: &[&ModelResults], is_base: bool) -> Result<Map<String, Value>> {
        let stats = Measurement::aggregate(self, &typed::<M>(rows)?, &typed::<M>(base)?, is_base);
        match serde_json::to_value(stats).map_err(|e| HartError::Invalid(e.to_string()))? {
            Value::Object(map) => Ok(map),
            other => Err(HartError::Invalid(format!(
                "internal: {} statistics are not a JSON object: {other}",
                M::NAME
            ))),
        }
    }
    fn comparisons(&self, g: &Group, base: &Group) -> Result<Vec<Comparison>> {
        Ok(Measurement::comparisons(self, &stats::<M>(g)?, &stats::<M>(base)?))
    }
    fn headlines(&self, g: &Group) -> Result<Vec<Headline>> {
        Ok(Measurement::headlines(self, &stats::<M>(g)?))
    }
    fn claims(&self, cx: &ClaimContext, groups: &[Group]) -> Result<Vec<Claim>> {
        Measurement::claims(self, cx, groups)
    }
    fn report(&self, r: &mut Report, groups: &[Group], archs: &[String], plots: &Path) -> Result<()> {
        Measurement::report(self, r, groups, archs, plots)
    }
    fn console(&self, groups: &[Group]) -> Result<Vec<String>> {
        Measurement::console(self, groups)
    }
}

/// Each group's statistics of `M`, beside the group (for report sections).
pub fn with_stats<M: Measurement>(groups: &[Group]) -> Result<Vec<(&Group, M::Stats)>> {
    groups.iter().map(|g| Ok((g, stats::<M>(g)?))).collect()
}
