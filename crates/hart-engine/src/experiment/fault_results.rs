//! The fault sections' per-recipe aggregates: flips to crush per attack
//! method, erratic bits under each defence, accuracy per campaign level —
//! means and 95% intervals over seeds, and changes paired by seed with the
//! baseline recipe, through the same helpers as the sweep's numbers.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::results::{mean_of, num, paired, paired_change, ModelResults};
use super::stats::MeanCi;

/// One attack method on one recipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttackStats {
    pub method: String,
    pub storage: String,
    /// Accuracy on the attack's evaluation slice before any flip.
    pub clean_accuracy: MeanCi,
    pub target_accuracy: f64,
    /// Flips to the target (a model's mean over its trials; a trial that
    /// never reached it counts its whole budget), over seeds.
    pub flips: MeanCi,
    /// Per seed, in the order of the group's `seeds`.
    pub per_seed: Vec<f64>,
    /// Trials that reached the target, of all trials over seeds.
    pub reached: usize,
    pub trials: usize,
    /// Relative change against the baseline recipe, paired by seed.
    pub change: Option<MeanCi>,
    /// With bfa: accuracy after as many random flips as each BFA trial used.
    pub random_accuracy: Option<MeanCi>,
}

/// The sweep under one defence on one recipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DefendedStats {
    pub defense: String,
    pub erratic_bits: MeanCi,
    pub per_seed: Vec<f64>,
    /// Relative change against the baseline recipe under the same defence, paired by seed.
    pub change: Option<MeanCi>,
}

/// The campaign on one recipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignStats {
    pub fault: String,
    pub storage: String,
    pub trials: u64,
    pub levels: Vec<LevelStats>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LevelStats {
    pub level: f64,
    /// A model's mean accuracy over its trials, over seeds.
    pub accuracy: MeanCi,
    pub per_seed: Vec<f64>,
    /// Accuracy minus the baseline's at this level (a fraction), paired by seed.
    pub diff: Option<MeanCi>,
}

impl ModelResults {
    fn attack(&self, method: &str) -> Option<&Value> {
        self.attacks.iter().find(|(m, _)| m == method).map(|(_, v)| v)
    }

    fn attack_num(&self, method: &str, key: &str) -> f64 {
        self.attack(method).and_then(|a| num(a, &[key])).unwrap_or(f64::NAN)
    }

    fn attack_trials(&self, method: &str, key: &str) -> Vec<&Value> {
        self.attack(method)
            .and_then(|a| a[key].as_array())
            .map(|ts| ts.iter().collect())
            .unwrap_or_default()
    }

    pub fn attack_flips(&self, method: &str) -> f64 {
        self.attack_num(method, "mean_flips")
    }

    /// Mean final accuracy of the random baseline at BFA's budgets (NaN without one).
    fn random_baseline_accuracy(&self, method: &str) -> f64 {
        let ts = self.attack_trials(method, "random_baseline");
        let acc: Vec<f64> = ts.iter().filter_map(|t| t["final_accuracy"].as_f64()).collect();
        if acc.is_empty() {
            f64::NAN
        } else {
            acc.iter().sum::<f64>() / acc.len() as f64
        }
    }

    pub fn defended_erratic_bits(&self, defense: &str) -> f64 {
        self.defended
            .iter()
            .find(|(d, _)| d == defense)
            .and_then(|(_, s)| num(s, &["erratic_bits"]))
            .unwrap_or(f64::NAN)
    }

    pub fn campaign_accuracy(&self, level: usize) -> f64 {
        self.campaign
            .as_ref()
            .and_then(|c| c.levels.get(level))
            .map_or(f64::NAN, |l| l.mean_accuracy)
    }
}

fn per_seed(rows: &[&ModelResults], f: impl Fn(&ModelResults) -> f64) -> Vec<f64> {
    rows.iter().map(|r| f(r)).collect()
}

fn names(rows: &[&ModelResults], get: impl Fn(&ModelResults) -> &Vec<(String, Value)>) -> Vec<String> {
    rows.first()
        .map(|r| get(r).iter().map(|(n, _)| n.clone()).collect())
        .unwrap_or_default()
}

pub fn attacks(rows: &[&ModelResults], base: &[&ModelResults], is_base: bool) -> Vec<AttackStats> {
    names(rows, |r| &r.attacks)
        .into_iter()
        .map(|method| {
            let m = method.as_str();
            let trials: Vec<&Value> = rows.iter().flat_map(|r| r.attack_trials(m, "trials")).collect();
            let random = mean_of(rows, |r| r.random_baseline_accuracy(m));
            AttackStats {
                storage: rows[0]
                    .attack(m)
                    .and_then(|a| a["storage"].as_str())
                    .unwrap_or_default()
                    .into(),
                clean_accuracy: mean_of(rows, |r| r.attack_num(m, "clean_accuracy")),
                target_accuracy: rows[0].attack_num(m, "target_accuracy"),
                flips: mean_of(rows, |r| r.attack_flips(m)),
                per_seed: per_seed(rows, |r| r.attack_flips(m)),
                reached: trials.iter().filter(|t| t["reached"].as_bool() == Some(true)).count(),
                trials: trials.len(),
                change: (!is_base)
                    .then(|| paired_change(rows, base, |r| r.attack_flips(m)))
                    .flatten(),
                random_accuracy: random.mean.is_finite().then_some(random),
                method,
            }
        })
        .collect()
}

pub fn defended(rows: &[&ModelResults], base: &[&ModelResults], is_base: bool) -> Vec<DefendedStats> {
    names(rows, |r| &r.defended)
        .into_iter()
        .map(|defense| {
            let d = defense.as_str();
            DefendedStats {
                erratic_bits: mean_of(rows, |r| r.defended_erratic_bits(d)),
                per_seed: per_seed(rows, |r| r.defended_erratic_bits(d)),
                change: (!is_base)
                    .then(|| paired_change(rows, base, |r| r.defended_erratic_bits(d)))
                    .flatten(),
                defense,
            }
        })
        .collect()
}

pub fn campaign(rows: &[&ModelResults], base: &[&ModelResults], is_base: bool) -> Option<CampaignStats> {
    let first = rows.first()?.campaign.as_ref()?;
    let levels = first
        .levels
        .iter()
        .enumerate()
        .map(|(i, l)| LevelStats {
            level: l.level,
            accuracy: mean_of(rows, |r| r.campaign_accuracy(i)),
            per_seed: per_seed(rows, |r| r.campaign_accuracy(i)),
            diff: (!is_base)
                .then(|| paired(rows, base, |x, y| Some(x - y), |r| r.campaign_accuracy(i)))
                .flatten(),
        })
        .collect();
    Some(CampaignStats {
        fault: first.fault.name().into(),
        storage: first.storage.to_string(),
        trials: first.trials,
        levels,
    })
}
