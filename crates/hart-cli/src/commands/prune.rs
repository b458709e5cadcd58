//! `hart prune`: accuracy under magnitude pruning, one line per model, with
//! the sparsity each setting actually achieved.

use anyhow::Result;
use clap::Args;
use hart::compress::prune::{parse_sparsities, Scope};
use hart::compress::{anchored, prune_curve, PruneRow};
use hart::plot::{Figure, Series, SeriesLabelPosition};

use super::common::progress_bar;
use super::quantize::{plot_lines, print_table, SweepArgs};

#[derive(Args, Debug)]
pub struct PruneArgs {
    #[command(flatten)]
    pub sweep: SweepArgs,
    /// Fractions of the weights to zero, e.g. 0.5,0.7,0.9.
    #[arg(long, default_value = "0.5,0.7,0.9")]
    pub sparsity: String,
    /// global: one magnitude threshold over all weights; layer: the same fraction in every tensor.
    #[arg(long, default_value = "global")]
    pub scope: Scope,
    /// Also write each pruned model into the output folder.
    #[arg(long)]
    pub save: bool,
}

pub fn run(a: PruneArgs) -> Result<()> {
    let levels = anchored(parse_sparsities(&a.sparsity)?);
    let out = a.sweep.out_dir("hart-prune");
    let l = a.sweep.load()?;
    let bar = progress_bar((l.models.len() * levels.len()) as u64, "prune");
    let run = l.curve_run(a.sweep.batch_size, a.save.then_some(out.as_path()));
    let mut rows = Vec::new();
    for (label, model, targets) in &l.models {
        rows.extend(prune_curve(label, model, targets, &levels, a.scope, &run, || {
            bar.inc(1)
        })?);
    }
    bar.finish_and_clear();
    super::common::write_json(&out.join("prune.json"), &rows)?;
    if a.sweep.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        let labels: Vec<&String> = l.models.iter().map(|(label, _, _)| label).collect();
        let mut header = vec!["sparsity".to_string()];
        header.extend(labels.iter().map(|m| format!("{m} (achieved)")));
        let table: Vec<Vec<String>> = levels
            .iter()
            .map(|&s| {
                let cells = labels.iter().map(|m| {
                    rows.iter()
                        .find(|r| &&r.model == m && r.sparsity == s)
                        .map_or("-".into(), |r| {
                            format!("{:.2}% ({:.4})", 100.0 * r.accuracy, r.achieved_sparsity)
                        })
                });
                std::iter::once(format!("{s}")).chain(cells).collect()
            })
            .collect();
        print_table(&header, &table);
    }
    let series = labels_series(&l.models.iter().map(|(m, _, _)| m.clone()).collect::<Vec<_>>(), &rows);
    let figure = Figure::new(
        format!(
            "Accuracy under {} magnitude pruning ({} {}, {} images)",
            a.scope,
            l.data.name,
            a.sweep.split,
            l.data.len()
        ),
        "weights pruned (% of weight tensors' entries)",
        format!("{} accuracy (%)", a.sweep.split),
    );
    // Accuracy starts high at sparsity 0 and falls to the right: the lower left is free.
    plot_lines(
        &out.join(format!("prune.{}", a.sweep.format)),
        figure,
        series,
        SeriesLabelPosition::LowerLeft,
    )
}

/// One line per model: accuracy against the sparsity actually achieved.
fn labels_series(labels: &[String], rows: &[PruneRow]) -> Vec<Series> {
    labels
        .iter()
        .map(|m| {
            let points = rows
                .iter()
                .filter(|r| &r.model == m)
                .map(|r| (100.0 * r.achieved_sparsity, 100.0 * r.accuracy))
                .collect();
            Series::new(m.clone(), points)
        })
        .collect()
}
