//! `hart._hart.sweep`: `hart sweep` into an output directory (flips table
//! and summary.json, or groups.csv for a grouped fault list), resumable as
//! the CLI's; the Python side reads the files into DataFrames.

use std::path::PathBuf;

use hart::data::{DataSpec, Split};
use hart::faults::ranger::{self, DefenseChoice};
use hart::faults::{groups, prepare, sweep as engine, BitSet, SampleSize, SweepConfig, VerdictMode};
use hart::outdir::OutDirLock;
use hart::HartError;
use pyo3::prelude::*;

use crate::data::Data;
use crate::model::run_on;

/// An option's value parsed as the CLI parses it, the message naming the option.
pub fn parse<T: std::str::FromStr<Err = HartError>>(what: &str, s: &str) -> hart::Result<T> {
    s.parse()
        .map_err(|e: HartError| HartError::Invalid(format!("{what}: {e}")))
}

/// Where Ranger profiles: (data set, data_dir, image_size) from the Python side.
pub type Profile = Option<(String, Option<PathBuf>, usize)>;

/// `ranger::defend` with the profile the Python side named (required under Ranger).
pub fn defend(
    choice: DefenseChoice,
    model: hart::model::Model,
    profile: Profile,
    limit: usize,
    out: &std::path::Path,
    batch: usize,
) -> hart::Result<(hart::model::Model, hart::faults::Defense, Option<ranger::Bounds>)> {
    let (dataset, data_dir, image_size) = match (choice, profile) {
        (_, Some(p)) => p,
        (DefenseChoice::Ranger, None) => {
            return Err(HartError::Invalid(
                "defense=\"ranger\" profiles activations on training images: name their data set (profile_data=)"
                    .into(),
            ))
        }
        (DefenseChoice::Words(_), None) => (String::new(), None, 224),
    };
    let spec = DataSpec {
        dataset,
        split: Split::Train,
        limit: Some(limit),
        data_dir,
        image_size,
    };
    ranger::defend(choice, model, &spec, out, batch)
}

/// Sweeps `model` (a file, arch, normalize: the CLI's --model/--arch/--normalize) on
/// `data` into `out`; every option is the `hart sweep` option of that name.
/// `profile` names the training images Ranger profiles (`defense="ranger"`).
/// Returns "flips" or "groups": which table `out` holds.
#[pyfunction]
#[pyo3(signature = (
    model, data, out, *, bits="all".to_string(), params=None,
    scope="all".to_string(), sample_params=None, seed=0, faults=None, threshold=0.1, exact_rad=false,
    verdict="exact".to_string(), confidence=None, storage="fp32".to_string(), per_channel=false,
    defense="none".to_string(), profile=None, profile_limit=1000, nan_policy="wrong".to_string(),
    engine="auto".to_string(), batch_size=1000, jobs=None, format="parquet".to_string(), device="cpu".to_string(), progress=None
))]
#[allow(clippy::too_many_arguments)]
pub fn sweep(
    py: Python<'_>,
    model: (PathBuf, Option<String>, Option<String>),
    data: &Data,
    out: PathBuf,
    bits: String,
    params: Option<String>,
    scope: String,
    sample_params: Option<String>,
    seed: u64,
    faults: Option<PathBuf>,
    threshold: f64,
    exact_rad: bool,
    verdict: String,
    confidence: Option<f64>,
    storage: String,
    per_channel: bool,
    defense: String,
    profile: Profile,
    profile_limit: usize,
    nan_policy: String,
    engine: String,
    batch_size: usize,
    jobs: Option<usize>,
    format: String,
    device: String,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<String> {
    run_on(py, model, data, &device, progress.as_ref(), |bar, model, data| {
        let verdict: VerdictMode = parse("--verdict", &verdict)?;
        let sample = sample_params
            .map(|s| parse::<SampleSize>("--sample-params", &s))
            .transpose()?;
        let choice: DefenseChoice = defense.parse()?;
        let format: hart::faults::Format = parse("--format", &format)?;
        let mut cfg = SweepConfig {
            bits: BitSet::parse(&bits)?,
            scope: parse("--scope", &scope)?,
            params,
            sample: sample.map(|k| (k, seed)),
            faults,
            threshold,
            exact_rad,
            engine: parse("--engine", &engine)?,
            batch: batch_size,
            confidence: confidence.unwrap_or(verdict.default_confidence()),
            verdict,
            jobs,
            storage: parse("--storage", &storage)?,
            per_channel,
            seed,
            nan_policy: parse("--nan-policy", &nan_policy)?,
            ..SweepConfig::new()
        };
        if jobs == Some(0) {
            return Err(HartError::Invalid("--jobs must be at least 1".into()));
        }
        let _lock = OutDirLock::acquire(&out, 0, 1)?;
        let (model, defense, _) = defend(choice, model, profile, profile_limit, &out, batch_size)?;
        cfg.defense = defense;
        let sw = prepare(&model, data, &cfg)?;
        if let Some(list) = &sw.groups {
            bar.set_length(list.len() as u64);
            let rows = groups::evaluate(&sw, list, &mut |n| bar.inc(n))?;
            groups::write(&out, &sw, &rows)?;
            return Ok("groups".to_string());
        }
        bar.set_length(sw.owned_flips());
        sw.run(&out, &mut |n| bar.inc(n))?;
        engine::finish(&out, format)?;
        Ok("flips".to_string())
    })
}
