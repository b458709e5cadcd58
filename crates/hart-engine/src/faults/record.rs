//! One output row per flip, and its text form in part files (CSV without a
//! header; the final CSV table is the header plus the parts in unit order).

use std::path::Path;

use crate::error::{HartError, Result};

pub const COLUMNS: [&str; 12] = [
    "param", "index", "bit", "old", "new", "correct", "total", "rad", "exact", "samples", "bound", "sure",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub param: String,
    pub index: i64,
    pub bit: u8,
    pub old: f32,
    pub new: f32,
    /// Faulty correct count; exact when `exact`, else on the verdict's side
    /// of the threshold (early exit).
    pub correct: i64,
    pub total: i64,
    pub rad: f64,
    pub exact: bool,
    /// Samples whose faulty outcome is known (evaluated or proven unchanged).
    pub samples: i64,
    /// Bound on the net lost samples (clean − faulty correct) on the
    /// verdict's side of the threshold; the count itself when exact.
    pub bound: i64,
    /// False when the verdict was settled at the sweep's confidence
    /// (sequential verdicts) rather than surely.
    pub sure: bool,
}

/// Rows as CSV lines (no header). Floats print in Rust's shortest round-trip
/// form, so re-reading gives the same bits (NaN payloads aside).
pub fn to_csv(rows: &[Row]) -> Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(vec![]);
    for r in rows {
        w.write_record([
            r.param.clone(),
            r.index.to_string(),
            r.bit.to_string(),
            r.old.to_string(),
            r.new.to_string(),
            r.correct.to_string(),
            r.total.to_string(),
            r.rad.to_string(),
            r.exact.to_string(),
            r.samples.to_string(),
            r.bound.to_string(),
            r.sure.to_string(),
        ])
        .map_err(|e| HartError::Invalid(e.to_string()))?;
    }
    w.into_inner().map_err(|e| HartError::Invalid(e.to_string()))
}

pub fn read_csv(path: &Path) -> Result<Vec<Row>> {
    let bytes = std::fs::read(path).map_err(|e| HartError::io(path, e))?;
    parse_csv(&bytes, path)
}

/// Rows from CSV text without a header; `path` names the source in errors.
pub fn parse_csv(bytes: &[u8], path: &Path) -> Result<Vec<Row>> {
    let mut r = csv::ReaderBuilder::new().has_headers(false).from_reader(bytes);
    let mut rows = vec![];
    for (i, rec) in r.records().enumerate() {
        let bad = |what: &str| HartError::data(path, format!("line {}: bad {what}", i + 1));
        let rec = rec.map_err(|_| bad("CSV record"))?;
        let f = |k: usize| rec.get(k).ok_or_else(|| bad(COLUMNS[k]));
        macro_rules! parse {
            ($k:expr) => {
                f($k)?.parse().map_err(|_| bad(COLUMNS[$k]))?
            };
        }
        rows.push(Row {
            param: f(0)?.to_string(),
            index: parse!(1),
            bit: parse!(2),
            old: parse!(3),
            new: parse!(4),
            correct: parse!(5),
            total: parse!(6),
            rad: parse!(7),
            exact: parse!(8),
            samples: parse!(9),
            bound: parse!(10),
            sure: parse!(11),
        });
    }
    Ok(rows)
}
