//! `hart bench sweep`: flips per second of the sweep engine against the
//! in-process brute-force loop on the same flips (per-flip times; the
//! reference runs a random subset of the engine's flips, whose counts must
//! agree), for an MLP and LeNet-5 trained briefly on Fashion-MNIST and a
//! BatchNorm+residual CNN (resnet18-cifar, random weights, 32×32 inputs),
//! optionally also estimated by strata over its tensors (`--cnn-strata`).
//! `--device` runs every row's sweeps and reference loops there (models are
//! trained and labelled on the CPU first, then moved).

use anyhow::Result;
use hart::bench::{median, Comparison};
use hart::data::Dataset;
use hart::faults::{EngineKind, SweepConfig};
use hart::model::Model;

use crate::commands::common::parse_device;

use super::workload::{
    by_strata, flips, one_thread, per_flip, reference_on, residual_cnn, sweep_rows, tempfile_dir, trained,
};

/// The engine is timed `runs` times (median), the much slower reference once.
fn one(
    what: &str,
    model: &Model,
    data: &Dataset,
    elements: usize,
    reference_flips: usize,
    runs: usize,
) -> Result<Comparison> {
    let dir = tempfile_dir()?;
    let all = dir.join("all.csv");
    flips(model, elements, &all)?;
    let (fast, fast_s) = sweep_rows(model, data, &all, EngineKind::Auto, runs, None)?;
    let (reference, ref_s) = reference_on(what, model, data, &dir, &fast, reference_flips)?;
    let _ = std::fs::remove_dir_all(&dir);
    let rate = fast.len() as f64 / median(&fast_s);
    println!(
        "{what}: {} flips on {} images at {rate:.0} flips/s",
        fast.len(),
        data.len()
    );
    Ok(Comparison::new(
        &format!("{what} per flip ({} images)", data.len()),
        per_flip("reference", &ref_s, reference.len()),
        per_flip("engine", &fast_s, fast.len()),
    ))
}

/// An exhaustive sweep's mix by strata, per core: all 32 bits of one random
/// element of every conv/linear weight tensor, the engine timed per tensor
/// and weighted by the tensor's size, against the reference on a few of
/// those flips — both on one libtorch thread. A uniform draw of a few
/// elements depends on where they land (flips in early layers cost far more).
fn strata(what: &str, model: &Model, data: &Dataset, reference_flips: usize) -> Result<Comparison> {
    one_thread(|| {
        let dir = tempfile_dir()?;
        let (fast, per) = by_strata(model, data, 1, SweepConfig::new(), &dir)?;
        let (reference, ref_s) = reference_on(what, model, data, &dir, &fast, reference_flips)?;
        let _ = std::fs::remove_dir_all(&dir);
        println!(
            "{what} by strata: {} flips in {} tensors on {} images, one thread, {:.1} flips/s weighted by tensor size",
            fast.len(),
            fast.len() / 32,
            data.len(),
            1.0 / per
        );
        Ok(Comparison::new(
            &format!("{what} by strata, one thread ({} images)", data.len()),
            per_flip("reference", &ref_s, reference.len()),
            per_flip("engine", &[per], 1),
        ))
    })
}

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Rows to time (comma-separated: mlp, lenet5, resnet18-cifar; sequential = resnet18-cifar
    /// with sequential verdicts; torchscript = a scripted MLP against a plain PyTorch loop).
    #[arg(long, default_value = "mlp,lenet5,resnet18-cifar,sequential,torchscript")]
    pub archs: String,
    /// Evaluation images.
    #[arg(long, default_value_t = 2000)]
    pub images: usize,
    /// Elements whose 32 bits the engine sweeps (MLP, LeNet-5).
    #[arg(long, default_value_t = 128)]
    pub elements: usize,
    /// Elements of resnet18-cifar whose 32 bits the engine sweeps, timed once: flips
    /// in early layers cost far more than in the last ones, so a handful of random
    /// elements (which land mostly in layer4) overstates the speed-up.
    #[arg(long, default_value_t = 16)]
    pub cnn_elements: usize,
    /// Flips the reference loop times (a random subset of the engine's).
    #[arg(long, default_value_t = 24)]
    pub reference_flips: usize,
    /// Evaluation images of the residual CNN (a full resnet18-cifar forward costs ~100× LeNet-5's).
    #[arg(long, default_value_t = 100)]
    pub cnn_images: usize,
    /// Evaluation images of the sequential-verdict row (resnet18-cifar, at most 2000; the
    /// row took 23 minutes at these defaults and --reference-flips 8 on two cores, over an
    /// hour at 2000 images and 8 elements).
    #[arg(long, default_value_t = 1000)]
    pub seq_images: usize,
    /// Confidence of the sequential-verdict row.
    #[arg(long, default_value_t = 0.999)]
    pub seq_confidence: f64,
    /// Random elements of every conv/linear weight tensor of the sequential row (all
    /// 32 bits of each; a real sweep's units hold up to 128 elements, so fewer
    /// understate how the per-tensor work is shared).
    #[arg(long, default_value_t = 2)]
    pub seq_elements: usize,
    /// Flips of the sequential row whose verdicts are compared with the exact engine's.
    #[arg(long, default_value_t = 16)]
    pub seq_check: usize,
    /// Fashion-MNIST test images of the TorchScript rows.
    #[arg(long, default_value_t = 1000)]
    pub ts_images: usize,
    /// Elements of the TorchScript MLP whose 32 bits both loops sweep.
    #[arg(long, default_value_t = 32)]
    pub ts_elements: usize,
    /// Also estimate an exhaustive sweep of resnet18-cifar by strata: one random element
    /// of every conv/linear weight tensor, engine time weighted by tensor size, engine
    /// and reference on one thread (about ten minutes).
    #[arg(long)]
    pub cnn_strata: bool,
    /// Where the engine and the reference loops run: cpu, cuda or cuda:N (the TorchScript
    /// row's plain PyTorch loop too).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

pub fn run(o: &Options, runs: usize) -> Result<Vec<Comparison>> {
    let device = parse_device(&o.device)?;
    let on_device = |(mut model, data): (Model, Dataset)| -> Result<(Model, Dataset)> {
        model.to_device(device)?;
        Ok((model, data))
    };
    let mut out = vec![];
    for arch in o.archs.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let row = match arch {
            "mlp" | "lenet5" => {
                let (model, mut test) = on_device(trained(arch)?)?;
                test.truncate(o.images);
                one(arch, &model, &test, o.elements, o.reference_flips, runs)?
            }
            "resnet18-cifar" => {
                let (model, data) = on_device(residual_cnn(o.cnn_images)?)?;
                if o.cnn_strata {
                    out.push(strata(arch, &model, &data, o.reference_flips / 4 + 1)?);
                }
                one(arch, &model, &data, o.cnn_elements.max(1), o.reference_flips / 4 + 1, 1)?
            }
            "sequential" => {
                let (model, data) = on_device(residual_cnn(o.seq_images)?)?;
                let plan = super::sequential::Plan {
                    elements: o.seq_elements.max(1),
                    confidence: o.seq_confidence,
                    check: o.seq_check,
                    reference_flips: o.reference_flips / 8 + 1,
                };
                super::sequential::row(&model, &data, &plan)?
            }
            "torchscript" => {
                let mut rows = super::torchscript::rows(o.ts_images, o.ts_elements.max(1), runs.min(3), device)?;
                let last = rows.pop().ok_or_else(|| anyhow::anyhow!("no TorchScript rows"))?;
                out.extend(rows);
                last
            }
            other => anyhow::bail!(
                "bench sweep: unknown row {other:?} (mlp, lenet5, resnet18-cifar, sequential, torchscript)"
            ),
        };
        out.push(row);
    }
    Ok(out)
}
