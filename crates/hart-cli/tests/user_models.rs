//! `hart train --model` / `hart tune-lambda --model`: every refusal is one
//! `error:` line and exit 1, before anything is written; a frozen tensor is
//! bit-identical in the trained file.

mod common;
use common::{assert_one_line_error, hart, random_model};

#[test]
fn bad_model_options_are_one_line_errors_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let m = random_model(dir.path(), "lenet5");
    let m = m.to_str().unwrap();
    let onnx = dir.path().join("m.onnx");
    std::fs::write(&onnx, b"").unwrap();
    let onnx = onnx.to_str().unwrap();
    let out = dir.path().join("out.safetensors");
    let out = out.to_str().unwrap();
    let lim = ["--limit", "64", "--epochs", "1", "--eval-limit", "0"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["train", "--out", out], "pass --arch A"),
        (
            vec!["train", "--arch", "lenet5", "--model", onnx, "--out", out],
            "pass one of the two",
        ),
        (
            vec!["train", "--arch", "lenet5", "--reinit", "--out", out],
            "--reinit needs --model",
        ),
        (
            vec!["train", "--model", onnx, "--normalize", "none", "--out", out],
            "--normalize applies",
        ),
        (
            vec!["train", "--model", m, "--init", m, "--out", out],
            "--init is for --arch",
        ),
        (
            vec!["train", "--model", m, "--out", "x.pt"],
            "is written as .safetensors",
        ),
        (
            vec!["train", "--model", m, "--freeze", "weight", "--out", out],
            "whole name must match",
        ),
        (
            vec!["train", "--model", m, "--freeze", ".*", "--out", out],
            "nothing would train",
        ),
    ];
    for (args, needle) in cases {
        let mut all = args.clone();
        all.extend(lim);
        let o = hart(&all);
        assert_one_line_error(&o, needle);
        assert!(!std::path::Path::new(out).exists(), "{args:?} wrote {out}");
    }
    let tune = dir.path().join("tune");
    let o = hart(&[
        "tune-lambda",
        "--model",
        m,
        "--freeze",
        "nope",
        "--limit",
        "64",
        "--val",
        "10",
        "--out",
        tune.to_str().unwrap(),
    ]);
    assert_one_line_error(&o, "whole name must match");
}

#[test]
fn frozen_tensors_are_bit_identical_in_the_trained_file() {
    let dir = tempfile::tempdir().unwrap();
    let m = random_model(dir.path(), "lenet5");
    let out = dir.path().join("ft.safetensors");
    let o = hart(&[
        "train",
        "--model",
        m.to_str().unwrap(),
        "--freeze",
        "conv1\\..*|fc3\\.bias",
        "--limit",
        "128",
        "--epochs",
        "1",
        "--lr",
        "0.05",
        "--eval-limit",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let (before, _) = hart::model::safetensors_io::read(&m).unwrap();
    let (after, _) = hart::model::safetensors_io::read(&out).unwrap();
    for (name, t) in &before {
        let a = &after.iter().find(|(n, _)| n == name).unwrap().1;
        let frozen = name.starts_with("conv1.") || name == "fc3.bias";
        assert_eq!(t.equal(a), frozen, "{name}");
    }
}
