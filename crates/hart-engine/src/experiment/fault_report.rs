//! The report's fault sections: flips to crush (`[attack]`), erratic bits
//! under each defence (`[defense]`) and accuracy against fault level
//! (`[campaign]`); each appears only when its section ran.

use std::path::Path;

use super::report::{figure, per_arch};
use super::results::Group;
use super::stats::MeanCi;
use crate::error::Result;
use crate::plot::{Figure, LinePlot, Series, SeriesLabelPosition};
use crate::report::Report;

/// The paired change of a recipe; "—" where no seed pairs (a baseline of 0).
fn change(g: &Group, c: &Option<MeanCi>) -> String {
    match c {
        Some(c) => c.signed_percent(),
        None if g.baseline => "baseline".into(),
        None => "—".into(),
    }
}

pub fn sections(r: &mut Report, groups: &[Group], archs: &[String], plots: &Path) -> Result<()> {
    attack(r, groups);
    defended(r, groups);
    campaign(r, groups, archs, plots)
}

/// A table's header and rows; the console prints the same ones.
pub type Table = (Vec<String>, Vec<Vec<String>>);

/// Flips to crush per recipe and method; None when no attack ran.
pub fn attack_table(groups: &[Group]) -> Option<Table> {
    if groups.iter().all(|g| g.attack.is_empty()) {
        return None;
    }
    let header = [
        "architecture",
        "recipe",
        "method",
        "storage",
        "clean accuracy",
        "flips to the target",
        "trials reaching it",
        "change",
        "random flips, same budget",
    ];
    let rows = groups
        .iter()
        .flat_map(|g| {
            g.attack.iter().map(|a| {
                vec![
                    g.arch.clone(),
                    g.recipe.clone(),
                    a.method.clone(),
                    a.storage.clone(),
                    a.clean_accuracy.percent(),
                    a.flips.to_string(),
                    format!("{}/{}", a.reached, a.trials),
                    change(g, &a.change),
                    a.random_accuracy.map_or("—".into(), |m| m.percent()),
                ]
            })
        })
        .collect();
    Some((header.map(String::from).to_vec(), rows))
}

/// Erratic bits per recipe, undefended and under each defence; None when no defence ran.
pub fn defended_table(groups: &[Group]) -> Option<Table> {
    if groups.iter().all(|g| g.defended.is_empty()) {
        return None;
    }
    let header = ["architecture", "recipe", "defence", "erratic bits", "change"];
    let rows = groups
        .iter()
        .flat_map(|g| {
            let undefended = ("none".to_string(), g.erratic_bits, g.erratic_bits_change);
            let defended = g.defended.iter().map(|d| (d.defense.clone(), d.erratic_bits, d.change));
            std::iter::once(undefended)
                .chain(defended)
                .map(|(d, bits, c)| vec![g.arch.clone(), g.recipe.clone(), d, bits.to_string(), change(g, &c)])
        })
        .collect();
    Some((header.map(String::from).to_vec(), rows))
}

fn attack(r: &mut Report, groups: &[Group]) {
    let Some((header, rows)) = attack_table(groups) else {
        return;
    };
    r.heading("Flips to crush (bit-flip attack)");
    r.paragraph("Per trained model, `hart attack` with the model's seed: flips until the accuracy on the evaluation slice is at or below the target (chance + 1 point unless set). A model's value is the mean over its trials; a trial that never reaches the target counts its whole budget, so a mean at the budget is a lower bound. Changes are relative to the baseline recipe with the same seed. With bfa, the last column is the accuracy after as many uniformly random flips as each BFA trial used.");
    r.table(header, rows);
}

fn defended(r: &mut Report, groups: &[Group]) {
    let Some((header, rows)) = defended_table(groups) else {
        return;
    };
    r.heading("Erratic bits under each defence");
    r.paragraph("The sweep again, every faulty word passed through the defence before the forward pass (range: a weight outside its tensor's clean range is set to 0; radar:G: a group of G words whose checksum changed is zeroed, key fixed by the model's seed). Changes are relative to the baseline recipe with the same seed under the same defence; the first row of each recipe is the undefended sweep.");
    r.table(header, rows);
}

fn campaign(r: &mut Report, groups: &[Group], archs: &[String], plots: &Path) -> Result<()> {
    let Some(first) = groups.iter().find_map(|g| g.campaign.as_ref()) else {
        return Ok(());
    };
    let bit = first.fault != "gaussian";
    r.heading("Accuracy under random faults");
    r.paragraph(format!(
        "Per trained model, `hart campaign --fault {}` in {} storage, {} trials per level with faults drawn from the model's seed (so recipes with the same seed meet the same faults). A model's value is its mean accuracy over the trials; the columns give the mean and 95% interval over seeds, then each recipe's difference from the baseline paired by seed, in percentage points.",
        first.fault, first.storage, first.trials
    ));
    for arch in archs {
        let of: Vec<&Group> = per_arch(groups, arch).filter(|g| g.campaign.is_some()).collect();
        let Some(base) = of.iter().find(|g| g.baseline) else {
            continue;
        };
        let mut header = vec![format!("{arch}: {}", if bit { "bit-error rate" } else { "σ / max|W|" })];
        header.extend(of.iter().map(|g| g.recipe.clone()));
        header.extend(
            of.iter()
                .filter(|g| !g.baseline)
                .map(|g| format!("{} − {}", g.recipe, base.recipe)),
        );
        let levels = &first.levels;
        let rows = (0..levels.len())
            .map(|i| {
                let level = |g: &Group| g.campaign.as_ref().and_then(|c| c.levels.get(i).cloned());
                let mut row = vec![format!("{}", levels[i].level)];
                row.extend(of.iter().map(|g| level(g).map_or("—".into(), |l| l.accuracy.percent())));
                row.extend(
                    of.iter()
                        .filter(|g| !g.baseline)
                        .map(|g| level(g).and_then(|l| l.diff).map_or("—".into(), |d| d.points())),
                );
                row
            })
            .collect();
        r.table(header, rows);
        let series = of
            .iter()
            .map(|g| {
                let pts = g.campaign.iter().flat_map(|c| &c.levels);
                Series::new(&g.recipe, pts.map(|l| (l.level, 100.0 * l.accuracy.mean)).collect())
            })
            .collect();
        let x = if bit {
            "bit-error rate (per stored bit)"
        } else {
            "relative noise σ / max|W|"
        };
        let chart = LinePlot::new(
            Figure::new(
                format!("{arch}: accuracy under {} faults", first.fault),
                x,
                "test accuracy (%)",
            ),
            series,
        )
        .legend_at(SeriesLabelPosition::LowerLeft);
        let chart = if bit { chart.log_x() } else { chart };
        figure(
            r,
            plots,
            &format!("{arch}-campaign"),
            chart,
            format!("{arch}: mean accuracy against fault level, one line per recipe (mean over seeds; a level of 0 is left off a log axis)."),
        )?;
    }
    Ok(())
}
