//! Shared by the integration tests that compare HART with PyTorch.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use tch::Tensor;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Runs `tests/python/<script>` with the project's venv and returns its stdout.
/// A missing interpreter or package fails the test: a comparison that silently
/// skips proves nothing.
pub fn run_python(script: &str, args: &[&Path]) -> String {
    let python = repo_root().join(".venv/bin/python");
    let out = Command::new(&python)
        .arg(repo_root().join("tests/python").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e} (run scripts/setup.sh --test)", python.display()));
    assert!(
        out.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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
