//! HAT on a model the user brings (#23's done-when): a ReLU MLP trained and
//! exported by PyTorch (tests/python/user_hat_reference.py), fine-tuned by
//! the `hart` binary plain and with `--regularizer hessian --hessian-lambda
//! 0.01 --out M-hat.onnx` from the same seed. HAT's `hart hessian` trace
//! must be below plain's by more than both standard errors together, at
//! accuracy within 2 points, and each written .onnx, loaded back into the
//! PyTorch module by initializer name, must score what HART reported.

mod common;
use common::{hart, python, stderr, stdout};
use serde_json::Value;
use std::path::Path;

/// Test images every accuracy here is measured on (the first ones).
const TEST_IMAGES: &str = "2000";

/// `hart train --model mlp.onnx` for one epoch on the first 4,000 training
/// images (RMSProp, lr 1e-4, as the HAT paper), `extra` choosing the
/// regularizer; returns what the training log says about the test images.
fn fine_tune(dir: &Path, out: &str, extra: &[&str]) -> Value {
    let model = dir.join("mlp.onnx");
    let out = dir.join(out);
    let mut args = vec![
        "train",
        "--model",
        model.to_str().unwrap(),
        "--limit",
        "4000",
        "--epochs",
        "1",
        "--optimizer",
        "rmsprop",
        "--lr",
        "1e-4",
        "--momentum",
        "0",
        "--seed",
        "0",
        "--eval-limit",
        TEST_IMAGES,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = hart(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let log = std::fs::read_to_string(out.with_extension("train.json")).unwrap();
    serde_json::from_str::<Value>(&log).unwrap()["test"].clone()
}

/// (trace, its standard error) of the training loss on 1,000 images, the
/// same probes (seed) for every model.
fn trace(model: &Path) -> (f64, f64) {
    let o = hart(&[
        "hessian",
        "--model",
        model.to_str().unwrap(),
        "--limit",
        "1000",
        "--max-probes",
        "300",
        "--top-k",
        "0",
        "--seed",
        "0",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    (v["trace"].as_f64().unwrap(), v["trace_stderr"].as_f64().unwrap())
}

#[test]
fn hat_flattens_an_exported_mlp_at_matched_accuracy_and_writes_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    python("user_hat_reference.py", &["export", d.to_str().unwrap()]);

    let plain = fine_tune(d, "M-plain.onnx", &[]);
    let hat = fine_tune(
        d,
        "M-hat.onnx",
        &["--regularizer", "hessian", "--hessian-lambda", "0.01"],
    );
    let (t_plain, se_plain) = trace(&d.join("M-plain.onnx"));
    let (t_hat, se_hat) = trace(&d.join("M-hat.onnx"));
    let (a_plain, a_hat) = (plain["accuracy"].as_f64().unwrap(), hat["accuracy"].as_f64().unwrap());
    eprintln!(
        "plain: {:.2}%, trace {t_plain:.2} ± {se_plain:.2}; HAT λ = 0.01: {:.2}%, trace {t_hat:.2} ± {se_hat:.2}",
        100.0 * a_plain,
        100.0 * a_hat
    );
    assert!(
        t_plain - t_hat > se_plain + se_hat,
        "HAT's trace {t_hat} ± {se_hat} is not clearly below plain's {t_plain} ± {se_plain}"
    );
    assert!(
        (a_plain - a_hat).abs() <= 0.02,
        "accuracy moved more than 2 points: plain {a_plain}, HAT {a_hat}"
    );

    // PyTorch, reading the written files' initializers by name, predicts
    // what HART counted (the same libtorch kernels: the same argmax).
    let (p, h) = (d.join("M-plain.onnx"), d.join("M-hat.onnx"));
    let (p, h) = (p.to_str().unwrap(), h.to_str().unwrap());
    let torch: Value =
        serde_json::from_str(python("user_hat_reference.py", &["accuracy", TEST_IMAGES, p, h]).trim()).unwrap();
    for (path, hart_said) in [(p, &plain), (h, &hat)] {
        assert_eq!(
            torch[path]["correct"], hart_said["correct"],
            "{path}: PyTorch {} vs HART {hart_said}",
            torch[path]
        );
        assert_eq!(torch[path]["total"], hart_said["total"], "{path}");
    }
}
