//! `hart demo`: the README's main command. Until the experiment pipeline
//! lands it trains LeNet-5 on the embedded Fashion-MNIST and evaluates it.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use hart::data::{DataSpec, Split};
use hart::eval::evaluate;
use hart::model::{zoo, Model, ModelInfo};
use hart::train::{train, OptimizerConfig, OptimizerKind, TrainConfig};

use super::common::{progress_bar, write_json};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Smaller slices for a run of about a minute.
    #[arg(long)]
    pub quick: bool,
    /// Output directory.
    #[arg(long, default_value = "hart-demo")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(a: DemoArgs) -> Result<()> {
    let (train_n, epochs) = if a.quick { (10_000, 1) } else { (60_000, 3) };
    let mut spec = DataSpec::new("fashion-mnist", Split::Train);
    spec.limit = Some(train_n);
    let data = hart::data::load(&spec)?;
    let mut test_spec = DataSpec::new("fashion-mnist", Split::Test);
    test_spec.limit = Some(10_000);
    let test = hart::data::load(&test_spec)?;
    tch::manual_seed(a.seed as i64);
    let model = Model::Graph(zoo::build(&ModelInfo::for_data("lenet5", &data))?);
    let cfg = TrainConfig {
        epochs,
        batch_size: 64,
        optimizer: OptimizerConfig {
            kind: OptimizerKind::Sgd,
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 0.0,
        },
        seed: a.seed,
        device: tch::Device::Cpu,
    };
    println!(
        "hart demo: LeNet-5 on Fashion-MNIST ({} training images, {epochs} epoch(s), {} test images)",
        data.len(),
        test.len()
    );
    let bar = progress_bar(0, "train");
    let logs = train(&model, &data, &cfg, &bar)?;
    bar.finish_and_clear();
    let result = evaluate(&model, &test, 512, tch::Device::Cpu)?;
    std::fs::create_dir_all(&a.out)?;
    let model_path = a.out.join("lenet5.safetensors");
    model.save(&model_path)?;
    write_json(
        &a.out.join("summary.json"),
        &serde_json::json!({"arch": "lenet5", "dataset": "fashion-mnist", "epochs": logs, "test": result}),
    )?;
    for e in &logs {
        println!(
            "epoch {}  loss {:.4}  train acc {:.2}%  {:.1}s",
            e.epoch,
            e.loss,
            100.0 * e.accuracy,
            e.seconds
        );
    }
    println!(
        "test accuracy {:.2}% ({}/{}); model and summary in {}",
        100.0 * result.accuracy,
        result.correct,
        result.total,
        a.out.display()
    );
    Ok(())
}
