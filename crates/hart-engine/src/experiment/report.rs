//! Builds report.html / summary.md from the aggregated groups: the verdict
//! table across recipes and fault models, the claims,
//! the "not better" statements and the accuracy table, then every
//! measurement's own sections in registry order.

use std::path::Path;

use super::claims;
use super::matrix::{self, Line};
use super::measure::REGISTRY;
use super::present::NAME_COLUMN;
use super::results::Group;
use super::verdicts::{claims_table, not_better};
use crate::error::{HartError, Result};
use crate::report::Report;

pub fn build(title: &str, groups: &[Group], verdict: &[Line], archs: &[String], plots: &Path) -> Result<Report> {
    std::fs::create_dir_all(plots).map_err(|e| HartError::io(plots, e))?;
    let mut r = Report::new(title);
    if let Some((header, rows)) = matrix::table(verdict) {
        r.heading("What helps against which fault model");
        r.paragraph(matrix::EXPLANATION);
        r.table(header, rows);
    }
    let claims = claims_table(groups)?;
    if !claims.is_empty() {
        r.heading("The HAT paper's claims, tested");
        r.paragraph(claims::EXPLANATION);
        let header = [NAME_COLUMN, "claim", "measured (paired over seeds, 95% CI)", "verdict"];
        r.table(
            header.map(String::from).to_vec(),
            claims.into_iter().map(|c| c.row()).collect(),
        );
    }
    r.heading("Where the Hessian-aware (or other) recipe is not better");
    let verdicts = not_better(groups)?;
    if verdicts.is_empty() {
        r.paragraph(
            "Every non-baseline recipe beats its baseline on every measured quantity, with separated 95% intervals.",
        );
    }
    for v in verdicts {
        r.callout(v);
    }

    r.heading("Clean accuracy and training time");
    let header = [NAME_COLUMN, "recipe", "seeds", "test accuracy", "training time (s)"];
    let rows = groups
        .iter()
        .map(|g| {
            vec![
                g.arch.clone(),
                g.recipe.clone(),
                g.seeds.len().to_string(),
                g.test_accuracy.percent(),
                g.train_seconds.to_string(),
            ]
        })
        .collect();
    r.table(header.map(String::from).to_vec(), rows);

    for m in REGISTRY {
        m.report(&mut r, groups, archs, plots)?;
    }
    Ok(r)
}
