//! Stage results cached by their inputs: a stage's key is the hash of
//! everything that determines its output (config slice, input artefact
//! hashes, HART's version), so a rerun after an interruption or a config
//! change recomputes exactly the stages whose inputs changed.
//!
//! Several processes may share one cache (the shards of a Slurm array): a
//! stage is computed under an exclusive flock on `<stage>-<hash>.lock`, so
//! a second process that needs it waits for the first and then reads its
//! result instead of computing it again; a killed holder's lock goes with
//! its process, and the next one to take it clears the half-written
//! directories it left.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{HartError, Result};

pub struct Cache {
    dir: PathBuf,
    /// Whether a stage missing from the cache is computed (else [`HartError::NotCached`]).
    compute: bool,
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

fn read<T: DeserializeOwned>(result: &Path) -> Option<T> {
    let text = std::fs::read_to_string(result).ok()?;
    serde_json::from_str(&text).ok()
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| HartError::io(&dir, e))?;
        Ok(Cache { dir, compute: true })
    }

    /// Whether stages missing from the cache are computed (the default) or
    /// are a [`HartError::NotCached`] error (an assembling run).
    pub fn set_compute(&mut self, compute: bool) {
        self.compute = compute;
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
        let base = format!("{name}-{}", hash_json(key)?);
        let dir = self.dir.join(&base);
        let result = dir.join("result.json");
        if let Some(value) = read(&result) {
            tracing::info!(stage = name, dir = %dir.display(), "cached");
            return Ok((value, dir, Outcome::Cached));
        }
        if !self.compute {
            return Err(HartError::NotCached(base));
        }
        let lock_path = self.dir.join(format!("{base}.lock"));
        let lock = self.lock(&lock_path, name)?;
        // Another process may have finished it while this one waited.
        if let Some(value) = read(&result) {
            return Ok((value, dir, Outcome::Cached));
        }
        self.clear_leftovers(&base)?;
        let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
        std::fs::create_dir_all(&tmp).map_err(|e| HartError::io(&tmp, e))?;
        tracing::info!(stage = name, "computing");
        let value = compute(&tmp)?;
        let text = serde_json::to_string_pretty(&value).map_err(|e| HartError::Invalid(e.to_string()))?;
        crate::util::write_atomic(&tmp.join("result.json"), text.as_bytes())?;
        // A directory without a readable result (written by an older HART) is replaced.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir).map_err(|e| HartError::io(&dir, e))?;
        // Unlinked only once the result is in place: whoever still waits on
        // this file, or makes a new one, finds the result when it gets the lock.
        let _ = std::fs::remove_file(&lock_path);
        drop(lock);
        Ok((value, dir, Outcome::Computed))
    }

    /// The exclusive lock on one stage, waiting for a process computing it.
    fn lock(&self, path: &Path, name: &str) -> Result<File> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| HartError::io(path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                tracing::info!(stage = name, "waiting for another process computing it");
                file.lock().map_err(|e| HartError::io(path, e))?;
            }
            Err(TryLockError::Error(e)) => return Err(HartError::io(path, e)),
        }
        Ok(file)
    }

    /// Removes the half-written directories killed runs left for stage `base`
    /// (only under its lock: nobody else is writing them).
    fn clear_leftovers(&self, base: &str) -> Result<()> {
        let prefix = format!("{base}.tmp");
        let entries = std::fs::read_dir(&self.dir).map_err(|e| HartError::io(&self.dir, e))?;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
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

    #[test]
    fn a_second_process_waits_for_the_first_and_reads_its_result() {
        let tmp = tempfile::tempdir().unwrap();
        let runs = std::sync::atomic::AtomicU32::new(0);
        let stage = |tag: u32| {
            // Each thread has its own Cache, as each shard process does.
            let cache = Cache::new(tmp.path()).unwrap();
            cache
                .stage("slow", &1, |_| {
                    runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    Ok(tag)
                })
                .unwrap()
        };
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| stage(1));
            std::thread::sleep(std::time::Duration::from_millis(50));
            let b = s.spawn(|| stage(2));
            (a.join().unwrap(), b.join().unwrap())
        });
        assert_eq!(runs.into_inner(), 1, "the stage was computed twice");
        assert_eq!((a.0, a.2, b.0, b.2), (1, Outcome::Computed, 1, Outcome::Cached));
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 1, "only the stage directory is left: {left:?}");
    }

    #[test]
    fn a_killed_runs_leftovers_are_cleared_and_a_missing_stage_can_be_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cache = Cache::new(tmp.path()).unwrap();
        let base = format!("k-{}", hash_json(&5).unwrap());
        // What a process killed mid-stage leaves: its directory and its lock file.
        std::fs::create_dir_all(tmp.path().join(format!("{base}.tmp999999/sweep"))).unwrap();
        std::fs::write(tmp.path().join(format!("{base}.lock")), b"").unwrap();
        cache.set_compute(false);
        match cache.stage("k", &5, |_| Ok(1u32)) {
            Err(HartError::NotCached(name)) => assert_eq!(name, base),
            other => panic!("expected NotCached, got {:?}", other.map(|r| r.0)),
        }
        cache.set_compute(true);
        assert_eq!(cache.stage("k", &5, |_| Ok(1u32)).unwrap().2, Outcome::Computed);
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from(base)]);
        cache.set_compute(false);
        assert_eq!(
            cache.stage("k", &5, |_| Ok(2u32)).unwrap(),
            (
                1,
                tmp.path().join(format!("k-{}", hash_json(&5).unwrap())),
                Outcome::Cached
            )
        );
    }
}
