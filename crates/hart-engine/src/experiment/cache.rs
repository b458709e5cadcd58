//! Stage results cached by their inputs: a stage's key is the hash of
//! everything that determines its output (config slice, input artefact
//! hashes, HART's version), so a rerun after an interruption or a config
//! change recomputes exactly the stages whose inputs changed.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{HartError, Result};

pub struct Cache {
    dir: PathBuf,
}

/// What happened to a stage, for the progress display and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Cached,
    Computed,
}

pub fn hash_json(value: &impl Serialize) -> Result<String> {
    let text = serde_json::to_string(value).map_err(|e| HartError::Invalid(e.to_string()))?;
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(text.as_bytes());
    Ok(format!("{:x}", h.finalize())[..16].to_string())
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| HartError::io(&dir, e))?;
        Ok(Cache { dir })
    }

    /// Returns the stage's cached result, or runs `compute` in a fresh
    /// directory and stores its result. The directory only becomes visible
    /// (renamed into place) once the result is complete, so an interrupted
    /// stage is simply recomputed.
    pub fn stage<T, F>(&self, name: &str, key: &impl Serialize, compute: F) -> Result<(T, PathBuf, Outcome)>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(&Path) -> Result<T>,
    {
        let dir = self.dir.join(format!("{name}-{}", hash_json(key)?));
        let result = dir.join("result.json");
        if let Ok(text) = std::fs::read_to_string(&result) {
            if let Ok(value) = serde_json::from_str(&text) {
                tracing::info!(stage = name, dir = %dir.display(), "cached");
                return Ok((value, dir, Outcome::Cached));
            }
        }
        let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| HartError::io(&tmp, e))?;
        tracing::info!(stage = name, "computing");
        let value = compute(&tmp)?;
        let text = serde_json::to_string_pretty(&value).map_err(|e| HartError::Invalid(e.to_string()))?;
        crate::util::write_atomic(&tmp.join("result.json"), text.as_bytes())?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir).map_err(|e| HartError::io(&dir, e))?;
        Ok((value, dir, Outcome::Computed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_call_with_same_key_is_cached_and_other_key_recomputes() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path()).unwrap();
        let mut runs = 0;
        let mut run = |key: u32| {
            cache
                .stage("double", &key, |_| {
                    runs += 1;
                    Ok(key * 2)
                })
                .unwrap()
        };
        assert_eq!(run(3).2, Outcome::Computed);
        let (v, _, o) = run(3);
        assert_eq!((v, o), (6, Outcome::Cached));
        assert_eq!(run(4).2, Outcome::Computed);
        assert_eq!(runs, 2);
    }

    #[test]
    fn failed_stage_leaves_nothing_cached() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path()).unwrap();
        let r: Result<(u32, _, _)> = cache.stage("boom", &1, |_| Err(HartError::Invalid("interrupted".into())));
        assert!(r.is_err());
        let (v, _, o) = cache.stage("boom", &1, |_| Ok(7u32)).unwrap();
        assert_eq!((v, o), (7, Outcome::Computed));
    }
}
