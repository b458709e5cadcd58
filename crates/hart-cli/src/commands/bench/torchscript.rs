//! The TorchScript rows of `hart bench sweep`: a torch.jit.script
//! 784-256-128-10 ReLU MLP (seeded random weights) over Fashion-MNIST test
//! images, swept by HART's generic engine (exact, then sequential verdicts)
//! against the plain PyTorch loop a user would write (flip, evaluate every
//! image in one batch, restore: scripts/torchscript_loop.py in the venv's
//! Python), on the same flips, in the same run.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use hart::bench::{median, Comparison, Timing};
use hart::data::Split;
use hart::faults::{SweepConfig, VerdictMode};
use hart::model::LoadOptions;

use super::sweep::{configured_rows, fashion, flips, per_flip, tempfile_dir};

fn python() -> PathBuf {
    std::env::var_os("VIRTUAL_ENV").map_or_else(|| PathBuf::from("python3"), |v| PathBuf::from(v).join("bin/python"))
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/torchscript_loop.py")
}

fn python_out(args: &[&std::ffi::OsStr]) -> Result<String> {
    let out = Command::new(python())
        .arg(script())
        .args(args)
        .output()
        .with_context(|| format!("running {} (source scripts/env.sh)", python().display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            script().display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn rows(images: usize, elements: usize, runs: usize) -> Result<Vec<Comparison>> {
    let dir = tempfile_dir()?;
    let model_path = dir.join("mlp.pt");
    python_out(&["export".as_ref(), model_path.as_os_str()])?;
    let model = hart::model::load(&model_path, &LoadOptions::default())?;
    let data = fashion(Split::Test, images)?;
    let (x, y) = data.batch_range(0, data.len());
    let io = dir.join("images.safetensors");
    tch::Tensor::write_safetensors(&[("x", &x), ("y", &y)], &io)?;
    let faults = dir.join("faults.csv");
    flips(&model, elements, &faults)?;
    let text = python_out(&[
        "time".as_ref(),
        model_path.as_os_str(),
        io.as_os_str(),
        faults.as_os_str(),
    ])?;
    let loop_out: serde_json::Value = serde_json::from_str(text.trim())?;
    let loop_s = loop_out["seconds"].as_f64().context("loop output")?;
    let n = loop_out["flips"].as_u64().context("loop output")? as usize;
    let baseline = Timing {
        name: "plain PyTorch loop".into(),
        median_s: loop_s / n.max(1) as f64,
        min_s: loop_s / n.max(1) as f64,
        max_s: loop_s / n.max(1) as f64,
        runs: 1,
    };
    let mut out = vec![];
    for verdict in [VerdictMode::Exact, VerdictMode::Sequential] {
        let cfg = SweepConfig {
            verdict,
            confidence: 0.999,
            batch: data.len(),
            ..SweepConfig::new()
        };
        let (rows, seconds) = configured_rows(&model, &data, &faults, cfg, runs)?;
        println!(
            "torchscript MLP, {verdict:?} verdicts: {} flips on {} images at {:.0} flips/s (plain loop {:.0} flips/s)",
            rows.len(),
            data.len(),
            rows.len() as f64 / median(&seconds),
            n as f64 / loop_s
        );
        out.push(Comparison::new(
            &format!("torchscript MLP {verdict:?} ({} images)", data.len()),
            baseline.clone(),
            per_flip("hart sweep", &seconds, rows.len()),
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}
