//! The analyses run on each trained model, each a cached stage keyed by the
//! model's training key and the stage's own settings.

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use super::run::{Runner, TrainedModel};
use crate::compress::prune::{prune_in_place, Scope as PruneScope};
use crate::compress::quantize::{quantize_in_place, Granularity};
use crate::compress::{self, Selection};
use crate::error::Result;
use crate::faults::{self, BitSet, Defense, Format};
use crate::hessian::{self, data_hessian, LayerSelection, ParamSet};
use crate::landscape::{self, GridSpec};
use crate::model::{load, LoadOptions, Model};

/// Accuracy at each compression setting (quantization bits or pruning sparsity).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CurvePoint {
    pub setting: f64,
    pub accuracy: f64,
}

/// Loss and accuracy along one filter-normalised direction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LandscapePoint {
    pub alpha: f64,
    pub loss: f64,
    pub accuracy: f64,
}

pub(super) fn open(m: &TrainedModel, device: tch::Device) -> Result<Model> {
    let mut model = load(&m.path, &LoadOptions::default())?;
    model.to_device(device)?;
    Ok(model)
}

impl Runner<'_> {
    pub(super) fn key(&self, m: &TrainedModel, stage: &str, settings: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"stage": stage, "model": m.key, "settings": settings})
    }

    pub(super) fn note(&mut self, stage: &str, m: &TrainedModel, outcome: super::cache::Outcome) {
        self.log
            .record(format!("{stage} {}/{}/seed{}", m.arch, m.recipe, m.seed), outcome);
        self.bar.inc(1);
    }

    /// The bit-flip sweep's summary (as `summary.json` holds it).
    pub fn sweep(&mut self, m: &TrainedModel) -> Result<serde_json::Value> {
        self.sweep_under(m, Defense::None)
    }

    /// The same sweep with every faulty word passed through `defense`
    /// (RADAR's key fixed by the model's seed).
    pub fn sweep_under(&mut self, m: &TrainedModel, defense: Defense) -> Result<serde_json::Value> {
        let s = self.cfg.sweep.clone();
        let data = self.test_prefix(s.limit)?;
        let settings = serde_json::to_value(&s).unwrap_or_default();
        // The undefended key is the one earlier versions wrote, so their caches stay valid.
        let (settings, stage) = match defense {
            Defense::None => (settings, "sweep".to_string()),
            d => (
                serde_json::json!({"sweep": settings, "defense": d.to_string()}),
                format!("sweep[{d}]"),
            ),
        };
        let key = self.key(m, "sweep", settings);
        let device = self.device;
        self.bar
            .set_message(format!("{stage} {}/{}/seed{}", m.arch, m.recipe, m.seed));
        let (summary, _, outcome) = self.cache.stage("sweep", &key, |dir| {
            let model = open(m, device)?;
            let cfg = faults::SweepConfig {
                bits: BitSet::parse(&s.bits)?,
                sample: s.sample_params.map(|k| (faults::SampleSize::Count(k as u64), m.seed)),
                threshold: s.threshold,
                exact_rad: s.exact_rad,
                defense,
                seed: m.seed,
                ..faults::SweepConfig::new()
            };
            let sweep = faults::prepare(&model, &data, &cfg)?;
            let out = dir.join("sweep");
            sweep.run(&out, &mut |_| {})?;
            let summary = faults::sweep::finish(&out, Format::Parquet)?;
            Ok(serde_json::to_value(summary).unwrap_or_default())
        })?;
        self.note(&stage, m, outcome);
        Ok(summary)
    }

    /// Trace and top eigenvalue of the loss Hessian on the test prefix.
    pub fn hessian(&mut self, m: &TrainedModel) -> Result<serde_json::Value> {
        let a = self.cfg.analysis.clone();
        let data = self.test_prefix(a.hessian_limit)?;
        let key = self.key(
            m,
            "hessian",
            serde_json::json!({"limit": a.hessian_limit, "rel_stderr": a.hessian_rel_stderr, "max_probes": a.hessian_max_probes}),
        );
        let device = self.device;
        let (report, _, outcome) = self.cache.stage("hessian", &key, |_| {
            let model = open(m, device)?;
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
            let report = hessian::analyze(&mut op, &params, &cfg, &ProgressBar::hidden())?;
            Ok(serde_json::to_value(report).unwrap_or_default())
        })?;
        self.note("hessian", m, outcome);
        Ok(report)
    }

    /// Accuracy after weight-only quantization to each bit width (per tensor).
    pub fn quantize(&mut self, m: &TrainedModel) -> Result<Vec<CurvePoint>> {
        let bits = self.cfg.analysis.quantize_bits.clone();
        let settings: Vec<f64> = bits.iter().map(|&b| b as f64).collect();
        self.compression(m, "quantize", settings, |t, b| {
            quantize_in_place(t, b as u32, Granularity::PerTensor)
        })
    }

    /// Accuracy after global magnitude pruning to each sparsity.
    pub fn prune(&mut self, m: &TrainedModel) -> Result<Vec<CurvePoint>> {
        let s = self.cfg.analysis.prune_sparsity.clone();
        self.compression(m, "prune", s, |t, s| {
            prune_in_place(t, s, PruneScope::Global).map(|_| ())
        })
    }

    fn compression(
        &mut self,
        m: &TrainedModel,
        stage: &str,
        settings: Vec<f64>,
        apply: impl Fn(&[(String, tch::Tensor)], f64) -> Result<()>,
    ) -> Result<Vec<CurvePoint>> {
        let data = self.test_prefix(self.cfg.data.test_limit)?;
        let key = self.key(m, stage, serde_json::json!({"settings": settings, "n": data.len()}));
        let device = self.device;
        let (points, _, outcome) = self.cache.stage(stage, &key, |_| {
            let model = open(m, device)?;
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
        self.note(stage, m, outcome);
        Ok(points)
    }

    /// A 1-D filter-normalised landscape through the trained weights.
    pub fn landscape(&mut self, m: &TrainedModel) -> Result<Option<Vec<LandscapePoint>>> {
        let Some(l) = self.cfg.analysis.landscape.clone() else {
            return Ok(None);
        };
        let data = self.test_prefix(l.limit)?;
        let key = self.key(m, "landscape", serde_json::to_value(&l).unwrap_or_default());
        let device = self.device;
        let (points, _, outcome) = self.cache.stage("landscape", &key, |_| {
            let model = open(m, device)?;
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
        self.note("landscape", m, outcome);
        Ok(Some(points))
    }
}
