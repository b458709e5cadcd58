//! The fast and generic sweep engines against the brute-force reference loop
//! on the same flips: every zoo architecture (random weights, small inputs),
//! ONNX imports and a TorchScript model; random flips plus every bit of a
//! few elements. Counts must be equal with `exact_rad`; with early exit the
//! verdicts must be equal and every row marked exact must be equal.

mod common;

use std::io::Write;
use std::path::Path;

use common::zoo_model;
use hart::data::Dataset;
use hart::faults::hash::model_hash;
use hart::faults::record::Row;
use hart::faults::{prepare, EngineKind, SweepConfig};
use hart::model::{LoadOptions, Model};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Kind;

/// Random flips over all float tensors plus all 32 bits of two elements.
fn fault_list(model: &Model, path: &Path, random: usize, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tensors: Vec<(String, i64)> = model
        .named_tensors()
        .into_iter()
        .filter(|(_, t, _)| t.kind() == Kind::Float)
        .map(|(n, t, _)| (n, t.numel() as i64))
        .collect();
    let mut f = std::fs::File::create(path).unwrap();
    writeln!(f, "param,index,bit").unwrap();
    for _ in 0..random {
        let (name, numel) = &tensors[rng.random_range(0..tensors.len())];
        writeln!(f, "{name},{},{}", rng.random_range(0..*numel), rng.random_range(0..32)).unwrap();
    }
    // Exponent-MSB flips make weights huge: they change predictions even in
    // deep random networks, so every comparison includes flips that matter.
    for _ in 0..8 {
        let (name, numel) = &tensors[rng.random_range(0..tensors.len())];
        writeln!(f, "{name},{},30", rng.random_range(0..*numel)).unwrap();
    }
    for _ in 0..2 {
        let (name, numel) = &tensors[rng.random_range(0..tensors.len())];
        let index = rng.random_range(0..*numel);
        for bit in 0..32 {
            writeln!(f, "{name},{index},{bit}").unwrap();
        }
    }
}

/// The sweep's rows; with `exact_rad` on two parallel workers (each with its
/// own copy of the weights), otherwise in one thread, so both paths are
/// compared. `store`: prefixes read the clean pass's values, else they are
/// recomputed (continuing from the previous cut's frontier).
fn rows(model: &Model, data: &Dataset, faults: &Path, engine: EngineKind, exact_rad: bool, store: bool) -> Vec<Row> {
    let cfg = SweepConfig {
        faults: Some(faults.to_path_buf()),
        engine,
        exact_rad,
        batch: 5,
        jobs: Some(if exact_rad { 2 } else { 1 }),
        store_bytes: if store { SweepConfig::new().store_bytes } else { 0 },
        ..SweepConfig::new()
    };
    let sw = prepare(model, data, &cfg).unwrap_or_else(|e| panic!("{e}"));
    sw.collect().unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `candidate` and the reference on the same flips and compares.
fn check(what: &str, model: &Model, data: &Dataset, random: usize, candidate: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let faults = dir.path().join("faults.csv");
    fault_list(model, &faults, random, 7);
    let before = model_hash(model).unwrap();
    let reference = rows(model, data, &faults, EngineKind::Reference, true, false);
    let exact = rows(model, data, &faults, candidate, true, true);
    let recomputed = rows(model, data, &faults, candidate, true, false);
    let early = rows(model, data, &faults, candidate, false, true);
    assert_eq!(
        model_hash(model).unwrap(),
        before,
        "{what}: weights not restored bit-exactly"
    );
    let mut changed = 0;
    for (((r, x), y), e) in reference.iter().zip(&exact).zip(&recomputed).zip(&early) {
        let id = format!("{what} {}[{}] bit {} ({} -> {})", r.param, r.index, r.bit, r.old, r.new);
        assert_eq!((x.correct, x.exact), (r.correct, true), "{id}: exact counts differ");
        assert_eq!(
            (y.correct, y.exact),
            (r.correct, true),
            "{id}: exact counts differ with recomputed prefixes"
        );
        assert_eq!(e.rad > 0.1, r.rad > 0.1, "{id}: early-exit verdict differs");
        if e.exact {
            assert_eq!(e.correct, r.correct, "{id}: row marked exact differs");
        }
        changed += (r.rad != 0.0) as usize;
    }
    assert_eq!(reference.len(), exact.len());
    assert_eq!(reference.len(), recomputed.len());
    assert!(
        changed > 0,
        "{what}: no flip changed anything; the comparison would prove nothing"
    );
}

#[test]
fn fast_engine_matches_reference_on_small_zoo_models() {
    for (arch, c, s) in [("mlp", 1, 28), ("lenet5", 1, 28), ("basenet", 1, 28)] {
        let m = zoo_model(arch, c, s);
        let data = common::dataset(&m, 24, c as usize, s as usize, 3);
        check(arch, &m, &data, 60, EngineKind::Auto);
    }
    // The generic engine on a graph model, in parallel workers too.
    let m = zoo_model("mlp", 1, 28);
    let data = common::dataset(&m, 24, 1, 28, 3);
    check("mlp generic", &m, &data, 60, EngineKind::Generic);
}

#[test]
fn fast_engine_matches_reference_on_resnets_and_deit() {
    for (arch, random) in [
        ("resnet18-cifar", 30),
        ("resnet18", 16),
        ("resnet50", 10),
        ("deit-tiny", 16),
    ] {
        let m = zoo_model(arch, 3, 32);
        let data = common::dataset(&m, 8, 3, 32, 5);
        check(arch, &m, &data, random, EngineKind::Auto);
    }
}

/// The certificate must actually settle pairs on a BatchNorm + residual
/// network (`check` above proves the results exact either way): all 32 bits
/// of a few elements, in one engine on this thread so its counts are read.
#[test]
fn linear_certificate_settles_pairs_on_a_residual_cnn() {
    let m = zoo_model("resnet18-cifar", 3, 32);
    let data = common::dataset(&m, 8, 3, 32, 5);
    let dir = tempfile::tempdir().unwrap();
    let faults = dir.path().join("faults.csv");
    let mut f = std::fs::File::create(&faults).unwrap();
    writeln!(f, "param,index,bit").unwrap();
    for (param, index) in [("layer2.0.conv1.weight", 1000), ("layer3.1.conv2.weight", 5000)] {
        for bit in 0..32 {
            writeln!(f, "{param},{index},{bit}").unwrap();
        }
    }
    drop(f);
    let cfg = SweepConfig {
        faults: Some(faults),
        batch: 5,
        ..SweepConfig::new()
    };
    let sw = prepare(&m, &data, &cfg).unwrap();
    let mut engine = sw.engine();
    for unit in sw.owned() {
        sw.rows(engine.as_mut(), &unit).unwrap();
    }
    let stats = engine.stats();
    assert!(stats.certified_pairs > 0, "{stats:?}");
    assert!(stats.evaluated_pairs > 0, "{stats:?}");
}

#[test]
fn fast_engine_matches_reference_on_onnx_imports() {
    let dir = tempfile::tempdir().unwrap();
    common::run_python("onnx_export.py", &[dir.path()]);
    for name in ["cnn_raw", "vit"] {
        let m = hart::model::load(&dir.path().join(format!("{name}.onnx")), &LoadOptions::default()).unwrap();
        assert!(m.graph().is_some(), "{name}: ONNX imports are graphs");
        let data = common::dataset(&m, 10, 3, 16, 9);
        check(&format!("onnx {name}"), &m, &data, 40, EngineKind::Auto);
    }
}

#[test]
fn generic_engine_matches_reference_on_torchscript() {
    let dir = tempfile::tempdir().unwrap();
    common::run_python("torchscript_export.py", &[dir.path()]);
    let m = hart::model::load(&dir.path().join("scripted.pt"), &LoadOptions::default()).unwrap();
    assert!(m.graph().is_none(), "TorchScript models are opaque");
    let data = common::dataset(&m, 12, 3, 16, 4);
    // Auto picks the generic engine for opaque models; the exact-RAD pass
    // runs it in two workers, each on its own copy of the scripted module.
    check("torchscript", &m, &data, 40, EngineKind::Auto);
}

/// The same comparisons with the model and its evaluations on a GPU (pairs
/// of many flips batched through the layers after the cut there). Runs
/// where libtorch sees a CUDA device; says why it did nothing elsewhere.
#[test]
fn fast_engine_matches_reference_on_cuda() {
    if !tch::Cuda::is_available() {
        eprintln!("fast_engine_matches_reference_on_cuda: skipped, libtorch sees no CUDA device");
        return;
    }
    for (arch, c, s, random) in [("lenet5", 1, 28, 60), ("resnet18-cifar", 3, 32, 30)] {
        let mut m = zoo_model(arch, c, s);
        let data = common::dataset(&m, 24, c as usize, s as usize, 3);
        m.to_device(tch::Device::Cuda(0)).unwrap();
        assert_eq!(m.device(), tch::Device::Cuda(0));
        check(&format!("{arch} on cuda"), &m, &data, random, EngineKind::Auto);
    }
}
