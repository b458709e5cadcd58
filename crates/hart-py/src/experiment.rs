//! `hart._hart.experiment`: `hart experiment CONFIG --out DIR` (the whole
//! run: training, every measurement, the report, the stage cache), from the
//! same engine call (`hart::experiment::run`). A configuration given as a
//! dict arrives as JSON and is written as TOML into `out/config.toml`, which
//! the engine then reads as the CLI reads its file: one parser, its
//! messages naming the file and line, and a file the CLI can rerun.

use std::path::PathBuf;

use hart::experiment::{cache::Outcome, run as run_experiment, ExperimentConfig};
use hart::outdir::OutDirLock;
use hart::HartError;
use pyo3::prelude::*;
use serde_json::json;

use crate::{call, device};

/// Runs the experiment of `config` (a TOML file) or `config_json` (the
/// configuration as a JSON object) into `out` on `device`. Returns JSON
/// `{"groups", "report", "config", "stages": [[stage, "computed"|"cached"]], "console"}`.
#[pyfunction]
#[pyo3(signature = (out, *, config=None, config_json=None, device="cpu".to_string(), progress=None))]
pub fn experiment(
    py: Python<'_>,
    out: PathBuf,
    config: Option<PathBuf>,
    config_json: Option<String>,
    device: String,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<String> {
    call::run(py, progress.as_ref(), move |bar| {
        let device = device::parse(&device)?;
        std::fs::create_dir_all(&out).map_err(|e| HartError::io(&out, e))?;
        let _lock = OutDirLock::acquire(&out, 0, 1)?;
        let path = match (config, config_json) {
            (Some(path), None) => path,
            (None, Some(text)) => {
                let path = out.join("config.toml");
                hart::util::write_atomic(&path, to_toml(&text)?.as_bytes())?;
                path
            }
            _ => {
                return Err(HartError::Invalid(
                    "experiment: pass a config path or a config dict".into(),
                ))
            }
        };
        let cfg = ExperimentConfig::from_file(&path)?;
        let output = run_experiment(&cfg, &out, device, bar.clone(), true)?;
        let stages: Vec<_> = output
            .log
            .entries
            .iter()
            .map(|(stage, o)| {
                let what = match o {
                    Outcome::Cached => "cached",
                    Outcome::Computed => "computed",
                };
                json!([stage, what])
            })
            .collect();
        Ok(json!({
            "groups": output.groups,
            "report": output.report,
            "config": path,
            "stages": stages,
            "console": output.console,
        })
        .to_string())
    })
}

/// The TOML text of a JSON object (a configuration built in Python).
fn to_toml(text: &str) -> hart::Result<String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| HartError::Invalid(format!("experiment config: {e}")))?;
    if !value.is_object() {
        return Err(HartError::Invalid(
            "experiment config: expected a dict of tables and keys".into(),
        ));
    }
    toml::to_string(&value).map_err(|e| HartError::Invalid(format!("experiment config: not writable as TOML: {e}")))
}
