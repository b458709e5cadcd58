//! One-file tensor data sets (.npz, .safetensors) against the arrays NumPy
//! wrote (tests/python/tensor_data.py), every error path, and the one check
//! where a model meets data (`hart::model::check_input`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hart::data::{load, DataSpec, Split};
use hart::model::{check_input, LoadOptions};

mod common;

fn fixtures() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        common::run_python("tensor_data.py", &[dir.path()]);
        dir
    })
    .path()
}

fn file(name: &str) -> PathBuf {
    fixtures().join(name)
}

fn spec(name: &str, split: Split, limit: Option<usize>) -> DataSpec {
    let mut s = DataSpec::new(file(name).display().to_string(), split);
    s.limit = limit;
    s
}

fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(file(name)).unwrap()).unwrap()
}

#[test]
fn good_files_read_back_as_numpy_wrote_them() {
    let expected = json("expected.json");
    for (name, e) in expected.as_object().unwrap() {
        for (split, key) in [(Split::Train, "train"), (Split::Test, "test")] {
            let want = &e[key];
            let shape: Vec<usize> = want["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            let ds = load(&spec(name, split, None)).unwrap_or_else(|err| panic!("{name} {key}: {err}"));
            assert_eq!(
                (ds.len(), ds.channels, ds.height, ds.width),
                (shape[0], shape[1], shape[2], shape[3]),
                "{name} {key}"
            );
            assert_eq!(
                ds.num_classes as u64,
                e["classes"].as_u64().unwrap(),
                "{name}: classes span both splits"
            );
            let (x, y) = ds.batch_range(0, ds.len());
            let got: Vec<f32> = Vec::try_from(x.flatten(0, -1)).unwrap();
            let want_x: Vec<f32> = want["x"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(got, want_x, "{name} {key}: pixels differ from NumPy's");
            let labels: Vec<i64> = Vec::try_from(&y).unwrap();
            let want_y: Vec<i64> = want["y"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            assert_eq!(labels, want_y, "{name} {key}: labels differ");
            // --limit keeps the first records, in file order.
            let two = load(&spec(name, split, Some(2))).unwrap();
            let (x2, _) = two.batch_range(0, 2);
            assert_eq!(
                Vec::<f32>::try_from(x2.flatten(0, -1)).unwrap(),
                want_x[..2 * shape[1] * shape[2] * shape[3]],
                "{name} {key} limit"
            );
            assert_eq!(two.labels, want_y[..2], "{name} {key} limit labels");
        }
    }
}

#[test]
fn every_bad_file_is_one_line_naming_the_array() {
    let bad = json("bad.json");
    for (name, words) in bad.as_object().unwrap() {
        let err = match load(&spec(name, Split::Test, None)) {
            Ok(ds) => panic!("{name}: loaded {} records, expected an error", ds.len()),
            Err(e) => e.to_string(),
        };
        assert!(!err.contains('\n'), "{name}: multi-line error {err:?}");
        assert!(
            err.starts_with(&file(name).display().to_string()),
            "{name}: error does not name the file: {err}"
        );
        for w in words.as_array().unwrap() {
            let w = w.as_str().unwrap();
            assert!(err.contains(w), "{name}: error {err:?} lacks {w:?}");
        }
    }
}

fn mlp() -> hart::model::Model {
    hart::model::load(&file("mlp.onnx"), &LoadOptions::default()).unwrap()
}

#[test]
fn model_meets_data_checks_shape_and_classes() {
    let model = mlp();
    // The MLP takes 1×28×28 and predicts 10 classes.
    let fits = load(&spec("ten_classes.npz", Split::Train, None)).unwrap();
    check_input(&model, &fits).unwrap();

    let twelve = load(&spec("twelve_classes.npz", Split::Train, None)).unwrap();
    let err = check_input(&model, &twelve).unwrap_err().to_string();
    for w in ["reach 11", "y (12,) int64", "outside the model's 10 classes"] {
        assert!(err.contains(w), "{err:?} lacks {w:?}");
    }

    // An image folder of colour images: the issue's `hart sweep --model mlp.onnx --dataset DIR`.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("cat")).unwrap();
    image::RgbImage::from_pixel(30, 30, image::Rgb([200, 10, 10]))
        .save(dir.path().join("cat/a.png"))
        .unwrap();
    let folder = load(&DataSpec::new(dir.path().display().to_string(), Split::Test)).unwrap();
    let err = check_input(&model, &folder).unwrap_err().to_string();
    assert!(!err.contains('\n'), "{err}");
    for w in ["takes 1×28×28 inputs", "gives 3×224×224", "read as an image folder"] {
        assert!(err.contains(w), "{err:?} lacks {w:?}");
    }
    assert!(!err.contains("mat1"), "the libtorch message is replaced: {err}");

    // Pixels of the right count in the wrong shape (1×5×4 for 784 inputs) also fail here.
    let small = load(&spec("u8_savez.npz", Split::Test, None)).unwrap();
    let err = check_input(&model, &small).unwrap_err().to_string();
    assert!(
        err.contains("gives 1×5×4 (read as .npz arrays x_test (3, 1, 5, 4) uint8"),
        "{err}"
    );
}
