//! `[campaign]` / `[[campaign]]`: `hart campaign` (random faults at several
//! levels: bit-error rates, stuck-at faults or Gaussian weight noise) on
//! every trained model, once per campaign, mean accuracy per level and its
//! paired difference from the baseline.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::attack::BATCH;
use super::{with_stats, Better, Change, Comparison, Headline, Measurement};
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
    /// `campaign.params`: only the tensors it matches were hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<String>,
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
    /// Per campaign of the config, accuracy per level.
    #[serde(default)]
    pub campaign: Vec<CampaignStats>,
}

/// Per campaign of the config, its `params` and summary.
pub type Campaigns = Vec<(Option<String>, Summary)>;

fn accuracy(c: &Campaigns, campaign: usize, level: usize) -> f64 {
    c.get(campaign)
        .and_then(|(_, c)| c.levels.get(level))
        .map_or(f64::NAN, |l| l.mean_accuracy)
}

impl CampaignStats {
    /// What the campaign hits, as a heading and the verdict table's rows read it.
    pub fn describe(&self) -> String {
        let what = match self.fault.as_str() {
            "gaussian" => "Gaussian weight noise".to_string(),
            "bitflip" => format!("bit errors in {} storage", self.storage),
            f => format!("{f} faults in {} storage", self.storage),
        };
        match &self.params {
            Some(p) => format!("{what} (tensors matching {p})"),
            None => what,
        }
    }

    /// One level as the verdict table's row names it.
    pub fn level_label(&self, level: f64) -> String {
        if self.fault == "gaussian" {
            format!("{}, σ = {level}·max|W|: accuracy", self.describe())
        } else {
            format!("{}, rate {level}: accuracy", self.describe())
        }
    }
}

pub struct CampaignSection;

impl Measurement for CampaignSection {
    const NAME: &'static str = "campaign";
    /// One summary per campaign of the config (none without `[campaign]`).
    type Result = Campaigns;
    type Stats = CampaignGroup;

    fn stages(&self, cfg: &ExperimentConfig) -> u64 {
        cfg.campaign.len() as u64
    }

    fn cost(&self, cfg: &ExperimentConfig) -> f64 {
        cfg.campaign
            .iter()
            .map(|c| (c.levels.len() as u64 * c.trials * c.limit as u64) as f64)
            .sum()
    }

    fn test_images(&self, cfg: &ExperimentConfig) -> Option<usize> {
        cfg.campaign.iter().map(|c| c.limit).max()
    }

    /// The model's seed draws the faults, so recipes with one seed meet the same faults.
    fn measure(&self, run: &mut Runner, m: &TrainedModel) -> Result<Campaigns> {
        let mut out = vec![];
        for c in run.cfg.campaign.clone() {
            let data = run.test_prefix(c.limit)?;
            let threshold = run.cfg.sweep.threshold;
            // A lone campaign without `params` keeps the key it had before several were possible.
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
                    params: c.params.clone(),
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
            out.push((c.params, summary));
        }
        Ok(out)
    }

    fn aggregate(&self, rows: &[Row<Self::Result>], base: &[Row<Self::Result>], is_base: bool) -> CampaignGroup {
        let Some(first) = rows.first() else {
            return CampaignGroup { campaign: vec![] };
        };
        let campaign = first
            .result
            .iter()
            .enumerate()
            .map(|(k, (params, c))| {
                let levels = c
                    .levels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| LevelStats {
                        level: l.level,
                        accuracy: mean_of(rows, |c| accuracy(c, k, i)),
                        per_seed: per_seed(rows, |c| accuracy(c, k, i)),
                        diff: (!is_base)
                            .then(|| paired_diff(rows, base, |c| accuracy(c, k, i)))
                            .flatten(),
                    })
                    .collect();
                CampaignStats {
                    fault: c.fault.name().into(),
                    storage: c.storage.to_string(),
                    trials: c.trials,
                    params: params.clone(),
                    levels,
                }
            })
            .collect();
        CampaignGroup { campaign }
    }

    fn headlines(&self, g: &CampaignGroup) -> Vec<Headline> {
        g.campaign
            .iter()
            .flat_map(|c| {
                c.levels.iter().map(|l| Headline {
                    fault: c.level_label(l.level),
                    value: l.accuracy,
                    change: l.diff,
                    unit: Change::Points,
                    better: Better::Higher,
                    note: None,
                })
            })
            .collect()
    }

    fn comparisons(&self, g: &CampaignGroup, base: &CampaignGroup) -> Vec<Comparison> {
        g.campaign
            .iter()
            .zip(&base.campaign)
            .flat_map(|(c, bc)| {
                c.levels.iter().zip(&bc.levels).map(|(x, b)| {
                    Comparison::new(
                        format!("accuracy under {} at level {}", c.describe(), x.level),
                        x.accuracy,
                        Some(b.accuracy),
                        Better::Higher,
                    )
                })
            })
            .collect()
    }

    fn report(&self, r: &mut Report, groups: &[Group], archs: &[String], plots: &Path) -> Result<()> {
        let all = with_stats::<Self>(groups)?;
        let Some(campaigns) = all.iter().map(|(_, s)| &s.campaign).find(|c| !c.is_empty()) else {
            return Ok(());
        };
        r.heading("Accuracy under random faults");
        r.paragraph("Per trained model and campaign, `hart campaign` with faults drawn from the model's seed (so recipes with the same seed meet the same faults). A model's value is its mean accuracy over the trials; the columns give the mean and 95% interval over seeds, then each recipe's difference from the baseline paired by seed, in percentage points.");
        for (k, first) in campaigns.iter().enumerate() {
            let bit = first.fault != "gaussian";
            r.paragraph(format!(
                "{}: `--fault {}` in {} storage{}, {} trials per level.",
                first.describe(),
                first.fault,
                first.storage,
                first
                    .params
                    .as_ref()
                    .map_or(String::new(), |p| format!(", `--params '{p}'`")),
                first.trials
            ));
            for arch in archs {
                let of: Vec<(&Group, &CampaignStats)> = per_arch(&all, arch)
                    .filter_map(|(g, s)| Some((*g, s.campaign.get(k)?)))
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
                let rows =
                    (0..levels.len())
                        .map(|i| {
                            let mut row = vec![format!("{}", levels[i].level)];
                            row.extend(
                                of.iter()
                                    .map(|(_, c)| c.levels.get(i).map_or("—".into(), |l| l.accuracy.percent())),
                            );
                            row.extend(of.iter().filter(|(g, _)| !g.baseline).map(|(_, c)| {
                                c.levels.get(i).and_then(|l| l.diff).map_or("—".into(), |d| d.points())
                            }));
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
                        format!("{arch}: accuracy under {}", first.describe()),
                        x,
                        "test accuracy (%)",
                    ),
                    series,
                )
                .legend_at(SeriesLabelPosition::LowerLeft);
                let chart = if bit { chart.log_x() } else { chart };
                // The first campaign keeps the name a lone one always had.
                let name = match k {
                    0 => format!("{arch}-campaign"),
                    k => format!("{arch}-campaign-{}", k + 1),
                };
                figure(
                    r,
                    plots,
                    &name,
                    chart,
                    format!("{arch}: mean accuracy against fault level under {}, one line per recipe (mean over seeds; a level of 0 is left off a log axis).", first.describe()),
                )?;
            }
        }
        Ok(())
    }

    fn console(&self, groups: &[Group]) -> Result<Vec<String>> {
        Ok(with_stats::<Self>(groups)?
            .iter()
            .flat_map(|(g, s)| {
                s.campaign.iter().map(|c| {
                    let cells: Vec<String> = c
                        .levels
                        .iter()
                        .map(|l| format!("{}: {}", l.level, l.accuracy.percent()))
                        .collect();
                    format!("{} {} {}: {}", g.arch, g.recipe, c.describe(), cells.join(", "))
                })
            })
            .collect())
    }
}
