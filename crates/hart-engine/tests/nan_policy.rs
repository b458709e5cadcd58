//! NaN, ±Inf and ties in predictions against PyTorch (tests/python/nan_reference.py):
//! `NanPolicy::Argmax` counts what `torch.argmax` counts, `NanPolicy::Wrong`
//! counts HART's rule, on hand-made logits and on real flips whose logits
//! hold Inf and NaN, with every sweep engine.

mod common;

use std::collections::HashMap;
use std::io::Write;

use common::{get, read_tensors, run_python, seeded_zoo};
use hart::data::Dataset;
use hart::eval::NanPolicy;
use hart::faults::{prepare, EngineKind, SweepConfig};
use hart::model::{safetensors_io, Mode, Model, ModelInfo};
use tch::{Kind, Tensor};

const SIDE: usize = 4;
const CLASSES: i64 = 4;

fn model() -> Model {
    let info = ModelInfo {
        arch: "mlp".into(),
        num_classes: CLASSES,
        in_channels: 1,
        input_size: SIDE as i64,
        normalize: None,
        dataset: None,
    };
    let m = seeded_zoo(&info, 3);
    // Elements whose exponent-MSB flip gives +Inf (1.0: zero mantissa) or
    // NaN (1.5); a large first-layer weight spreads them over many samples.
    let named = m.named_tensors();
    let set = |name: &str, index: i64, v: f32| {
        let t = &named.iter().find(|(n, _, _)| n == name).unwrap().1;
        tch::no_grad(|| {
            let _ = t.view(-1).get(index).fill_(v as f64);
        });
    };
    set("fc1.weight", 0, 1.0);
    set("fc1.weight", 1, 1.5);
    set("fc2.weight", 3, 1.0);
    // Row 2 of fc3: NaN in logit 2 only.
    set("fc3.weight", 2 * 128 + 5, 1.5);
    set("fc3.bias", 1, 1.0);
    m
}

fn dataset(model: &Model, n: usize) -> Dataset {
    let images: Vec<u8> = (0..n * SIDE * SIDE).map(|i| (i * 37 % 251) as u8).collect();
    let x = Tensor::from_slice(&images)
        .view([n as i64, 1, SIDE as i64, SIDE as i64])
        .to_kind(Kind::Float)
        / 255.0;
    let pred = Vec::<i64>::try_from(tch::no_grad(|| model.forward(&x, Mode::Eval)).unwrap().argmax(1, false)).unwrap();
    // Mostly the model's own predictions, so flips have correct samples to
    // lose; every third sample any class, so a NaN's index is sometimes the label.
    let labels = pred
        .iter()
        .enumerate()
        .map(|(i, &p)| if i % 3 == 0 { i as i64 % CLASSES } else { p })
        .collect();
    Dataset {
        name: "synthetic".into(),
        images: images.into(),
        channels: 1,
        height: SIDE,
        width: SIDE,
        labels,
        num_classes: CLASSES as usize,
        class_names: (0..CLASSES).map(|i| i.to_string()).collect(),
        source: "synthetic".into(),
    }
}

#[test]
fn crafted_logits_match_torch() {
    let dir = tempfile::tempdir().unwrap();
    // The script also wants a model, data and faults; the crafted part needs none of them.
    write_fixtures(dir.path(), &model(), 8, &[]);
    run_python("nan_reference.py", &[dir.path()]);
    let t = read_tensors(&dir.path().join("crafted.safetensors"));
    let (logits, labels) = (get(&t, "logits"), get(&t, "labels"));
    for (policy, key) in [(NanPolicy::Argmax, "argmax"), (NanPolicy::Wrong, "wrong")] {
        let ours = Vec::<i64>::try_from(policy.correct(logits, labels).to_kind(Kind::Int64)).unwrap();
        let theirs = Vec::<i64>::try_from(get(&t, key)).unwrap();
        assert_eq!(ours, theirs, "{policy}: per-row correctness differs from the reference");
    }
    // The two rules must differ somewhere, or the comparison shows nothing.
    assert_ne!(
        Vec::<i64>::try_from(get(&t, "argmax")).unwrap(),
        Vec::<i64>::try_from(get(&t, "wrong")).unwrap()
    );
}

fn write_fixtures(dir: &std::path::Path, model: &Model, n: usize, faults: &[(&str, i64, u8)]) -> Dataset {
    let data = dataset(model, n);
    let tensors: Vec<(String, Tensor)> = model.named_tensors().into_iter().map(|(n, t, _)| (n, t)).collect();
    safetensors_io::write(&dir.join("model.safetensors"), &tensors, HashMap::new()).unwrap();
    let (x, y) = data.batch_range(0, data.len());
    safetensors_io::write(
        &dir.join("data.safetensors"),
        &[("x".into(), x), ("y".into(), y)],
        HashMap::new(),
    )
    .unwrap();
    let mut f = std::fs::File::create(dir.join("faults.csv")).unwrap();
    writeln!(f, "param,index,bit").unwrap();
    for (p, i, b) in faults {
        writeln!(f, "{p},{i},{b}").unwrap();
    }
    data
}

#[test]
fn real_flips_to_inf_and_nan_match_torch() {
    let dir = tempfile::tempdir().unwrap();
    let model = model();
    let mut faults = vec![
        ("fc1.weight", 0, 30),
        ("fc1.weight", 1, 30),
        ("fc2.weight", 3, 30),
        ("fc3.weight", 2 * 128 + 5, 30),
        ("fc3.bias", 1, 30),
    ];
    // Ordinary flips around them (sign, mantissa, lower exponent bits).
    for (i, bit) in [(5, 31), (6, 22), (7, 29), (8, 0), (9, 23), (10, 30)] {
        faults.push(("fc1.weight", i, bit));
        faults.push(("fc3.weight", i % 4, bit));
    }
    let data = write_fixtures(dir.path(), &model, 200, &faults);
    run_python("nan_reference.py", &[dir.path()]);
    let mut reader = csv::Reader::from_path(dir.path().join("counts.csv")).unwrap();
    let expected: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let col = |r: &csv::StringRecord, k: usize| r[k].parse::<i64>().unwrap();
    assert!(expected.iter().any(|r| col(r, 5) > 0), "no flip produced NaN logits");
    assert!(expected.iter().any(|r| col(r, 6) > 0), "no flip produced Inf logits");
    assert!(
        expected.iter().any(|r| col(r, 3) != col(r, 4)),
        "the two rules never differ on these flips: {expected:?}"
    );
    for policy in [NanPolicy::Argmax, NanPolicy::Wrong] {
        for engine in [EngineKind::Reference, EngineKind::Generic, EngineKind::Auto] {
            let cfg = SweepConfig {
                faults: Some(dir.path().join("faults.csv")),
                engine,
                exact_rad: true,
                batch: 64,
                jobs: Some(1),
                nan_policy: policy,
                ..SweepConfig::new()
            };
            let rows = prepare(&model, &data, &cfg).unwrap().collect().unwrap();
            assert_eq!(rows.len(), expected.len());
            let k = if policy == NanPolicy::Argmax { 3 } else { 4 };
            for (r, e) in rows.iter().zip(&expected) {
                assert_eq!((r.param.as_str(), r.index), (&e[0], col(e, 1)));
                assert_eq!(
                    r.correct,
                    col(e, k),
                    "{policy} {engine:?} {}[{}] bit {}: {} -> {}",
                    r.param,
                    r.index,
                    r.bit,
                    r.old,
                    r.new
                );
            }
        }
    }
}
