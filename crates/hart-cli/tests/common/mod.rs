//! Helpers every CLI test file uses: run the built `hart` binary and check
//! that bad input fails cleanly.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hart::model::{zoo, Model, ModelInfo};

pub mod slurm;

/// A tiny `hart experiment` config: one architecture, plain and HAT, two
/// seeds, every analysis on a few images (tests/experiment.rs, and, with the
/// λ searched, tests/experiment_slurm.rs).
pub const TINY_EXPERIMENT: &str = r#"
name = "tiny"
archs = ["mlp"]
seeds = [0, 1]

[data]
train_limit = 300
test_limit = 100

[train]
epochs = 1
optimizer = "rmsprop"
lr = 0.001
momentum = 0.0

[[recipe]]
name = "plain"

[[recipe]]
name = "hat"
regularizer = "hessian"
hessian_lambda = 0.001
hessian_every = 2

[sweep]
bits = "23-31"
limit = 20
sample_params = 8

[analysis]
hessian_limit = 40
quantize_bits = [8, 4]
prune_sparsity = [0.5]

[analysis.landscape]
steps = 5
limit = 40
"#;

pub fn hart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hart"))
        .args(args)
        .output()
        .expect("hart binary runs")
}

/// Runs `tests/python/<script>` with the project's venv and returns its
/// stdout. A missing interpreter or package fails the test: a comparison
/// with PyTorch that silently skips proves nothing.
pub fn python<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(script: &str, args: &[S]) -> String {
    let root = slurm::repo();
    let py = root.join(".venv/bin/python");
    let o = Command::new(&py)
        .arg(root.join("tests/python").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e} (run scripts/setup.sh --test)", py.display()));
    assert!(o.status.success(), "{script} {args:?} failed: {}", stderr(&o));
    stdout(&o)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a clean failure: non-zero exit, one `error:` line naming `needle`, no panic.
pub fn assert_one_line_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success; stderr: {err}");
    assert!(!err.contains("panicked"), "panic instead of an error: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "error should be one line: {err:?}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(
        lines[0].contains(needle),
        "error {:?} should mention {needle:?}",
        lines[0]
    );
}

/// A seeded random Fashion-MNIST model saved as `DIR/ARCH.safetensors` (no
/// training: the mechanics under test do not depend on accuracy).
pub fn random_model(dir: &Path, arch: &str) -> PathBuf {
    // Tests run on parallel threads and libtorch's generator is global: the
    // lock keeps another test's draws out of this model's initialisation.
    static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _seeded = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(5);
    let info = ModelInfo::fashion_mnist(arch);
    let path = dir.join(format!("{arch}.safetensors"));
    Model::Graph(zoo::build(&info).unwrap()).save(&path).unwrap();
    path
}

/// A small CSV sweep of `random_model`'s `fc3.weight` (bits 20–31, 300 images) into `out`.
pub fn sweep_args<'a>(model: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "sweep",
        "--model",
        model,
        "--limit",
        "300",
        "--params",
        "fc3.weight",
        "--bits",
        "20-31",
        "--format",
        "csv",
        "--out",
        out,
    ];
    v.extend_from_slice(extra);
    v
}
