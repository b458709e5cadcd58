//! `[attack]`: `hart attack` (worst-case bit flips, BFA and the random
//! baseline) on every trained model, flips to crush per method, and the HAT
//! paper's "BFA needs 2–3× more flips" claim.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{stats, Better, Change, Comparison, Headline, Measurement};
use crate::attack::output::{self, Summary};
use crate::attack::{Attack, AttackConfig, Method};
use crate::data::{self, Split};
use crate::error::{HartError, Result};
use crate::experiment::claims::{describe, flips_increase, Claim, ClaimContext};
use crate::experiment::config::ExperimentConfig;
use crate::experiment::present::paired_label;
use crate::experiment::present::{table_lines, Table, NAME_COLUMN};
use crate::experiment::results::{mean_of, paired_change, per_seed, Group, Row};
use crate::experiment::run::{Runner, TrainedModel};
use crate::faults::Defense;
use crate::report::Report;
use crate::stats::MeanCi;

/// Images per forward pass, as the CLI's `--batch-size` default.
pub const BATCH: usize = 1000;

/// One attack method on one recipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttackStats {
    pub method: String,
    pub storage: String,
    /// Accuracy on the attack's evaluation slice before any flip.
    pub clean_accuracy: MeanCi,
    #[serde(deserialize_with = "crate::util::f64_or_nan")]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttackGroup {
    /// `[attack]`: flips to crush per method.
    #[serde(default)]
    pub attack: Vec<AttackStats>,
}

/// Per attack method, its summary (`hart attack`'s summary.json).
pub type Attacks = Vec<(String, Summary)>;

fn find<'a>(a: &'a Attacks, method: &str) -> Option<&'a Summary> {
    a.iter().find(|(m, _)| m == method).map(|(_, s)| s)
}

fn flips(a: &Attacks, method: &str) -> f64 {
    find(a, method).map_or(f64::NAN, |s| s.mean_flips)
}

/// Mean final accuracy of the random baseline at BFA's budgets (NaN without one).
fn random_baseline_accuracy(a: &Attacks, method: &str) -> f64 {
    let acc: Vec<f64> = find(a, method)
        .map(|s| s.random_baseline.iter().map(|t| t.final_accuracy).collect())
        .unwrap_or_default();
    if acc.is_empty() {
        f64::NAN
    } else {
        acc.iter().sum::<f64>() / acc.len() as f64
    }
}

/// Flips to crush per recipe and method; None when no attack ran.
pub fn attack_table(groups: &[Group]) -> Result<Option<Table>> {
    let all = super::with_stats::<AttackSection>(groups)?;
    if all.iter().all(|(_, s)| s.attack.is_empty()) {
        return Ok(None);
    }
    let header = [
        NAME_COLUMN,
        "recipe",
        "method",
        "storage",
        "clean accuracy",
        "flips to the target",
        "trials reaching it",
        "change",
        "random flips, same budget",
    ];
    let rows = all
        .iter()
        .flat_map(|(g, s)| {
            s.attack.iter().map(|a| {
                vec![
                    g.arch.clone(),
                    g.recipe.clone(),
                    a.method.clone(),
                    a.storage.clone(),
                    a.clean_accuracy.percent(),
                    a.flips.to_string(),
                    format!("{}/{}", a.reached, a.trials),
                    paired_label(g, &a.change),
                    a.random_accuracy.map_or("—".into(), |m| m.percent()),
                ]
            })
        })
        .collect();
    Ok(Some((header.map(String::from).to_vec(), rows)))
}

pub struct AttackSection;

impl Measurement for AttackSection {
    const NAME: &'static str = "attack";
    type Result = Attacks;
    type Stats = AttackGroup;

    fn stages(&self, cfg: &ExperimentConfig) -> u64 {
        cfg.attack.as_ref().map_or(0, |a| a.methods().len() as u64)
    }

    /// Every flip of every trial evaluated; BFA also takes a gradient on its batch per flip.
    fn cost(&self, cfg: &ExperimentConfig) -> f64 {
        let Some(a) = &cfg.attack else { return 0.0 };
        let flips = (a.trials * a.max_flips) as f64;
        a.methods()
            .iter()
            .map(|m| match m {
                Method::Bfa => flips * (3 * a.limit + a.eval_limit) as f64,
                Method::Random => flips * a.eval_limit as f64,
            })
            .sum()
    }

    fn test_images(&self, cfg: &ExperimentConfig) -> Option<usize> {
        cfg.attack.as_ref().map(|a| a.eval_limit)
    }

    /// The model's seed seeds the attack, so recipes are paired by seed.
    fn measure(&self, run: &mut Runner, m: &TrainedModel) -> Result<Attacks> {
        let Some(a) = run.cfg.attack.clone() else {
            return Ok(vec![]);
        };
        let eval = run.test_prefix(a.eval_limit)?;
        // `hart attack --limit N` reads the first 10·N training images.
        let spec = run.spec(Split::Train, Some(10 * a.limit));
        let device = run.device;
        let mut out = vec![];
        for method in a.methods() {
            // Keyed per method, so adding "both" reuses a finished bfa stage.
            let mut settings = serde_json::to_value(&a).map_err(|e| HartError::Invalid(e.to_string()))?;
            settings["method"] = serde_json::Value::from(method.to_string());
            let key = run.key(m, "attack", settings);
            let stage = format!("attack[{method}]");
            run.bar
                .set_message(format!("{stage} {}/{}/seed{}", m.arch, m.recipe, m.seed));
            let (summary, _, outcome) = run.cache.stage("attack", &key, |dir| {
                let model = m.open(device)?;
                let train = data::load(&spec)?;
                let cfg = AttackConfig {
                    method,
                    storage: a.storage(),
                    per_channel: false,
                    defense: Defense::None,
                    max_flips: a.max_flips,
                    target: a.target_accuracy,
                    top_k: a.top_k,
                    trials: a.trials,
                    seed: m.seed,
                    attack_images: a.limit,
                    batch: BATCH,
                };
                let attack = Attack::new(&model, &train, &eval, cfg)?;
                let trials = attack.run(&mut |_| {})?;
                let summary = output::summarize(&attack, &trials);
                output::write(&dir.join("attack"), &attack, &trials, &summary)?;
                Ok(summary)
            })?;
            run.note(&stage, m, outcome);
            out.push((method.to_string(), summary));
        }
        Ok(out)
    }

    fn aggregate(&self, rows: &[Row<Attacks>], base: &[Row<Attacks>], is_base: bool) -> AttackGroup {
        let methods: Vec<String> = rows
            .first()
            .map(|r| r.result.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default();
        let attack = methods
            .into_iter()
            .map(|method| {
                let m = method.as_str();
                let trials: Vec<bool> = rows
                    .iter()
                    .flat_map(|r| {
                        find(r.result, m)
                            .into_iter()
                            .flat_map(|s| s.trials.iter().map(|t| t.reached))
                    })
                    .collect();
                let random = mean_of(rows, |a| random_baseline_accuracy(a, m));
                let first = find(rows[0].result, m);
                AttackStats {
                    storage: first.map(|s| s.storage.clone()).unwrap_or_default(),
                    clean_accuracy: mean_of(rows, |a| find(a, m).map_or(f64::NAN, |s| s.clean_accuracy)),
                    target_accuracy: first.map_or(f64::NAN, |s| s.target_accuracy),
                    flips: mean_of(rows, |a| flips(a, m)),
                    per_seed: per_seed(rows, |a| flips(a, m)),
                    reached: trials.iter().filter(|&&r| r).count(),
                    trials: trials.len(),
                    change: (!is_base).then(|| paired_change(rows, base, |a| flips(a, m))).flatten(),
                    random_accuracy: random.mean.is_finite().then_some(random),
                    method,
                }
            })
            .collect();
        AttackGroup { attack }
    }

    fn comparisons(&self, g: &AttackGroup, base: &AttackGroup) -> Vec<Comparison> {
        g.attack
            .iter()
            .map(|a| {
                let b = base.attack.iter().find(|b| b.method == a.method);
                Comparison::new(
                    format!("{} flips to crush", a.method),
                    a.flips,
                    b.map(|b| b.flips),
                    Better::Higher,
                )
            })
            .collect()
    }

    fn headlines(&self, g: &AttackGroup) -> Vec<Headline> {
        g.attack
            .iter()
            .map(|a| Headline {
                fault: format!(
                    "{} attack on {} storage: flips to crush",
                    if a.method == "bfa" { "BFA" } else { "random-flip" },
                    a.storage
                ),
                value: a.flips,
                change: a.change,
                unit: Change::Relative,
                better: Better::Higher,
                note: (a.reached < a.trials).then(|| {
                    format!(
                        "{} of {} trials cut off at the budget: a lower bound",
                        a.trials - a.reached,
                        a.trials
                    )
                }),
            })
            .collect()
    }

    fn claims(&self, cx: &ClaimContext, _groups: &[Group]) -> Result<Vec<Claim>> {
        let bfa = |g: &Group| -> Result<Option<AttackStats>> {
            Ok(stats::<Self>(g)?.attack.into_iter().find(|a| a.method == "bfa"))
        };
        let base = match cx.base {
            Some(b) => bfa(b)?,
            None => None,
        };
        let (Some(a), Some(b)) = (bfa(cx.group)?, base) else {
            return Ok(vec![]);
        };
        let cut = |a: &AttackStats| a.reached < a.trials;
        Ok(vec![cx.claim(
            format!(
                "{}: BFA needs 2–3× more flips to crush ({} storage)",
                cx.name, a.storage
            ),
            format!(
                "flips: {} (target reached in {}/{} trials, baseline {}/{})",
                describe(&a.change),
                a.reached,
                a.trials,
                b.reached,
                b.trials
            ),
            cx.resilience(a.change.map(|c| flips_increase(&c, 1.0, cut(&a), cut(&b)))),
        )])
    }

    fn report(&self, r: &mut Report, groups: &[Group], _archs: &[String], _plots: &Path) -> Result<()> {
        let Some((header, rows)) = attack_table(groups)? else {
            return Ok(());
        };
        r.heading("Flips to crush (bit-flip attack)");
        r.paragraph("Per trained model, `hart attack` with the model's seed: flips until the accuracy on the evaluation slice is at or below the target (chance + 1 point unless set). A model's value is the mean over its trials; a trial that never reaches the target counts its whole budget, so a mean at the budget is a lower bound. Changes are relative to the baseline recipe with the same seed. With bfa, the last column is the accuracy after as many uniformly random flips as each BFA trial used.");
        r.table(header, rows);
        Ok(())
    }

    fn console(&self, groups: &[Group]) -> Result<Vec<String>> {
        Ok(attack_table(groups)?.map(|t| table_lines(&t)).unwrap_or_default())
    }
}
