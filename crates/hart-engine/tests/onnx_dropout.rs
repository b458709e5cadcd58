//! ONNX Dropout: exported by PyTorch from a module in training mode, it
//! draws PyTorch's masks in HART's training forward and is the identity in
//! evaluation and in sweeps (tests/python/dropout_export.py).

mod common;

use std::path::Path;

use hart::faults::{prepare, EngineKind, SweepConfig};
use hart::model::onnx;
use hart::model::{Mode, Model, Op};

use common::{get, max_abs_diff, read_tensors, run_python, seeded};

const SEED: i64 = 5;

fn import(dir: &Path, name: &str) -> Model {
    Model::Graph(onnx::import(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}")))
}

#[test]
fn dropout_draws_pytorchs_masks_in_training_and_is_the_identity_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    run_python("dropout_export.py", &[dir.path(), Path::new(&SEED.to_string())]);
    let dir = dir.path();
    let io = read_tensors(&dir.join("outputs.safetensors"));
    let x = get(&io, "x");

    let train = import(dir, "train.onnx");
    let Model::Graph(g) = &train else { unreachable!() };
    let ratios: Vec<f64> = g
        .graph
        .nodes
        .iter()
        .filter_map(|n| match n.op {
            Op::Dropout { ratio } => Some(ratio),
            _ => None,
        })
        .collect();
    assert_eq!(ratios.len(), 1, "one Dropout node expected");
    assert!((ratios[0] - 0.3).abs() < 1e-6, "ratio {}", ratios[0]);
    // The ratio and training_mode constants are not tensors to train or flip.
    let mut names: Vec<String> = train.named_tensors().into_iter().map(|(n, _, _)| n).collect();
    names.sort();
    assert_eq!(names, ["l1.bias", "l1.weight", "l2.bias", "l2.weight"]);

    let eval = tch::no_grad(|| train.forward(x, Mode::Eval)).unwrap();
    let d = max_abs_diff(&eval, get(&io, "eval"));
    assert!(d < 1e-5, "eval-mode logits differ from PyTorch's by {d}");

    let drawn = seeded(SEED, || tch::no_grad(|| train.forward(x, Mode::Train))).unwrap();
    let reference = get(&io, "train");
    let d = max_abs_diff(&drawn, reference);
    assert!(d < 1e-5, "training-mode logits differ from PyTorch's by {d}");
    let moved = max_abs_diff(reference, get(&io, "eval"));
    assert!(
        moved > 1e-2,
        "dropout changed nothing ({moved}); the comparison would prove nothing"
    );

    // A sweep is an evaluation: flips of the export with Dropout count as
    // those of the eval-mode export without it, on the fast engine and the reference.
    let plain = import(dir, "eval.onnx");
    let data = common::dataset(&plain, 48, 1, 4, 3);
    for engine in [EngineKind::Reference, EngineKind::Auto] {
        let cfg = SweepConfig {
            bits: hart::faults::BitSet::parse("22,30,31").unwrap(),
            engine,
            exact_rad: true,
            ..SweepConfig::new()
        };
        let rows = |m: &Model| {
            prepare(m, &data, &cfg)
                .and_then(|s| s.collect())
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let (a, b) = (rows(&train), rows(&plain));
        assert_eq!(a.len(), b.len());
        assert!(a.len() > 1000, "{} flips", a.len());
        for (r, s) in a.iter().zip(&b) {
            assert_eq!(
                (&r.param, r.index, r.bit, r.correct),
                (&s.param, s.index, s.bit, s.correct)
            );
        }
        assert!(
            a.iter().any(|r| r.rad > 0.1),
            "no flip mattered; the comparison would prove nothing"
        );
    }

    let err = onnx::import(&dir.join("bad_ratio.onnx")).expect_err("ratio 1.5");
    let msg = err.to_string();
    assert!(
        msg.contains("Dropout ratio 1.5 is outside [0, 1)") && !msg.contains('\n'),
        "{msg}"
    );
}
