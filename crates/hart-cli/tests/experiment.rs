//! `hart experiment` end to end on a tiny configuration: every report
//! section present, the cache observable on rerun, config errors naming keys.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{stderr, stdout, TINY_EXPERIMENT as TINY};

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
    // Without [defense] the verdict table still names the bits the sweep flipped.
    assert_eq!(
        summary["verdict_table"][1]["fault"],
        "single bit flips (bits 23,24,25,26,27,28,29,30,31): erratic bits"
    );

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
        (format!("{TINY}[attack]\nmethod = \"smart\"\n"), "attack.method"),
        (format!("{TINY}[attack]\nmax_flip = 3\n"), "max_flip"),
        (format!("{TINY}[defense]\nsweep = [\"radar:1\"]\n"), "defense.sweep"),
        (
            format!("{TINY}[campaign]\nfault = \"cosmic\"\nlevels = [1e-3]\n"),
            "campaign.fault",
        ),
        (
            format!("{TINY}[campaign]\nfault = \"bitflip\"\nlevels = [1e-3, 2.0]\n"),
            "campaign.levels",
        ),
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

/// TINY without the analyses, with every fault section: one attack trial,
/// the sweep under two defences, a short int8 bit-flip campaign.
fn with_faults() -> String {
    let head = &TINY[..TINY.find("[analysis]").unwrap()];
    format!(
        r#"{head}[analysis]
hessian = false
quantize_bits = []
prune_sparsity = []

[attack]
method = "bfa"
storage = "int8"
trials = 1
max_flips = 6
limit = 16
eval_limit = 40
top_k = 3
target_accuracy = 0.3

[defense]
sweep = ["range", "radar:4"]

[campaign]
fault = "bitflip"
levels = [1e-4, 1e-3]
storage = "int8"
trials = 4
limit = 40
"#
    )
}

fn json_file(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The cached stage directories whose name starts with `stage-`.
fn stage_dirs(out: &Path, stage: &str) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(out.join("cache"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{stage}-")))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

/// The cached model of the plain recipe's seed 0.
fn plain_seed0_model(out: &Path) -> std::path::PathBuf {
    stage_dirs(out, "train")
        .into_iter()
        .find(|d| {
            let r = json_file(&d.join("result.json"));
            r["recipe"] == "plain" && r["seed"] == 0
        })
        .unwrap()
        .join("model.safetensors")
}

/// The experiment's attack, defended sweeps and campaign give the numbers
/// `hart attack`, `hart sweep --defense` and `hart campaign` give on the same
/// trained model, the report shows them, and a lost stage recomputes to the same tables.
#[test]
fn fault_sections_match_the_commands_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (config, out) = (dir.path().join("faults.toml"), dir.path().join("out"));
    std::fs::write(&config, with_faults()).unwrap();
    let first = experiment(&config, &out);
    assert!(first.status.success(), "experiment failed: {}", stderr(&first));
    // 2 recipes × 2 seeds × (train, sweep, attack, 2 defended sweeps, campaign).
    let console = stdout(&first);
    assert!(
        console.contains("24 stages: 24 computed, 0 from the cache"),
        "{console}"
    );
    assert!(
        console.contains("flips to the target") && console.contains("radar:4"),
        "{console}"
    );

    let summary = json_file(&out.join("summary.json"));
    let plain = &summary["groups"][0];
    assert_eq!(plain["seeds"][0], 0);
    let hat = &summary["groups"][1];
    assert!(hat["attack"][0]["change"].is_object(), "flips paired with plain");
    assert_eq!(hat["defended"].as_array().unwrap().len(), 2);
    assert!(
        hat["campaign"][0]["levels"][1]["diff"].is_object(),
        "levels paired with plain"
    );

    // The plain, seed-0 model, run through the commands directly.
    let model = plain_seed0_model(&out);
    let m = model.to_str().unwrap();
    let (a_out, c_out, s_out) = (dir.path().join("a"), dir.path().join("c"), dir.path().join("s"));
    let attack = common::hart(&[
        "attack",
        "--model",
        m,
        "--dataset",
        "fashion-mnist",
        "--limit",
        "16",
        "--eval-limit",
        "40",
        "--storage",
        "int8",
        "--max-flips",
        "6",
        "--top-k",
        "3",
        "--trials",
        "1",
        "--seed",
        "0",
        "--target-accuracy",
        "0.3",
        "--out",
        a_out.to_str().unwrap(),
        "--json",
    ]);
    assert!(attack.status.success(), "{}", stderr(&attack));
    let direct: serde_json::Value = serde_json::from_str(&stdout(&attack)).unwrap();
    assert_eq!(plain["attack"][0]["per_seed"][0], direct["mean_flips"]);
    let trials = json_file(&a_out.join("summary.json"))["trials"].clone();
    assert!(
        stage_dirs(&out, "attack")
            .iter()
            .any(|d| json_file(&d.join("attack/summary.json"))["trials"] == trials),
        "an attack stage has the direct attack's flips and accuracy curve"
    );

    let campaign = common::hart(&[
        "campaign",
        "--model",
        m,
        "--dataset",
        "fashion-mnist",
        "--limit",
        "40",
        "--fault",
        "bitflip",
        "--levels",
        "1e-4,1e-3",
        "--storage",
        "int8",
        "--trials",
        "4",
        "--seed",
        "0",
        "--out",
        c_out.to_str().unwrap(),
        "--json",
    ]);
    assert!(campaign.status.success(), "{}", stderr(&campaign));
    let levels: serde_json::Value = serde_json::from_str(&stdout(&campaign)).unwrap();
    for i in 0..2 {
        assert_eq!(
            plain["campaign"][0]["levels"][i]["per_seed"][0], levels[i]["mean_accuracy"],
            "campaign level {i}"
        );
    }

    let sweep = common::hart(&[
        "sweep",
        "--model",
        m,
        "--dataset",
        "fashion-mnist",
        "--limit",
        "20",
        "--bits",
        "23-31",
        "--sample-params",
        "8",
        "--seed",
        "0",
        "--defense",
        "radar:4",
        "--exact-rad",
        "--out",
        s_out.to_str().unwrap(),
    ]);
    assert!(sweep.status.success(), "{}", stderr(&sweep));
    let direct = json_file(&s_out.join("summary.json"));
    assert_eq!(
        plain["defended"][1]["per_seed"][0].as_f64(),
        direct["erratic_bits"].as_f64()
    );
    // The whole summary: counts, histogram and the model, data and configuration hashes.
    assert!(
        stage_dirs(&out, "sweep")
            .iter()
            .any(|d| json_file(&d.join("sweep/summary.json")) == direct),
        "no sweep stage has the direct sweep's summary {direct}"
    );

    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for text in [
        "Flips to crush (bit-flip attack)",
        "Erratic bits under each defence",
        "Accuracy under random faults",
        "BFA needs 2–3× more flips to crush",
        "with the radar:4 defence: fewer erratic bits",
    ] {
        assert!(html.contains(text), "report lacks {text:?}");
    }
    assert!(out.join("plots/mlp-campaign.png").exists());

    // A stage lost to a kill is recomputed, to the same tables.
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    std::fs::remove_dir_all(&stage_dirs(&out, "attack")[0]).unwrap();
    let again = experiment(&config, &out);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("24 stages: 1 computed, 23 from the cache"),
        "{}",
        stdout(&again)
    );
    assert_eq!(std::fs::read_to_string(out.join("summary.md")).unwrap(), md);
}

/// The hardening comparison in small: plain, noise and clipping recipes; the
/// exponent-MSB sweep, the sweep under Ranger, an int8 bit-error campaign on
/// the weights, a Gaussian one and BFA. The report and the console open with
/// the verdict table, summary.json holds its cells, and the Ranger stage gives
/// what `hart sweep --defense ranger` gives on the same model.
#[test]
fn hardening_comparison_reports_the_verdict_table() {
    let head = &TINY[..TINY.find("[[recipe]]").unwrap()];
    let config_text = format!(
        r#"{head}[[recipe]]
name = "plain"

[[recipe]]
name = "noise"
regularizer = "noise"
noise_std = 0.1

[[recipe]]
name = "clip"
clip_weights = 0.05

[sweep]
bits = "exponent-msb"
limit = 20
sample_params = 8

[analysis]
hessian = false
quantize_bits = []
prune_sparsity = []

[attack]
trials = 1
max_flips = 4
limit = 16
eval_limit = 40
top_k = 3
target_accuracy = 0.3

[defense]
sweep = ["ranger"]
profile_limit = 50

[[campaign]]
fault = "bitflip"
storage = "int8"
params = ".*weight"
levels = [0.01]
trials = 3
limit = 40

[[campaign]]
fault = "gaussian"
levels = [0.1]
trials = 3
limit = 40

[verdict]
accuracy_tolerance = 0.5
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let (config, out) = (dir.path().join("hardening.toml"), dir.path().join("out"));
    std::fs::write(&config, config_text).unwrap();
    let run = experiment(&config, &out);
    assert!(run.status.success(), "experiment failed: {}", stderr(&run));
    // 3 recipes × 2 seeds × (train, sweep, attack, ranger sweep, 2 campaigns).
    let console = stdout(&run);
    assert!(
        console.contains("36 stages: 36 computed, 0 from the cache"),
        "{console}"
    );
    assert!(console.contains("verdict per fault model"), "{console}");

    let rows = [
        "clean test accuracy (matched within 50.0 points)",
        "single bit flips (exponent MSB): erratic bits",
        "BFA attack on int8 storage: flips to crush",
        "single bit flips (exponent MSB) under ranger: erratic bits",
        "bit errors in int8 storage (tensors matching .*weight), rate 0.01: accuracy",
        "Gaussian weight noise, σ = 0.1·max|W|: accuracy",
    ];
    let summary = json_file(&out.join("summary.json"));
    let table = summary["verdict_table"].as_array().unwrap();
    let faults: Vec<&str> = table.iter().map(|l| l["fault"].as_str().unwrap()).collect();
    assert_eq!(faults, rows);
    for line in table {
        let cells = line["cells"].as_array().unwrap();
        let recipes: Vec<&str> = cells.iter().map(|c| c["recipe"].as_str().unwrap()).collect();
        assert_eq!(recipes, ["plain", "noise", "clip"]);
        assert!(cells[0]["verdict"].is_null(), "the baseline gets no verdict");
        for c in &cells[1..] {
            let text = c["text"].as_str().unwrap();
            if line["fault"].as_str().unwrap().starts_with("clean") {
                assert!(text.ends_with(": matched"), "{text}");
                continue;
            }
            // A relative change needs a baseline above 0 (Ranger may leave none erratic).
            if c["change"].is_null() {
                assert_eq!(text, "—");
                continue;
            }
            let word = c["verdict"].as_str().unwrap();
            assert!(["helps", "hurts", "inconclusive"].contains(&word), "{word}");
            // An attack whose trials hit their budget adds "(N of M trials cut off …)".
            let (text, note) = text.split_once(" (").unwrap_or((text, ""));
            assert!(text.ends_with(&format!(": {word}")), "{text}");
            assert!(note.is_empty() || note.contains("cut off at the budget"), "{note}");
        }
    }
    // Accuracies pair every seed: the campaign cells are the campaign section's paired differences.
    for row in [4, 5] {
        assert_eq!(table[row]["cells"][1]["change"]["n"], 2);
    }
    let noise = &summary["groups"][1];
    assert_eq!(noise["campaign"].as_array().unwrap().len(), 2);
    assert_eq!(
        table[5]["cells"][1]["change"],
        noise["campaign"][1]["levels"][0]["diff"]
    );

    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let verdict = html
        .find("What helps against which fault model")
        .expect("the verdict table");
    assert!(
        verdict < html.find("not better").unwrap(),
        "the report opens with the verdict table"
    );
    for row in &rows[1..] {
        assert!(html.contains(&row.replace('&', "&amp;")), "report lacks row {row:?}");
    }
    assert!(out.join("plots/mlp-campaign-2.png").exists());

    // The Ranger stage is `hart sweep --defense ranger` on the plain seed-0 model.
    let model = plain_seed0_model(&out);
    let s_out = dir.path().join("s");
    let sweep = common::hart(&[
        "sweep",
        "--model",
        model.to_str().unwrap(),
        "--dataset",
        "fashion-mnist",
        "--limit",
        "20",
        "--bits",
        "exponent-msb",
        "--sample-params",
        "8",
        "--seed",
        "0",
        "--defense",
        "ranger",
        "--profile-limit",
        "50",
        "--exact-rad",
        "--out",
        s_out.to_str().unwrap(),
    ]);
    assert!(sweep.status.success(), "{}", stderr(&sweep));
    let direct = json_file(&s_out.join("summary.json"));
    assert_eq!(
        summary["groups"][0]["defended"][0]["per_seed"][0].as_f64(),
        direct["erratic_bits"].as_f64()
    );
    assert!(
        stage_dirs(&out, "sweep")
            .iter()
            .any(|d| json_file(&d.join("sweep/summary.json")) == direct
                && json_file(&d.join("ranger.json")) == json_file(&s_out.join("ranger.json"))),
        "no ranger sweep stage has the direct sweep's summary and bounds"
    );
}
