//! `hart attack` end to end on an int8 LeNet-5 trained briefly on Fashion-MNIST:
//! BFA crushes it to chance within a few tens of flips over 5 trials while
//! the same number of random flips barely moves it, and `hart sweep
//! --faults flips.csv` replays every trial to exactly the attack's accuracy.

use std::path::Path;

mod common;
use common::{assert_one_line_error, hart, stderr, stdout};

fn ok(o: std::process::Output) -> std::process::Output {
    assert!(o.status.success(), "hart failed: {}", stderr(&o));
    o
}

fn train(dir: &Path) -> String {
    let model = dir.join("lenet5.safetensors").display().to_string();
    ok(hart(&[
        "train", "--arch", "lenet5", "--limit", "2000", "--epochs", "2", "--lr", "0.05", "--out", &model,
    ]));
    model
}

#[test]
fn bfa_crushes_int8_lenet5_random_does_not_and_flips_replay_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let model = train(dir.path());
    let out = dir.path().join("attack").display().to_string();
    let o = ok(hart(&[
        "attack",
        "--model",
        &model,
        "--limit",
        "64",
        "--eval-limit",
        "400",
        "--storage",
        "int8",
        "--trials",
        "5",
        "--max-flips",
        "40",
        "--top-k",
        "5",
        "--seed",
        "3",
        "--out",
        &out,
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let clean = v["clean_accuracy"].as_f64().unwrap();
    let target = v["target_accuracy"].as_f64().unwrap();
    assert!(clean > 0.5, "the trained LeNet-5 should be well above chance: {clean}");
    let trials = v["trials"].as_array().unwrap();
    let random = v["random_baseline"].as_array().unwrap();
    assert_eq!((trials.len(), random.len()), (5, 5));
    for (b, r) in trials.iter().zip(random) {
        let flips = b["flips"].as_u64().unwrap();
        assert!(
            b["reached"].as_bool().unwrap(),
            "BFA did not reach {target} in 40 flips: {b}"
        );
        assert!(b["final_accuracy"].as_f64().unwrap() <= target);
        assert_eq!(r["flips"].as_u64().unwrap(), flips, "random baseline uses BFA's budget");
        let drop = clean - r["final_accuracy"].as_f64().unwrap();
        assert!(drop <= 0.03, "{flips} random flips cost {:.1} points", 100.0 * drop);
    }
    // Every trial's flips applied together, through the sweep, on the same
    // evaluation slice: the attack's final accuracy exactly.
    let flips = Path::new(&out).join("flips.csv").display().to_string();
    let replay = dir.path().join("replay").display().to_string();
    ok(hart(&[
        "sweep",
        "--model",
        &model,
        "--limit",
        "400",
        "--storage",
        "int8",
        "--faults",
        &flips,
        "--out",
        &replay,
    ]));
    let rows = std::fs::read_to_string(Path::new(&replay).join("groups.csv")).unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(&out).join("summary.json")).unwrap()).unwrap();
    let mut want = std::collections::HashMap::new();
    for (key, method) in [("trials", "bfa"), ("random_baseline", "random")] {
        for t in summary[key].as_array().unwrap() {
            want.insert(
                format!("{method}-{}", t["trial"]),
                t["final_accuracy"].as_f64().unwrap(),
            );
        }
    }
    let mut seen = 0;
    for line in rows.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let acc: f64 = f[4].parse().unwrap();
        assert_eq!(Some(&acc), want.get(f[0]), "replay of {} differs", f[0]);
        seen += 1;
    }
    assert_eq!(seen, 10, "{rows}");
    assert!(Path::new(&out).join("accuracy.png").exists());
}

#[test]
fn bad_attack_arguments_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o").display().to_string();
    let model = dir.path().join("missing.safetensors").display().to_string();
    for (extra, needle) in [
        (vec!["--defense", "radar:1"], "radar"),
        (vec!["--storage", "int16"], "int16"),
        (vec!["--method", "greedy"], "greedy"),
    ] {
        let mut args = vec!["attack", "--model", model.as_str(), "--out", out.as_str()];
        args.extend(extra);
        // clap reports bad option values with its own hint line after the error.
        let o = hart(&args);
        let err = stderr(&o);
        assert!(!o.status.success() && !err.contains("panicked"), "{err}");
        let first = err.lines().next().unwrap_or("");
        assert!(first.starts_with("error: ") && first.contains(needle), "{err}");
    }
    let mut args = vec!["attack", "--model", model.as_str(), "--out", out.as_str()];
    args.extend(["--max-flips", "0"]);
    assert_one_line_error(&hart(&args), "missing.safetensors");
}
