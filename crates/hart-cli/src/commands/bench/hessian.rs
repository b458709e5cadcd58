//! `hart bench hessian`: what curvature costs. (1) Hessian-vector products
//! and seconds to reach a relative standard error, Hutchinson (baseline)
//! against Hutch++; (2) a HAT training step against a plain step of the same
//! model and batch, Hutchinson and Gauss–Newton penalties, for the full
//! model, `last:1`, and the full model with the penalty every 5th step
//! (timed over 5-step windows); (3) the spread of each penalty and of its
//! gradient over probes at one fixed point.

use anyhow::Result;
use hart::bench::{time, Comparison};
use hart::data::{DataSpec, Split};
use hart::hessian::gauss_newton::gauss_newton_penalty;
use hart::hessian::probe::rademacher;
use hart::hessian::{data_hessian, hutchinson, hutchpp, LayerSelection, ParamSet, TraceOptions};
use hart::loss::cross_entropy;
use hart::model::{zoo, Mode, Model, ModelInfo};
use hart::train::regularizer::hutchinson_penalty;
use hart::train::{
    train, HessianMethod, Optimizer, OptimizerConfig, OptimizerKind, Regularizer, RegularizerConfig, RegularizerKind,
    TrainConfig, WeightClip,
};
use indicatif::ProgressBar;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

fn info(arch: &str) -> ModelInfo {
    let cifar = arch.contains("cifar");
    ModelInfo {
        arch: arch.into(),
        num_classes: 10,
        in_channels: if cifar { 3 } else { 1 },
        input_size: if cifar { 32 } else { 28 },
        normalize: hart::model::Normalization::for_dataset(if cifar { "cifar10" } else { "fashion-mnist" }),
        dataset: None,
    }
}

/// Hutchinson vs Hutch++ to `rel` on an MLP trained for one epoch on 2000 Fashion-MNIST images.
fn trace_cost(images: usize, rel: f64, runs: usize) -> Result<Comparison> {
    let mut spec = DataSpec::new("fashion-mnist", Split::Train);
    spec.limit = Some(2000);
    let data = hart::data::load(&spec)?;
    tch::manual_seed(0);
    let model = Model::Graph(zoo::build(&info("mlp"))?);
    train(&model, &data, &plain_training(), &ProgressBar::hidden())?;
    let mut slice = data.clone();
    slice.truncate(images);
    let params = ParamSet::select(&model, &LayerSelection::All)?;
    let opts = TraceOptions {
        rel_stderr: rel,
        max_probes: 20_000,
        ..TraceOptions::default()
    };
    let mut seed = 0;
    let mut run = |pp: bool| -> Result<(usize, usize)> {
        seed += 1;
        let mut op = data_hessian(&model, &slice, &params, images, Device::Cpu)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let e = if pp {
            hutchpp(&mut op, &params, &opts, 10, &mut rng, |_, _| {})?
        } else {
            hutchinson(&mut op, &params, &opts, &mut rng, |_, _| {})?
        };
        Ok((e.hvps, e.probes))
    };
    let (mut plain_hvps, mut pp_hvps) = (Vec::new(), Vec::new());
    let baseline = time("hutchinson", runs, || {
        plain_hvps.push(run(false).expect("hutchinson").0)
    });
    let candidate = time("hutch++", runs, || pp_hvps.push(run(true).expect("hutch++").0));
    println!(
        "trace to {:.0}% rel. stderr, mlp on {images} images: Hutchinson {:?} HVPs, Hutch++ (sketch 10) {:?} HVPs",
        100.0 * rel,
        plain_hvps,
        pp_hvps
    );
    Ok(Comparison::new(
        &format!("mlp trace to {:.0}%: hutch++", 100.0 * rel),
        baseline,
        candidate,
    ))
}

/// `window` optimiser steps of `arch` on a fixed random batch under `reg`
/// (with its weight clipping after each update, as `hart train` does).
pub(super) fn steps(arch: &str, batch: i64, reg: &RegularizerConfig, window: usize) -> Result<impl FnMut()> {
    tch::manual_seed(0);
    let i = info(arch);
    let model = Model::Graph(zoo::build(&i)?);
    let x = Tensor::rand(
        [batch, i.in_channels, i.input_size, i.input_size],
        (Kind::Float, Device::Cpu),
    );
    let y = Tensor::randint(10, [batch], (Kind::Int64, Device::Cpu));
    let params = model.trainable().into_iter().map(|(_, t)| t).collect();
    let cfg = OptimizerConfig {
        kind: OptimizerKind::RmsProp,
        lr: 1e-4,
        momentum: 0.0,
        weight_decay: 0.0,
    };
    let mut opt = Optimizer::new(params, cfg);
    let clip = match reg.clip_weights {
        Some(w) => Some(WeightClip::new(&model, w, reg.clip_relative)?),
        None => None,
    };
    let mut reg = Regularizer::new(&model, reg, 0)?;
    Ok(move || {
        for _ in 0..window {
            opt.zero_grad();
            reg.step(&model, &x, &y).expect("training step");
            opt.step();
            if let Some(c) = &clip {
                c.apply().expect("weight clipping");
            }
        }
    })
}

/// The spread of HAT's penalty over probes at one fixed point: a model
/// trained plain for one epoch on 2000 images, one minibatch of `batch`.
/// Per method: the mean penalty (the trace estimate), its relative standard
/// deviation per probe, and the relative spread of the penalty's gradient,
/// √(mean‖gⱼ − ḡ‖²)/‖ḡ‖ — the noise each step's update carries.
fn penalty_noise(arch: &str, batch: i64, probes: usize) -> Result<()> {
    let mut spec = DataSpec::new("fashion-mnist", Split::Train);
    spec.limit = Some(2000);
    let data = hart::data::load(&spec)?;
    tch::manual_seed(0);
    let model = Model::Graph(zoo::build(&info(arch))?);
    train(&model, &data, &plain_training(), &ProgressBar::hidden())?;
    let (x, y) = data.batch_range(0, batch as usize);
    let all: Vec<Tensor> = model.trainable().into_iter().map(|(_, t)| t).collect();
    let set = ParamSet::select(&model, &LayerSelection::All)?;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for method in [HessianMethod::Hutchinson, HessianMethod::GaussNewton] {
        let (mut values, mut grads) = (Vec::new(), Vec::new());
        for _ in 0..probes {
            for p in &all {
                p.shallow_clone().zero_grad();
            }
            let logits = model.forward(&x, Mode::Train)?;
            let value = match method {
                HessianMethod::Hutchinson => {
                    let v = rademacher(&mut rng, 1, set.dim(), Kind::Float, Device::Cpu);
                    let pen = hutchinson_penalty(&cross_entropy(&logits, &y)?, &set, &v)?;
                    pen.value.f_backward()?;
                    pen.value.double_value(&[])
                }
                HessianMethod::GaussNewton => {
                    let u = rademacher(&mut rng, 1, batch * 10, Kind::Float, Device::Cpu).view([1, batch, 10]);
                    let pen = gauss_newton_penalty(&logits, &set, &u)?;
                    pen.backward_with(&(logits.sum(Kind::Float) * 0.0), &all, 1.0)?;
                    pen.value.double_value(&[])
                }
            };
            values.push(value);
            grads.push(Tensor::cat(
                &all.iter().map(|p| p.grad().reshape([-1]).copy()).collect::<Vec<_>>(),
                0,
            ));
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        let g = Tensor::stack(&grads, 0).to_kind(Kind::Double);
        let g_mean = g.mean_dim(0, false, Kind::Double);
        let spread = (&g - &g_mean)
            .square()
            .sum_dim_intlist(1, false, Kind::Double)
            .mean(Kind::Double);
        let rel_grad = spread.sqrt().double_value(&[]) / g_mean.norm().double_value(&[]);
        println!(
            "{arch} penalty over {probes} probes, one batch of {batch} ({method:?}): trace estimate {mean:.4e}, \
             rel. sd per probe {:.2}, gradient rel. spread per probe {rel_grad:.2}",
            sd / mean.abs()
        );
    }
    Ok(())
}

fn plain_training() -> TrainConfig {
    TrainConfig {
        epochs: 1,
        batch_size: 64,
        optimizer: OptimizerConfig {
            kind: OptimizerKind::RmsProp,
            lr: 1e-3,
            momentum: 0.0,
            weight_decay: 0.0,
        },
        seed: 0,
        device: Device::Cpu,
        clip_grad_norm: None,
    }
}

pub fn run(archs: &str, batch: i64, images: usize, rel: f64, runs: usize) -> Result<Vec<Comparison>> {
    let mut out = vec![trace_cost(images, rel, runs.min(3))?];
    let plain = RegularizerConfig::default();
    let hat = |layers: &str, every: usize, method: HessianMethod| -> Result<RegularizerConfig> {
        Ok(RegularizerConfig {
            kind: RegularizerKind::Hessian,
            layers: layers.parse()?,
            every,
            method,
            ..RegularizerConfig::default()
        })
    };
    let (hutch, gn) = (HessianMethod::Hutchinson, HessianMethod::GaussNewton);
    for arch in archs.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        penalty_noise(arch, batch, 16)?;
        for (label, cfg, window) in [
            ("all, hutchinson", hat("all", 1, hutch)?, 1),
            ("all, gauss-newton", hat("all", 1, gn)?, 1),
            ("last:1, hutchinson", hat("last:1", 1, hutch)?, 1),
            ("last:1, gauss-newton", hat("last:1", 1, gn)?, 1),
            ("all, every 5, gauss-newton", hat("all", 5, gn)?, 5),
        ] {
            let baseline = time("plain", runs, steps(arch, batch, &plain, window)?);
            let candidate = time("hat", runs, steps(arch, batch, &cfg, window)?);
            out.push(Comparison::new(
                &format!("{arch} HAT step ({label})"),
                baseline,
                candidate,
            ));
        }
    }
    Ok(out)
}
