//! TorchScript models are opaque to HART but must still run, expose their
//! PyTorch parameter names (fault lists and reports address tensors by them)
//! and train. Fixtures come from tests/python/torchscript_export.py.

use std::path::Path;

mod common;

use common::{max_abs_diff as max_diff, run_python, seeded};
use hart::model::{load, safetensors_io, LoadOptions, Mode, Model, ModelInfo};
use tch::{Kind, Tensor};

const TOL: f64 = 1e-5;

struct Fixtures {
    dir: tempfile::TempDir,
    input: Tensor,
    logits: Tensor,
    param_names: Vec<String>,
}

/// Each test exports its own copy: the files are small, and a test that
/// trains a model must not share it with one that checks its logits.
fn fixtures() -> Fixtures {
    let dir = tempfile::tempdir().unwrap();
    run_python("torchscript_export.py", &[dir.path()]);
    let (io, meta) = safetensors_io::read(&dir.path().join("io.safetensors")).unwrap();
    let get = |name: &str| io.iter().find(|(n, _)| n == name).unwrap().1.shallow_clone();
    let param_names = serde_json::from_str(meta.get("parameters").expect("no parameter list")).unwrap();
    Fixtures {
        input: get("input"),
        logits: get("logits"),
        param_names,
        dir,
    }
}

fn options() -> LoadOptions {
    LoadOptions {
        arch: None,
        hint: Some(ModelInfo {
            arch: "torchscript".into(),
            num_classes: 10,
            in_channels: 3,
            input_size: 16,
            normalize: None,
            dataset: None,
        }),
        normalize: None,
    }
}

fn load_script(path: &Path) -> Model {
    let model = load(path, &options()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(model, Model::Script(_)),
        "{} did not load as TorchScript",
        path.display()
    );
    model
}

#[test]
fn scripted_and_traced_models_match_pytorch() {
    let f = fixtures();
    for file in ["scripted.pt", "traced.pt"] {
        let path = f.dir.path().join(file);
        let model = load_script(&path);
        assert_eq!(model.info().arch, "torchscript");
        assert_eq!(model.info().num_classes, 10);

        let got = tch::no_grad(|| model.forward(&f.input, Mode::Eval)).unwrap();
        assert_eq!(got.size(), f.logits.size());
        let diff = max_diff(&got, &f.logits);
        eprintln!("{file}: max |logit diff| {diff:.3e}");
        assert!(diff < TOL, "{file}: logits differ from PyTorch's by {diff:.3e}");

        let names: Vec<String> = model.named_tensors().into_iter().map(|(n, _, _)| n).collect();
        assert_eq!(names, f.param_names, "{file}: parameter names differ from PyTorch's");
        assert!(names.iter().any(|n| n == "conv1.weight") && names.iter().any(|n| n == "bn1.weight"));

        // A saved copy must be the same model.
        let copy = f.dir.path().join(format!("copy-{file}"));
        model.save(&copy).unwrap();
        let again = tch::no_grad(|| load_script(&copy).forward(&f.input, Mode::Eval)).unwrap();
        assert!(again.equal(&got), "{file}: logits changed across save/load");
    }
}

#[test]
fn gradients_reach_named_parameters() {
    let f = fixtures();
    for file in ["scripted.pt", "traced.pt"] {
        let model = load_script(&f.dir.path().join(file));
        let trainable = model.trainable();
        assert_eq!(
            trainable.len(),
            f.param_names.len(),
            "{file}: not every parameter is trainable"
        );
        let labels = seeded(0, || {
            Tensor::randint(10, [f.input.size()[0]], (Kind::Int64, tch::Device::Cpu))
        });
        let loss = model
            .forward(&f.input, Mode::Train)
            .unwrap()
            .cross_entropy_for_logits(&labels);
        loss.backward();
        for (name, t) in &trainable {
            assert!(t.requires_grad(), "{file}: {name} does not require grad");
            let g = t.grad();
            assert!(g.defined(), "{file}: no gradient reached {name}");
            assert_eq!(g.size(), t.size(), "{file}: gradient of {name} has the wrong shape");
            let norm = g.abs().sum(Kind::Float).double_value(&[]);
            assert!(norm > 0.0 && norm.is_finite(), "{file}: gradient of {name} is {norm}");
        }
    }
}

fn one_line_error_naming(path: &Path) -> String {
    let err = match load(path, &options()) {
        Ok(_) => panic!("{} loaded, but is not TorchScript", path.display()),
        Err(e) => e.to_string(),
    };
    assert!(!err.contains('\n'), "error is not one line: {err}");
    assert!(
        err.contains(&path.display().to_string()),
        "error does not name the file: {err}"
    );
    err
}

#[test]
fn non_torchscript_files_give_a_one_line_error() {
    let tmp = tempfile::tempdir().unwrap();
    let garbage = tmp.path().join("garbage.pt");
    let bytes: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&garbage, bytes).unwrap();
    let err = one_line_error_naming(&garbage);
    eprintln!("random bytes: {err}");
    assert!(
        err.contains("TorchScript"),
        "error does not say what was expected: {err}"
    );

    // The common mistake: a pickled state dict from torch.save.
    let f = fixtures();
    let err = one_line_error_naming(&f.dir.path().join("state_dict.pt"));
    eprintln!("torch.save state dict: {err}");
    assert!(
        err.contains("safetensors"),
        "error does not point to the state-dict route: {err}"
    );
}

/// Ranger clamps graph activations a TorchScript module does not expose:
/// refused in one line, from the profile and from the protection alike.
#[test]
fn ranger_is_refused_on_torchscript() {
    let f = fixtures();
    let model = load_script(&f.dir.path().join("scripted.pt"));
    let data = common::dataset(&model, 4, 3, 16, 1);
    let e = hart::faults::ranger::profile(&model, &data, 4).unwrap_err().to_string();
    assert!(e.contains("TorchScript") && !e.contains('\n'), "{e}");
    let bounds = hart::faults::ranger::Bounds {
        profile_images: 1,
        layers: vec![],
    };
    let e = hart::faults::ranger::protect(model, &bounds).err().unwrap().to_string();
    assert!(e.contains("TorchScript"), "{e}");
}
