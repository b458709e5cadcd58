//! `[analysis.landscape]`: loss and accuracy of every trained model along one
//! filter-normalised random direction (Li et al. 2018) through its weights.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{with_stats, Measurement};
use crate::compress::{self, Selection};
use crate::error::Result;
use crate::experiment::config::ExperimentConfig;
use crate::experiment::present::{figure, per_arch};
use crate::experiment::results::{Group, Row};
use crate::experiment::run::{Runner, TrainedModel};
use crate::landscape::{self, GridSpec};
use crate::plot::{Figure, LinePlot, Series, SeriesLabelPosition};
use crate::report::Report;

/// Loss and accuracy along one filter-normalised direction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LandscapePoint {
    pub alpha: f64,
    #[serde(deserialize_with = "crate::util::f64_or_nan")]
    pub loss: f64,
    pub accuracy: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LandscapeStats {
    /// Loss along the direction for the first seed.
    pub landscape: Option<Vec<LandscapePoint>>,
}

pub struct Landscape;

impl Measurement for Landscape {
    const NAME: &'static str = "landscape";
    /// None without `[analysis.landscape]`.
    type Result = Option<Vec<LandscapePoint>>;
    type Stats = LandscapeStats;

    fn stages(&self, cfg: &ExperimentConfig) -> u64 {
        cfg.analysis.landscape.is_some() as u64
    }

    fn cost(&self, cfg: &ExperimentConfig) -> f64 {
        cfg.analysis
            .landscape
            .as_ref()
            .map_or(0.0, |l| (l.steps * l.limit) as f64)
    }

    fn measure(&self, run: &mut Runner, m: &TrainedModel) -> Result<Self::Result> {
        let Some(l) = run.cfg.analysis.landscape.clone() else {
            return Ok(None);
        };
        let data = run.test_prefix(l.limit)?;
        let key = run.key(m, "landscape", serde_json::to_value(&l).unwrap_or_default());
        let device = run.device;
        let (points, _, outcome) = run.cache.stage("landscape", &key, |_| {
            let model = m.open(device)?;
            let targets = compress::select(&model, &Selection::default())?;
            let dirs = landscape::random(&targets, m.seed, 1);
            let grid = GridSpec::new(1, &format!("{}:{}", -l.range, l.range), l.steps)?;
            let pts = landscape::compute(&model, &targets, &dirs, &grid, &data, 512, device, || {})?;
            Ok(pts
                .into_iter()
                .map(|p| LandscapePoint {
                    alpha: p.x,
                    loss: p.loss,
                    accuracy: p.accuracy,
                })
                .collect::<Vec<_>>())
        })?;
        run.note("landscape", m, outcome);
        Ok(Some(points))
    }

    fn aggregate(&self, rows: &[Row<Self::Result>], _base: &[Row<Self::Result>], _is_base: bool) -> LandscapeStats {
        LandscapeStats {
            landscape: rows.first().and_then(|r| r.result.clone()),
        }
    }

    fn report(&self, r: &mut Report, groups: &[Group], archs: &[String], plots: &Path) -> Result<()> {
        let all = with_stats::<Self>(groups)?;
        r.heading("Loss landscapes");
        for arch in archs {
            let series: Vec<Series> = per_arch(&all, arch)
                .filter_map(|(g, s)| {
                    Some(Series::new(
                        &g.recipe,
                        s.landscape
                            .as_ref()?
                            .iter()
                            .filter(|p| p.loss.is_finite())
                            .map(|p| (p.alpha, p.loss))
                            .collect(),
                    ))
                })
                .collect();
            if series.is_empty() {
                continue;
            }
            let chart = LinePlot::new(
                Figure::new(
                    format!("{arch}: loss along a filter-normalised direction"),
                    "step along the direction (α)",
                    "cross-entropy loss (nats)",
                ),
                series,
            )
            .legend_at(SeriesLabelPosition::UpperMiddle);
            figure(
                r,
                plots,
                &format!("{arch}-landscape"),
                chart,
                format!(
                    "{arch}: loss landscape (Li et al. 2018 filter normalisation), first seed; flatter is more robust."
                ),
            )?;
        }
        Ok(())
    }
}
