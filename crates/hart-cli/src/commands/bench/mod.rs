//! `hart bench`: speed checks that print medians and ratios against a
//! baseline measured in the same run. One module per benchmark.

mod campaign;
mod forward;
mod hessian;
mod landscape;
mod sequential;
mod sweep;
mod torchscript;
mod train;
mod workload;

use anyhow::Result;
use clap::{Args, Subcommand};
use hart::bench::{peak_rss_mib, Comparison};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
    /// Timed repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 15, global = true)]
    pub runs: usize,
    /// Print the comparisons as JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum BenchWhat {
    /// HART's graph executor against the same LeNet-5 written as direct tch calls
    /// (inference and a training step).
    Forward {
        #[arg(long, default_value_t = 256)]
        batch_size: i64,
    },
    /// A loss-landscape grid against plain evaluations of the same model
    /// (lenet5, Fashion-MNIST test images), and the 51×51 time it implies.
    Landscape {
        /// Test images per grid point.
        #[arg(long, default_value_t = 1000)]
        images: usize,
        /// Points per axis of the timed 2-D grid.
        #[arg(long, default_value_t = 3)]
        steps: usize,
        #[arg(long, default_value_t = 256)]
        batch_size: usize,
    },
    /// Curvature costs: HVPs and seconds to a trace's rel. stderr (Hutchinson vs Hutch++); a HAT
    /// step against a plain step, Hutchinson and Gauss–Newton penalties (full model, last:1,
    /// every 5th step); the spread of each penalty and its gradient over probes. Ratios below 1 =
    /// overhead.
    Hessian {
        /// Zoo architectures for the step comparison (comma-separated).
        #[arg(long, default_value = "basenet,lenet5,resnet18-cifar")]
        archs: String,
        #[arg(long, default_value_t = 32)]
        batch_size: i64,
        /// Images the trace comparison differentiates over.
        #[arg(long, default_value_t = 256)]
        images: usize,
        #[arg(long, default_value_t = 0.02)]
        rel_stderr: f64,
    },
    /// Sweep engine flips/s against the brute-force loop on the same flips
    /// (MLP, LeNet-5, resnet18-cifar, resnet18-cifar with sequential verdicts) and a
    /// TorchScript MLP against a plain PyTorch loop. The engine is timed --runs times, the reference once.
    Sweep(sweep::Options),
    /// One training step per recipe (noise, randbet, clipping, SAM, HAT) against a plain step of
    /// the same model and batch, timed in the same run (docs/hardening.md). Ratios below 1 = overhead.
    Train {
        /// Zoo architectures (comma-separated).
        #[arg(long, default_value = "lenet5")]
        archs: String,
        #[arg(long, default_value_t = 64)]
        batch_size: i64,
    },
    /// `hart campaign` trials/s against a plain loop (copy weights, inject, evaluate every image,
    /// restore) on the same bit-flip trials (MLP, LeNet-5); both must count the same.
    Campaign(campaign::Options),
}

pub fn run(a: BenchArgs) -> Result<()> {
    let results = match a.what {
        BenchWhat::Forward { batch_size } => forward::run(batch_size, a.runs)?,
        BenchWhat::Landscape {
            images,
            steps,
            batch_size,
        } => landscape::run(images, steps, batch_size, a.runs)?,
        BenchWhat::Hessian {
            archs,
            batch_size,
            images,
            rel_stderr,
        } => hessian::run(&archs, batch_size, images, rel_stderr, a.runs)?,
        BenchWhat::Train { archs, batch_size } => train::run(&archs, batch_size, a.runs)?,
        BenchWhat::Sweep(o) => sweep::run(&o, a.runs)?,
        BenchWhat::Campaign(o) => campaign::run(&o, a.runs.min(5))?,
    };
    report(&results, a.json)
}

/// Prints comparisons as a table (or JSON), with the process's peak memory.
pub fn report(results: &[Comparison], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(results)?);
        return Ok(());
    }
    let w = results
        .iter()
        .map(|c| c.what.chars().count())
        .max()
        .unwrap_or(0)
        .max(40);
    println!(
        "{:<w$} {:>14} {:>14} {:>9}",
        "benchmark", "baseline (ms)", "HART (ms)", "speedup"
    );
    for c in results {
        println!(
            "{:<w$} {:>14.3} {:>14.3} {:>8.2}×",
            c.what,
            1e3 * c.baseline.median_s,
            1e3 * c.candidate.median_s,
            c.speedup
        );
    }
    if let (Some(mib), Some(first)) = (peak_rss_mib(), results.first()) {
        println!("peak memory {mib:.0} MiB; medians of {} runs", first.candidate.runs);
    }
    Ok(())
}
