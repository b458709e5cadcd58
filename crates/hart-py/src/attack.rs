//! `hart._hart.attack`: `hart attack` into an output directory (flips.csv,
//! summary.json, accuracy.png, as the CLI writes them), from the same engine
//! calls (`hart::attack`); the Python side reads the files.

use std::path::PathBuf;

use hart::attack::{output, Attack, AttackConfig, Method};
use hart::faults::ranger::DefenseChoice;
use hart::faults::Storage;
use hart::outdir::OutDirLock;
use pyo3::prelude::*;

use crate::data::Data;
use crate::model::run_on;
use crate::sweep::{defend, parse, Profile};

/// Attacks `model` with batches of `attack_images` drawn from `train`,
/// measuring accuracy on `eval` (the CLI's first 10·N training and first
/// --eval-limit test images), into `out`; every option is the `hart attack`
/// option of that name.
#[pyfunction]
#[pyo3(signature = (
    model, train, eval, out, *, attack_images=128, storage="int8".to_string(), per_channel=false,
    method="bfa".to_string(), max_flips=100, target_accuracy=None, top_k=10, trials=5, seed=0,
    defense="none".to_string(), profile=None, profile_limit=1000, batch_size=1000,
    device="cpu".to_string(), progress=None
))]
#[allow(clippy::too_many_arguments)]
pub fn attack(
    py: Python<'_>,
    model: (PathBuf, Option<String>, Option<String>),
    train: &Data,
    eval: &Data,
    out: PathBuf,
    attack_images: usize,
    storage: String,
    per_channel: bool,
    method: String,
    max_flips: usize,
    target_accuracy: Option<f64>,
    top_k: usize,
    trials: usize,
    seed: u64,
    defense: String,
    profile: Profile,
    profile_limit: usize,
    batch_size: usize,
    device: String,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<()> {
    let train = train.inner.clone();
    run_on(py, model, eval, &device, progress.as_ref(), move |bar, model, eval| {
        let choice: DefenseChoice = parse("--defense", &defense)?;
        let _lock = OutDirLock::acquire(&out, 0, 1)?;
        let (model, defense, _) = defend(choice, model, profile, profile_limit, &out, batch_size)?;
        let cfg = AttackConfig {
            method: parse::<Method>("--method", &method)?,
            storage: parse::<Storage>("--storage", &storage)?,
            per_channel,
            defense,
            max_flips,
            target: target_accuracy,
            top_k,
            trials,
            seed,
            attack_images,
            batch: batch_size,
        };
        let attack = Attack::new(&model, &train, eval, cfg)?;
        bar.set_length((trials * max_flips) as u64);
        let done = attack.run(&mut |k| bar.inc(k))?;
        let summary = output::summarize(&attack, &done);
        output::write(&out, &attack, &done, &summary)?;
        Ok(())
    })
}
