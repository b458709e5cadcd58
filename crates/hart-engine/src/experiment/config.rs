//! The experiment configuration (TOML). Unknown keys are errors, and every
//! error names the key, so a typo never silently runs the default.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use super::model_entry::ModelEntry;
use super::sections::invalid;
pub use super::sections::{AttackSettings, CampaignSettings, DefenseSettings, LandscapeConfig, SweepConfig};
use crate::error::{HartError, Result};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    #[serde(default = "default_name")]
    pub name: String,
    pub data: DataConfig,
    /// Zoo architectures to compare.
    #[serde(default)]
    pub archs: Vec<String>,
    /// `[[model]]`: the user's own model files, trained and measured beside the architectures.
    /// Absent, the key stays out of the serialised config (summary.json, the shards' records).
    #[serde(default, rename = "model", skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelEntry>,
    /// One training run per seed and recipe; means and 95% intervals are over seeds.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    #[serde(default)]
    pub train: TrainDefaults,
    /// Training recipes; the first is the baseline the others are compared with.
    #[serde(rename = "recipe")]
    pub recipes: Vec<Recipe>,
    #[serde(default)]
    pub sweep: SweepConfig,
    #[serde(default)]
    pub analysis: AnalysisConfig,
    /// How recipes with `hessian_lambda = "tuned"` choose λ (`hart tune-lambda`'s search).
    #[serde(default)]
    pub tune: TuneSettings,
    /// Optional fault sections; absent, the experiment runs none of their stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attack: Option<AttackSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defense: Option<DefenseSettings>,
    /// `[campaign]`, or several as `[[campaign]]` (e.g. bit errors and Gaussian noise).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "super::sections::one_or_many"
    )]
    pub campaign: Vec<CampaignSettings>,
    /// How the verdict table judges recipes against the baseline.
    #[serde(default)]
    pub verdict: VerdictSettings,
}

/// `[verdict]`: the cross-recipe × fault-model table's rule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VerdictSettings {
    /// A recipe whose mean paired clean accuracy is more than this (a
    /// fraction: 0.02 = 2 points) below the baseline's gets no resilience verdict.
    #[serde(default = "default_tolerance")]
    pub accuracy_tolerance: f64,
}

impl Default for VerdictSettings {
    fn default() -> Self {
        VerdictSettings {
            accuracy_tolerance: default_tolerance(),
        }
    }
}

fn default_tolerance() -> f64 {
    0.02
}

/// λ of a recipe: a number, or "tuned" (chosen per architecture by the `[tune]` search).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum LambdaSetting {
    Value(f64),
    Named(String),
}

impl LambdaSetting {
    pub fn is_tuned(&self) -> bool {
        matches!(self, LambdaSetting::Named(s) if s == "tuned")
    }
}

/// The λ search of `hessian_lambda = "tuned"`: each candidate trained for
/// `epochs` on the first `limit` training images less the last `val`, which
/// are the validation slice (the test split is never read).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TuneSettings {
    #[serde(default = "default_grid")]
    pub grid: Vec<f64>,
    #[serde(default = "default_tune_epochs")]
    pub epochs: usize,
    #[serde(default = "default_tune_limit")]
    pub limit: usize,
    #[serde(default = "default_tune_val")]
    pub val: usize,
    #[serde(default = "default_tune_sweep_params")]
    pub sweep_params: u64,
    #[serde(default = "default_tune_sweep_images")]
    pub sweep_images: usize,
    #[serde(default = "default_budget")]
    pub accuracy_budget: f64,
    /// Seed of the search's trainings and sweep sample.
    #[serde(default)]
    pub seed: u64,
}

impl Default for TuneSettings {
    fn default() -> Self {
        TuneSettings {
            grid: default_grid(),
            epochs: default_tune_epochs(),
            limit: default_tune_limit(),
            val: default_tune_val(),
            sweep_params: default_tune_sweep_params(),
            sweep_images: default_tune_sweep_images(),
            accuracy_budget: default_budget(),
            seed: 0,
        }
    }
}

fn default_grid() -> Vec<f64> {
    vec![0.001, 0.01, 0.1, 1.0]
}
fn default_tune_epochs() -> usize {
    5
}
fn default_tune_limit() -> usize {
    12_000
}
fn default_tune_val() -> usize {
    2000
}
fn default_tune_sweep_params() -> u64 {
    300
}
fn default_tune_sweep_images() -> usize {
    500
}
fn default_budget() -> f64 {
    0.01
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    #[serde(default = "default_dataset")]
    pub dataset: String,
    pub data_dir: Option<PathBuf>,
    /// Training images (first N of the train split); all when absent.
    pub train_limit: Option<usize>,
    /// Test images for clean accuracy.
    #[serde(default = "default_test_limit")]
    pub test_limit: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainDefaults {
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default = "default_optimizer")]
    pub optimizer: String,
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    #[serde(default)]
    pub weight_decay: f64,
    /// Clip each step's joint gradient norm to this (absent = off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_grad_norm: Option<f64>,
}

impl Default for TrainDefaults {
    fn default() -> Self {
        TrainDefaults {
            epochs: default_epochs(),
            batch_size: default_batch(),
            optimizer: default_optimizer(),
            lr: default_lr(),
            momentum: default_momentum(),
            weight_decay: 0.0,
            clip_grad_norm: None,
        }
    }
}

/// A training recipe: `regularizer` none (plain), hessian (HAT), sam or
/// fd-hessian, with optional overrides of the training defaults.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub name: String,
    #[serde(default = "default_regularizer")]
    pub regularizer: String,
    pub optimizer: Option<String>,
    pub lr: Option<f64>,
    pub momentum: Option<f64>,
    pub epochs: Option<usize>,
    /// λ, or "tuned" for the `[tune]` search's choice.
    pub hessian_lambda: Option<LambdaSetting>,
    /// Trace estimator of HAT: hutchinson or gauss-newton.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hessian_method: Option<String>,
    /// Regularised steps over which λ rises linearly to its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hessian_warmup: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_grad_norm: Option<f64>,
    pub hessian_probes: Option<usize>,
    pub hessian_every: Option<usize>,
    pub hessian_layers: Option<String>,
    pub hessian_selective: Option<bool>,
    /// Curvature reading of the selective rule: diag, power or lanczos.
    pub hessian_reading: Option<String>,
    pub hessian_top_p: Option<usize>,
    pub hessian_sub_batch: Option<usize>,
    pub weight_decay: Option<f64>,
    pub sam_rho: Option<f64>,
    pub fd_sigma: Option<f64>,
    /// `noise` / `randbet` / clipping (as `hart train --noise-std …`); absent keys stay out
    /// of the serialised recipe, so the cache keys of configs without them do not change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_std: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bit_error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_weights: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_relative: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AnalysisConfig {
    #[serde(default = "yes")]
    pub hessian: bool,
    /// Images for the Hessian statistics.
    #[serde(default = "default_hessian_limit")]
    pub hessian_limit: usize,
    /// Hutchinson stops at this relative standard error of the trace ...
    #[serde(default = "default_rel_stderr")]
    pub hessian_rel_stderr: f64,
    /// ... or after this many probes.
    #[serde(default = "default_max_probes")]
    pub hessian_max_probes: usize,
    #[serde(default = "default_quant_bits")]
    pub quantize_bits: Vec<u32>,
    #[serde(default = "default_sparsity")]
    pub prune_sparsity: Vec<f64>,
    #[serde(default)]
    pub landscape: Option<LandscapeConfig>,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            hessian: true,
            hessian_limit: default_hessian_limit(),
            hessian_rel_stderr: default_rel_stderr(),
            hessian_max_probes: default_max_probes(),
            quantize_bits: default_quant_bits(),
            prune_sparsity: default_sparsity(),
            landscape: Some(LandscapeConfig::default()),
        }
    }
}

fn default_name() -> String {
    "experiment".into()
}
fn default_dataset() -> String {
    "fashion-mnist".into()
}
fn default_seeds() -> Vec<u64> {
    vec![0, 1, 2]
}
fn default_test_limit() -> usize {
    10_000
}
fn default_epochs() -> usize {
    3
}
fn default_batch() -> usize {
    64
}
fn default_optimizer() -> String {
    "sgd".into()
}
fn default_lr() -> f64 {
    0.05
}
fn default_momentum() -> f64 {
    0.9
}
fn default_regularizer() -> String {
    "none".into()
}
fn yes() -> bool {
    true
}
fn default_hessian_limit() -> usize {
    1000
}
fn default_rel_stderr() -> f64 {
    0.05
}
fn default_max_probes() -> usize {
    200
}
fn default_quant_bits() -> Vec<u32> {
    vec![8, 6, 4, 3, 2]
}
fn default_sparsity() -> Vec<f64> {
    vec![0.5, 0.7, 0.9]
}

impl ExperimentConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| HartError::io(path, e))?;
        Self::parse(&text).map_err(|e| match e {
            HartError::Invalid(m) => HartError::Invalid(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Self> {
        let cfg: ExperimentConfig = toml::from_str(text).map_err(|e| {
            // toml's Display is a multi-line snippet; keep the message and the line.
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let msg = e.message().replace('\n', " ");
            match line {
                Some(l) => HartError::Invalid(format!("line {l}: {msg}")),
                None => HartError::Invalid(msg),
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// What the experiment trains from, as units and the report name them:
    /// the architectures, then the `[[model]]` entries.
    pub fn model_names(&self) -> Vec<String> {
        let models = self.models.iter().map(|m| m.name.clone());
        self.archs.iter().cloned().chain(models).collect()
    }

    fn validate(&self) -> Result<()> {
        if self.archs.is_empty() && self.models.is_empty() {
            return Err(invalid(
                "archs",
                "name at least one architecture, or a [[model]] file of your own",
            ));
        }
        for a in &self.archs {
            if !crate::model::zoo::ARCHS.contains(&a.as_str()) {
                return Err(invalid("archs", format!("unknown architecture {a:?}")));
            }
        }
        super::model_entry::validate(&self.models, &self.archs)?;
        if self.seeds.is_empty() {
            return Err(invalid("seeds", "need at least one seed"));
        }
        if self.recipes.is_empty() {
            return Err(invalid("recipe", "need at least one [[recipe]]"));
        }
        for (i, r) in self.recipes.iter().enumerate() {
            if !["none", "hessian", "sam", "fd-hessian", "noise", "randbet"].contains(&r.regularizer.as_str()) {
                return Err(invalid(
                    &format!("recipe[{i}].regularizer"),
                    format!(
                        "{:?} is not none, hessian, sam, fd-hessian, noise or randbet",
                        r.regularizer
                    ),
                ));
            }
            if let Some(LambdaSetting::Named(s)) = &r.hessian_lambda {
                if s != "tuned" {
                    return Err(invalid(
                        &format!("recipe[{i}].hessian_lambda"),
                        format!("{s:?} is neither a number nor \"tuned\""),
                    ));
                }
                if !["hessian", "fd-hessian"].contains(&r.regularizer.as_str()) {
                    return Err(invalid(
                        &format!("recipe[{i}].hessian_lambda"),
                        "\"tuned\" needs regularizer = \"hessian\" or \"fd-hessian\"",
                    ));
                }
            }
            if self.recipes[..i].iter().any(|o| o.name == r.name) {
                return Err(invalid(
                    &format!("recipe[{i}].name"),
                    format!("duplicate name {:?}", r.name),
                ));
            }
        }
        if self.train.epochs == 0 {
            return Err(invalid("train.epochs", "must be at least 1"));
        }
        let t = &self.tune;
        if t.grid.is_empty() || t.grid.iter().any(|l| !(*l > 0.0 && l.is_finite())) {
            return Err(invalid("tune.grid", "needs positive λ values"));
        }
        if t.epochs == 0 || t.val == 0 || t.val >= t.limit || t.sweep_params == 0 || t.sweep_images == 0 {
            return Err(invalid(
                "tune",
                "epochs, val, sweep_params and sweep_images must be ≥ 1, and val < limit",
            ));
        }
        if !(self.sweep.threshold > 0.0 && self.sweep.threshold < 1.0) {
            return Err(invalid("sweep.threshold", "must be between 0 and 1"));
        }
        if self.sweep.limit == 0 || self.data.test_limit == 0 {
            return Err(invalid("sweep.limit / data.test_limit", "must be at least 1"));
        }
        if let Some(b) = self.analysis.quantize_bits.iter().find(|&&b| !(2..=16).contains(&b)) {
            return Err(invalid("analysis.quantize_bits", format!("{b} is outside 2..=16")));
        }
        if let Some(s) = self.analysis.prune_sparsity.iter().find(|&&s| !(0.0..1.0).contains(&s)) {
            return Err(invalid("analysis.prune_sparsity", format!("{s} is outside [0, 1)")));
        }
        if let Some(a) = &self.attack {
            a.validate()?;
        }
        if let Some(d) = &self.defense {
            d.validate()?;
        }
        for c in &self.campaign {
            c.validate()?;
        }
        let t = self.verdict.accuracy_tolerance;
        if !(0.0..=1.0).contains(&t) {
            return Err(invalid("verdict.accuracy_tolerance", format!("{t} is outside [0, 1]")));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Also the base of other modules' test configs.
    pub(crate) const MINIMAL: &str = r#"
archs = ["lenet5"]
[data]
train_limit = 100
[[recipe]]
name = "plain"
[[recipe]]
name = "hat"
regularizer = "hessian"
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = ExperimentConfig::parse(MINIMAL).unwrap();
        assert_eq!(c.seeds, vec![0, 1, 2]);
        assert_eq!(c.recipes[1].regularizer, "hessian");
        assert_eq!(c.sweep.threshold, 0.1);
    }

    #[test]
    fn lambda_is_a_number_or_tuned() {
        let tuned = MINIMAL.replace(
            "regularizer = \"hessian\"",
            "regularizer = \"hessian\"\nhessian_lambda = \"tuned\"",
        );
        let c = ExperimentConfig::parse(&tuned).unwrap();
        assert!(c.recipes[1].hessian_lambda.as_ref().unwrap().is_tuned());
        let number = tuned.replace("\"tuned\"", "0.5");
        let c = ExperimentConfig::parse(&number).unwrap();
        assert_eq!(c.recipes[1].hessian_lambda, Some(LambdaSetting::Value(0.5)));
        let e = ExperimentConfig::parse(&tuned.replace("\"tuned\"", "\"best\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("recipe[1].hessian_lambda"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let typo = MINIMAL.replace("train_limit", "train_limt");
        let e = ExperimentConfig::parse(&typo).unwrap_err().to_string();
        assert!(e.contains("train_limt") && e.contains("line 4"), "{e}");
        let bad = format!("{MINIMAL}[sweep]\nthreshold = 2.0\n");
        let e = ExperimentConfig::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("sweep.threshold"), "{e}");
        let bad = MINIMAL.replace("\"hessian\"", "\"magic\"");
        let e = ExperimentConfig::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("recipe[1].regularizer"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn fault_sections_are_optional_and_checked() {
        let c = ExperimentConfig::parse(MINIMAL).unwrap();
        assert!(c.attack.is_none() && c.defense.is_none() && c.campaign.is_empty());
        let full = format!(
            "{MINIMAL}[attack]\nmethod = \"both\"\nmax_flips = 30\n[defense]\nsweep = [\"range\", \"radar:8\"]\n[campaign]\nfault = \"stuck-at-1\"\nlevels = [1e-5, 1e-4]\n"
        );
        let c = ExperimentConfig::parse(&full).unwrap();
        let a = c.attack.as_ref().unwrap();
        assert_eq!((a.methods().len(), a.max_flips, a.trials), (2, 30, 5));
        assert_eq!(c.defense.as_ref().unwrap().defenses().len(), 2);
        assert_eq!(c.campaign[0].trials, 100);
        for (from, to, key) in [
            ("method = \"both\"", "method = \"smart\"", "attack.method"),
            ("max_flips = 30", "max_flips = 0", "attack.max_flips"),
            ("max_flips = 30", "max_flip = 3", "max_flip"),
            ("\"radar:8\"", "\"radar:1\"", "defense.sweep"),
            ("\"radar:8\"", "\"range\"", "defense.sweep"),
            ("\"radar:8\"", "\"none\"", "defense.sweep"),
            ("stuck-at-1", "stuck-at-2", "campaign.fault"),
            ("[1e-5, 1e-4]", "[1e-5, 2.0]", "campaign.levels"),
            ("[1e-5, 1e-4]", "[]", "campaign.levels"),
        ] {
            let e = ExperimentConfig::parse(&full.replace(from, to))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key) && !e.contains('\n'), "{to}: {e}");
        }
    }

    #[test]
    fn several_campaigns_ranger_and_the_verdict_rule() {
        let two = format!(
            "{MINIMAL}[defense]\nsweep = [\"ranger\", \"range\"]\nprofile_limit = 50\n[[campaign]]\nfault = \"bitflip\"\nstorage = \"int8\"\nlevels = [0.01]\nparams = \".*weight\"\n[[campaign]]\nfault = \"gaussian\"\nlevels = [0.1, 0.2]\n[verdict]\naccuracy_tolerance = 0.04\n"
        );
        let c = ExperimentConfig::parse(&two).unwrap();
        assert_eq!(c.campaign.len(), 2);
        assert_eq!(c.campaign[0].params.as_deref(), Some(".*weight"));
        assert_eq!(c.campaign[1].fault(), crate::campaign::FaultModel::Gaussian);
        let d = c.defense.as_ref().unwrap();
        assert_eq!((d.defenses()[0].to_string(), d.profile_limit), ("ranger".into(), 50));
        assert_eq!(c.verdict.accuracy_tolerance, 0.04);
        // One table stays one campaign, and keeps the key it serialises under.
        let one =
            ExperimentConfig::parse(&format!("{MINIMAL}[campaign]\nfault = \"gaussian\"\nlevels = [0.1]\n")).unwrap();
        assert_eq!(one.campaign.len(), 1);
        assert_eq!(
            ExperimentConfig::parse(MINIMAL).unwrap().verdict.accuracy_tolerance,
            0.02
        );
        for (from, to, key) in [
            ("levels = [0.01]", "level = [0.01]", "level"),
            ("\".*weight\"", "\"(\"", "campaign.params"),
            ("0.04", "1.5", "verdict.accuracy_tolerance"),
            ("profile_limit = 50", "profile_limit = 0", "defense.profile_limit"),
            ("\"ranger\", \"range\"", "\"ranger\", \"ranger\"", "defense.sweep"),
        ] {
            let e = ExperimentConfig::parse(&two.replace(from, to)).unwrap_err().to_string();
            assert!(e.contains(key) && !e.contains('\n'), "{to}: {e}");
        }
    }
}
