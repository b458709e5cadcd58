//! `hart bench train`: what one training step of each recipe costs against
//! a plain step of the same model and batch, timed in the same run (the
//! cost column of docs/hardening.md). Ratios below 1 are overhead.

use anyhow::Result;
use hart::bench::{time, Comparison};
use hart::faults::Storage;
use hart::train::{HessianMethod, RegularizerConfig, RegularizerKind};

use super::hessian::steps;

/// Each recipe at the settings docs/hardening.md measures.
fn recipes() -> Vec<(&'static str, RegularizerConfig)> {
    let base = |kind| RegularizerConfig {
        kind,
        ..RegularizerConfig::default()
    };
    vec![
        (
            "noise η = 0.1",
            RegularizerConfig {
                noise_std: 0.1,
                ..base(RegularizerKind::Noise)
            },
        ),
        (
            "randbet p = 0.03 int8",
            RegularizerConfig {
                bit_error_rate: 0.03,
                ..base(RegularizerKind::Randbet)
            },
        ),
        (
            "randbet p = 0.03 int8, clip 0.1",
            RegularizerConfig {
                bit_error_rate: 0.03,
                clip_weights: Some(0.1),
                ..base(RegularizerKind::Randbet)
            },
        ),
        (
            "randbet p = 0.01 int4",
            RegularizerConfig {
                bit_error_rate: 0.01,
                storage: Storage::Int4,
                ..base(RegularizerKind::Randbet)
            },
        ),
        (
            "clip 0.1 alone",
            RegularizerConfig {
                clip_weights: Some(0.1),
                ..base(RegularizerKind::None)
            },
        ),
        ("sam ρ = 0.05", base(RegularizerKind::Sam)),
        (
            "hessian (HAT, gauss-newton)",
            RegularizerConfig {
                method: HessianMethod::GaussNewton,
                ..base(RegularizerKind::Hessian)
            },
        ),
    ]
}

pub fn run(archs: &str, batch: i64, runs: usize) -> Result<Vec<Comparison>> {
    let plain = RegularizerConfig::default();
    let mut out = vec![];
    for arch in archs.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        for (label, cfg) in recipes() {
            let baseline = time("plain", runs, steps(arch, batch, &plain, 1)?);
            let candidate = time(label, runs, steps(arch, batch, &cfg, 1)?);
            out.push(Comparison::new(&format!("{arch} step: {label}"), baseline, candidate));
        }
    }
    Ok(out)
}
