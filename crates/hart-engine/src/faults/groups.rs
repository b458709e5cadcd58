//! Grouped fault lists: every group's flips applied together (in the
//! sweep's storage format, through its defence), one exact row per group.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::faulted::{bit_faults, group_outcome};
use super::faultlist::Group;
use super::storage::Storage;
use super::sweep::Sweep;
use super::verdict::rad;
use super::verdict::Outcome;
use crate::error::{HartError, Result};
use crate::util::write_atomic;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupRow {
    pub group: String,
    pub flips: usize,
    pub correct: i64,
    pub total: i64,
    pub accuracy: f64,
    pub rad: f64,
    pub detected_flips: u64,
    pub zeroed_weights: u64,
    pub zeroed_groups: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupSummary {
    pub storage: Storage,
    pub defense: String,
    pub clean_correct: i64,
    pub total: i64,
    pub clean_accuracy: f64,
    pub groups: usize,
    pub threshold: f64,
    /// Groups whose RAD exceeds the threshold.
    pub erratic_groups: usize,
    pub detected_flips: u64,
}

/// One exact row per group, in list order, calling `progress(1)` after each.
pub fn evaluate(sw: &Sweep, groups: &[Group], progress: &mut dyn FnMut(u64)) -> Result<Vec<GroupRow>> {
    let inject = sw
        .inject
        .as_deref()
        .ok_or_else(|| HartError::Invalid("grouped sweep without stored words".into()))?;
    let ctx = sw.ctx();
    let mut rows = vec![];
    for g in groups {
        let flips: Vec<_> = g.members.iter().map(|&k| sw.space.flip(k as u64)).collect();
        let faults = bit_faults(&sw.space, inject, &flips)?;
        let (Outcome { correct, .. }, rec) = group_outcome(&ctx, inject, &faults)?;
        let total = sw.clean.n as i64;
        rows.push(GroupRow {
            group: g.name.clone(),
            flips: flips.len(),
            correct,
            total,
            accuracy: correct as f64 / total as f64,
            rad: rad(sw.clean.correct_count, correct),
            detected_flips: rec.detected_flips,
            zeroed_weights: rec.zeroed_weights,
            zeroed_groups: rec.zeroed_groups,
        });
        progress(1);
    }
    Ok(rows)
}

/// Writes `dir/groups.csv` and `dir/summary.json`.
pub fn write(dir: &Path, sw: &Sweep, rows: &[GroupRow]) -> Result<GroupSummary> {
    std::fs::create_dir_all(dir).map_err(|e| HartError::io(dir, e))?;
    let path = dir.join("groups.csv");
    let mut w = csv::Writer::from_writer(vec![]);
    for r in rows {
        w.serialize(r).map_err(|e| HartError::data(&path, e.to_string()))?;
    }
    let bytes = w.into_inner().map_err(|e| HartError::data(&path, e.to_string()))?;
    write_atomic(&path, &bytes)?;
    let summary = GroupSummary {
        storage: sw.cfg.storage,
        defense: sw.cfg.defense.to_string(),
        clean_correct: sw.clean.correct_count,
        total: sw.clean.n as i64,
        clean_accuracy: sw.clean.correct_count as f64 / sw.clean.n as f64,
        groups: rows.len(),
        threshold: sw.cfg.threshold,
        erratic_groups: rows.iter().filter(|r| r.rad > sw.cfg.threshold).count(),
        detected_flips: rows.iter().map(|r| r.detected_flips).sum(),
    };
    let text = serde_json::to_string_pretty(&summary).map_err(|e| HartError::Invalid(e.to_string()))?;
    write_atomic(&dir.join("summary.json"), text.as_bytes())?;
    Ok(summary)
}
