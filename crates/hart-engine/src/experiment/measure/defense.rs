//! `[defense]`: the `[sweep]` again under each run-time defence (`hart sweep
//! --defense`), erratic bits per defence, and the HAT paper's synergy claim
//! (HAT + a defence beats the baseline with it).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::sweep::{flips_label, sweep_cost, sweep_under, Sweep};
use super::{stats, Better, Change, Comparison, Headline, Measurement};
use crate::error::Result;
use crate::experiment::claims::{describe, reduction, Claim, ClaimContext};
use crate::experiment::config::ExperimentConfig;
use crate::experiment::present::paired_label;
use crate::experiment::present::{table_lines, Table, NAME_COLUMN};
use crate::experiment::results::{mean_of, paired_change, per_seed, Group, Row};
use crate::experiment::run::{Runner, TrainedModel};
use crate::faults::Summary;
use crate::report::Report;
use crate::stats::MeanCi;

/// The sweep under one defence on one recipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DefendedStats {
    pub defense: String,
    pub erratic_bits: MeanCi,
    pub per_seed: Vec<f64>,
    /// Relative change against the baseline recipe under the same defence, paired by seed.
    pub change: Option<MeanCi>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DefenseGroup {
    /// The bit positions swept (the `[sweep]`'s, read back for the verdict table); its own
    /// key, since the groups' JSON flattens every section's fields into one object.
    #[serde(default)]
    pub defended_bits: Vec<u32>,
    /// `[defense]`: erratic bits under each defence.
    #[serde(default)]
    pub defended: Vec<DefendedStats>,
}

/// Per defence, the sweep's summary under it.
pub type Defended = Vec<(String, Summary)>;

fn erratic_bits(d: &Defended, defense: &str) -> f64 {
    d.iter()
        .find(|(n, _)| n == defense)
        .map_or(f64::NAN, |(_, s)| s.counts.erratic_bits as f64)
}

/// Erratic bits per recipe, undefended and under each defence; None when no defence ran.
pub fn defended_table(groups: &[Group]) -> Result<Option<Table>> {
    let all = super::with_stats::<DefenseSection>(groups)?;
    if all.iter().all(|(_, s)| s.defended.is_empty()) {
        return Ok(None);
    }
    let header = [NAME_COLUMN, "recipe", "defence", "erratic bits", "change"];
    let mut rows = vec![];
    for (g, s) in &all {
        let sweep = stats::<Sweep>(g)?;
        let undefended = ("none".to_string(), sweep.erratic_bits, sweep.erratic_bits_change);
        let defended = s.defended.iter().map(|d| (d.defense.clone(), d.erratic_bits, d.change));
        rows.extend(std::iter::once(undefended).chain(defended).map(|(d, bits, c)| {
            vec![
                g.arch.clone(),
                g.recipe.clone(),
                d,
                bits.to_string(),
                paired_label(g, &c),
            ]
        }));
    }
    Ok(Some((header.map(String::from).to_vec(), rows)))
}

pub struct DefenseSection;

impl Measurement for DefenseSection {
    const NAME: &'static str = "defense";
    type Result = Defended;
    type Stats = DefenseGroup;

    fn stages(&self, cfg: &ExperimentConfig) -> u64 {
        cfg.defense.as_ref().map_or(0, |d| d.sweep.len() as u64)
    }

    fn cost(&self, cfg: &ExperimentConfig) -> f64 {
        Measurement::stages(self, cfg) as f64 * sweep_cost(cfg)
    }

    fn measure(&self, run: &mut Runner, m: &TrainedModel) -> Result<Defended> {
        let Some(settings) = run.cfg.defense.clone() else {
            return Ok(vec![]);
        };
        settings
            .defenses()
            .into_iter()
            .map(|d| Ok((d.to_string(), sweep_under(run, m, d, settings.profile_limit)?)))
            .collect()
    }

    fn aggregate(&self, rows: &[Row<Defended>], base: &[Row<Defended>], is_base: bool) -> DefenseGroup {
        let names: Vec<String> = rows
            .first()
            .map(|r| r.result.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default();
        let defended = names
            .into_iter()
            .map(|defense| {
                let d = defense.as_str();
                DefendedStats {
                    erratic_bits: mean_of(rows, |r| erratic_bits(r, d)),
                    per_seed: per_seed(rows, |r| erratic_bits(r, d)),
                    change: (!is_base)
                        .then(|| paired_change(rows, base, |r| erratic_bits(r, d)))
                        .flatten(),
                    defense,
                }
            })
            .collect();
        let bits = rows
            .first()
            .and_then(|r| r.result.first())
            .map(|(_, s)| super::sweep::swept_bits(s))
            .unwrap_or_default();
        DefenseGroup {
            defended_bits: bits,
            defended,
        }
    }

    fn headlines(&self, s: &DefenseGroup) -> Vec<Headline> {
        s.defended
            .iter()
            .map(|d| Headline {
                fault: format!("{} under {}: erratic bits", flips_label(&s.defended_bits), d.defense),
                value: d.erratic_bits,
                change: d.change,
                unit: Change::Relative,
                better: Better::Lower,
                note: None,
            })
            .collect()
    }

    fn comparisons(&self, g: &DefenseGroup, base: &DefenseGroup) -> Vec<Comparison> {
        g.defended
            .iter()
            .map(|d| {
                let b = base.defended.iter().find(|b| b.defense == d.defense);
                Comparison::new(
                    format!("erratic bits with the {} defence", d.defense),
                    d.erratic_bits,
                    b.map(|b| b.erratic_bits),
                    Better::Lower,
                )
            })
            .collect()
    }

    /// The synergy claim names no size: not reproduced only when the interval excludes any reduction.
    fn claims(&self, cx: &ClaimContext, _groups: &[Group]) -> Result<Vec<Claim>> {
        Ok(stats::<Self>(cx.group)?
            .defended
            .iter()
            .map(|d| {
                cx.claim(
                    format!(
                        "{} with the {} defence: fewer erratic bits than the baseline with it",
                        cx.name, d.defense
                    ),
                    describe(&d.change),
                    cx.resilience(d.change.map(|c| reduction(&c, 0.0))),
                )
            })
            .collect())
    }

    fn report(&self, r: &mut Report, groups: &[Group], _archs: &[String], _plots: &Path) -> Result<()> {
        let Some((header, rows)) = defended_table(groups)? else {
            return Ok(());
        };
        r.heading("Erratic bits under each defence");
        r.paragraph("The sweep again, every faulty word passed through the defence before the forward pass (range: a weight outside its tensor's clean range is set to 0; radar:G: a group of G words whose checksum changed is zeroed, key fixed by the model's seed; ranger: every activation clamped to the range it takes on the first `defense.profile_limit` clean training images, the bounds in the stage's ranger.json). Changes are relative to the baseline recipe with the same seed under the same defence; the first row of each recipe is the undefended sweep.");
        r.table(header, rows);
        Ok(())
    }

    fn console(&self, groups: &[Group]) -> Result<Vec<String>> {
        Ok(defended_table(groups)?.map(|t| table_lines(&t)).unwrap_or_default())
    }
}
