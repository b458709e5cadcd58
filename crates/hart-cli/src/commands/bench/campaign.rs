//! `hart bench campaign`: trials per second of `hart campaign` against a
//! plain PyTorch-style loop on the same trials (copy the weights, write the
//! faulty values, evaluate every image, copy the weights back), for an MLP
//! and LeNet-5 trained briefly on Fashion-MNIST. Both must count the same.

use std::time::Instant;

use anyhow::{ensure, Result};
use hart::bench::{median, Comparison, Timing};
use hart::campaign::{prepare, CampaignConfig, FaultModel};
use hart::data::Dataset;
use hart::faults::bits::{flip, read_elements, write_element};
use hart::model::Model;
use tch::Tensor;

use super::workload::trained;

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Models to time (comma-separated: mlp, lenet5).
    #[arg(long, default_value = "mlp,lenet5")]
    pub archs: String,
    /// Evaluation images.
    #[arg(long, default_value_t = 2000)]
    pub images: usize,
    /// Bit-flip rates (one comparison each).
    #[arg(long, default_value = "1e-6,1e-4")]
    pub levels: String,
    /// Trials per level and timed run.
    #[arg(long, default_value_t = 20)]
    pub trials: u64,
}

pub fn run(o: &Options, runs: usize) -> Result<Vec<Comparison>> {
    let mut out = vec![];
    for arch in o.archs.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        anyhow::ensure!(
            matches!(arch, "mlp" | "lenet5"),
            "bench campaign: unknown architecture {arch:?} (mlp, lenet5)"
        );
        let (model, mut data) = trained(arch)?;
        data.truncate(o.images.max(1));
        for level in hart::campaign::model::parse_levels(&o.levels, FaultModel::Bitflip)? {
            out.push(one(arch, &model, &data, level, o.trials, runs)?);
        }
    }
    Ok(out)
}

fn per_trial(name: &str, mut seconds: Vec<f64>, trials: u64) -> Timing {
    seconds.sort_by(f64::total_cmp);
    let per = |s: f64| s / trials as f64;
    Timing {
        name: name.into(),
        median_s: per(median(&seconds)),
        min_s: per(seconds[0]),
        max_s: per(seconds[seconds.len() - 1]),
        runs: seconds.len(),
    }
}

fn one(arch: &str, model: &Model, data: &Dataset, level: f64, trials: u64, runs: usize) -> Result<Comparison> {
    let cfg = CampaignConfig {
        trials,
        batch: 500,
        ..CampaignConfig::new(FaultModel::Bitflip, vec![level])
    };
    let c = prepare(model, data, &cfg)?;
    let eval = c.evaluator();
    let (mut hart_s, mut base_s) = (vec![], vec![]);
    let mut counts = (vec![], vec![]);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        counts.0 = (0..trials)
            .map(|k| Ok(c.trial(&eval, level, k)?.correct))
            .collect::<Result<_>>()?;
        hart_s.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        counts.1 = (0..trials).map(|k| plain_trial(&c, level, k)).collect::<Result<_>>()?;
        base_s.push(t.elapsed().as_secs_f64());
    }
    ensure!(
        counts.0 == counts.1,
        "{arch} at {level:e}: campaign and plain loop count differently"
    );
    let rate = trials as f64
        / median(&{
            let mut s = hart_s.clone();
            s.sort_by(f64::total_cmp);
            s
        });
    println!(
        "{arch} bitflip {level:e}: {trials} trials on {} images, campaign {rate:.1} trials/s",
        data.len()
    );
    Ok(Comparison::new(
        &format!("{arch} bitflip {level:e} per trial"),
        per_trial("plain loop", base_s, trials),
        per_trial("campaign", hart_s, trials),
    ))
}

/// The loop a PyTorch user writes: save a copy of the weights, write the
/// trial's faulty values, evaluate every image, put the copy back.
fn plain_trial(c: &hart::campaign::Campaign, level: f64, trial: u64) -> Result<i64> {
    let tensors: Vec<Tensor> = c.targets.iter().map(|t| t.tensor.shallow_clone()).collect();
    let saved: Vec<Tensor> = tensors.iter().map(|t| t.detach().copy()).collect();
    for f in c.draw(level, trial) {
        let t = &tensors[f.target];
        let old = read_elements(t, f.index, 1)?[0];
        write_element(t, f.index, flip(old, f.bit))?;
    }
    let r = hart::eval::evaluate(c.model, c.data, c.cfg.batch, c.model.device())?;
    tch::no_grad(|| {
        for (t, s) in tensors.iter().zip(&saved) {
            t.shallow_clone().copy_(s);
        }
    });
    Ok(r.correct)
}
