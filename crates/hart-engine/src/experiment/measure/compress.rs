//! `[analysis] quantize_bits / prune_sparsity`: test accuracy of every
//! trained model after weight-only quantization to each bit width (per
//! tensor) and after global magnitude pruning to each sparsity.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{with_stats, Better, Comparison, Measurement};
use crate::compress::prune::{prune_in_place, Scope as PruneScope};
use crate::compress::quantize::{quantize_in_place, Granularity};
use crate::compress::{self, Selection};
use crate::error::Result;
use crate::experiment::config::ExperimentConfig;
use crate::experiment::present::{figure, per_arch};
use crate::experiment::results::{mean_of, Group, Row};
use crate::experiment::run::{Runner, TrainedModel};
use crate::plot::{Figure, LinePlot, Series, SeriesLabelPosition};
use crate::report::Report;
use crate::stats::MeanCi;

/// Accuracy at each compression setting (quantization bits or pruning sparsity).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CurvePoint {
    pub setting: f64,
    pub accuracy: f64,
}

/// One model's two curves (empty where the config lists no setting).
#[derive(Debug, Clone)]
pub struct Curves {
    pub quantize: Vec<CurvePoint>,
    pub prune: Vec<CurvePoint>,
}

/// (setting, accuracy) means over seeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompressStats {
    pub quantize: Vec<(f64, MeanCi)>,
    pub prune: Vec<(f64, MeanCi)>,
}

fn curve(rows: &[Row<Curves>], get: fn(&Curves) -> &Vec<CurvePoint>) -> Vec<(f64, MeanCi)> {
    let Some(first) = rows.first() else { return vec![] };
    get(first.result)
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                p.setting,
                mean_of(rows, |c| get(c).get(i).map_or(f64::NAN, |q| q.accuracy)),
            )
        })
        .collect()
}

/// One cached stage: accuracy of `m` at every setting of `apply`.
fn stage(
    run: &mut Runner,
    m: &TrainedModel,
    stage: &str,
    settings: Vec<f64>,
    apply: impl Fn(&[(String, tch::Tensor)], f64) -> Result<()>,
) -> Result<Vec<CurvePoint>> {
    if settings.is_empty() {
        return Ok(vec![]);
    }
    let data = run.test_prefix(run.cfg.data.test_limit)?;
    let key = run.key(m, stage, serde_json::json!({"settings": settings, "n": data.len()}));
    let device = run.device;
    let (points, _, outcome) = run.cache.stage(stage, &key, |_| {
        let model = m.open(device)?;
        let targets = compress::select(&model, &Selection::default())?;
        let mut points = vec![];
        compress::sweep(&model, &targets, &settings, &data, 512, device, &apply, |s, _, r| {
            points.push(CurvePoint {
                setting: s,
                accuracy: r.accuracy,
            });
            Ok(())
        })?;
        Ok(points)
    })?;
    run.note(stage, m, outcome);
    Ok(points)
}

pub struct Compress;

impl Measurement for Compress {
    const NAME: &'static str = "compress";
    type Result = Curves;
    type Stats = CompressStats;

    fn stages(&self, cfg: &ExperimentConfig) -> u64 {
        !cfg.analysis.quantize_bits.is_empty() as u64 + !cfg.analysis.prune_sparsity.is_empty() as u64
    }

    fn cost(&self, cfg: &ExperimentConfig) -> f64 {
        let a = &cfg.analysis;
        ((a.quantize_bits.len() + a.prune_sparsity.len()) * cfg.data.test_limit) as f64
    }

    fn measure(&self, run: &mut Runner, m: &TrainedModel) -> Result<Curves> {
        let bits: Vec<f64> = run.cfg.analysis.quantize_bits.iter().map(|&b| b as f64).collect();
        let quantize = stage(run, m, "quantize", bits, |t, b| {
            quantize_in_place(t, b as u32, Granularity::PerTensor)
        })?;
        let sparsity = run.cfg.analysis.prune_sparsity.clone();
        let prune = stage(run, m, "prune", sparsity, |t, s| {
            prune_in_place(t, s, PruneScope::Global).map(|_| ())
        })?;
        Ok(Curves { quantize, prune })
    }

    fn aggregate(&self, rows: &[Row<Curves>], _base: &[Row<Curves>], _is_base: bool) -> CompressStats {
        CompressStats {
            quantize: curve(rows, |c| &c.quantize),
            prune: curve(rows, |c| &c.prune),
        }
    }

    fn comparisons(&self, g: &CompressStats, base: &CompressStats) -> Vec<Comparison> {
        let quantize = g.quantize.iter().zip(&base.quantize).map(|((s, x), (_, b))| {
            Comparison::new(
                format!("accuracy at {s}-bit quantization"),
                *x,
                Some(*b),
                Better::Higher,
            )
        });
        let prune = g.prune.iter().zip(&base.prune).map(|((s, x), (_, b))| {
            Comparison::new(
                format!("accuracy at {:.0}% sparsity", 100.0 * s),
                *x,
                Some(*b),
                Better::Higher,
            )
        });
        quantize.chain(prune).collect()
    }

    fn report(&self, r: &mut Report, groups: &[Group], archs: &[String], plots: &Path) -> Result<()> {
        let all = with_stats::<Self>(groups)?;
        r.heading("Robustness to quantization and pruning");
        for arch in archs {
            for (what, x_label, name) in [
                ("quantization", "weight bits", "quantize"),
                ("pruning", "sparsity (fraction of weights removed)", "prune"),
            ] {
                let series: Vec<Series> = per_arch(&all, arch)
                    .map(|(g, s)| {
                        let pts = if name == "quantize" { &s.quantize } else { &s.prune };
                        Series::new(&g.recipe, pts.iter().map(|(s, a)| (*s, 100.0 * a.mean)).collect())
                    })
                    .filter(|s| !s.points.is_empty())
                    .collect();
                if series.is_empty() {
                    continue;
                }
                let chart = LinePlot::new(
                    Figure::new(format!("{arch}: accuracy under {what}"), x_label, "test accuracy (%)"),
                    series,
                )
                .legend_at(SeriesLabelPosition::LowerLeft);
                figure(
                    r,
                    plots,
                    &format!("{arch}-{name}"),
                    chart,
                    format!("{arch}: test accuracy vs {what}, one line per recipe (mean over seeds)."),
                )?;
            }
        }
        Ok(())
    }
}
