//! What the report and the console share: drawing a figure into the report,
//! picking one architecture's groups, the fault tables' change cells,
//! tables as console lines, and what their name column is called.

use std::path::Path;

use super::results::Group;
use crate::error::{HartError, Result};
use crate::plot::{self, LinePlot};
use crate::report::{Block, Report};
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

/// The header every table and console listing gives its name column.
pub const NAME_COLUMN: &str = "architecture";

/// With `[[model]]` entries among the rows the name column says "model":
/// renamed here, in one pass over the finished report and console lines,
/// rather than by a column name threaded through every measurement's tables.
/// Console headers keep their width, so the columns stay aligned.
pub fn name_models(report: &mut Report, console: &mut [String]) {
    for block in &mut report.blocks {
        if let Block::Table { header, .. } = block {
            for cell in header.iter_mut().filter(|c| *c == NAME_COLUMN) {
                *cell = "model".into();
            }
        }
    }
    let padded = format!("{:<w$}", "model", w = NAME_COLUMN.len());
    for line in console.iter_mut() {
        if let Some(rest) = line.strip_prefix(NAME_COLUMN) {
            if rest.is_empty() || rest.starts_with(' ') {
                *line = format!("{padded}{rest}").trim_end().to_string();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_column_says_model_and_keeps_its_width() {
        let mut r = Report::new("t");
        r.table(
            vec![NAME_COLUMN.into(), "recipe".into()],
            vec![vec!["architecture".into(), "x".into()]],
        );
        let mut console = vec![
            "architecture  recipe".to_string(),
            "cnn           plain".to_string(),
            "architectures are listed".to_string(),
        ];
        name_models(&mut r, &mut console);
        let Block::Table { header, rows } = &r.blocks[0] else {
            panic!()
        };
        // Only the header: a row's cell is a name, whatever it reads.
        assert_eq!((header[0].as_str(), rows[0][0].as_str()), ("model", "architecture"));
        assert_eq!(
            console,
            [
                "model         recipe",
                "cnn           plain",
                "architectures are listed"
            ]
        );
    }
}
