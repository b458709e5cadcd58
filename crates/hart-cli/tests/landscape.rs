//! `hart landscape` end to end: CSV grid whose centre is the model's clean
//! loss as `hart eval` reports it, plots, layer restriction, one-line errors.

use std::path::Path;
use std::process::Output;

mod common;
use common::hart;

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "hart failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn is_image(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.len() > 10_000 && (b.starts_with(b"\x89PNG") || b.starts_with(b"<svg")))
}

fn csv(path: &Path) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect()
}

#[test]
fn landscape_grids_are_centred_on_the_clean_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("lenet5.safetensors");
    let m = model.to_str().unwrap();
    ok(hart(&[
        "train",
        "--arch",
        "lenet5",
        "--limit",
        "500",
        "--epochs",
        "1",
        "--eval-limit",
        "0",
        "--out",
        m,
    ]));
    let eval: serde_json::Value =
        serde_json::from_str(&ok(hart(&["eval", "--model", m, "--limit", "100", "--json"]))).unwrap();
    let clean = eval["loss"].as_f64().unwrap();

    let out = dir.path().join("two");
    let o = out.to_str().unwrap();
    ok(hart(&[
        "landscape",
        "--model",
        m,
        "--limit",
        "100",
        "--dims",
        "2",
        "--steps",
        "3",
        "--out",
        o,
    ]));
    let grid = csv(&out.join("lenet5.csv"));
    assert_eq!(grid.len(), 9);
    assert_eq!(&grid[4][..2], &[0.0, 0.0]);
    assert_eq!(grid[4][2], clean, "grid centre loss vs hart eval");
    assert!(is_image(&out.join("lenet5-contour.png")) && is_image(&out.join("lenet5-surface.png")));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("landscape.json")).unwrap()).unwrap();
    assert_eq!(summary["models"][0]["clean_loss"].as_f64(), Some(clean));

    // 1-D, one layer, SVG, two models (the same file twice gets distinct labels).
    let out = dir.path().join("one");
    let o = out.to_str().unwrap();
    let args = [
        "landscape",
        "--model",
        m,
        "--model",
        m,
        "--limit",
        "100",
        "--steps",
        "5",
        "--range=-0.5:0.5",
        "--layer",
        "fc3",
        "--format",
        "svg",
        "--out",
        o,
    ];
    ok(hart(&args));
    let a = csv(&out.join("lenet5#1.csv"));
    let b = csv(&out.join("lenet5#2.csv"));
    assert_eq!(a, b, "same model, same seed, same line");
    assert_eq!(a.len(), 5);
    assert_eq!(a[2][1], clean);
    assert!(is_image(&out.join("landscape-1d.svg")));
}

#[test]
fn bad_landscape_options_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.safetensors");
    let m = m.to_str().unwrap();
    ok(hart(&[
        "train",
        "--arch",
        "mlp",
        "--limit",
        "100",
        "--epochs",
        "1",
        "--eval-limit",
        "0",
        "--out",
        m,
    ]));
    for (args, needle) in [
        (vec!["--range", "1:-1"], "1:-1"),
        (vec!["--dims", "3"], "--dims 3"),
        (vec!["--steps", "1"], "--steps 1"),
        (vec!["--layer", "conv1"], "fc1"),
        (vec!["--device", "tpu"], "tpu"),
    ] {
        let o = hart(
            &[
                &["landscape", "--model", m, "--limit", "10", "--out", "/nonexistent/x"][..],
                &args,
            ]
            .concat(),
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && !err.contains("panicked"), "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(needle),
            "{args:?}: {err}"
        );
    }
}
