//! The hardware-fault training recipes (docs/hardening.md) against plain
//! PyTorch on a tiny MLP, step for step: noise at η = 0 is plain training,
//! randbet at p = 0 is quantised (straight-through) training, randbet at
//! p = 1 flips every bit of every code (c → −c−1, so the reference needs no
//! random draw), weight clipping clamps as the reference does. Then the
//! draws: randbet's error counts against the rate, over the weights only.

mod common;

use std::collections::HashMap;

use common::{get, max_abs_diff, read_tensors, run_python, seeded};
use hart::data::Dataset;
use hart::faults::Storage;
use hart::model::builder::{GraphBuilder, Init};
use hart::model::safetensors_io;
use hart::model::{GraphModel, Model, ModelInfo, Op};
use hart::train::{
    epoch_order, train_with, NoiseKind, OptimizerConfig, OptimizerKind, RegularizerConfig, RegularizerKind, TrainConfig,
};
use indicatif::ProgressBar;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Device;

const LR: f64 = 0.5;
const EPOCHS: usize = 4;
const N: usize = 12;

fn info() -> ModelInfo {
    ModelInfo {
        arch: "tiny".into(),
        num_classes: 3,
        in_channels: 1,
        input_size: 0,
        normalize: None,
        dataset: None,
    }
}

/// flatten → linear 6→5 → ReLU → linear 5→3, float32.
fn tiny() -> Model {
    let (graph, params) = seeded(21, || {
        let mut b = GraphBuilder::new();
        let x = b.op("", Op::Flatten { axis: 1 }, &[GraphBuilder::INPUT]);
        let h = b.linear("fc1", x, 6, 5, Init::Default).unwrap();
        let h = b.relu("fc1", h);
        let out = b.linear("fc2", h, 5, 3, Init::Default).unwrap();
        b.finish(out)
    });
    Model::Graph(GraphModel {
        graph,
        params,
        info: info(),
    })
}

/// Twelve 1×2×3 images with random pixels and labels.
fn data() -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    Dataset {
        name: "tiny".into(),
        images: (0..N * 6).map(|_| rng.random()).collect(),
        channels: 1,
        height: 2,
        width: 3,
        labels: (0..N).map(|_| rng.random_range(0..3)).collect(),
        num_classes: 3,
        class_names: (0..3).map(|i| i.to_string()).collect(),
        source: "synthetic".into(),
    }
}

fn sgd() -> TrainConfig {
    TrainConfig {
        epochs: EPOCHS,
        batch_size: N,
        optimizer: OptimizerConfig {
            kind: OptimizerKind::Sgd,
            lr: LR,
            momentum: 0.0,
            weight_decay: 0.0,
        },
        seed: 3,
        device: Device::Cpu,
        clip_grad_norm: None,
    }
}

fn trained(reg: &RegularizerConfig) -> HashMap<String, tch::Tensor> {
    let model = tiny();
    train_with(&model, &data(), &sgd(), reg, &ProgressBar::hidden()).unwrap();
    model
        .named_tensors()
        .into_iter()
        .map(|(n, t, _)| (n, t.detach()))
        .collect()
}

#[test]
fn recipes_at_their_limits_match_pytorch_step_for_step() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny();
    let init: Vec<(String, tch::Tensor)> = model
        .named_tensors()
        .into_iter()
        .map(|(n, t, _)| (n, t.detach()))
        .collect();
    safetensors_io::write(&dir.path().join("init.safetensors"), &init, HashMap::new()).unwrap();
    // The one full batch of each epoch, in the order HART's loop visits it.
    let d = data();
    let mut batches = vec![];
    for e in 1..=EPOCHS {
        let (x, y) = d.batch(&epoch_order(N, sgd().seed, e));
        batches.push((format!("x{e}"), x));
        batches.push((format!("y{e}"), y));
    }
    safetensors_io::write(&dir.path().join("batches.safetensors"), &batches, HashMap::new()).unwrap();
    let lr = LR.to_string();
    let epochs = EPOCHS.to_string();
    run_python(
        "hardening_reference.py",
        &[dir.path(), dir.path(), lr.as_ref(), epochs.as_ref()],
    );
    let reference = read_tensors(&dir.path().join("trajectories.safetensors"));
    let reg = |kind| RegularizerConfig {
        kind,
        ..RegularizerConfig::default()
    };
    let cases = [
        (
            "plain",
            RegularizerConfig {
                noise_std: 0.0,
                ..reg(RegularizerKind::Noise)
            },
            "noise, η = 0, additive",
        ),
        (
            "plain",
            RegularizerConfig {
                noise_std: 0.0,
                noise_kind: NoiseKind::Relative,
                ..reg(RegularizerKind::Noise)
            },
            "noise, η = 0, relative",
        ),
        (
            "clip",
            RegularizerConfig {
                clip_weights: Some(0.5),
                clip_relative: true,
                ..reg(RegularizerKind::None)
            },
            "plain with --clip-weights 0.5 --clip-relative",
        ),
        (
            "quant_clip",
            RegularizerConfig {
                bit_error_rate: 0.0,
                clip_weights: Some(0.1),
                ..reg(RegularizerKind::Randbet)
            },
            "randbet, p = 0, int8, --clip-weights 0.1",
        ),
        (
            "flip1_int8",
            RegularizerConfig {
                bit_error_rate: 1.0,
                ..reg(RegularizerKind::Randbet)
            },
            "randbet, p = 1, int8",
        ),
        (
            "flip1_int4",
            RegularizerConfig {
                bit_error_rate: 1.0,
                storage: Storage::Int4,
                ..reg(RegularizerKind::Randbet)
            },
            "randbet, p = 1, int4",
        ),
    ];
    let plain = trained(&RegularizerConfig::default());
    for (name, cfg, what) in cases {
        let ours = trained(&cfg);
        for (param, t) in &ours {
            let theirs = get(&reference, &format!("{name}.{param}"));
            let d = max_abs_diff(t, theirs);
            assert!(d < 2e-6, "{what}: {param} differs from PyTorch's {name} by {d}");
        }
        let moved = ours.iter().map(|(p, t)| max_abs_diff(t, &plain[p])).fold(0.0, f64::max);
        if name == "plain" {
            assert_eq!(moved, 0.0, "{what}: must be plain training bit for bit");
        } else {
            // A recipe that changed nothing would match a reference that did nothing.
            assert!(moved > 1e-3, "{what}: no different from plain training ({moved})");
        }
    }
}

/// randbet's draws, summed over the steps of an epoch, against the
/// binomial count the rate implies; the exposed bits are those of the
/// rank-≥2 weights only (biases are not hit).
#[test]
fn randbet_draws_errors_at_the_rate_over_the_weights_only() {
    let model = common::lenet5(4);
    let d = common::dataset(&model, 96, 1, 28, 8);
    let weights: i64 = model
        .named_tensors()
        .iter()
        .filter(|(_, t, _)| t.dim() >= 2)
        .map(|(_, t, _)| t.numel() as i64)
        .sum();
    let all: i64 = model.named_tensors().iter().map(|(_, t, _)| t.numel() as i64).sum();
    assert!(all > weights, "LeNet-5 has biases the errors must skip");
    for (storage, width, p) in [(Storage::Int8, 8, 0.01), (Storage::Int4, 4, 0.03)] {
        let cfg = RegularizerConfig {
            kind: RegularizerKind::Randbet,
            storage,
            bit_error_rate: p,
            ..RegularizerConfig::default()
        };
        let train = TrainConfig {
            epochs: 1,
            batch_size: 16,
            optimizer: OptimizerConfig {
                kind: OptimizerKind::Sgd,
                lr: 0.01,
                momentum: 0.0,
                weight_decay: 0.0,
            },
            ..sgd()
        };
        let logs = train_with(&model, &d, &train, &cfg, &ProgressBar::hidden()).unwrap();
        let e = &logs[0];
        let steps = 96 / 16;
        assert_eq!(e.stored_bits, Some(width * weights as u64), "{storage}: exposed bits");
        let n = (steps as u64 * width * weights as u64) as f64;
        let (mean, sd) = (n * p, (n * p * (1.0 - p)).sqrt());
        let got = e.bit_errors.unwrap() as f64;
        // 99.9% two-sided normal interval of the binomial count.
        assert!(
            (got - mean).abs() < 3.29 * sd,
            "{storage}: {got} bit errors, expected {mean:.0} ± {:.0}",
            3.29 * sd
        );
        let loss = e.perturbed_loss.unwrap();
        assert!(
            loss.is_finite() && loss > e.loss,
            "{storage}: errors at p = {p} must cost loss ({loss} vs {})",
            e.loss
        );
    }
}

#[test]
fn bad_recipe_settings_are_refused_with_the_value() {
    let model = tiny();
    let base = |kind| RegularizerConfig {
        kind,
        ..RegularizerConfig::default()
    };
    let bad = [
        (
            RegularizerConfig {
                noise_std: -0.1,
                ..base(RegularizerKind::Noise)
            },
            "-0.1",
        ),
        (
            RegularizerConfig {
                noise_std: f64::NAN,
                ..base(RegularizerKind::Noise)
            },
            "--noise-std",
        ),
        (
            RegularizerConfig {
                bit_error_rate: 1.5,
                ..base(RegularizerKind::Randbet)
            },
            "1.5",
        ),
        (
            RegularizerConfig {
                bit_error_rate: -0.01,
                ..base(RegularizerKind::Randbet)
            },
            "-0.01",
        ),
        (
            RegularizerConfig {
                storage: Storage::Fp32,
                ..base(RegularizerKind::Randbet)
            },
            "fp32",
        ),
        (
            RegularizerConfig {
                clip_weights: Some(0.0),
                ..base(RegularizerKind::None)
            },
            "--clip-weights",
        ),
        (
            RegularizerConfig {
                clip_weights: Some(-1.0),
                ..base(RegularizerKind::Sam)
            },
            "-1",
        ),
        (
            RegularizerConfig {
                clip_relative: true,
                ..base(RegularizerKind::None)
            },
            "--clip-relative",
        ),
        (
            RegularizerConfig {
                params: Some("fc1\\.bias".into()),
                ..base(RegularizerKind::Randbet)
            },
            "no weight tensor",
        ),
    ];
    for (cfg, needle) in bad {
        common::assert_refused(&model, &cfg, needle);
    }
    for s in ["int16", "", "INT8"] {
        assert!(s
            .parse::<Storage>()
            .unwrap_err()
            .to_string()
            .contains("unknown storage"));
    }
    assert!("gaussian".parse::<NoiseKind>().is_err());
}
