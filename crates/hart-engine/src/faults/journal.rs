//! Durable progress: `sweep.json` (what is being swept, with hashes) plus one
//! part file per finished work unit, each written atomically. A unit is done
//! exactly when its part exists, so a run killed at any instant resumes with
//! no flip lost or counted twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::record::{to_csv, Row};
use super::shard::Shard;
use crate::error::{HartError, Result};
use crate::util::write_atomic;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hashes {
    /// sha256 of the model's tensors (names, shapes, bytes) before the sweep.
    pub model: String,
    /// sha256 of the evaluation images and labels.
    pub data: String,
    /// sha256 of `config` (everything that shapes the table).
    pub config: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub hashes: Hashes,
    pub config: serde_json::Value,
    pub shard: Shard,
    pub units: usize,
    pub flips: u64,
    /// Flips of the exhaustive space a sample is drawn from.
    pub population: u64,
    pub sampled: bool,
    pub threshold: f64,
    pub confidence: f64,
    pub clean_correct: i64,
    pub total: i64,
    /// Tensor name → layer (graph node) for per-layer counts.
    pub layers: BTreeMap<String, String>,
}

impl Hashes {
    /// Refuses to resume in `dir` a `kind` ("sweep", "campaign") whose
    /// hashes, or any of the `other` named checks, differ from this run's.
    pub fn check_resume(&self, new: &Hashes, dir: &Path, kind: &str, other: &[(&str, bool)]) -> Result<()> {
        let differs = [
            ("model", self.model != new.model),
            ("dataset slice", self.data != new.data),
            ("configuration", self.config != new.config),
        ];
        if let Some((what, _)) = differs.iter().chain(other).find(|(_, d)| *d) {
            return Err(HartError::Invalid(format!(
                "{} holds a {kind} with a different {what}; resume with the same settings or choose another --out",
                dir.display()
            )));
        }
        tracing::info!(dir = %dir.display(), "resuming {kind}");
        Ok(())
    }
}

pub const MANIFEST: &str = "sweep.json";
const VERSION: u32 = 1;

pub fn new_version() -> u32 {
    VERSION
}

pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| HartError::io(&path, e))?;
    let m: Manifest =
        serde_json::from_str(&text).map_err(|e| HartError::data(&path, format!("unreadable sweep manifest: {e}")))?;
    if m.version != VERSION {
        return Err(HartError::data(
            &path,
            format!("sweep format version {} (this HART writes {VERSION})", m.version),
        ));
    }
    // A damaged shard would divide by zero when units are assigned.
    if m.shard.count == 0 || m.shard.index >= m.shard.count {
        return Err(HartError::data(
            &path,
            format!("shard {}/{} is not I/N with 0 <= I < N", m.shard.index, m.shard.count),
        ));
    }
    Ok(m)
}

pub fn part_path(dir: &Path, unit: usize) -> PathBuf {
    dir.join("parts").join(format!("u{unit:09}.csv"))
}

pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    /// Starts a sweep in `dir`, or resumes the identical one found there.
    pub fn open(dir: &Path, manifest: &Manifest) -> Result<Journal> {
        if dir.join(MANIFEST).exists() {
            let old = read_manifest(dir)?;
            old.hashes.check_resume(
                &manifest.hashes,
                dir,
                "sweep",
                &[("shard", old.shard != manifest.shard)],
            )?;
        } else {
            let text = serde_json::to_string_pretty(manifest).map_err(|e| HartError::Invalid(e.to_string()))?;
            std::fs::create_dir_all(dir.join("parts")).map_err(|e| HartError::io(dir, e))?;
            write_atomic(&dir.join(MANIFEST), text.as_bytes())?;
        }
        std::fs::create_dir_all(dir.join("parts")).map_err(|e| HartError::io(dir, e))?;
        Ok(Journal { dir: dir.to_path_buf() })
    }

    pub fn is_done(&self, unit: usize) -> bool {
        part_path(&self.dir, unit).exists()
    }

    pub fn record(&self, unit: usize, rows: &[Row]) -> Result<()> {
        write_atomic(&part_path(&self.dir, unit), &to_csv(rows)?)
    }
}
