//! Shared by the integration tests that compare HART with PyTorch.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use hart::data::Dataset;
use hart::model::{zoo, Mode, Model, ModelInfo, Normalization};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Runs `tests/python/<script>` with the project's venv and returns its
/// stdout, or why it failed. A missing interpreter or package is a failure:
/// a comparison with PyTorch that silently skips proves nothing.
pub fn try_run_python(script: &str, args: &[&Path]) -> Result<String, String> {
    let python = repo_root().join(".venv/bin/python");
    let script = repo_root().join("tests/python").join(script);
    let out = Command::new(&python)
        .arg(&script)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e} (run scripts/setup.sh --test)", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}):\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn run_python(script: &str, args: &[&Path]) -> String {
    try_run_python(script, args).unwrap_or_else(|e| panic!("{e}"))
}

/// Named tensors of a safetensors file written by a Python script.
pub fn read_tensors(path: &Path) -> Vec<(String, Tensor)> {
    hart::model::safetensors_io::read(path).expect("readable safetensors").0
}

pub fn get<'a>(tensors: &'a [(String, Tensor)], name: &str) -> &'a Tensor {
    &tensors
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
        .1
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// Random images labelled mostly with the model's own predictions, so the
/// clean accuracy is high and flips have correct samples to lose.
pub fn dataset(model: &Model, n: usize, c: usize, s: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let images: Vec<u8> = (0..n * c * s * s).map(|_| rng.random()).collect();
    let x = Tensor::from_slice(&images)
        .view([n as i64, c as i64, s as i64, s as i64])
        .to_kind(Kind::Float)
        / 255.0;
    let logits = tch::no_grad(|| model.forward(&x, Mode::Eval)).unwrap();
    let classes = logits.size()[1];
    let pred = Vec::<i64>::try_from(logits.argmax(1, false)).unwrap();
    let labels = pred
        .iter()
        .map(|&p| {
            if rng.random_bool(0.2) {
                rng.random_range(0..classes)
            } else {
                p
            }
        })
        .collect();
    Dataset {
        name: "synthetic".into(),
        images: images.into(),
        channels: c,
        height: s,
        width: s,
        labels,
        num_classes: classes as usize,
        class_names: (0..classes).map(|i| i.to_string()).collect(),
        source: "synthetic".into(),
    }
}

/// Tests of one binary run on parallel threads and libtorch's generator is
/// global: without the lock another test's draws interleave with a model's
/// initialisation and its weights differ from run to run.
static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `draw` run right after seeding libtorch's generator, under the lock: its
/// draws are the same in every run. `draw` must not call `seeded` itself.
pub fn seeded<T>(seed: i64, draw: impl FnOnce() -> T) -> T {
    let _seeded = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    draw()
}

/// The zoo model `info` describes, initialised from `seed`, the same in every run.
pub fn seeded_zoo(info: &ModelInfo, seed: i64) -> Model {
    seeded(seed, || Model::Graph(zoo::build(info).unwrap()))
}

/// A Fashion-MNIST LeNet-5 initialised from `seed`.
pub fn lenet5(seed: i64) -> Model {
    let info = ModelInfo::fashion_mnist("lenet5");
    seeded_zoo(&info, seed)
}

/// A zoo model with seeded random weights.
pub fn zoo_model(arch: &str, c: i64, s: i64) -> Model {
    let info = ModelInfo {
        arch: arch.into(),
        num_classes: 10,
        in_channels: c,
        input_size: s,
        normalize: Normalization::for_dataset(if c == 1 { "mnist" } else { "cifar10" }),
        dataset: None,
    };
    seeded_zoo(&info, 11)
}

/// `cfg` on `model` is refused with one line naming `needle`.
pub fn assert_refused(model: &Model, cfg: &hart::train::RegularizerConfig, needle: &str) {
    let err = hart::train::Regularizer::new(model, cfg, 0)
        .err()
        .expect("must be refused")
        .to_string();
    assert!(
        err.contains(needle) && !err.contains('\n'),
        "{err:?} should name {needle:?}"
    );
}
