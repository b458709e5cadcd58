//! End-to-end checks of the `hart` binary: real training on a Fashion-MNIST
//! slice, evaluation, determinism, and one-line errors on bad input.

use std::path::Path;

mod common;
use common::{assert_one_line_error, hart, stderr, stdout};

fn eval_json(model: &Path, limit: &str) -> serde_json::Value {
    let o = hart(&["eval", "--model", model.to_str().unwrap(), "--limit", limit, "--json"]);
    assert!(o.status.success(), "eval failed: {}", stderr(&o));
    serde_json::from_str(stdout(&o).trim()).expect("eval --json prints JSON")
}

#[test]
fn lenet5_learns_fashion_mnist_slice() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lenet5.safetensors");
    let o = hart(&[
        "train",
        "--arch",
        "lenet5",
        "--limit",
        "4000",
        "--epochs",
        "2",
        "--lr",
        "0.05",
        "--seed",
        "1",
        "--eval-limit",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "train failed: {}", stderr(&o));
    assert!(
        dir.path().join("lenet5.train.json").exists(),
        "training log is stored next to the model"
    );
    // Held-out images: the test split, which training never saw.
    let r = eval_json(&out, "2000");
    let acc = r["accuracy"].as_f64().unwrap();
    assert_eq!(r["total"].as_i64(), Some(2000));
    assert_eq!(r["correct"].as_i64().unwrap() as f64 / 2000.0, acc);
    assert!(
        acc > 0.6,
        "LeNet-5 should be well above chance (10%) after 2 epochs, got {acc}"
    );
}

#[test]
fn training_is_deterministic_for_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str| {
        let out = dir.path().join(name);
        let o = hart(&[
            "train",
            "--arch",
            "basenet",
            "--limit",
            "300",
            "--epochs",
            "1",
            "--seed",
            seed,
            "--optimizer",
            "adam",
            "--lr",
            "0.001",
            "--eval-limit",
            "0",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "train failed: {}", stderr(&o));
        std::fs::read(out).unwrap()
    };
    let a = run("a.safetensors", "7");
    let b = run("b.safetensors", "7");
    let c = run("c.safetensors", "8");
    assert!(a == b, "same seed must give bit-identical weights");
    assert!(a != c, "a different seed must give different weights");
}

#[test]
fn bad_inputs_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();

    assert_one_line_error(
        &hart(&[
            "train",
            "--arch",
            "nonet",
            "--limit",
            "10",
            "--out",
            &p("m.safetensors"),
        ]),
        "nonet",
    );
    assert_one_line_error(
        &hart(&["eval", "--model", &p("missing.safetensors")]),
        "missing.safetensors",
    );

    std::fs::write(
        p("junk.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!",
    )
    .unwrap();
    assert_one_line_error(&hart(&["eval", "--model", &p("junk.safetensors")]), "junk.safetensors");

    std::fs::write(p("model.xyz"), b"whatever").unwrap();
    assert_one_line_error(&hart(&["eval", "--model", &p("model.xyz")]), "model.xyz");

    assert_one_line_error(
        &hart(&[
            "train",
            "--arch",
            "lenet5",
            "--limit",
            "0",
            "--out",
            &p("m.safetensors"),
        ]),
        "--limit",
    );
    assert_one_line_error(
        &hart(&[
            "train",
            "--arch",
            "lenet5",
            "--limit",
            "10",
            "--device",
            "tpu",
            "--out",
            &p("m.safetensors"),
        ]),
        "tpu",
    );
    assert_one_line_error(
        &hart(&[
            "train",
            "--arch",
            "lenet5",
            "--dataset",
            &p("nowhere"),
            "--out",
            &p("m.safetensors"),
        ]),
        "nowhere",
    );
}

#[test]
fn state_dict_needs_matching_arch() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mlp.safetensors");
    let o = hart(&[
        "train",
        "--arch",
        "mlp",
        "--limit",
        "100",
        "--epochs",
        "1",
        "--eval-limit",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_one_line_error(
        &hart(&[
            "eval",
            "--model",
            out.to_str().unwrap(),
            "--arch",
            "lenet5",
            "--limit",
            "10",
        ]),
        "lenet5",
    );
}

/// `hart bench sweep --device` (what scripts/gpu-check.sh times on a GPU) is
/// checked before any row is built: an unknown device, and a GPU index this
/// machine lacks, end in one line naming it.
#[test]
fn bench_sweep_checks_its_device_first() {
    assert_one_line_error(&hart(&["bench", "sweep", "--device", "tpu"]), "tpu");
    assert_one_line_error(&hart(&["bench", "sweep", "--device", "cuda:63"]), "cuda:63");
}
