//! What the report and the console share: drawing a figure into the report,
//! picking one architecture's groups, the fault tables' change cells, and
//! tables as console lines.

use std::path::Path;

use super::results::Group;
use crate::error::{HartError, Result};
use crate::plot::{self, LinePlot};
use crate::report::Report;
use crate::stats::MeanCi;

/// Draws `chart` to `dir/name.png` and adds it to the report.
pub fn figure(r: &mut Report, dir: &Path, name: &str, chart: LinePlot, caption: String) -> Result<()> {
    let path = dir.join(format!("{name}.png"));
    plot::save(&chart, &path)?;
    let png = std::fs::read(&path).map_err(|e| HartError::io(&path, e))?;
    r.image(png, caption, format!("plots/{name}.png"));
    Ok(())
}

/// The items of one architecture's groups, in the groups' order.
pub fn per_arch<'a, T>(items: &'a [(&'a Group, T)], arch: &'a str) -> impl Iterator<Item = &'a (&'a Group, T)> {
    items.iter().filter(move |(g, _)| g.arch == arch)
}

/// A recipe's paired change as the fault tables print it; "—" where no seed
/// pairs (a baseline of 0).
pub fn paired_label(g: &Group, c: &Option<MeanCi>) -> String {
    match c {
        Some(c) => c.signed_percent(),
        None if g.baseline => "baseline".into(),
        None => "—".into(),
    }
}

/// A table's header and rows; the console and the report print the same ones.
pub type Table = (Vec<String>, Vec<Vec<String>>);

/// A table as console lines, in columns as wide as their widest cell, after a blank line.
pub fn table_lines((header, rows): &Table) -> Vec<String> {
    let width = |i: usize| {
        rows.iter()
            .chain([header])
            .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let mut out = vec![String::new()];
    for row in [header].into_iter().chain(rows) {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, &w)| format!("{c:<w$}")).collect();
        out.push(cells.join("  ").trim_end().to_string());
    }
    out
}
