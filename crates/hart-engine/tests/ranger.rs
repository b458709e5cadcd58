//! Ranger's activation bounds (docs/hardening.md): the profile images keep
//! their accuracy exactly, and a sweep of the protected model (fast engine,
//! exact counts) agrees flip for flip with a brute-force LeNet-5 written
//! here as direct tch calls that clamps the same activations at the bounds
//! read back from the profile.

mod common;

use std::collections::HashMap;
use std::io::Write;

use hart::eval::{evaluate, NanPolicy};
use hart::faults::ranger::{self, Bounds, DefenseChoice};
use hart::faults::{prepare, Defense, EngineKind, SweepConfig};
use hart::model::{Model, ModelInfo};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

/// LeNet-5's forward pass written out, each ReLU's output clamped to
/// `bounds` (graph order) when given; `w` by state-dict name.
fn lenet5(w: &HashMap<String, Tensor>, x: &Tensor, bounds: Option<&[(f64, f64)]>) -> Tensor {
    let norm = ModelInfo::fashion_mnist("lenet5").normalize.expect("normalised");
    let x = (x - norm.mean[0]) / norm.std[0];
    let clamp = |t: Tensor, k: usize| match bounds {
        Some(b) => t.clamp(b[k].0, b[k].1),
        None => t,
    };
    let pool = |t: Tensor| t.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
    let x = x.conv2d(&w["conv1.weight"], Some(&w["conv1.bias"]), [1, 1], [2, 2], [1, 1], 1);
    let x = pool(clamp(x.relu(), 0));
    let x = x.conv2d(&w["conv2.weight"], Some(&w["conv2.bias"]), [1, 1], [0, 0], [1, 1], 1);
    let x = pool(clamp(x.relu(), 1));
    let x = x.flatten(1, -1);
    let x = clamp(x.linear(&w["fc1.weight"], Some(&w["fc1.bias"])).relu(), 2);
    let x = clamp(x.linear(&w["fc2.weight"], Some(&w["fc2.bias"])).relu(), 3);
    x.linear(&w["fc3.weight"], Some(&w["fc3.bias"]))
}

/// Correct predictions by HART's rule (a row holding NaN is wrong).
fn correct(logits: &Tensor, y: &Tensor) -> i64 {
    let right = logits.argmax(1, false).eq_tensor(y);
    let finite = logits.isnan().any_dim(1, false).logical_not();
    right.logical_and(&finite).sum(Kind::Int64).int64_value(&[])
}

fn weights(model: &Model) -> HashMap<String, Tensor> {
    model
        .named_tensors()
        .into_iter()
        .map(|(n, t, _)| (n, t.detach().copy()))
        .collect()
}

fn profiled() -> (Model, Bounds, hart::data::Dataset) {
    let model = common::lenet5(6);
    let profile = common::dataset(&model, 48, 1, 28, 2);
    let bounds = ranger::profile(&model, &profile, 16).unwrap();
    (model, bounds, profile)
}

#[test]
fn profile_images_keep_their_accuracy_under_the_bounds() {
    let (model, bounds, profile) = profiled();
    assert_eq!(bounds.profile_images, 48);
    let ops: Vec<&str> = bounds.layers.iter().map(|b| b.op.as_str()).collect();
    assert_eq!(ops, ["Relu"; 4], "LeNet-5's four ReLUs are bounded");
    assert!(bounds.layers.iter().all(|b| b.min == 0.0 && b.max > 0.0));
    let w = weights(&model);
    let (x, y) = profile.batch_range(0, profile.len());
    let unclamped = tch::no_grad(|| lenet5(&w, &x, None));
    let protected = ranger::protect(model, &bounds).unwrap();
    let defended = evaluate(&protected, &profile, 16, tch::Device::Cpu).unwrap();
    let report = ranger::report(&protected, &profile, 16, NanPolicy::Wrong)
        .unwrap()
        .unwrap();
    assert_eq!(report.activations, 4);
    assert_eq!(
        defended.correct, report.undefended_correct,
        "accuracy on the profile images"
    );
    assert_eq!(
        defended.correct,
        correct(&unclamped, &y),
        "against the written-out LeNet-5"
    );
    // The bounds are the extremes the profile reached: some activation sits on each.
    let b: Vec<(f64, f64)> = bounds.layers.iter().map(|b| (b.min as f64, b.max as f64)).collect();
    let tight: Vec<(f64, f64)> = b.iter().map(|&(lo, hi)| (lo, hi * 0.999)).collect();
    let cut = tch::no_grad(|| lenet5(&w, &x, Some(&tight)));
    assert!(
        max_diff(&cut, &unclamped) > 0.0,
        "bounds a hair tighter must change the logits"
    );
    assert!(
        ranger::profile(&protected, &profile, 16).is_err(),
        "protecting twice is refused"
    );
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn ranger_sweep_matches_a_brute_force_loop_that_clamps_the_same_activations() {
    let (model, bounds, _) = profiled();
    let clean_weights = weights(&model);
    let eval = common::dataset(&model, 32, 1, 28, 9);
    let dir = tempfile::tempdir().unwrap();
    let faults = dir.path().join("faults.csv");
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let names: Vec<(String, i64)> = clean_weights
        .iter()
        .map(|(n, t)| (n.clone(), t.numel() as i64))
        .collect();
    let mut f = std::fs::File::create(&faults).unwrap();
    writeln!(f, "param,index,bit").unwrap();
    for k in 0..120 {
        let (name, numel) = &names[rng.random_range(0..names.len())];
        // Half of them exponent MSB or high exponent bits: the blow-ups Ranger is for.
        let bit = if k % 2 == 0 {
            rng.random_range(27..31)
        } else {
            rng.random_range(0..32)
        };
        writeln!(f, "{name},{},{bit}", rng.random_range(0..*numel)).unwrap();
    }
    drop(f);
    let protected = ranger::protect(model, &bounds).unwrap();
    let cfg = SweepConfig {
        faults: Some(faults),
        engine: EngineKind::Auto,
        exact_rad: true,
        batch: 8,
        jobs: Some(1),
        ..SweepConfig::new()
    };
    let sw = prepare(&protected, &eval, &cfg).unwrap();
    assert!(
        sw.manifest.config.get("ranger").is_some(),
        "the bounds enter the sweep's configuration"
    );
    let rows = sw.collect().unwrap();
    let b: Vec<(f64, f64)> = bounds.layers.iter().map(|b| (b.min as f64, b.max as f64)).collect();
    let (x, y) = eval.batch_range(0, eval.len());
    let (mut masked, mut changed) = (0, 0);
    for r in &rows {
        let mut w: HashMap<String, Tensor> = clean_weights
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        let t = w[&r.param].copy();
        let flat = Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
        let old = flat[r.index as usize];
        let new = f32::from_bits(old.to_bits() ^ (1 << r.bit));
        assert_eq!((old.to_bits(), new.to_bits()), (r.old.to_bits(), r.new.to_bits()));
        let mut flat = flat;
        flat[r.index as usize] = new;
        w.insert(r.param.clone(), Tensor::from_slice(&flat).view(t.size().as_slice()));
        let (defended, undefended) = tch::no_grad(|| {
            (
                correct(&lenet5(&w, &x, Some(&b)), &y),
                correct(&lenet5(&w, &x, None), &y),
            )
        });
        let id = format!("{}[{}] bit {} ({old} -> {new})", r.param, r.index, r.bit);
        assert!(r.exact, "{id}: exact_rad rows are exact");
        assert_eq!(
            r.correct, defended,
            "{id}: the sweep under ranger differs from the clamped loop"
        );
        masked += usize::from(defended > undefended);
        changed += usize::from(defended != sw.clean.correct_count);
    }
    assert!(
        changed > 0,
        "no flip changed the defended accuracy: the comparison would prove nothing"
    );
    assert!(
        masked > 0,
        "no flip was masked by the clamps: they would be doing nothing"
    );
}

#[test]
fn defense_names_parse() {
    assert_eq!("ranger".parse::<DefenseChoice>().unwrap(), DefenseChoice::Ranger);
    assert_eq!(
        "radar:8".parse::<DefenseChoice>().unwrap(),
        DefenseChoice::Words(Defense::Radar { group: 8 })
    );
    let e = "rangr".parse::<DefenseChoice>().unwrap_err().to_string();
    assert!(e.contains("\"rangr\"") && e.contains("ranger"), "{e}");
    assert!("radar:1"
        .parse::<DefenseChoice>()
        .unwrap_err()
        .to_string()
        .contains("group size"));
}
