//! `hart attack`: worst-case bit flips (BFA progressive bit search) against
//! uniformly random flips, on stored int8/int4 codes or fp32 words.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use hart::attack::{output, Attack, AttackConfig, Method};
use hart::data::Split;
use hart::faults::ranger::DefenseChoice;
use hart::faults::Storage;

use super::common::{self, parse_device, progress_bar, DataArgs, ModelArgs, RangerArgs};

#[derive(Args, Debug)]
pub struct AttackArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Dataset; --limit N is the attack batch: N training images per trial, drawn (seed + trial) from the first 10·N.
    #[command(flatten)]
    pub data: DataArgs,
    /// Accuracy is measured on the first M test images.
    #[arg(long, value_name = "M", default_value_t = 1000)]
    pub eval_limit: usize,
    /// int8 / int4: the symmetric codes of `hart quantize` (bits 0-7 / 0-3); fp32: IEEE bits 0-31.
    #[arg(long, default_value = "int8")]
    pub storage: Storage,
    /// Integer storage: one scale per output channel instead of per tensor.
    #[arg(long)]
    pub per_channel: bool,
    /// bfa (progressive bit search; also runs the random baseline at each trial's BFA budget) or random.
    #[arg(long, default_value = "bfa")]
    pub method: Method,
    #[arg(long, value_name = "K", default_value_t = 100)]
    pub max_flips: usize,
    /// Stop at or below this accuracy (fraction; default: chance + 0.01).
    #[arg(long, value_name = "A")]
    pub target_accuracy: Option<f64>,
    /// Candidates per layer evaluated exactly in the in-layer search.
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,
    #[arg(long, default_value_t = 5)]
    pub trials: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// none, range (the attack then only considers flips that stay in range), radar[:G] (not adaptive) or ranger (activations clamped to their range on --profile-limit training images; the attack's gradients see the clamps).
    #[arg(long, default_value = "none")]
    pub defense: DefenseChoice,
    #[command(flatten)]
    pub ranger: RangerArgs,
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long)]
    pub out: PathBuf,
    /// Print the trials as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: AttackArgs) -> Result<()> {
    let _out = common::hold_out(&a.out, hart::faults::Shard::WHOLE)?;
    let device = parse_device(&a.device)?;
    let n = a.data.limit.unwrap_or(128);
    let train = DataArgs {
        limit: Some(10 * n),
        ..a.data.clone()
    }
    .load(Split::Train)?;
    let eval = DataArgs {
        limit: Some(a.eval_limit),
        ..a.data.clone()
    }
    .load(Split::Test)?;
    let model = a.model.load(&eval, device)?;
    let (model, defense) = a.ranger.defend(a.defense, model, &a.data, &a.out, a.batch_size)?;
    let cfg = AttackConfig {
        method: a.method,
        storage: a.storage,
        per_channel: a.per_channel,
        defense,
        max_flips: a.max_flips,
        target: a.target_accuracy,
        top_k: a.top_k,
        trials: a.trials,
        seed: a.seed,
        attack_images: n,
        batch: a.batch_size,
    };
    let attack = Attack::new(&model, &train, &eval, cfg)?;
    let bar = progress_bar((a.trials * a.max_flips) as u64, "attack");
    let started = Instant::now();
    let trials = attack.run(&mut |k| bar.inc(k))?;
    bar.finish_and_clear();
    let summary = output::summarize(&attack, &trials);
    output::write(&a.out, &attack, &trials, &summary)?;
    if a.json {
        let brief = |ts: &[output::TrialSummary]| {
            ts.iter()
                .map(
                    |t| serde_json::json!({"flips": t.flips, "final_accuracy": t.final_accuracy, "reached": t.reached}),
                )
                .collect::<Vec<_>>()
        };
        let v = serde_json::json!({
            "trials": brief(&summary.trials),
            "mean_flips": summary.mean_flips,
            "ci95": summary.ci95,
            "random_baseline": brief(&summary.random_baseline),
            "clean_accuracy": summary.clean_accuracy,
            "target_accuracy": summary.target_accuracy,
        });
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    println!(
        "clean accuracy {:.2}% on {} test images; target {:.2}%; storage {}, defense {}",
        100.0 * summary.clean_accuracy,
        eval.len(),
        100.0 * summary.target_accuracy,
        summary.storage,
        summary.defense
    );
    if let Some(r) = &summary.ranger {
        println!("{}", common::ranger_line(summary.clean_accuracy, r));
    }
    println!(
        "\n{:>5} {:>7} {:>7} {:>10} {:>8} {:>9}",
        "trial", "method", "flips", "accuracy", "reached", "detected"
    );
    let rows = summary.trials.iter().map(|t| (a.method, t));
    for (method, t) in rows.chain(summary.random_baseline.iter().map(|t| (Method::Random, t))) {
        println!(
            "{:>5} {:>7} {:>7} {:>9.2}% {:>8} {:>9}",
            t.trial,
            method.to_string(),
            t.flips,
            100.0 * t.final_accuracy,
            t.reached,
            t.detected_flips
        );
    }
    match summary.ci95 {
        Some([lo, hi]) => println!(
            "\n{} flips to the target: mean {:.1} (95% CI {lo:.1}–{hi:.1})",
            a.method, summary.mean_flips
        ),
        None => println!("\n{} flips to the target: {:.1}", a.method, summary.mean_flips),
    }
    println!(
        "{} trials in {:.1}s; flips.csv, summary.json and accuracy.png in {}",
        a.trials,
        started.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(())
}
