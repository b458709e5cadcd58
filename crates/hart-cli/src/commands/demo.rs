//! `hart demo`: the README's main command — the bundled experiment
//! (configs/demo.toml, or demo-quick.toml with --quick) on the embedded
//! Fashion-MNIST.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use hart::experiment::ExperimentConfig;

use super::experiment::execute;

const FULL: &str = include_str!("../../../../configs/demo.toml");
const QUICK: &str = include_str!("../../../../configs/demo-quick.toml");

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// One seed, smaller slices and sampled sweeps (a few minutes).
    #[arg(long)]
    pub quick: bool,
    /// Output directory.
    #[arg(long, default_value = "hart-demo")]
    pub out: PathBuf,
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

pub fn run(a: DemoArgs) -> Result<()> {
    let text = if a.quick { QUICK } else { FULL };
    let cfg = ExperimentConfig::parse(text).context("bundled demo configuration")?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    // The configuration beside the results, so `hart experiment` can rerun or vary it.
    hart::util::write_atomic(&a.out.join("config.toml"), text.as_bytes())?;
    println!(
        "hart demo{}: {} → {}",
        if a.quick { " --quick" } else { "" },
        cfg.name,
        a.out.display()
    );
    execute(&cfg, &a.out, &a.device, true)
}
