//! ONNX import: models exported by torch.onnx.export (tests/python/onnx_export.py)
//! must give PyTorch's logits, keep PyTorch's tensor names, and bad files
//! must fail with one-line errors naming the problem.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use hart::model::onnx;
use hart::model::{GraphModel, Mode, Model, Op, ParamKind};
use hart::HartError;
use tch::Kind;

use common::{get, max_abs_diff, read_tensors, run_python};

const TOL: f64 = 1e-4;

struct Variant {
    name: String,
    dynamic_batch: bool,
    state_dict: Vec<String>,
}

fn manifest(dir: &Path) -> Vec<Variant> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("manifest is JSON");
    json.as_array()
        .expect("manifest is a list")
        .iter()
        .map(|v| Variant {
            name: v["name"].as_str().unwrap().to_string(),
            dynamic_batch: v["dynamic_batch"].as_bool().unwrap(),
            state_dict: v["state_dict"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().to_string())
                .collect(),
        })
        .collect()
}

fn import(dir: &Path, name: &str) -> GraphModel {
    let path = dir.join(format!("{name}.onnx"));
    onnx::import(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn assert_one_line(e: &HartError) {
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "error spans lines: {msg:?}");
}

fn check_logits(dir: &Path, v: &Variant) {
    let model = Model::Graph(import(dir, &v.name));
    let io = read_tensors(&dir.join(format!("{}.safetensors", v.name)));
    let (x, y) = (get(&io, "x"), get(&io, "y"));
    let out = model
        .forward(x, Mode::Eval)
        .unwrap_or_else(|e| panic!("{}: {e}", v.name));
    assert_eq!(out.size(), y.size(), "{}: logits shape", v.name);
    let diff = max_abs_diff(&out, y);
    assert!(diff < TOL, "{}: max |HART - PyTorch| = {diff:e}", v.name);
    // Weights saved from an imported model reload against the graph beside them.
    let saved = dir.join(format!("{}.weights.safetensors", v.name));
    model.save(&saved).unwrap();
    let reloaded = hart::model::load(&saved, &Default::default()).unwrap_or_else(|e| panic!("{}: {e}", v.name));
    assert!(
        reloaded.forward(x, Mode::Eval).unwrap().equal(&out),
        "{}: reload changed logits",
        v.name
    );
    if v.dynamic_batch {
        // Reshape targets computed from the input's shape must follow the batch size.
        for n in [1, 3] {
            let out = model.forward(&x.narrow(0, 0, n), Mode::Eval).unwrap();
            let diff = max_abs_diff(&out, &y.narrow(0, 0, n));
            assert!(diff < TOL, "{} at batch {n}: max diff {diff:e}", v.name);
        }
    }
    let info = model.info();
    assert_eq!(info.arch, format!("onnx:{}.onnx", v.name));
    assert_eq!(
        (info.in_channels, info.input_size, info.num_classes),
        (3, 16, 10),
        "{}",
        v.name
    );
    assert_eq!(info.normalize, None);
}

/// Exports that keep PyTorch's tensors as they are must keep their names and
/// tell parameters from BatchNorm statistics.
fn check_names(dir: &Path, v: &Variant) {
    let model = import(dir, &v.name);
    for name in v.state_dict.iter().filter(|n| !n.ends_with("num_batches_tracked")) {
        let kind = model.params.kind(name);
        let want = if name.ends_with("running_mean") || name.ends_with("running_var") {
            ParamKind::Buffer
        } else {
            ParamKind::Trainable
        };
        assert_eq!(kind, Some(want), "{}: parameter {name}", v.name);
    }
}

fn check_batch_norm(dir: &Path) {
    let model = import(dir, "cnn_raw");
    let bns: Vec<_> = model
        .graph
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::BatchNorm {
                running_mean,
                momentum,
                eps,
                ..
            } => Some((running_mean.clone(), *momentum, *eps)),
            _ => None,
        })
        .collect();
    assert_eq!(bns.len(), 3, "cnn_raw keeps its three BatchNorms");
    for (mean, momentum, eps) in &bns {
        // ONNX momentum 0.9 is PyTorch's 0.1.
        assert!((momentum - 0.1).abs() < 1e-6, "{mean}: momentum {momentum}");
        assert_eq!(*eps, 1e-5, "{mean}: eps");
    }
    let layer = model.graph.layer_of("conv1.weight").expect("conv1.weight has a layer");
    let node = model.graph.nodes.iter().find(|n| n.name == layer).unwrap();
    assert!(matches!(node.op, Op::Conv2d { .. }), "conv1.weight belongs to {layer}");

    // Training mode updates the running statistics and gradients reach the weights.
    let io = read_tensors(&dir.join("cnn_raw.safetensors"));
    let before = model.params.get("bn1.running_mean").unwrap().copy();
    let out = model.forward(get(&io, "x"), Mode::Train).unwrap();
    out.sum(Kind::Float).backward();
    let after = model.params.get("bn1.running_mean").unwrap();
    assert!(
        max_abs_diff(&before, after) > 0.0,
        "train mode must update running statistics"
    );
    let grad = model.params.get("conv1.weight").unwrap().grad();
    assert!(
        grad.defined() && grad.abs().sum(Kind::Float).double_value(&[]) > 0.0,
        "no gradient for conv1.weight"
    );
}

fn check_unsupported(dir: &Path) {
    let err = onnx::import(&dir.join("unsupported.onnx")).expect_err("Hardmax is not supported");
    assert_one_line(&err);
    match &err {
        HartError::UnsupportedOp(what) => {
            assert!(what.contains("Hardmax") && what.contains("/head/Hardmax"), "{what}")
        }
        other => panic!("expected UnsupportedOp, got {other}"),
    }
}

fn check_missing_external_data(dir: &Path) {
    let sub = dir.join("lonely");
    std::fs::create_dir_all(&sub).unwrap();
    let path = sub.join("mlp.onnx");
    std::fs::copy(dir.join("mlp.onnx"), &path).unwrap();
    let err = onnx::import(&path).expect_err("weights file is missing");
    assert_one_line(&err);
    let msg = err.to_string();
    assert!(msg.contains("mlp.onnx") && msg.contains("fc1.weight"), "{msg}");
}

/// One export run feeds every check (the exporter takes most of the time);
/// all checks run and all failures are reported together.
#[test]
fn pytorch_exports_match() {
    let dir = tempfile::tempdir().unwrap();
    run_python("onnx_export.py", &[dir.path()]);
    let dir = dir.path();
    let variants = manifest(dir);
    assert!(variants.len() >= 3);

    let mut failures = Vec::new();
    let mut check = |what: String, f: &dyn Fn()| {
        if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{what}: {msg}"));
        }
    };
    for v in &variants {
        check(format!("logits of {}", v.name), &|| check_logits(dir, v));
    }
    for v in variants
        .iter()
        .filter(|v| ["cnn_raw", "cnn_legacy", "mlp"].contains(&v.name.as_str()))
    {
        check(format!("names of {}", v.name), &|| check_names(dir, v));
    }
    check("names of vit".into(), &|| {
        let model = import(dir, "vit");
        for name in [
            "cls_token",
            "pos_embed",
            "patch_embed.weight",
            "block.norm2.weight",
            "head.weight",
        ] {
            assert!(model.params.contains(name), "vit: no parameter {name}");
        }
        // The optimised export folds BatchNorm into the convolution but keeps its name.
        assert!(import(dir, "cnn").params.contains("conv1.weight"));
    });
    check("batch norm".into(), &|| check_batch_norm(dir));
    check("unsupported op".into(), &|| check_unsupported(dir));
    check("missing external data".into(), &|| check_missing_external_data(dir));
    assert!(
        failures.is_empty(),
        "{} check(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn bad_files_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Deterministic noise (an LCG), so a failure reproduces.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect();
    let cases: [(&str, &[u8]); 3] = [
        ("noise.onnx", &noise),
        ("empty.onnx", b""),
        ("text.onnx", b"not a model\n"),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = onnx::import(&path).expect_err(name);
        assert_one_line(&err);
        assert!(matches!(err, HartError::Data { .. }), "{name}: {err:?}");
        assert!(err.to_string().contains(name), "{name}: {err}");
    }
    let missing = dir.path().join("missing.onnx");
    let err = onnx::import(&missing).expect_err("missing file");
    assert_one_line(&err);
    assert!(err.to_string().contains("missing.onnx"), "{err}");

    // A truncated but otherwise real model (hand-made header: ModelProto.ir_version = 8,
    // then a graph field claiming more bytes than follow).
    let path = dir.path().join("truncated.onnx");
    std::fs::write(&path, [0x08, 0x08, 0x3a, 0x7f, 0x0a, 0x01]).unwrap();
    let err = onnx::import(&path).expect_err("truncated");
    assert_one_line(&err);
    assert!(err.to_string().contains("truncated.onnx"), "{err}");
}
