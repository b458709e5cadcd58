//! What each shard ran: `DIR/shards/<phase>-<I>-of-<N>.json`, written when
//! the shard starts and again when it finishes, with the hash of its config
//! and its HART version. The cache keys already keep a shard with another
//! config or version from standing in for this one (its units are simply
//! not found); the records let the run that finds a unit missing say whose
//! unit it was and why it is missing, in one line.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cache::hash_json;
use super::config::ExperimentConfig;
use super::units::{owners, Phase, Unit};
use crate::error::{HartError, Result};
use crate::faults::Shard;

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    /// train, measure or all.
    phase: String,
    index: u32,
    count: u32,
    /// [`hash_json`] of the whole config (which covers the HART version too).
    config: String,
    hart: String,
    finished: bool,
}

fn dir(out: &Path) -> PathBuf {
    out.join("shards")
}

fn write(out: &Path, cfg: &ExperimentConfig, phase: Phase, shard: Shard, finished: bool) -> Result<()> {
    let r = Record {
        phase: phase.to_string(),
        index: shard.index,
        count: shard.count,
        config: hash_json(cfg)?,
        hart: VERSION.into(),
        finished,
    };
    let path = dir(out).join(format!("{phase}-{}-of-{}.json", shard.index, shard.count));
    let text = serde_json::to_string_pretty(&r).map_err(|e| HartError::Invalid(e.to_string()))?;
    crate::util::write_atomic(&path, text.as_bytes())
}

/// Records that `shard` of `phase` has started (and not finished).
pub fn started(out: &Path, cfg: &ExperimentConfig, phase: Phase, shard: Shard) -> Result<()> {
    write(out, cfg, phase, shard, false)
}

/// Records that `shard` of `phase` has done all its units.
pub fn finished(out: &Path, cfg: &ExperimentConfig, phase: Phase, shard: Shard) -> Result<()> {
    write(out, cfg, phase, shard, true)
}

/// Every readable record, the most recently written first.
fn records(out: &Path) -> Vec<Record> {
    let Ok(entries) = std::fs::read_dir(dir(out)) else {
        return vec![];
    };
    let mut found: Vec<(std::time::SystemTime, Record)> = entries
        .flatten()
        .filter_map(|e| {
            let modified = e.metadata().ok()?.modified().ok()?;
            let r = serde_json::from_str(&std::fs::read_to_string(e.path()).ok()?).ok()?;
            Some((modified, r))
        })
        .collect();
    found.sort_by_key(|r| std::cmp::Reverse(r.0));
    found.into_iter().map(|(_, r)| r).collect()
}

/// Why `unit` is missing, from the records of the shards of its phase.
fn reason(cfg: &ExperimentConfig, records: &[Record], config: &str, unit: &Unit) -> String {
    let phase = unit.phase();
    let ran: Vec<&Record> = records
        .iter()
        .filter(|r| r.phase == phase.to_string() || r.phase == Phase::All.to_string())
        .collect();
    // The sharding written last is the one the unit was meant for.
    let Some(latest) = ran.first() else {
        return format!("no --phase {phase} shard has run");
    };
    let kind = latest.phase.clone();
    let count = latest.count;
    let of_kind = |r: &&&Record| r.phase == kind && r.count == count;
    let name = |r: &Record| format!("shard {}/{count} of --phase {kind}", r.index);
    if let Some(r) = ran.iter().filter(of_kind).find(|r| r.hart != VERSION) {
        return format!("{} ran HART {}, this is {VERSION}", name(r), r.hart);
    }
    if let Some(r) = ran.iter().filter(of_kind).find(|r| r.config != config) {
        return format!("{} ran another config", name(r));
    }
    let owner = owners(cfg, phase, count)
        .into_iter()
        .find(|(u, _)| u == unit)
        .map_or(0, |(_, s)| s);
    match ran.iter().filter(of_kind).find(|r| r.index == owner) {
        None => format!("shard {owner}/{count} of --phase {kind} has not run"),
        Some(r) if !r.finished => format!("{} did not finish", name(r)),
        Some(r) => format!("{} finished without it: was the cache changed?", name(r)),
    }
}

/// The one-line error for units an assembling run (or a measuring shard)
/// found missing from the cache: grouped by why they are missing (whose
/// shard, in what state), the first few of each group named.
pub fn missing(cfg: &ExperimentConfig, out: &Path, units: &[Unit]) -> HartError {
    const SHOWN: usize = 3;
    let records = records(out);
    let config = hash_json(cfg).unwrap_or_default();
    let mut groups: Vec<(String, Vec<String>)> = vec![];
    for u in units {
        let why = reason(cfg, &records, &config, u);
        match groups.iter_mut().find(|(w, _)| *w == why) {
            Some((_, names)) => names.push(u.name(cfg)),
            None => groups.push((why, vec![u.name(cfg)])),
        }
    }
    let groups: Vec<String> = groups
        .into_iter()
        .map(|(why, names)| {
            let more = names.len().saturating_sub(SHOWN);
            let shown = names.into_iter().take(SHOWN).collect::<Vec<_>>().join(", ");
            match more {
                0 => format!("{shown} ({why})"),
                n => format!("{shown} and {n} more ({why})"),
            }
        })
        .collect();
    let what = match units.len() {
        1 => "1 unit is".to_string(),
        n => format!("{n} units are"),
    };
    HartError::Invalid(format!(
        "{what} not in {}: {}; rerun the shards named, or pass --allow-compute to compute them in this run",
        out.join("cache").display(),
        groups.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"
archs = ["mlp"]
seeds = [0, 1, 2]
[data]
train_limit = 100
[[recipe]]
name = "plain"
"#;

    #[test]
    fn a_missing_unit_names_its_shard_and_why() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = ExperimentConfig::parse(CFG).unwrap();
        let units = super::super::units::units(&cfg, Phase::Train);
        let err = |u: &Unit| missing(&cfg, tmp.path(), std::slice::from_ref(u)).to_string();
        assert!(err(&units[0]).contains("train mlp/plain/seed0 (no --phase train shard has run)"));
        // Three equal trainings over three shards: one each, in order.
        let shard = |index| Shard { index, count: 3 };
        started(tmp.path(), &cfg, Phase::Train, shard(0)).unwrap();
        finished(tmp.path(), &cfg, Phase::Train, shard(1)).unwrap();
        let e = err(&units[0]);
        assert!(e.contains("(shard 0/3 of --phase train did not finish)"), "{e}");
        assert!(!e.contains('\n') && e.contains("--allow-compute"), "{e}");
        assert!(err(&units[1]).contains("finished without it"));
        assert!(err(&units[2]).contains("(shard 2/3 of --phase train has not run)"));
        let other = ExperimentConfig::parse(&CFG.replace("[0, 1, 2]", "[0, 1, 5]")).unwrap();
        finished(tmp.path(), &other, Phase::Train, shard(2)).unwrap();
        assert!(err(&units[2]).contains("(shard 2/3 of --phase train ran another config)"));
        let all = missing(&cfg, tmp.path(), &[units.clone(), units.clone()].concat()).to_string();
        assert!(
            all.starts_with("6 units are not in") && all.contains("and 3 more (shard 2/3"),
            "{all}"
        );
    }
}
