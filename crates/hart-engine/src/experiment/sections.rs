//! The config tables of the measurements (`[sweep]`, `[analysis.landscape]`,
//! `[attack]`, `[defense]`, `[campaign]`): their serde structs, defaults and
//! checks. They sit below both the configuration, which composes them, and
//! the measurements, which read them. Values are strings in the TOML and
//! checked here, so a bad one is an error naming its key.

use serde::{Deserialize, Serialize};

use crate::attack::Method;
use crate::campaign::model::check_levels;
use crate::campaign::FaultModel;
use crate::error::{HartError, Result};
use crate::faults::ranger::DefenseChoice;
use crate::faults::{Defense, Storage};

/// An error naming the config key.
pub(crate) fn invalid(key: &str, msg: impl std::fmt::Display) -> HartError {
    HartError::Invalid(format!("config key `{key}`: {msg}"))
}

/// Parses `value` as `T`, an error naming `key` otherwise.
pub(crate) fn parse<T: std::str::FromStr<Err = HartError>>(key: &str, value: &str) -> Result<T> {
    value.parse().map_err(|e: HartError| invalid(key, e))
}

pub(crate) fn at_least_one(key: &str, v: usize) -> Result<()> {
    if v == 0 {
        return Err(invalid(key, "must be at least 1"));
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    /// all, sign, exponent, exponent-msb, mantissa, or a list like "30,31".
    #[serde(default = "default_bits")]
    pub bits: String,
    /// Evaluation images for the sweep (the first N of the test split).
    #[serde(default = "default_sweep_limit")]
    pub limit: usize,
    /// Sample this many parameter elements (all bits of the class each); exhaustive when absent.
    pub sample_params: Option<usize>,
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Count every sample of every flip, so the RAD histogram above the
    /// threshold is exact rather than cut off at the verdict.
    #[serde(default = "yes")]
    pub exact_rad: bool,
}

impl Default for SweepConfig {
    fn default() -> Self {
        SweepConfig {
            bits: default_bits(),
            limit: default_sweep_limit(),
            sample_params: None,
            threshold: default_threshold(),
            exact_rad: true,
        }
    }
}

fn default_bits() -> String {
    "all".into()
}
fn default_sweep_limit() -> usize {
    1000
}
fn default_threshold() -> f64 {
    0.1
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LandscapeConfig {
    #[serde(default = "default_steps")]
    pub steps: usize,
    #[serde(default = "default_range")]
    pub range: f64,
    #[serde(default = "default_landscape_limit")]
    pub limit: usize,
}

impl Default for LandscapeConfig {
    fn default() -> Self {
        LandscapeConfig {
            steps: default_steps(),
            range: default_range(),
            limit: default_landscape_limit(),
        }
    }
}

fn default_steps() -> usize {
    21
}
fn default_range() -> f64 {
    1.0
}
fn default_landscape_limit() -> usize {
    500
}

/// `hart attack` on every trained model (its seed is the attack's seed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AttackSettings {
    /// bfa (with the random baseline at each trial's budget), random, or both.
    #[serde(default = "default_method")]
    pub method: String,
    /// int8, int4 or fp32.
    #[serde(default = "default_attack_storage")]
    pub storage: String,
    #[serde(default = "default_attack_trials")]
    pub trials: usize,
    #[serde(default = "default_max_flips")]
    pub max_flips: usize,
    /// Attack batch: images per trial, drawn from the first 10·limit training images.
    #[serde(default = "default_attack_limit")]
    pub limit: usize,
    /// Accuracy is measured on the first `eval_limit` test images.
    #[serde(default = "default_eval_limit")]
    pub eval_limit: usize,
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Stop at or below this accuracy (default chance + 1 point).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_accuracy: Option<f64>,
}

impl AttackSettings {
    pub fn methods(&self) -> Vec<Method> {
        match self.method.as_str() {
            "both" => vec![Method::Bfa, Method::Random],
            m => m.parse().map(|m| vec![m]).unwrap_or_default(),
        }
    }

    pub fn storage(&self) -> Storage {
        self.storage.parse().unwrap_or(Storage::Int8)
    }

    pub fn validate(&self) -> Result<()> {
        if self.method != "both" {
            parse::<Method>("attack.method", &self.method)
                .map_err(|_| invalid("attack.method", format!("{:?} is not bfa, random or both", self.method)))?;
        }
        parse::<Storage>("attack.storage", &self.storage)?;
        at_least_one("attack.trials", self.trials)?;
        at_least_one("attack.max_flips", self.max_flips)?;
        at_least_one("attack.limit", self.limit)?;
        at_least_one("attack.eval_limit", self.eval_limit)?;
        at_least_one("attack.top_k", self.top_k)?;
        if let Some(t) = self.target_accuracy {
            if !(0.0..=1.0).contains(&t) {
                return Err(invalid("attack.target_accuracy", format!("{t} is outside [0, 1]")));
            }
        }
        Ok(())
    }
}

fn default_method() -> String {
    "bfa".into()
}
fn default_attack_storage() -> String {
    "int8".into()
}
fn default_attack_trials() -> usize {
    5
}
fn default_max_flips() -> usize {
    100
}
fn default_attack_limit() -> usize {
    128
}
fn default_eval_limit() -> usize {
    1000
}
fn default_top_k() -> usize {
    10
}

/// Defences the `[sweep]` is repeated under (the undefended sweep always runs).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DefenseSettings {
    /// range, radar, radar:G or ranger.
    pub sweep: Vec<String>,
    /// Ranger's bounds: each activation's [min, max] over the first N training images.
    #[serde(default = "default_profile_limit")]
    pub profile_limit: usize,
}

impl DefenseSettings {
    pub fn defenses(&self) -> Vec<DefenseChoice> {
        self.sweep.iter().filter_map(|d| d.parse().ok()).collect()
    }

    pub fn validate(&self) -> Result<()> {
        let key = "defense.sweep";
        if self.sweep.is_empty() {
            return Err(invalid(
                key,
                "name at least one defence (range, radar, radar:G or ranger)",
            ));
        }
        let mut seen = vec![];
        for d in &self.sweep {
            let parsed: DefenseChoice = parse(key, d)?;
            if parsed == DefenseChoice::Words(Defense::None) {
                return Err(invalid(key, "\"none\" is the undefended sweep, which always runs"));
            }
            if seen.contains(&parsed) {
                return Err(invalid(key, format!("{parsed} is listed twice")));
            }
            seen.push(parsed);
        }
        at_least_one("defense.profile_limit", self.profile_limit)
    }
}

fn default_profile_limit() -> usize {
    1000
}

/// `hart campaign` on every trained model (its seed draws the faults).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CampaignSettings {
    /// bitflip, stuck-at-0, stuck-at-1 or gaussian.
    pub fault: String,
    /// Bit-error rates, or relative σ for gaussian.
    pub levels: Vec<f64>,
    /// fp32, int8 or int4.
    #[serde(default = "default_campaign_storage")]
    pub storage: String,
    #[serde(default = "default_campaign_trials")]
    pub trials: u64,
    /// Evaluation images (the first N of the test split).
    #[serde(default = "default_eval_limit")]
    pub limit: usize,
    /// Only the tensors whose name matches (as `hart campaign --params`); every tensor when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<String>,
}

impl CampaignSettings {
    pub fn fault(&self) -> FaultModel {
        self.fault.parse().unwrap_or(FaultModel::Bitflip)
    }

    pub fn storage(&self) -> Storage {
        self.storage.parse().unwrap_or(Storage::Fp32)
    }

    pub fn validate(&self) -> Result<()> {
        let fault: FaultModel = parse("campaign.fault", &self.fault)?;
        check_levels(&self.levels, fault).map_err(|m| invalid("campaign.levels", m))?;
        parse::<Storage>("campaign.storage", &self.storage)?;
        at_least_one("campaign.trials", self.trials as usize)?;
        at_least_one("campaign.limit", self.limit)?;
        if let Some(p) = &self.params {
            regex::Regex::new(p).map_err(|e| {
                let why = e.to_string().lines().last().unwrap_or_default().trim().to_string();
                invalid("campaign.params", format!("{p:?} is not a regex: {why}"))
            })?;
        }
        Ok(())
    }
}

/// `[campaign]` (one table) or `[[campaign]]` (several), read as a list;
/// each table keeps its own error messages (unknown keys named).
pub(crate) fn one_or_many<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<CampaignSettings>, D::Error> {
    use serde::de::Error;
    let items = match toml::Value::deserialize(d)? {
        toml::Value::Array(a) => a,
        one => vec![one],
    };
    items
        .into_iter()
        .map(|v| {
            v.try_into::<CampaignSettings>()
                .map_err(|e| D::Error::custom(format!("[campaign]: {}", e.message().replace('\n', " "))))
        })
        .collect()
}

fn default_campaign_storage() -> String {
    "fp32".into()
}
fn default_campaign_trials() -> u64 {
    100
}
