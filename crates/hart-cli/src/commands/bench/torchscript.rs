//! The TorchScript rows of `hart bench sweep`: a torch.jit.script
//! 784-256-128-10 ReLU MLP (seeded random weights) over Fashion-MNIST test
//! images, swept by HART's generic engine (exact, then sequential verdicts)
//! against the plain PyTorch loop a user would write (flip, evaluate every
//! image in one batch, restore: scripts/torchscript_loop.py in the venv's
//! Python), on the same flips, in the same run, both on one device.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use hart::bench::{median, Comparison, Timing};
use hart::data::{Dataset, Split};
use hart::eval::{evaluate, NanPolicy};
use hart::faults::record::Row;
use hart::faults::{SweepConfig, VerdictMode};
use hart::model::LoadOptions;

use super::workload::{configured_rows, fashion, flips, per_flip, tempfile_dir};

/// The loop needs torch 2.11, which lives in the project's venv: an active
/// venv wins, then the repo's own `.venv` (a shell that never sourced
/// scripts/env.sh still finds it), then whatever `python3` is on PATH.
fn python() -> PathBuf {
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        return PathBuf::from(venv).join("bin/python");
    }
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if project.exists() {
        return project;
    }
    PathBuf::from("python3")
}

/// The loop script of the checkout this binary was built in, else of the
/// one it runs in (a prebuilt binary carried to another machine, as
/// scripts/gpu-check.sh does, starts in the repository root).
fn script() -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/torchscript_loop.py");
    if built.exists() {
        return built;
    }
    PathBuf::from("scripts/torchscript_loop.py")
}

fn python_out(args: &[&std::ffi::OsStr]) -> Result<String> {
    let out = Command::new(python())
        .arg(script())
        .args(args)
        .output()
        .with_context(|| format!("running {} (source scripts/env.sh)", python().display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No module named 'torch'") {
            bail!(
                "{} has no torch: run `bash scripts/setup.sh` or `source scripts/env.sh` first",
                python().display()
            );
        }
        bail!("{} failed: {}", script().display(), stderr);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Flips whose verdict (RAD above `threshold`) differs from the loop's, or
/// whose count does when HART's is exact; the loop's counts are in the
/// order of the fault list.
fn disagreements(rows: &[Row], faults: &Path, loop_correct: &[i64], clean: i64, threshold: f64) -> Result<usize> {
    let text = std::fs::read_to_string(faults)?;
    let by_flip: HashMap<&str, i64> = text.lines().skip(1).zip(loop_correct.iter().copied()).collect();
    if by_flip.len() != rows.len() {
        bail!("the loop evaluated {} flips, hart {}", by_flip.len(), rows.len());
    }
    let erratic = |c: i64| (clean - c) as f64 / clean.max(1) as f64 > threshold;
    rows.iter()
        .map(|r| {
            let key = format!("{},{},{}", r.param, r.index, r.bit);
            let want = *by_flip
                .get(key.as_str())
                .with_context(|| format!("{key} not in the loop's output"))?;
            Ok(usize::from(
                erratic(want) != (r.rad > threshold) || (r.exact && r.correct != want),
            ))
        })
        .sum()
}

/// `data`'s images and labels as the loop script reads them.
fn write_images(data: &Dataset, path: &Path) -> Result<()> {
    let (x, y) = data.batch_range(0, data.len());
    Ok(tch::Tensor::write_safetensors(&[("x", &x), ("y", &y)], path)?)
}

/// libtorch's name for `device`, as the loop script passes it to `torch.device`.
fn torch_device(device: tch::Device) -> String {
    match device {
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}

pub fn rows(images: usize, elements: usize, runs: usize, device: tch::Device) -> Result<Vec<Comparison>> {
    let dir = tempfile_dir()?;
    let model_path = dir.join("mlp.pt");
    let train = dir.join("train.safetensors");
    write_images(&fashion(Split::Train, 10_000)?, &train)?;
    python_out(&["export".as_ref(), model_path.as_os_str(), train.as_os_str()])?;
    let mut model = hart::model::load(&model_path, &LoadOptions::default())?;
    model.to_device(device)?;
    let data = fashion(Split::Test, images)?;
    let io = dir.join("images.safetensors");
    write_images(&data, &io)?;
    let faults = dir.join("faults.csv");
    flips(&model, elements, &faults)?;
    let text = python_out(&[
        "time".as_ref(),
        model_path.as_os_str(),
        io.as_os_str(),
        faults.as_os_str(),
        torch_device(device).as_ref(),
    ])?;
    let loop_out: serde_json::Value = serde_json::from_str(text.trim())?;
    let loop_s = loop_out["seconds"].as_f64().context("loop output")?;
    let n = loop_out["flips"].as_u64().context("loop output")? as usize;
    let loop_correct: Vec<i64> = serde_json::from_value(loop_out["correct"].clone()).context("loop output")?;
    let baseline = Timing {
        name: format!("plain PyTorch loop on {}", torch_device(device)),
        median_s: loop_s / n.max(1) as f64,
        min_s: loop_s / n.max(1) as f64,
        max_s: loop_s / n.max(1) as f64,
        runs: 1,
    };
    let clean = evaluate(&model, &data, data.len(), model.device())?.correct;
    let mut out = vec![];
    for verdict in [VerdictMode::Exact, VerdictMode::Sequential] {
        let cfg = SweepConfig {
            verdict,
            confidence: 0.999,
            batch: data.len(),
            // Count as the loop's `argmax` does, so the counts can be compared.
            nan_policy: NanPolicy::Argmax,
            ..SweepConfig::new()
        };
        let (rows, seconds) = configured_rows(&model, &data, &faults, cfg.clone(), runs)?;
        let wrong = disagreements(&rows, &faults, &loop_correct, clean, cfg.threshold)?;
        if verdict == VerdictMode::Exact && wrong > 0 {
            bail!("torchscript MLP: {wrong} exact verdicts differ from the PyTorch loop's counts");
        }
        println!(
            "torchscript MLP, {verdict:?} verdicts: {} flips on {} images at {:.0} flips/s (plain loop {:.0} flips/s); clean accuracy {:.2}%, {wrong} verdicts differ from the loop's",
            rows.len(),
            data.len(),
            rows.len() as f64 / median(&seconds),
            n as f64 / loop_s,
            100.0 * clean as f64 / data.len() as f64,
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
