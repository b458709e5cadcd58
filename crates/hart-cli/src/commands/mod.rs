mod attack;
mod bench;
mod campaign;
mod common;
mod demo;
mod eval;
mod experiment;
mod hessian;
mod landscape;
mod merge;
mod prune;
mod quantize;
mod sweep;
mod train;
mod tune_lambda;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hart",
    version,
    about = "Hessian-Aware Resilience Toolkit: measure, train and explain the bit-flip resilience of neural networks"
)]
pub struct Cli {
    /// More log output (-v info, -vv debug); HART_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Train a zoo architecture on a dataset and save it as safetensors.
    Train(train::TrainArgs),
    /// Choose HAT's λ as the paper does: train briefly per candidate, keep the least
    /// bit-flip-sensitive λ within an accuracy budget (validation slice of the training split).
    TuneLambda(tune_lambda::TuneLambdaArgs),
    /// Accuracy of a model (safetensors, ONNX or TorchScript) on a dataset.
    Eval(eval::EvalArgs),
    /// Baseline vs Hessian-aware training end to end, from a TOML config, with a report.
    Experiment(experiment::ExperimentArgs),
    /// The main job on the embedded Fashion-MNIST data.
    Demo(demo::DemoArgs),
    /// Accuracy of one or more models under weight-only uniform quantization, per bit width.
    Quantize(quantize::QuantizeArgs),
    /// Accuracy of one or more models under magnitude pruning, per sparsity.
    Prune(prune::PruneArgs),
    /// Loss and accuracy along filter-normalised random directions (1-D line or 2-D grid).
    Landscape(landscape::LandscapeArgs),
    /// Single-bit-flip sweep of a model's float32 tensors: RAD per flip, erratic bits, summary.
    Sweep(sweep::SweepArgs),
    /// Worst-case bit flips: BFA progressive bit search against random flips, on int8/int4 codes or fp32 words, with defences.
    Attack(attack::AttackArgs),
    /// Accuracy under random faults per level: bit-error rates (bit flips, stuck-at cells) or
    /// analog Gaussian noise, many trials per level, statistics, table, summary and plot.
    Campaign(campaign::CampaignArgs),
    /// Combine the shards of one sweep into one table and summary.
    Merge(merge::MergeArgs),
    /// Curvature of a model's loss: Hessian trace (with its standard error), per-tensor traces,
    /// top eigenvalues and eigenvalue density.
    Hessian(hessian::HessianArgs),
    /// Benchmarks that print medians and ratios against a baseline measured in the same run.
    Bench(bench::BenchArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(a) => train::run(a),
        Command::TuneLambda(a) => tune_lambda::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Experiment(a) => experiment::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Quantize(a) => quantize::run(a),
        Command::Prune(a) => prune::run(a),
        Command::Landscape(a) => landscape::run(a),
        Command::Sweep(a) => sweep::run(a),
        Command::Attack(a) => attack::run(a),
        Command::Campaign(a) => campaign::run(a),
        Command::Merge(a) => merge::run(a),
        Command::Hessian(a) => hessian::run(a),
        Command::Bench(a) => bench::run(a),
    }
}
