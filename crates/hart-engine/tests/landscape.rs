//! Loss landscapes: filter normalisation, seeded directions, the grid centre
//! being the clean model, layer restriction, and TorchScript models.

mod common;

use hart::compress::prune::{prune_in_place, Scope};
use hart::compress::quantize::{quantize_in_place, Granularity};
use hart::compress::{select, Selection};
use hart::data::{self, DataSpec, Dataset, Split};
use hart::eval::evaluate;
use hart::landscape::{self, csv::to_csv, GridSpec};
use hart::model::{load, LoadOptions, Model, ModelInfo};
use tch::{Device, Kind, Tensor};

use common::lenet5;

fn fashion(limit: usize) -> Dataset {
    let mut spec = DataSpec::new("fashion-mnist", Split::Test);
    spec.limit = Some(limit);
    data::load(&spec).unwrap()
}

fn filter_norms(t: &Tensor) -> Vec<f64> {
    let rows = t.size()[0];
    Vec::try_from(
        t.reshape([rows, -1])
            .to_kind(Kind::Double)
            .norm_scalaropt_dim(2.0, [1i64].as_slice(), false),
    )
    .unwrap()
}

#[test]
fn every_filter_of_a_direction_has_its_weight_filters_norm() {
    let m = lenet5(1);
    let all = Selection {
        include_bias_bn: true,
        layer: None,
    };
    let targets = select(&m, &all).unwrap();
    let dirs = landscape::random(&targets, 7, 2);
    assert_eq!(dirs.len(), 2);
    let mut filters = 0;
    for d in &dirs {
        for ((name, w), d) in targets.iter().zip(&d.0) {
            assert_eq!(d.size(), w.size(), "{name}");
            if w.dim() < 2 {
                // Li et al.: with biases included, their direction is the weight itself.
                assert!(d.equal(&w.detach()), "{name}");
                continue;
            }
            for (i, (a, b)) in filter_norms(d).iter().zip(filter_norms(w)).enumerate() {
                assert!((a - b).abs() <= 1e-5 * b.max(1e-12), "{name} filter {i}: {a} vs {b}");
                filters += 1;
            }
        }
    }
    // conv1 6 + conv2 16 + fc1 120 + fc2 84 + fc3 10, for both directions.
    assert_eq!(filters, 2 * (6 + 16 + 120 + 84 + 10));
    // By default rank-1 tensors get no direction at all (they stay put).
    let weights_only = select(&m, &Selection::default()).unwrap();
    assert!(weights_only.iter().all(|(_, t)| t.dim() >= 2));
    assert_eq!(weights_only.len(), 5);
}

#[test]
fn the_same_seed_gives_the_same_directions() {
    let m = lenet5(2);
    let targets = select(&m, &Selection::default()).unwrap();
    let a = landscape::random(&targets, 11, 2);
    let b = landscape::random(&targets, 11, 2);
    let c = landscape::random(&targets, 12, 2);
    for k in 0..2 {
        for (x, y) in a[k].0.iter().zip(&b[k].0) {
            assert!(x.equal(y), "seed 11 gave different directions");
        }
    }
    assert!(!a[0].0[0].equal(&c[0].0[0]), "seeds 11 and 12 gave the same direction");
    assert!(
        !a[0].0[0].equal(&a[1].0[0]),
        "the two directions of a 2-D grid coincide"
    );
}

#[test]
fn grid_centre_is_the_clean_model_and_weights_come_back() {
    let m = lenet5(3);
    let data = fashion(200);
    let before: Vec<Tensor> = m.named_tensors().iter().map(|(_, t, _)| t.detach().copy()).collect();
    let clean = evaluate(&m, &data, 64, Device::Cpu).unwrap();
    let targets = select(&m, &Selection::default()).unwrap();
    for dims in [1, 2] {
        let grid = GridSpec::new(dims, "-1:1", 5).unwrap();
        let dirs = landscape::random(&targets, 0, dims);
        let mut ticks = 0;
        let points = landscape::compute(&m, &targets, &dirs, &grid, &data, 64, Device::Cpu, || ticks += 1).unwrap();
        assert_eq!((points.len(), ticks), (grid.len(), grid.len()));
        let centre = points[points.len() / 2];
        assert_eq!((centre.x, centre.y.unwrap_or(0.0)), (0.0, 0.0));
        assert_eq!(centre.loss, clean.loss, "{dims}-D centre loss");
        assert_eq!(centre.accuracy, clean.accuracy);
        // A corner, a full filter-norm step away on each axis, is a different model.
        assert!(points[0].loss != clean.loss && points[0].loss.is_finite());
        let csv = to_csv(&points);
        let header = if dims == 1 {
            "x,loss,accuracy"
        } else {
            "x,y,loss,accuracy"
        };
        assert_eq!(csv.lines().next(), Some(header));
        assert_eq!(csv.lines().count(), grid.len() + 1);
    }
    for ((n, _, _), (b, a)) in m.named_tensors().iter().zip(before.iter().zip(m.named_tensors())) {
        assert!(b.equal(&a.1), "{n} was not restored");
    }
}

#[test]
fn a_layer_restricted_landscape_moves_only_that_layer() {
    let m = lenet5(4);
    let sel = |layer: &str, include_bias_bn| Selection {
        include_bias_bn,
        layer: Some(layer.into()),
    };
    let names = |s: Selection| select(&m, &s).unwrap().into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(names(sel("conv2", false)), ["conv2.weight"]);
    assert_eq!(names(sel("fc1", true)), ["fc1.weight", "fc1.bias"]);
    let data = fashion(64);
    let targets = select(&m, &sel("fc3", false)).unwrap();
    let before: Vec<(String, Tensor)> = m
        .named_tensors()
        .into_iter()
        .map(|(n, t, _)| (n, t.detach().copy()))
        .collect();
    let grid = GridSpec::new(1, "-1:1", 3).unwrap();
    let dirs = landscape::random(&targets, 0, 1);
    // Watch the weights while the grid is evaluated through the progress hook.
    let mut moved = Vec::new();
    landscape::compute(&m, &targets, &dirs, &grid, &data, 64, Device::Cpu, || {
        for ((n, old), (_, now, _)) in before.iter().zip(m.named_tensors()) {
            if !old.equal(&now) && !moved.contains(n) {
                moved.push(n.clone());
            }
        }
    })
    .unwrap();
    assert_eq!(moved, ["fc3.weight"]);
}

#[test]
fn bad_grids_are_one_line_errors_naming_the_value() {
    for (dims, range, steps, needle) in [
        (3, "-1:1", 5, "--dims 3"),
        (1, "1:-1", 5, "1:-1"),
        (1, "abc", 5, "abc"),
        (1, "-1:inf", 5, "-1:inf"),
        (2, "-1:1", 1, "--steps 1"),
    ] {
        let e = GridSpec::new(dims, range, steps).unwrap_err().to_string();
        assert!(e.contains(needle) && !e.contains('\n'), "{e}");
    }
}

/// TorchScript models are opaque, but their named parameters are enough.
#[test]
fn torchscript_models_quantize_prune_and_give_landscapes() {
    let dir = tempfile::tempdir().unwrap();
    common::run_python("torchscript_export.py", &[dir.path()]);
    let opts = LoadOptions {
        hint: Some(ModelInfo {
            arch: "torchscript".into(),
            num_classes: 10,
            in_channels: 3,
            input_size: 16,
            normalize: None,
            dataset: None,
        }),
        ..Default::default()
    };
    let m = load(&dir.path().join("scripted.pt"), &opts).unwrap();
    assert!(matches!(m, Model::Script(_)));
    let data = Dataset {
        name: "synthetic".into(),
        images: (0..48 * 768)
            .map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 9) as u8)
            .collect(),
        channels: 3,
        height: 16,
        width: 16,
        labels: (0..48).map(|i| i % 10).collect(),
        num_classes: 10,
        class_names: (0..10).map(|i| i.to_string()).collect(),
        source: "synthetic".into(),
    };
    let targets = select(&m, &Selection::default()).unwrap();
    let names: Vec<&str> = targets.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["conv1.weight", "conv2.weight", "fc.weight"]);
    let conv2 = Selection {
        include_bias_bn: true,
        layer: Some("conv2".into()),
    };
    let in_conv2: Vec<String> = select(&m, &conv2).unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(in_conv2, ["conv2.weight", "conv2.bias"]);

    let clean = evaluate(&m, &data, 16, Device::Cpu).unwrap();
    let grid = GridSpec::new(2, "-0.5:0.5", 3).unwrap();
    let dirs = landscape::random(&targets, 1, 2);
    let points = landscape::compute(&m, &targets, &dirs, &grid, &data, 16, Device::Cpu, || {}).unwrap();
    assert_eq!(points[4].loss, clean.loss);
    assert_ne!(points[0].loss, clean.loss);
    assert_eq!(
        evaluate(&m, &data, 16, Device::Cpu).unwrap(),
        clean,
        "weights not restored"
    );

    let p = prune_in_place(&targets, 0.5, Scope::Global).unwrap();
    let n: i64 = targets.iter().map(|(_, t)| t.numel() as i64).sum();
    assert_eq!(p.zeros, (0.5 * n as f64).round() as i64);
    quantize_in_place(&targets, 3, Granularity::PerTensor).unwrap();
    let fc: Vec<f32> = Vec::try_from(targets[2].1.detach().flatten(0, -1)).unwrap();
    let mut levels: Vec<u32> = fc.iter().map(|v| (v + 0.0).to_bits()).collect();
    levels.sort_unstable();
    levels.dedup();
    assert!(levels.len() <= 7, "3-bit fc.weight has {} levels", levels.len());
    // The forward pass sees the compressed weights.
    assert_ne!(evaluate(&m, &data, 16, Device::Cpu).unwrap().loss, clean.loss);
}
