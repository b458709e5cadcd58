//! `hart campaign` end to end: outputs and JSON, resume after deleting
//! parts, shards assembled into the unsharded table, and one-line errors.

use std::path::{Path, PathBuf};

mod common;
use common::{assert_one_line_error, hart, random_model, stderr, stdout};

fn model(dir: &Path) -> PathBuf {
    random_model(dir, "lenet5")
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
    assert!(rows.starts_with("level,trial,faults,changed,detected,correct,total,rad"));

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

/// Every trial with changed bits, replayed from `--write-faults` by `hart
/// sweep --faults` in the same storage, counts what the campaign counted.
#[test]
fn written_trials_replay_through_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model(tmp.path());
    let m = m.to_str().unwrap();
    for (fault, storage, levels) in [("stuck-at-1", "fp32", "1e-5,1e-4"), ("bitflip", "int8", "1e-4,1e-3")] {
        let dir = tmp.path().join(format!("{fault}-{storage}"));
        let list = tmp.path().join(format!("{fault}-{storage}.csv"));
        let (d, l) = (dir.to_str().unwrap(), list.to_str().unwrap());
        run_ok(&[
            "campaign",
            "--model",
            m,
            "--limit",
            "100",
            "--fault",
            fault,
            "--levels",
            levels,
            "--trials",
            "6",
            "--storage",
            storage,
            "--format",
            "csv",
            "--out",
            d,
            "--write-faults",
            l,
        ]);
        let replay = tmp.path().join(format!("replay-{fault}-{storage}"));
        run_ok(&[
            "sweep",
            "--model",
            m,
            "--limit",
            "100",
            "--faults",
            l,
            "--storage",
            storage,
            "--out",
            replay.to_str().unwrap(),
        ]);
        let groups = std::fs::read_to_string(replay.join("groups.csv")).unwrap();
        let mut header = groups.lines().next().unwrap().split(',');
        let (g, c) = (
            header.clone().position(|h| h == "group").unwrap(),
            header.position(|h| h == "correct").unwrap(),
        );
        let replayed: std::collections::HashMap<String, i64> = groups
            .lines()
            .skip(1)
            .map(|line| {
                let f: Vec<&str> = line.split(',').collect();
                (f[g].to_string(), f[c].parse().unwrap())
            })
            .collect();
        let mut compared = 0;
        for line in table(&dir).lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let (level, trial, changed, correct): (f64, u64, u64, i64) = (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[3].parse().unwrap(),
                f[5].parse().unwrap(),
            );
            let group = hart::campaign::replay::group(level, trial);
            match replayed.get(&group) {
                Some(&r) => {
                    assert_eq!(r, correct, "{fault} {storage} group {group}");
                    compared += 1;
                }
                None => assert_eq!(
                    changed, 0,
                    "{fault} {storage}: trial {group} missing from the fault list"
                ),
            }
        }
        assert!(
            compared >= 6,
            "{fault} {storage}: only {compared} trials had faults to replay"
        );
    }
}
