//! `hart campaign` end to end: outputs and JSON, resume after deleting
//! parts, shards assembled into the unsharded table, and one-line errors.

use std::path::{Path, PathBuf};

use hart::model::{zoo, Model, ModelInfo, Normalization};

mod common;
use common::{assert_one_line_error, hart, stderr, stdout};

fn model(dir: &Path) -> PathBuf {
    tch::manual_seed(5);
    let info = ModelInfo {
        arch: "lenet5".into(),
        num_classes: 10,
        in_channels: 1,
        input_size: 28,
        normalize: Normalization::for_dataset("fashion-mnist"),
        dataset: Some("fashion-mnist".into()),
    };
    let path = dir.join("lenet5.safetensors");
    Model::Graph(zoo::build(&info).unwrap()).save(&path).unwrap();
    path
}

fn args<'a>(model: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "campaign",
        "--model",
        model,
        "--limit",
        "100",
        "--fault",
        "bitflip",
        "--levels",
        "0,1e-5,1e-3",
        "--trials",
        "12",
        "--format",
        "csv",
        "--out",
        out,
    ];
    v.extend_from_slice(extra);
    v
}

fn run_ok(a: &[&str]) -> String {
    let o = hart(a);
    assert!(o.status.success(), "hart failed: {}", stderr(&o));
    stdout(&o)
}

fn table(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("trials.csv")).unwrap()
}

#[test]
fn outputs_json_resume_and_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model(tmp.path());
    let m = m.to_str().unwrap();
    let whole = tmp.path().join("whole");
    let w = whole.to_str().unwrap();
    let json: serde_json::Value = serde_json::from_str(&run_ok(&args(m, w, &["--json"]))).unwrap();
    let levels = json.as_array().unwrap();
    assert_eq!(levels.len(), 3);
    for key in [
        "level",
        "trials",
        "mean_accuracy",
        "sd_accuracy",
        "p5_accuracy",
        "ci95",
        "share_erratic",
        "mean_faults",
        "expected_faults",
    ] {
        assert!(levels[1].get(key).is_some(), "missing {key}");
    }
    assert_eq!(levels[0]["mean_faults"], 0.0);
    assert!(whole.join("summary.json").exists() && whole.join("accuracy.png").exists());
    let rows = table(&whole);
    assert_eq!(rows.lines().count(), 1 + 36);
    assert!(rows.starts_with("level,trial,faults,changed,correct,total,rad"));

    // Resume: lost parts are recomputed to the same rows.
    let parts: Vec<_> = std::fs::read_dir(whole.join("parts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    std::fs::remove_file(&parts[1]).unwrap();
    std::fs::remove_file(whole.join("trials.csv")).unwrap();
    run_ok(&args(m, w, &[]));
    assert_eq!(table(&whole), rows);

    // Shards into one directory, then the same command assembles them.
    let sharded = tmp.path().join("sharded");
    let s = sharded.to_str().unwrap();
    for shard in ["0/2", "1/2"] {
        let out = run_ok(&args(m, s, &["--shard", shard]));
        assert!(out.contains("without --shard"), "{out}");
    }
    assert!(!sharded.join("trials.csv").exists());
    run_ok(&args(m, s, &[]));
    assert_eq!(table(&sharded), rows);

    // A different configuration in the same directory is refused.
    let o = hart(&args(m, w, &["--seed", "9"]));
    assert_one_line_error(&o, "different configuration");

    let sbatch = tmp.path().join("c.sbatch");
    run_ok(&args(
        m,
        s,
        &["--emit-sbatch", sbatch.to_str().unwrap(), "--shards", "3"],
    ));
    let text = std::fs::read_to_string(&sbatch).unwrap();
    assert!(text.contains("--array=0-2") && text.contains("campaign") && text.contains("--shard"));
}

#[test]
fn bad_inputs_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model(tmp.path());
    let m = m.to_str().unwrap();
    let out = tmp.path().join("o");
    let o = out.to_str().unwrap();
    let base = |fault: &'static str, levels: &'static str| {
        vec![
            "campaign", "--model", m, "--limit", "20", "--fault", fault, "--levels", levels, "--out", o,
        ]
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (base("bitflip", "1e-3,x"), "not a number"),
        (base("bitflip", "1.5"), "bit-error rate"),
        (base("gaussian", "-0.1"), "relative σ"),
        (base("bitflip", "1e-3,1e-3"), "listed twice"),
        ([base("bitflip", "1e-3"), vec!["--trials", "0"]].concat(), "--trials"),
        (
            [base("bitflip", "1e-3"), vec!["--confidence", "1"]].concat(),
            "--confidence",
        ),
        (
            [base("bitflip", "1e-3"), vec!["--storage", "int3"]].concat(),
            "--storage",
        ),
        (
            [base("bitflip", "1e-3"), vec!["--per-channel"]].concat(),
            "--per-channel",
        ),
        (
            [base("bitflip", "1e-3"), vec!["--params", "nothing"]].concat(),
            "--params",
        ),
        ([base("bitflip", "1e-3"), vec!["--shard", "2/2"]].concat(), "--shard"),
        (
            [
                base("gaussian", "0.1"),
                vec!["--write-faults", "/tmp/never-written.csv"],
            ]
            .concat(),
            "Gaussian",
        ),
    ];
    for (a, needle) in cases {
        assert_one_line_error(&hart(&a), needle);
    }
    let o = hart(&base("bitrot", "1e-3"));
    assert!(!o.status.success() && stderr(&o).contains("unknown fault"));
}
