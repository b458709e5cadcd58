//! `[campaign]`: `hart campaign` (random faults at several levels: bit-error
//! rates, stuck-at faults or Gaussian weight noise) on every trained model,
//! mean accuracy per level and its paired difference from the baseline.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::attack::BATCH;
use super::{with_stats, Better, Comparison, Measurement};
use crate::campaign::run::Summary;
use crate::campaign::{self, CampaignConfig};
use crate::error::Result;
use crate::experiment::config::ExperimentConfig;
use crate::experiment::present::{figure, per_arch};
use crate::experiment::results::{mean_of, paired_diff, per_seed, Group, Row};
use crate::experiment::run::{Runner, TrainedModel};
use crate::faults::Format;
use crate::plot::{Figure, LinePlot, Series, SeriesLabelPosition};
use crate::report::Report;
use crate::stats::MeanCi;

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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignGroup {
    /// `[campaign]`: accuracy per level.
    #[serde(default)]
    pub campaign: Option<CampaignStats>,
}

fn accuracy(c: &Option<Summary>, level: usize) -> f64 {
    c.as_ref()
        .and_then(|c| c.levels.get(level))
        .map_or(f64::NAN, |l| l.mean_accuracy)
}

pub struct CampaignSection;

impl Measurement for CampaignSection {
    const NAME: &'static str = "campaign";
    /// None without `[campaign]`.
    type Result = Option<Summary>;
    type Stats = CampaignGroup;

    fn stages(&self, cfg: &ExperimentConfig) -> u64 {
        cfg.campaign.is_some() as u64
    }

    fn cost(&self, cfg: &ExperimentConfig) -> f64 {
        cfg.campaign
            .as_ref()
            .map_or(0.0, |c| (c.levels.len() as u64 * c.trials * c.limit as u64) as f64)
    }

    fn test_images(&self, cfg: &ExperimentConfig) -> Option<usize> {
        cfg.campaign.as_ref().map(|c| c.limit)
    }

    /// The model's seed draws the faults, so recipes with one seed meet the same faults.
    fn measure(&self, run: &mut Runner, m: &TrainedModel) -> Result<Option<Summary>> {
        let Some(c) = run.cfg.campaign.clone() else {
            return Ok(None);
        };
        let data = run.test_prefix(c.limit)?;
        let threshold = run.cfg.sweep.threshold;
        let key = run.key(
            m,
            "campaign",
            serde_json::json!({"campaign": c, "threshold": threshold}),
        );
        let device = run.device;
        run.bar
            .set_message(format!("campaign {}/{}/seed{}", m.arch, m.recipe, m.seed));
        let (summary, _, outcome) = run.cache.stage("campaign", &key, |dir| {
            let model = m.open(device)?;
            let cfg = CampaignConfig {
                trials: c.trials,
                seed: m.seed,
                storage: c.storage(),
                threshold,
                batch: BATCH,
                ..CampaignConfig::new(c.fault(), c.levels.clone())
            };
            let run = campaign::prepare(&model, &data, &cfg)?;
            let out = dir.join("campaign");
            run.run(&out, &mut |_| {})?;
            run.finish(&out, Format::Parquet)
        })?;
        run.note("campaign", m, outcome);
        Ok(Some(summary))
    }

    fn aggregate(&self, rows: &[Row<Self::Result>], base: &[Row<Self::Result>], is_base: bool) -> CampaignGroup {
        let Some(first) = rows.first().and_then(|r| r.result.as_ref()) else {
            return CampaignGroup { campaign: None };
        };
        let levels = first
            .levels
            .iter()
            .enumerate()
            .map(|(i, l)| LevelStats {
                level: l.level,
                accuracy: mean_of(rows, |c| accuracy(c, i)),
                per_seed: per_seed(rows, |c| accuracy(c, i)),
                diff: (!is_base)
                    .then(|| paired_diff(rows, base, |c| accuracy(c, i)))
                    .flatten(),
            })
            .collect();
        CampaignGroup {
            campaign: Some(CampaignStats {
                fault: first.fault.name().into(),
                storage: first.storage.to_string(),
                trials: first.trials,
                levels,
            }),
        }
    }

    fn comparisons(&self, g: &CampaignGroup, base: &CampaignGroup) -> Vec<Comparison> {
        let (Some(c), Some(bc)) = (&g.campaign, &base.campaign) else {
            return vec![];
        };
        c.levels
            .iter()
            .zip(&bc.levels)
            .map(|(x, b)| {
                Comparison::new(
                    format!("accuracy under {} at level {}", c.fault, x.level),
                    x.accuracy,
                    Some(b.accuracy),
                    Better::Higher,
                )
            })
            .collect()
    }

    fn report(&self, r: &mut Report, groups: &[Group], archs: &[String], plots: &Path) -> Result<()> {
        let all = with_stats::<Self>(groups)?;
        let Some(first) = all.iter().find_map(|(_, s)| s.campaign.as_ref()) else {
            return Ok(());
        };
        let bit = first.fault != "gaussian";
        r.heading("Accuracy under random faults");
        r.paragraph(format!(
            "Per trained model, `hart campaign --fault {}` in {} storage, {} trials per level with faults drawn from the model's seed (so recipes with the same seed meet the same faults). A model's value is its mean accuracy over the trials; the columns give the mean and 95% interval over seeds, then each recipe's difference from the baseline paired by seed, in percentage points.",
            first.fault, first.storage, first.trials
        ));
        for arch in archs {
            let of: Vec<(&Group, &CampaignStats)> = per_arch(&all, arch)
                .filter_map(|(g, s)| Some((*g, s.campaign.as_ref()?)))
                .collect();
            let Some((base, _)) = of.iter().find(|(g, _)| g.baseline) else {
                continue;
            };
            let mut header = vec![format!("{arch}: {}", if bit { "bit-error rate" } else { "σ / max|W|" })];
            header.extend(of.iter().map(|(g, _)| g.recipe.clone()));
            header.extend(
                of.iter()
                    .filter(|(g, _)| !g.baseline)
                    .map(|(g, _)| format!("{} − {}", g.recipe, base.recipe)),
            );
            let levels = &first.levels;
            let rows = (0..levels.len())
                .map(|i| {
                    let mut row = vec![format!("{}", levels[i].level)];
                    row.extend(
                        of.iter()
                            .map(|(_, c)| c.levels.get(i).map_or("—".into(), |l| l.accuracy.percent())),
                    );
                    row.extend(
                        of.iter()
                            .filter(|(g, _)| !g.baseline)
                            .map(|(_, c)| c.levels.get(i).and_then(|l| l.diff).map_or("—".into(), |d| d.points())),
                    );
                    row
                })
                .collect();
            r.table(header, rows);
            let series = of
                .iter()
                .map(|(g, c)| {
                    Series::new(
                        &g.recipe,
                        c.levels.iter().map(|l| (l.level, 100.0 * l.accuracy.mean)).collect(),
                    )
                })
                .collect();
            let x = if bit {
                "bit-error rate (per stored bit)"
            } else {
                "relative noise σ / max|W|"
            };
            let chart = LinePlot::new(
                Figure::new(
                    format!("{arch}: accuracy under {} faults", first.fault),
                    x,
                    "test accuracy (%)",
                ),
                series,
            )
            .legend_at(SeriesLabelPosition::LowerLeft);
            let chart = if bit { chart.log_x() } else { chart };
            figure(
                r,
                plots,
                &format!("{arch}-campaign"),
                chart,
                format!("{arch}: mean accuracy against fault level, one line per recipe (mean over seeds; a level of 0 is left off a log axis)."),
            )?;
        }
        Ok(())
    }

    fn console(&self, groups: &[Group]) -> Result<Vec<String>> {
        Ok(with_stats::<Self>(groups)?
            .iter()
            .filter_map(|(g, s)| {
                let c = s.campaign.as_ref()?;
                let cells: Vec<String> = c
                    .levels
                    .iter()
                    .map(|l| format!("{}: {}", l.level, l.accuracy.percent()))
                    .collect();
                Some(format!("{} {} {}: {}", g.arch, g.recipe, c.fault, cells.join(", ")))
            })
            .collect())
    }
}
