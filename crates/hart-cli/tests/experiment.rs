//! `hart experiment` end to end on a tiny configuration: every report
//! section present, the cache observable on rerun, config errors naming keys.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{stderr, stdout};

const TINY: &str = r#"
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

fn experiment(config: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hart"))
        .args(["experiment", config.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .expect("hart runs")
}

#[test]
fn tiny_experiment_reports_every_section_and_caches_stages() {
    let dir = tempfile::tempdir().unwrap();
    let (config, out) = (dir.path().join("tiny.toml"), dir.path().join("out"));
    std::fs::write(&config, TINY).unwrap();

    let first = experiment(&config, &out);
    assert!(first.status.success(), "experiment failed: {}", stderr(&first));
    // 2 recipes × 2 seeds × (train, sweep, hessian, quantize, prune, landscape).
    assert!(
        stdout(&first).contains("24 stages: 24 computed, 0 from the cache"),
        "{}",
        stdout(&first)
    );

    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for section in [
        "not better",
        "Clean accuracy and training time",
        "Erratic bits and parameters",
        "RAD histograms",
        "Erratic bits per bit position and per layer",
        "Hessian trace and top eigenvalue",
        "Robustness to quantization and pruning",
        "Loss landscapes",
    ] {
        assert!(html.contains(section), "report lacks section {section:?}");
    }
    assert!(
        html.matches("data:image/png;base64,").count() >= 5,
        "plots are embedded"
    );
    assert!(
        !html.contains("src=\"http"),
        "report must not load anything from the network"
    );

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let groups = summary["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["test_accuracy"]["n"], 2, "means are over both seeds");
    assert!(
        groups[1]["erratic_bits_change"].is_object(),
        "HAT is compared with the baseline"
    );
    assert!(out.join("summary.md").exists());

    // Nothing changed: everything comes from the cache.
    let again = experiment(&config, &out);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("24 stages: 0 computed, 24 from the cache"),
        "{}",
        stdout(&again)
    );

    // One more quantization level: only the four quantize stages rerun.
    std::fs::write(
        &config,
        TINY.replace("quantize_bits = [8, 4]", "quantize_bits = [8, 4, 2]"),
    )
    .unwrap();
    let changed = experiment(&config, &out);
    assert!(changed.status.success(), "{}", stderr(&changed));
    assert!(
        stdout(&changed).contains("24 stages: 4 computed, 20 from the cache"),
        "{}",
        stdout(&changed)
    );
}

#[test]
fn invalid_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    for (bad, key) in [
        (
            TINY.replace("threshold", "x")
                .replace("limit = 20\n", "limit = 20\nthreshold = 3.0\n"),
            "sweep.threshold",
        ),
        (TINY.replace("train_limit", "train_limt"), "train_limt"),
        (TINY.replace("[\"mlp\"]", "[\"vgg99\"]"), "archs"),
    ] {
        std::fs::write(&config, bad).unwrap();
        let o = experiment(&config, &dir.path().join("out"));
        let err = stderr(&o);
        assert!(!o.status.success());
        assert!(err.starts_with("error: ") && err.trim().lines().count() == 1, "{err}");
        assert!(err.contains(key), "{err} should name {key}");
    }
}

/// `hessian_lambda = "tuned"`: the [tune] search runs once (a cached stage),
/// HAT trains with the λ it chose, and the report opens with the claims table.
#[test]
fn tuned_lambda_is_searched_once_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let (config, out) = (dir.path().join("tuned.toml"), dir.path().join("out"));
    let tuned = TINY
        .replace("hessian_lambda = 0.001\nhessian_every = 2", "hessian_lambda = \"tuned\"")
        .replace(
            "[sweep]",
            "[tune]\ngrid = [0.01, 1.0]\nepochs = 1\nlimit = 400\nval = 100\nsweep_params = 4\nsweep_images = 40\n\n[sweep]",
        )
        .replace("seeds = [0, 1]", "seeds = [0]");
    std::fs::write(&config, &tuned).unwrap();
    let first = experiment(&config, &out);
    assert!(first.status.success(), "experiment failed: {}", stderr(&first));
    let tune_dirs: Vec<_> = std::fs::read_dir(out.join("cache"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("tune-"))
        .collect();
    assert_eq!(tune_dirs.len(), 1, "one search for one arch × recipe");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let lambda = summary["groups"][1]["lambda"]
        .as_f64()
        .expect("HAT's trained λ is reported");
    assert!([0.01, 1.0].contains(&lambda), "{lambda}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("The HAT paper&#39;s claims, tested") || html.contains("The HAT paper's claims, tested"));
    // One seed: intervals print as n/a, never as NaN.
    assert!(html.contains("n/a") && !html.contains("NaN"), "one-seed intervals");
    let again = experiment(&config, &out);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stdout(&again).contains(" 0 computed"), "{}", stdout(&again));
}
