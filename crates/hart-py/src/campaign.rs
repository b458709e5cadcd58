//! `hart._hart.campaign`: one storage's `hart campaign` into an output
//! directory (trials table and summary.json), resumable as the CLI's; the
//! Python side runs one per storage, as the CLI does, and reads the files.

use std::path::PathBuf;

use hart::campaign::model::parse_levels;
use hart::campaign::{prepare, CampaignConfig, FaultModel};
use hart::faults::ranger::DefenseChoice;
use hart::outdir::OutDirLock;
use pyo3::prelude::*;

use crate::data::Data;
use crate::model::run_on;
use crate::sweep::{defend, parse, Profile};

/// Runs the campaign of `model` on `data` into `out`; every option is the
/// `hart campaign` option of that name (`storage` one format).
#[pyfunction]
#[pyo3(signature = (
    model, data, out, *, fault, levels, storage="fp32".to_string(), per_channel=false,
    defense="none".to_string(), profile=None, profile_limit=1000, trials=100, seed=0,
    scope="all".to_string(), params=None, threshold=0.1, confidence=0.95, batch_size=1000,
    format="parquet".to_string(), device="cpu".to_string(), progress=None
))]
#[allow(clippy::too_many_arguments)]
pub fn campaign(
    py: Python<'_>,
    model: (PathBuf, Option<String>, Option<String>),
    data: &Data,
    out: PathBuf,
    fault: String,
    levels: String,
    storage: String,
    per_channel: bool,
    defense: String,
    profile: Profile,
    profile_limit: usize,
    trials: u64,
    seed: u64,
    scope: String,
    params: Option<String>,
    threshold: f64,
    confidence: f64,
    batch_size: usize,
    format: String,
    device: String,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<()> {
    run_on(py, model, data, &device, progress.as_ref(), |bar, model, data| {
        let fault: FaultModel = parse("--fault", &fault)?;
        let choice: DefenseChoice = defense.parse()?;
        let format: hart::faults::Format = parse("--format", &format)?;
        let cfg = CampaignConfig {
            trials,
            seed,
            scope: parse("--scope", &scope)?,
            params,
            per_channel,
            storage: parse("--storage", &storage)?,
            threshold,
            confidence,
            batch: batch_size,
            ..CampaignConfig::new(fault, parse_levels(&levels, fault)?)
        };
        let _lock = OutDirLock::acquire(&out, 0, 1)?;
        let (model, defense, _) = defend(choice, model, profile, profile_limit, &out, batch_size)?;
        let c = prepare(&model, data, &CampaignConfig { defense, ..cfg })?;
        bar.set_length(c.owned_trials());
        c.run(&out, &mut |n| bar.inc(n))?;
        c.finish(&out, format)?;
        Ok(())
    })
}
