//! Builds report.html / summary.md from the aggregated groups.

use std::path::Path;

use super::claims;
use super::fault_report;
use super::results::Group;
use super::stats::MeanCi;
use super::verdicts::not_better;
use crate::error::{HartError, Result};
use crate::plot::{self, Figure, LinePlot, Series, SeriesLabelPosition};
use crate::report::Report;

fn opt(m: &Option<MeanCi>) -> String {
    m.map_or("—".into(), |m| m.to_string())
}

/// Draws `chart` to `dir/name.png` and adds it to the report.
pub(super) fn figure(r: &mut Report, dir: &Path, name: &str, chart: LinePlot, caption: String) -> Result<()> {
    let path = dir.join(format!("{name}.png"));
    plot::save(&chart, &path)?;
    let png = std::fs::read(&path).map_err(|e| HartError::io(&path, e))?;
    r.image(png, caption, format!("plots/{name}.png"));
    Ok(())
}

pub(super) fn per_arch<'a>(groups: &'a [Group], arch: &'a str) -> impl Iterator<Item = &'a Group> {
    groups.iter().filter(move |g| g.arch == arch)
}

pub fn build(title: &str, groups: &[Group], archs: &[String], plots: &Path) -> Result<Report> {
    std::fs::create_dir_all(plots).map_err(|e| HartError::io(plots, e))?;
    let mut r = Report::new(title);
    let claims = claims::table(groups);
    if !claims.is_empty() {
        r.heading("The HAT paper's claims, tested");
        r.paragraph(claims::EXPLANATION);
        let header = [
            "architecture",
            "claim",
            "measured (paired over seeds, 95% CI)",
            "verdict",
        ];
        r.table(
            header.map(String::from).to_vec(),
            claims.into_iter().map(|c| c.row()).collect(),
        );
    }
    r.heading("Where the Hessian-aware (or other) recipe is not better");
    let verdicts = not_better(groups);
    if verdicts.is_empty() {
        r.paragraph(
            "Every non-baseline recipe beats its baseline on every measured quantity, with separated 95% intervals.",
        );
    }
    for v in verdicts {
        r.callout(v);
    }

    r.heading("Clean accuracy and training time");
    let header = ["architecture", "recipe", "seeds", "test accuracy", "training time (s)"];
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

    r.heading("Erratic bits and parameters");
    r.paragraph("An erratic bit is a single (parameter element, bit) flip whose relative accuracy drop exceeds the threshold; an erratic parameter has at least one. Changes are relative to the baseline recipe with the same seed, averaged over seeds.");
    let header = [
        "architecture",
        "recipe",
        "flips",
        "erratic bits",
        "change",
        "erratic params",
        "change",
    ];
    let change = |c: &Option<MeanCi>| c.map_or("baseline".into(), |c| c.signed_percent());
    let rows = groups
        .iter()
        .map(|g| {
            vec![
                g.arch.clone(),
                g.recipe.clone(),
                format!("{:.0}", g.flips),
                g.erratic_bits.to_string(),
                change(&g.erratic_bits_change),
                g.erratic_params.to_string(),
                change(&g.erratic_params_change),
            ]
        })
        .collect();
    r.table(header.map(String::from).to_vec(), rows);

    r.heading("RAD histograms");
    let header = [
        "architecture",
        "recipe",
        "RAD < 0",
        "90–95 %",
        "95–100 %",
        "90–100 %",
        "change",
    ];
    let rows = groups
        .iter()
        .map(|g| {
            let h = &g.rad_histogram;
            let at = |i: usize| h.get(i).map_or("—".into(), |v| format!("{v:.1}"));
            vec![
                g.arch.clone(),
                g.recipe.clone(),
                at(0),
                at(19),
                at(20),
                g.severe_bits.to_string(),
                change(&g.severe_bits_change),
            ]
        })
        .collect();
    r.table(header.map(String::from).to_vec(), rows);
    for arch in archs {
        let series = per_arch(groups, arch)
            .map(|g| {
                let pts = g
                    .rad_histogram
                    .iter()
                    .skip(1)
                    .enumerate()
                    .map(|(k, &c)| (5.0 * k as f64 + 2.5, c))
                    .collect();
                Series::new(&g.recipe, pts)
            })
            .collect();
        let chart = LinePlot::new(
            Figure::new(
                format!("{arch}: RAD histogram (5% bins)"),
                "relative accuracy drop (%)",
                "flips per bin (mean over seeds)",
            ),
            series,
        )
        .log_y();
        figure(&mut r, plots, &format!("{arch}-rad"), chart, format!("{arch}: flips per 5% RAD bin, one line per recipe (log scale); the 90–100% bins are the catastrophic flips."))?;
    }

    r.heading("Erratic bits per bit position and per layer");
    for arch in archs {
        let series = per_arch(groups, arch)
            .map(|g| {
                Series::new(
                    &g.recipe,
                    g.erratic_per_bit
                        .iter()
                        .enumerate()
                        .map(|(b, &c)| (b as f64, c))
                        .collect(),
                )
            })
            .collect();
        let chart = LinePlot::new(
            Figure::new(
                format!("{arch}: erratic bits per bit position"),
                "bit position (0 = mantissa LSB, 30 = exponent MSB, 31 = sign)",
                "erratic bits (mean over seeds)",
            ),
            series,
        )
        .legend_at(SeriesLabelPosition::UpperLeft);
        figure(
            &mut r,
            plots,
            &format!("{arch}-bits"),
            chart,
            format!("{arch}: erratic bits by IEEE-754 bit position."),
        )?;
        let layers: Vec<String> = per_arch(groups, arch)
            .flat_map(|g| g.erratic_per_layer.keys().cloned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut header = vec!["layer".to_string()];
        header.extend(per_arch(groups, arch).map(|g| g.recipe.clone()));
        let rows = layers
            .iter()
            .map(|l| {
                let mut row = vec![format!("{arch} {l}")];
                row.extend(
                    per_arch(groups, arch)
                        .map(|g| format!("{:.1}", g.erratic_per_layer.get(l).copied().unwrap_or(0.0))),
                );
                row
            })
            .collect();
        r.table(header, rows);
    }

    fault_report::sections(&mut r, groups, archs, plots)?;

    r.heading("Hessian trace and top eigenvalue");
    let header = ["architecture", "recipe", "Hessian trace", "top eigenvalue"];
    let rows = groups
        .iter()
        .map(|g| {
            vec![
                g.arch.clone(),
                g.recipe.clone(),
                opt(&g.hessian_trace),
                opt(&g.top_eigenvalue),
            ]
        })
        .collect();
    r.table(header.map(String::from).to_vec(), rows);

    r.heading("Robustness to quantization and pruning");
    for arch in archs {
        for (what, x_label, name) in [
            ("quantization", "weight bits", "quantize"),
            ("pruning", "sparsity (fraction of weights removed)", "prune"),
        ] {
            let series: Vec<Series> = per_arch(groups, arch)
                .map(|g| {
                    let pts = if name == "quantize" { &g.quantize } else { &g.prune };
                    Series::new(&g.recipe, pts.iter().map(|(s, a)| (*s, 100.0 * a.mean)).collect())
                })
                .filter(|s| !s.points.is_empty())
                .collect();
            if series.is_empty() {
                continue;
            }
            let chart = LinePlot::new(
                Figure::new(format!("{arch}: accuracy under {what}"), x_label, "test accuracy (%)"),
                series,
            )
            .legend_at(SeriesLabelPosition::LowerLeft);
            figure(
                &mut r,
                plots,
                &format!("{arch}-{name}"),
                chart,
                format!("{arch}: test accuracy vs {what}, one line per recipe (mean over seeds)."),
            )?;
        }
    }

    r.heading("Loss landscapes");
    for arch in archs {
        let series: Vec<Series> = per_arch(groups, arch)
            .filter_map(|g| {
                Some(Series::new(
                    &g.recipe,
                    g.landscape
                        .as_ref()?
                        .iter()
                        .filter(|p| p.loss.is_finite())
                        .map(|p| (p.alpha, p.loss))
                        .collect(),
                ))
            })
            .collect();
        if series.is_empty() {
            continue;
        }
        let chart = LinePlot::new(
            Figure::new(
                format!("{arch}: loss along a filter-normalised direction"),
                "step along the direction (α)",
                "cross-entropy loss (nats)",
            ),
            series,
        )
        .legend_at(SeriesLabelPosition::UpperMiddle);
        figure(
            &mut r,
            plots,
            &format!("{arch}-landscape"),
            chart,
            format!(
                "{arch}: loss landscape (Li et al. 2018 filter normalisation), first seed; flatter is more robust."
            ),
        )?;
    }
    Ok(r)
}
