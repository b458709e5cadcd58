//! The zoo's claim that PyTorch state dicts load directly: reference models
//! built by torchvision and timm (tests/python/zoo_reference.py), saved as
//! safetensors, must load strictly into HART's architectures and reproduce
//! PyTorch's logits. HART's own models must survive a save/load round trip.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

mod common;

use common::{seeded, try_run_python};
use hart::model::{load, safetensors_io, zoo, LoadOptions, Mode, Model, ModelInfo, Normalization, ParamKind};
use hart::HartError;
use tch::{Kind, Tensor};

/// Tolerance on the largest logit difference, relative to the largest
/// reference logit (at least 1). Both sides run the same libtorch kernels in
/// float32, so the real gap is rounding (~1e-6); the bound is tight enough
/// that a tanh-approximated GELU in DeiT (~7e-4) would fail it.
const REL_TOL: f64 = 1e-4;

struct Fixtures {
    dir: PathBuf,
    // Held for the life of the test process: a concurrent run of this test
    // binary would otherwise rewrite the files under our feet.
    _lock: File,
}

/// Creating the four PyTorch models takes ~25 s, so the script runs once
/// per test binary and every test reads its output; a failure is remembered
/// so each test reports it instead of rerunning the script.
fn fixtures() -> &'static Path {
    static FIXTURES: OnceLock<Result<Fixtures, String>> = OnceLock::new();
    let f = FIXTURES.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let lock = File::create(root.join("zoo_reference.lock")).map_err(|e| e.to_string())?;
        lock.lock().map_err(|e| e.to_string())?;
        let dir = root.join("zoo_reference");
        let _ = std::fs::remove_dir_all(&dir);
        let log = try_run_python("zoo_reference.py", &[&dir])?;
        eprint!("{log}");
        Ok(Fixtures { dir, _lock: lock })
    });
    match f {
        Ok(f) => &f.dir,
        Err(e) => panic!("{e}"),
    }
}

fn info(arch: &str, input_size: i64, num_classes: i64) -> ModelInfo {
    ModelInfo {
        arch: arch.into(),
        num_classes,
        in_channels: 3,
        input_size,
        normalize: None,
        dataset: None,
    }
}

/// How a foreign state dict is loaded: architecture from --arch, shapes from
/// the data, and no normalisation, since the reference saw raw [0, 1] input.
fn foreign(arch: &str, input_size: i64, num_classes: i64) -> LoadOptions {
    LoadOptions {
        arch: Some(arch.into()),
        hint: Some(info(arch, input_size, num_classes)),
        normalize: Some(None),
    }
}

fn tensor<'a>(tensors: &'a [(String, Tensor)], name: &str) -> &'a Tensor {
    &tensors
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
        .1
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

fn check_reference(name: &str, arch: &str, input_size: i64, num_classes: i64) {
    let dir = fixtures();
    let weights = dir.join(format!("{name}.safetensors"));
    let (io, _) = safetensors_io::read(&dir.join(format!("{name}_io.safetensors"))).unwrap();
    let (x, want) = (tensor(&io, "input"), tensor(&io, "logits"));
    let (file_tensors, _) = safetensors_io::read(&weights).unwrap();

    let model = load(&weights, &foreign(arch, input_size, num_classes)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let g = model.graph().expect("a zoo architecture loads as a graph model");
    assert_eq!(g.info.arch, arch);
    assert_eq!(g.info.num_classes, num_classes);
    assert_eq!(g.info.normalize, None);
    assert_eq!(
        g.params.len(),
        file_tensors.len(),
        "{name}: HART's {arch} has tensors the PyTorch state dict lacks"
    );
    // Every value must come from the file, not from HART's random init.
    for (n, t) in &file_tensors {
        let ours = g.params.get(n).unwrap();
        assert!(
            ours.kind() == t.kind() && ours.equal(t),
            "{name}: tensor {n} differs from the file"
        );
    }

    let running_mean = g.params.get("bn1.running_mean").ok().map(|t| t.copy());
    let got = tch::no_grad(|| model.forward(x, Mode::Eval)).unwrap();
    assert_eq!(got.size(), want.size(), "{name}: logits shape");
    let diff = max_abs(&(&got - want));
    let scale = max_abs(want);
    let spread = max_abs(&(want - want.mean_dim([0i64].as_slice(), true, Kind::Float)));
    eprintln!(
        "{name}: max |logit diff| {diff:.3e}, max |logit| {scale:.3}, input-dependent spread {spread:.3}, \
         relative {:.3e}",
        diff / scale.max(1.0)
    );
    assert!(
        diff <= REL_TOL * scale.max(1.0),
        "{name}: HART's logits differ from PyTorch's by {diff:.3e} (max |logit| {scale:.3})"
    );
    // A comparison is only as strong as the inputs are distinguishable.
    assert!(
        spread > 100.0 * REL_TOL * scale.max(1.0),
        "{name}: reference logits barely depend on the input"
    );

    if let Some(before) = running_mean {
        let after = g.params.get("bn1.running_mean").unwrap();
        assert!(
            after.equal(&before),
            "{name}: an eval-mode forward changed BatchNorm's running statistics"
        );
        assert_eq!(g.params.kind("bn1.running_mean"), Some(ParamKind::Buffer));
        assert_eq!(g.params.kind("bn1.num_batches_tracked"), Some(ParamKind::Buffer));
    }
}

#[test]
fn torchvision_resnet18_matches_pytorch() {
    check_reference("resnet18", "resnet18", 224, 1000);
}

#[test]
fn torchvision_resnet50_matches_pytorch() {
    check_reference("resnet50", "resnet50", 224, 1000);
}

#[test]
fn cifar_resnet18_matches_pytorch() {
    check_reference("resnet18-cifar", "resnet18-cifar", 32, 10);
}

#[test]
fn timm_deit_tiny_matches_pytorch() {
    check_reference("deit-tiny", "deit-tiny", 224, 1000);
}

fn expect_error(result: hart::Result<Model>) -> HartError {
    match result {
        Ok(_) => panic!("expected loading to fail"),
        Err(e) => e,
    }
}

/// The tensor names an error message lists after its last colon.
fn listed_names(err: &str) -> Vec<String> {
    let tail = err.rsplit(": ").next().unwrap_or("");
    tail.split(", ").map(str::to_string).collect()
}

fn names_in(path: &Path) -> Vec<String> {
    safetensors_io::read(path)
        .unwrap()
        .0
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

fn check_one_line_naming(err: &str, path: &Path) {
    assert!(!err.contains('\n'), "error is not one line: {err}");
    assert!(
        err.contains(&path.display().to_string()),
        "error does not name the file: {err}"
    );
}

#[test]
fn strict_load_names_missing_and_unexpected_tensors() {
    let dir = fixtures();
    let (r18, r50) = (dir.join("resnet18.safetensors"), dir.join("resnet50.safetensors"));
    let (r18_names, r50_names) = (names_in(&r18), names_in(&r50));

    // Every resnet18 name also exists in resnet50, so only missing tensors show.
    let err = expect_error(load(&r18, &foreign("resnet50", 224, 1000))).to_string();
    eprintln!("resnet18 file as resnet50: {err}");
    check_one_line_naming(&err, &r18);
    assert!(err.contains("missing") && err.contains("resnet50"), "{err}");
    let listed = listed_names(&err);
    assert!(
        !listed.is_empty() && listed.iter().all(|n| r50_names.contains(n) && !r18_names.contains(n)),
        "error does not list tensors resnet50 has and the file lacks: {err}"
    );

    let err = expect_error(load(&r50, &foreign("resnet18", 224, 1000))).to_string();
    eprintln!("resnet50 file as resnet18: {err}");
    check_one_line_naming(&err, &r50);
    assert!(err.contains("not in a resnet18 model"), "{err}");
    let listed = listed_names(&err);
    assert!(
        !listed.is_empty() && listed.iter().all(|n| r50_names.contains(n) && !r18_names.contains(n)),
        "error does not list the file's tensors resnet18 lacks: {err}"
    );

    // Same names, different shapes: the CIFAR stem is 3×3 where ImageNet's is 7×7.
    let cifar = dir.join("resnet18-cifar.safetensors");
    let err = expect_error(load(&cifar, &foreign("resnet18", 224, 10))).to_string();
    eprintln!("resnet18-cifar file as resnet18: {err}");
    check_one_line_naming(&err, &cifar);
    assert!(
        err.contains("conv1.weight"),
        "error does not name the mismatched tensor: {err}"
    );
}

fn mnist_info(arch: &str) -> ModelInfo {
    ModelInfo {
        arch: arch.into(),
        num_classes: 10,
        in_channels: 1,
        input_size: 28,
        normalize: Normalization::for_dataset("mnist"),
        dataset: Some("mnist".into()),
    }
}

#[test]
fn own_models_round_trip_through_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    let cifar = ModelInfo {
        arch: "resnet18-cifar".into(),
        num_classes: 10,
        in_channels: 3,
        input_size: 32,
        normalize: Normalization::for_dataset("cifar10"),
        dataset: Some("cifar10".into()),
    };
    let infos = ["mlp", "basenet", "lenet5"].map(mnist_info).into_iter().chain([cifar]);
    for (seed, info) in infos.enumerate() {
        let (model, x) = seeded(seed as i64, || {
            let model = Model::Graph(zoo::build(&info).unwrap());
            let x = Tensor::rand(
                [3, info.in_channels, info.input_size, info.input_size],
                (Kind::Float, tch::Device::Cpu),
            );
            (model, x)
        });
        let want = tch::no_grad(|| model.forward(&x, Mode::Eval)).unwrap();
        let path = tmp.path().join(format!("{}.safetensors", info.arch));
        model.save(&path).unwrap();

        let (_, meta) = safetensors_io::read(&path).unwrap();
        let recorded: ModelInfo = serde_json::from_str(meta.get("hart").expect("no hart metadata")).unwrap();
        assert_eq!(recorded, info, "{}: metadata does not record the model", info.arch);

        // No options: everything needed to rebuild the model comes from the file.
        let loaded = load(&path, &LoadOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", info.arch));
        assert_eq!(loaded.info(), &info);
        let got = tch::no_grad(|| loaded.forward(&x, Mode::Eval)).unwrap();
        assert!(got.equal(&want), "{}: logits changed across save/load", info.arch);
        let names = |m: &Model| {
            m.named_tensors()
                .into_iter()
                .map(|(n, _, k)| (n, k))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&loaded),
            names(&model),
            "{}: tensor names or kinds changed",
            info.arch
        );

        let other = if info.arch == "mlp" { "lenet5" } else { "mlp" };
        let opts = LoadOptions {
            arch: Some(other.into()),
            ..Default::default()
        };
        let err = expect_error(load(&path, &opts)).to_string();
        assert!(
            err.contains(&info.arch) && err.contains(other),
            "{}: loading as {other} should name both architectures: {err}",
            info.arch
        );
    }
}
