//! `[analysis] hessian`: trace and top eigenvalue of the loss Hessian of every
//! trained model on a test prefix (`hart hessian`'s report).

use std::path::Path;

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use super::{with_stats, Better, Comparison, Measurement};
use crate::error::Result;
use crate::experiment::config::ExperimentConfig;
use crate::experiment::present::NAME_COLUMN;
use crate::experiment::results::{mean_of, Group, Row};
use crate::experiment::run::{Runner, TrainedModel};
use crate::hessian::{self, data_hessian, HessianReport, LayerSelection, ParamSet};
use crate::report::Report;
use crate::stats::MeanCi;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HessianStats {
    pub hessian_trace: Option<MeanCi>,
    pub top_eigenvalue: Option<MeanCi>,
}

fn top_eigenvalue(h: &HessianReport) -> Option<f64> {
    h.top_eigenvalues.first().copied()
}

pub struct Hessian;

impl Measurement for Hessian {
    const NAME: &'static str = "hessian";
    /// None when `[analysis] hessian = false`.
    type Result = Option<HessianReport>;
    type Stats = HessianStats;

    fn stages(&self, cfg: &ExperimentConfig) -> u64 {
        cfg.analysis.hessian as u64
    }

    /// Hutchinson's probes (most stop well before the cap) and the Lanczos
    /// steps, each a Hessian-vector product of about four passes.
    fn cost(&self, cfg: &ExperimentConfig) -> f64 {
        let a = &cfg.analysis;
        let products = a.hessian_max_probes.min(100) + 40;
        a.hessian as u64 as f64 * (4 * products * a.hessian_limit) as f64
    }

    fn measure(&self, run: &mut Runner, m: &TrainedModel) -> Result<Option<HessianReport>> {
        let a = run.cfg.analysis.clone();
        if !a.hessian {
            return Ok(None);
        }
        let data = run.test_prefix(a.hessian_limit)?;
        let key = run.key(
            m,
            "hessian",
            serde_json::json!({"limit": a.hessian_limit, "rel_stderr": a.hessian_rel_stderr, "max_probes": a.hessian_max_probes}),
        );
        let device = run.device;
        let (report, _, outcome) = run.cache.stage("hessian", &key, |_| {
            let model = m.open(device)?;
            let params = ParamSet::select(&model, &LayerSelection::All)?;
            let mut op = data_hessian(&model, &data, &params, 256, device)?;
            let defaults = hessian::AnalysisConfig::default();
            let cfg = hessian::AnalysisConfig {
                top_k: 1,
                seed: m.seed,
                trace: hessian::TraceOptions {
                    rel_stderr: a.hessian_rel_stderr,
                    max_probes: a.hessian_max_probes,
                    ..defaults.trace
                },
                // The top eigenvalue to 1%: enough to compare recipes, and it bounds the Lanczos steps.
                eig_tol: 1e-2,
                max_lanczos_steps: 40,
                ..defaults
            };
            hessian::analyze(&mut op, &params, &cfg, &ProgressBar::hidden())
        })?;
        run.note("hessian", m, outcome);
        Ok(Some(report))
    }

    fn aggregate(&self, rows: &[Row<Self::Result>], _base: &[Row<Self::Result>], _is_base: bool) -> HessianStats {
        // A statistic stands only when every seed has it.
        let optional = |f: fn(&HessianReport) -> Option<f64>| {
            rows.iter()
                .all(|r| r.result.as_ref().and_then(f).is_some())
                .then(|| mean_of(rows, |h| h.as_ref().and_then(f).unwrap_or(f64::NAN)))
        };
        HessianStats {
            hessian_trace: optional(|h| Some(h.trace)),
            top_eigenvalue: optional(top_eigenvalue),
        }
    }

    fn comparisons(&self, g: &HessianStats, base: &HessianStats) -> Vec<Comparison> {
        let mut out = vec![];
        for (what, x, b) in [
            ("Hessian trace", g.hessian_trace, base.hessian_trace),
            ("top Hessian eigenvalue", g.top_eigenvalue, base.top_eigenvalue),
        ] {
            if let (Some(x), Some(b)) = (x, b) {
                out.push(Comparison::new(what, x, Some(b), Better::Lower));
            }
        }
        out
    }

    fn report(&self, r: &mut Report, groups: &[Group], _archs: &[String], _plots: &Path) -> Result<()> {
        let opt = |m: &Option<MeanCi>| m.map_or("—".into(), |m| m.to_string());
        r.heading("Hessian trace and top eigenvalue");
        let header = [NAME_COLUMN, "recipe", "Hessian trace", "top eigenvalue"];
        let rows = with_stats::<Self>(groups)?
            .iter()
            .map(|(g, s)| {
                vec![
                    g.arch.clone(),
                    g.recipe.clone(),
                    opt(&s.hessian_trace),
                    opt(&s.top_eigenvalue),
                ]
            })
            .collect();
        r.table(header.map(String::from).to_vec(), rows);
        Ok(())
    }
}
