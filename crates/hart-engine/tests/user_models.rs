//! Users' own models as training starts: loading a model file with the fit
//! check, `--reinit` (PyTorch's per-layer default initialisation, checked
//! against its definition), and `--freeze` (frozen tensors come out of
//! training bit for bit as they went in).

mod common;

use hart::data::Dataset;
use hart::model::init::reinit;
use hart::model::{ModelSource, Start};
use hart::train::{train, OptimizerConfig, OptimizerKind, TrainConfig};
use std::path::Path;

use indicatif::ProgressBar;
use tch::{Device, Kind, Tensor};

fn images(n: usize, c: usize, s: usize, classes: usize) -> Dataset {
    Dataset {
        name: "synthetic".into(),
        images: hart::data::Pixels::U8((0..n * c * s * s).map(|i| (i * 37 % 251) as u8).collect()),
        channels: c,
        height: s,
        width: s,
        labels: (0..n).map(|i| (i % classes) as i64).collect(),
        num_classes: classes,
        class_names: vec![],
        source: "synthetic bytes".into(),
    }
}

fn saved_lenet(dir: &std::path::Path) -> std::path::PathBuf {
    let model = common::lenet5(3);
    let path = dir.join("lenet.safetensors");
    model.save(&path).unwrap();
    path
}

#[test]
fn a_model_file_loads_for_data_it_fits_and_names_both_shapes_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved_lenet(dir.path());
    let source = ModelSource::new(&path, None, None).unwrap();
    let model = source.load(&images(4, 1, 28, 10)).unwrap();
    assert_eq!(model.info().num_classes, 10);
    let err = source.load(&images(4, 3, 32, 10)).err().unwrap().to_string();
    assert!(err.contains("3×32×32"), "{err}");
    assert!(!err.contains('\n'), "{err}");
    let err = source.load(&images(4, 1, 28, 12)).err().unwrap().to_string();
    assert!(err.contains("10 outputs") && err.contains("12 classes"), "{err}");
    let onnx = dir.path().join("m.onnx");
    let err = ModelSource::new(&onnx, Some("lenet5"), None).unwrap_err().to_string();
    assert!(err.contains("--arch lenet5") && err.contains("pass one"), "{err}");
}

#[test]
fn reinit_draws_pytorch_default_bounds_and_resets_batchnorm() {
    let info = hart::model::ModelInfo::fashion_mnist("resnet18-cifar");
    let mut model = common::seeded_zoo(&info, 1);
    // Move the statistics off their defaults so a reset is visible.
    for (name, t, _) in model.named_tensors() {
        if name.ends_with("running_var") {
            let _ = tch::no_grad(|| t.shallow_clone().fill_(3.0));
        }
    }
    tch::manual_seed(5);
    let report = reinit(&mut model).unwrap();
    assert!(report.kept.is_empty(), "{:?}", report.kept);
    let tensors = model.named_tensors();
    let get = |n: &str| tensors.iter().find(|(m, _, _)| m == n).unwrap().1.shallow_clone();
    for (name, t, _) in &tensors {
        if name.ends_with(".weight") && t.dim() >= 2 {
            // kaiming_uniform(a=√5): U(±1/√fan_in); the variance of U(−b, b) is b²/3.
            let fan_in: i64 = t.size()[1..].iter().product();
            let b = 1.0 / (fan_in as f64).sqrt();
            let max = t.abs().max().double_value(&[]);
            assert!(max <= b + 1e-7, "{name}: max {max} > bound {b}");
            if t.numel() >= 1000 {
                let var = t.to_kind(Kind::Double).var(false).double_value(&[]);
                assert!((var / (b * b / 3.0) - 1.0).abs() < 0.1, "{name}: variance {var}");
            }
        }
    }
    let fc_b = get("fc.bias");
    let b = 1.0 / (get("fc.weight").size()[1] as f64).sqrt();
    assert!(fc_b.abs().max().double_value(&[]) <= b);
    assert!(fc_b.abs().max().double_value(&[]) > 0.0);
    assert_eq!(get("bn1.weight"), Tensor::ones([64], (Kind::Float, Device::Cpu)));
    assert_eq!(get("bn1.bias").abs().sum(Kind::Double).double_value(&[]), 0.0);
    assert_eq!(get("bn1.running_var"), Tensor::ones([64], (Kind::Float, Device::Cpu)));
    assert_eq!(get("bn1.num_batches_tracked").int64_value(&[]), 0);
}

#[test]
fn frozen_tensors_come_out_of_training_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved_lenet(dir.path());
    let data = images(64, 1, 28, 10);
    let start = Start::Weights(ModelSource::new(&path, None, None).unwrap());
    let mut model = start.build(&data, 0).unwrap();
    let before: Vec<(String, Tensor)> = model
        .named_tensors()
        .into_iter()
        .map(|(n, t, _)| (n, t.detach().copy()))
        .collect();
    let frozen = model.freeze("conv.*").unwrap();
    assert_eq!(frozen, ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"]);
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 16,
        optimizer: OptimizerConfig {
            kind: OptimizerKind::Sgd,
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 1e-3,
        },
        seed: 0,
        device: Device::Cpu,
        clip_grad_norm: None,
    };
    train(&model, &data, &cfg, &ProgressBar::hidden()).unwrap();
    for (name, t, _) in model.named_tensors() {
        let old = &before.iter().find(|(n, _)| *n == name).unwrap().1;
        let same = t.equal(old);
        assert_eq!(same, name.starts_with("conv"), "{name}");
    }
    model.unfreeze().unwrap();
    assert_eq!(model.trainable().len(), before.len());
    let err = model.freeze("weight").unwrap_err().to_string();
    assert!(err.contains("whole name") && err.contains("fc1.weight"), "{err}");
    let err = model.freeze(".*").unwrap_err().to_string();
    assert!(err.contains("nothing would train"), "{err}");
}

/// PyTorch's SGD steps on its exported CNN against HART's on the imported
/// graph (training-mode BatchNorm, running statistics included), then the
/// written-back ONNX loaded into the PyTorch module by initializer name.
#[test]
fn onnx_model_trains_as_pytorch_and_writes_back_only_its_initializers() {
    use hart::model::onnx::{import, initializer_spans};
    use hart::model::{Mode, Model};
    use hart::train::regularizer::plain_step;
    use hart::train::Optimizer;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::run_python("user_models_reference.py", &[Path::new("export"), d]);
    let reference = common::read_tensors(&d.join("steps.safetensors"));
    let src = d.join("cnn.onnx");
    let data = images(4, 1, 12, 4);
    let source = ModelSource::new(&src, None, None).unwrap();
    let model = source.load(&data).unwrap();
    let params = model.trainable().into_iter().map(|(_, t)| t).collect();
    let mut opt = Optimizer::new(
        params,
        OptimizerConfig {
            kind: OptimizerKind::Sgd,
            lr: 0.05,
            momentum: 0.0,
            weight_decay: 0.0,
        },
    );
    for i in 0..3 {
        opt.zero_grad();
        let x = common::get(&reference, &format!("x{i}"));
        let y = common::get(&reference, &format!("y{i}"));
        plain_step(&model, x, y).unwrap();
        opt.step();
    }
    let tensors = model.named_tensors();
    assert_eq!(tensors.len(), 14);
    for (name, t, _) in &tensors {
        let want = common::get(&reference, &format!("after.{name}"));
        let diff = common::max_abs_diff(t, want);
        assert!(diff < 1e-5, "{name}: HART and PyTorch differ by {diff}");
    }

    let out = d.join("trained.onnx");
    let err = source.save(&model, &d.join("trained.pt")).err().unwrap().to_string();
    assert!(err.contains(".onnx") && err.contains(".safetensors"), "{err}");
    source.save(&model, &out).unwrap();
    let (old, new) = (std::fs::read(&src).unwrap(), std::fs::read(&out).unwrap());
    assert_eq!(old.len(), new.len());
    let spans = initializer_spans(&old).unwrap();
    let inside = |i: usize| spans.iter().any(|s| s.data.iter().any(|r| r.contains(&i)));
    let changed: Vec<usize> = (0..old.len()).filter(|&i| old[i] != new[i]).collect();
    assert!(changed.len() > 1000, "only {} bytes changed", changed.len());
    assert!(
        changed.iter().all(|&i| inside(i)),
        "a byte outside the initializers' values changed"
    );

    common::run_python("user_models_reference.py", &[Path::new("predict"), &out, d]);
    let torch_logits = common::get(&common::read_tensors(&d.join("predict.safetensors")), "logits").shallow_clone();
    let x_test = common::get(&reference, "x_test");
    let hart_logits = tch::no_grad(|| model.forward(x_test, Mode::Eval)).unwrap();
    let reloaded = Model::Graph(import(&out).unwrap());
    let reloaded_logits = tch::no_grad(|| reloaded.forward(x_test, Mode::Eval)).unwrap();
    assert!(common::max_abs_diff(&hart_logits, &torch_logits) < 1e-4);
    assert!(common::max_abs_diff(&reloaded_logits, &hart_logits) == 0.0);
    assert_eq!(torch_logits.argmax(1, false), hart_logits.argmax(1, false));
}

const RMS_LR: f64 = 0.01;
/// Large enough that the penalty's gradient moves the steps far from plain RMSProp's.
const HAT_LAMBDA: f64 = 0.05;
const HAT_PROBES: usize = 2;
const TOL: f64 = 1e-5;

/// HART's RMSProp steps on the exported batches (Hutchinson HAT when λ > 0,
/// writing the probes each step draws to `d/probes.safetensors` for
/// PyTorch to replay), then PyTorch's on the same ones. Returns PyTorch's
/// tensors and HART's trace estimate of each step.
fn rmsprop_steps(model: &hart::model::Model, d: &Path, lambda: f64) -> (Vec<(String, Tensor)>, Vec<f64>) {
    use hart::train::{HessianMethod, Optimizer, Regularizer, RegularizerConfig, RegularizerKind};

    let batches = common::read_tensors(&d.join("steps.safetensors"));
    let cfg = RegularizerConfig {
        kind: if lambda > 0.0 {
            RegularizerKind::Hessian
        } else {
            RegularizerKind::None
        },
        lambda,
        method: HessianMethod::Hutchinson,
        probes: HAT_PROBES,
        ..Default::default()
    };
    let mut reg = Regularizer::new(model, &cfg, 7).unwrap();
    let params = model.trainable().into_iter().map(|(_, t)| t).collect();
    let optimizer = OptimizerConfig {
        kind: OptimizerKind::RmsProp,
        lr: RMS_LR,
        momentum: 0.0,
        weight_decay: 0.0,
    };
    let mut opt = Optimizer::new(params, optimizer);
    let (mut probes, mut traces) = (vec![], vec![]);
    for i in 0..3 {
        let next = reg.next_hutchinson_probes().unwrap();
        assert_eq!(next.is_some(), lambda > 0.0);
        for (name, v) in next.into_iter().flatten() {
            assert_eq!(v.size()[0], HAT_PROBES as i64);
            probes.push((format!("p{i}.{name}"), v.to_kind(Kind::Float)));
        }
        opt.zero_grad();
        let x = common::get(&batches, &format!("x{i}"));
        let y = common::get(&batches, &format!("y{i}"));
        traces.extend(reg.step(model, x, y).unwrap().trace);
        opt.step();
    }
    if lambda > 0.0 {
        hart::model::safetensors_io::write(&d.join("probes.safetensors"), &probes, Default::default()).unwrap();
    }
    let (lr, lam) = (RMS_LR.to_string(), lambda.to_string());
    let args = [Path::new("rmsprop"), d, Path::new(&lr), Path::new(&lam)];
    common::run_python("user_models_reference.py", &args);
    (common::read_tensors(&d.join("rmsprop.safetensors")), traces)
}

/// Every tensor `model` shows equals PyTorch's `after.NAME`; HART's trace
/// estimates equal PyTorch's vᵀHv; returns how many tensors were compared.
fn assert_matches(model: &hart::model::Model, reference: &[(String, Tensor)], traces: &[f64], what: &str) -> usize {
    let tensors = model.named_tensors();
    let mut worst = 0f64;
    for (name, t, _) in &tensors {
        let diff = common::max_abs_diff(t, common::get(reference, &format!("after.{name}")));
        assert!(diff < TOL, "{what}: {name}: HART and PyTorch differ by {diff}");
        worst = worst.max(diff);
    }
    eprintln!(
        "{what}: {} tensors within {worst:.2e} of PyTorch's, traces {traces:?}",
        tensors.len()
    );
    for (i, trace) in traces.iter().enumerate() {
        let want = common::get(reference, &format!("trace{i}")).double_value(&[0]);
        assert!(
            (trace - want).abs() <= 1e-4 * want.abs().max(1.0),
            "{what}: step {i}: HART's trace estimate {trace}, PyTorch's vᵀHv {want}"
        );
    }
    tensors.len()
}

/// The largest difference between two references' `after.` tensors: the
/// penalty must move HAT's steps well beyond the tolerance, or a HAT that
/// dropped it would pass.
fn farthest(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> f64 {
    a.iter()
        .filter(|(n, _)| n.starts_with("after.") && !n.ends_with("num_batches_tracked"))
        .map(|(n, t)| common::max_abs_diff(t, common::get(b, n)))
        .fold(0.0, f64::max)
}

/// Three RMSProp steps, plain and Hutchinson HAT with the probes HART drew,
/// on the exported ONNX graph equal PyTorch's on its module: every parameter
/// and BatchNorm running statistic, and each step's vᵀHv.
#[test]
fn onnx_model_takes_pytorchs_rmsprop_and_hutchinson_hat_steps() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::run_python("user_models_reference.py", &[Path::new("export"), d]);
    let source = ModelSource::new(&d.join("cnn.onnx"), None, None).unwrap();
    let data = images(4, 1, 12, 4);
    let plain = source.load(&data).unwrap();
    let (plain_ref, traces) = rmsprop_steps(&plain, d, 0.0);
    assert!(traces.is_empty());
    assert_eq!(assert_matches(&plain, &plain_ref, &[], "RMSProp"), 14);
    let hat = source.load(&data).unwrap();
    let (hat_ref, traces) = rmsprop_steps(&hat, d, HAT_LAMBDA);
    assert_eq!(traces.len(), 3);
    assert_eq!(assert_matches(&hat, &hat_ref, &traces, "HAT"), 14);
    let moved = farthest(&plain_ref, &hat_ref);
    eprintln!("the penalty moved PyTorch's weights by up to {moved:.3e}");
    assert!(
        moved > 1000.0 * TOL,
        "the penalty moved PyTorch's weights by only {moved}"
    );
}

/// The same module scripted (torch.jit.script): HART's RMSProp steps, plain
/// and Hutchinson HAT, equal PyTorch's eager ones on every parameter and
/// vᵀHv; the written `.pt`, reloaded by torch.jit.load, holds PyTorch's
/// parameters and BatchNorm buffers (tch shows HART no buffers, so they are
/// read there) and predicts as HART does.
#[test]
fn torchscript_model_takes_pytorchs_steps_and_writes_back_its_buffers() {
    use hart::model::{Mode, Model};

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::run_python("user_models_reference.py", &[Path::new("export"), d]);
    let source = ModelSource::new(&d.join("cnn.pt"), None, None).unwrap();
    let data = images(4, 1, 12, 4);
    let x_test = common::get(&common::read_tensors(&d.join("steps.safetensors")), "x_test").shallow_clone();
    for (lambda, what) in [(0.0, "RMSProp"), (HAT_LAMBDA, "HAT")] {
        let model = source.load(&data).unwrap();
        assert!(
            matches!(model, Model::Script(_)),
            "{what}: cnn.pt did not load as TorchScript"
        );
        let (reference, traces) = rmsprop_steps(&model, d, lambda);
        assert_eq!(traces.len(), if lambda > 0.0 { 3 } else { 0 });
        assert_eq!(assert_matches(&model, &reference, &traces, what), 10);

        let out = d.join(format!("{what}.pt"));
        source.save(&model, &out).unwrap();
        common::run_python("user_models_reference.py", &[Path::new("predict"), &out, d]);
        let written = common::read_tensors(&d.join("predict.safetensors"));
        let state: Vec<_> = written.iter().filter(|(n, _)| n.starts_with("state.")).collect();
        assert_eq!(state.len(), 16, "{what}: 10 parameters and 2 × 3 BatchNorm buffers");
        for (name, t) in state {
            let want = common::get(&reference, &format!("after.{}", &name["state.".len()..]));
            let diff = common::max_abs_diff(t, want);
            assert!(
                diff < TOL,
                "{what}: the written {name} differs from PyTorch's by {diff}"
            );
        }
        let hart_logits = tch::no_grad(|| model.forward(&x_test, Mode::Eval)).unwrap();
        let torch_logits = common::get(&written, "logits");
        let diff = common::max_abs_diff(&hart_logits, torch_logits);
        assert!(diff < 1e-4, "{what}: the written .pt predicts {diff} away from HART");
    }
}
