//! `hart tune-lambda`: the HAT paper's cheap search for λ — train briefly
//! with each candidate, measure bit-flip sensitivity and accuracy on a
//! validation slice held out from the training split, keep the least
//! sensitive λ within an accuracy budget.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use hart::data::Split;
use hart::plot::{self, Figure, LinePlot, Series};
use hart::train::tune::{tune_lambda, TuneConfig, TunePoint};
use hart::train::RegularizerKind;

use super::common::{progress_bar, write_json, DataArgs};
use super::hessian::RegularizerArgs;
use super::train::{print_start, StartArgs, TrainingArgs};

#[derive(Args, Debug)]
pub struct TuneLambdaArgs {
    /// The model every candidate trains from (a zoo architecture, or your own model file).
    #[command(flatten)]
    pub start: StartArgs,
    /// Training split (its first --limit images); the validation slice is its last --val images.
    #[command(flatten)]
    pub data: DataArgs,
    /// Candidate λ values, comma-separated (plain training is always trained as the reference).
    #[arg(long, default_value = "0.001,0.01,0.1,1")]
    pub grid: String,
    /// Training images held out as the validation slice (never the test split).
    #[arg(long, default_value_t = 2000)]
    pub val: usize,
    /// Weight elements sampled for the sensitivity sweep (all 32 bits of each).
    #[arg(long, default_value_t = 300)]
    pub sweep_params: u64,
    /// Validation images the sensitivity sweep evaluates.
    #[arg(long, default_value_t = 500)]
    pub sweep_images: usize,
    /// RAD above which a flip is erratic.
    #[arg(long, default_value_t = 0.1)]
    pub threshold: f64,
    /// Confidence of the sensitivity intervals.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Validation accuracy (a fraction) a chosen λ may lose against plain training.
    #[arg(long, default_value_t = 0.01)]
    pub accuracy_budget: f64,
    #[command(flatten)]
    pub regularizer: RegularizerArgs,
    #[command(flatten)]
    pub training: TrainingArgs,
    /// Directory for tune.json, the plots and the sweeps' tables.
    #[arg(long, default_value = "hart-tune")]
    pub out: PathBuf,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn parse_grid(s: &str) -> Result<Vec<f64>> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<f64>()
                .with_context(|| format!("--grid: {t:?} is not a number"))
        })
        .collect()
}

pub fn run(a: TuneLambdaArgs) -> Result<()> {
    let source = a.start.source()?;
    let mut regularizer = a.regularizer.config()?;
    if regularizer.kind == RegularizerKind::None {
        regularizer.kind = RegularizerKind::Hessian;
    }
    let cfg = TuneConfig {
        grid: parse_grid(&a.grid)?,
        train: a.training.config()?,
        regularizer,
        sweep_params: a.sweep_params,
        sweep_images: a.sweep_images,
        threshold: a.threshold,
        confidence: a.confidence,
        accuracy_budget: a.accuracy_budget,
        freeze: a.start.freeze.clone(),
    };
    cfg.validate()?;
    let mut train = a.data.load(Split::Train)?;
    if a.val == 0 || a.val >= train.len() {
        bail!(
            "--val must be between 1 and the training images - 1 ({}), got {}",
            train.len().saturating_sub(1),
            a.val
        );
    }
    let val = train.split_off(a.val);
    let start = a.start.start(source, &train)?;
    // Built once here so a model that does not fit the data, or a --freeze
    // that matches nothing, fails before the first candidate trains.
    let (mut probe, reinit) = start.build_reporting(&train, cfg.train.seed)?;
    let frozen = match &cfg.freeze {
        Some(f) => probe.freeze(f)?,
        None => vec![],
    };
    drop(probe);
    print_start(reinit.as_ref(), &frozen);
    let name = start.name();
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let bar = progress_bar(0, "train");
    let report = tune_lambda(&start, &train, &val, &cfg, &a.out, &bar, |p| {
        bar.println(format!(
            "λ = {:<8} val accuracy {:6.2}%  erratic bits {:>5} of {} ({:.3}%)",
            p.lambda,
            100.0 * p.val_accuracy,
            p.erratic_bits,
            p.flips,
            100.0 * p.sensitivity
        ))
    })?;
    bar.finish_and_clear();
    write_json(&a.out.join("tune.json"), &report)?;
    let sensitivity: [(&str, Measure); 3] = [
        ("erratic bits per flip", |p| p.sensitivity),
        ("interval low", |p| p.sensitivity_ci.0),
        ("interval high", |p| p.sensitivity_ci.1),
    ];
    let accuracy: [(&str, Measure); 1] = [("validation accuracy", |p| p.val_accuracy)];
    for ext in ["png", "svg"] {
        let title = format!("{name} on {}: bit-flip sensitivity per λ", train.name);
        plot_points(
            &report.points,
            &title,
            &sensitivity,
            &a.out.join(format!("tune-sensitivity.{ext}")),
        )?;
        let title = format!("{name} on {}: validation accuracy per λ", train.name);
        plot_points(
            &report.points,
            &title,
            &accuracy,
            &a.out.join(format!("tune-accuracy.{ext}")),
        )?;
    }
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "λ search: {name} on {} training images, validation {} images (sweep on {}), seed {}",
        report.train_images, report.val_images, report.sweep_images, report.seed
    );
    println!("| λ | validation accuracy | erratic bits / flips | sensitivity (95% CI) | within budget |");
    println!("|---|---|---|---|---|");
    for p in &report.points {
        println!(
            "| {} | {:.2}% | {} / {} | {:.3}% ({:.3}–{:.3}%) | {} |",
            if p.lambda == 0.0 {
                "plain".to_string()
            } else {
                p.lambda.to_string()
            },
            100.0 * p.val_accuracy,
            p.erratic_bits,
            p.flips,
            100.0 * p.sensitivity,
            100.0 * p.sensitivity_ci.0,
            100.0 * p.sensitivity_ci.1,
            if p.lambda == 0.0 {
                "–"
            } else if p.within_budget {
                "yes"
            } else {
                "no"
            }
        );
    }
    match report.chosen {
        Some(l) => println!(
            "chosen λ = {l} (least sensitive within {:.1} points of plain)",
            100.0 * a.accuracy_budget
        ),
        None => println!(
            "no λ of the grid stays within {:.1} points of plain training",
            100.0 * a.accuracy_budget
        ),
    }
    println!("report written to {}", a.out.display());
    Ok(())
}

type Measure = fn(&TunePoint) -> f64;

/// Measures (in percent) against log10 λ; plain training sits at the left
/// edge, one decade below the smallest λ.
fn plot_points(points: &[TunePoint], title: &str, measures: &[(&str, Measure)], path: &std::path::Path) -> Result<()> {
    let smallest = points
        .iter()
        .filter(|p| p.lambda > 0.0)
        .map(|p| p.lambda)
        .fold(f64::INFINITY, f64::min);
    let x = |p: &TunePoint| {
        if p.lambda > 0.0 {
            p.lambda.log10()
        } else {
            smallest.log10() - 1.0
        }
    };
    let series = measures
        .iter()
        .map(|(name, f)| Series::new(*name, points.iter().map(|p| (x(p), 100.0 * f(p))).collect()))
        .collect();
    let chart = LinePlot::new(
        Figure::new(title, "log10 λ (leftmost point: plain training)", "percent"),
        series,
    );
    plot::save(&chart, path)?;
    Ok(())
}
