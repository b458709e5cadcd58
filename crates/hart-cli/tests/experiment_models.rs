//! `hart experiment` on users' own models: `[[model]]` entries (an ONNX CNN
//! exported by PyTorch, fine-tuned and re-initialised, and a TorchScript
//! MLP) beside a zoo architecture, on a `.npz` data set; sharded, resumed
//! after a stage is deleted, retrained when the file changes; the trained
//! files checked by PyTorch (and the written ONNX graphs by onnx's reference
//! evaluator); every measurement section on a state dict of an imported
//! graph and a TorchScript module; bad entries refused before any stage runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

mod common;
use common::{assert_one_line_error, python, stderr, stdout};
use serde_json::Value;

/// Exported once for every test here (PyTorch's export takes seconds):
/// data.npz, wide.npz, cnn.onnx, cnn-v2.onnx, mlp.pt, and cnnw.safetensors
/// (HART's file of cnn.onnx trained one epoch, which names its graph
/// `cnn.onnx`, to be found beside it).
fn fixtures() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        python("experiment_models.py", &[Path::new("export"), dir.path()]);
        let o = Command::new(env!("CARGO_BIN_EXE_hart"))
            .current_dir(dir.path())
            .args(["train", "--model", "cnn.onnx", "--dataset", "data.npz", "--epochs", "1"])
            .args(["--out", "cnnw.safetensors"])
            .output()
            .unwrap();
        assert!(o.status.success(), "hart train: {}", stderr(&o));
        dir
    })
    .path()
}

/// A fresh directory holding the fixtures, where the experiment runs (its
/// relative paths are read from the working directory).
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "data.npz",
        "wide.npz",
        "cnn.onnx",
        "cnn-v2.onnx",
        "mlp.pt",
        "cnnw.safetensors",
    ] {
        std::fs::copy(fixtures().join(f), dir.path().join(f)).unwrap();
    }
    dir
}

const CONFIG: &str = r#"
name = "own models"
archs = ["mlp"]
seeds = [0, 1]

[data]
dataset = "data.npz"
test_limit = 100

[train]
epochs = 1
optimizer = "rmsprop"
lr = 0.0001
momentum = 0.0

[[model]]
name = "cnn"
path = "cnn.onnx"

[[model]]
name = "cnn-fresh"
path = "cnn.onnx"
start = "reinit"

[[model]]
name = "tiny-mlp"
path = "mlp.pt"

[[recipe]]
name = "plain"

[[recipe]]
name = "hat"
regularizer = "hessian"
hessian_method = "hutchinson"
hessian_lambda = 0.001

[sweep]
bits = "30-31"
limit = 20
sample_params = 8

[analysis]
hessian = false
quantize_bits = []
prune_sparsity = []

[[campaign]]
fault = "bitflip"
levels = [1e-3]
trials = 3
limit = 50
"#;

fn experiment(dir: &Path, config: &str, extra: &[&str]) -> Output {
    std::fs::write(dir.join("exp.toml"), config).unwrap();
    Command::new(env!("CARGO_BIN_EXE_hart"))
        .current_dir(dir)
        .args(["experiment", "exp.toml", "--out", "out"])
        .args(extra)
        .output()
        .expect("hart runs")
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "experiment failed: {}", stderr(o));
    stdout(o)
}

/// summary.json without its timing fields, which differ run to run.
fn summary(dir: &Path) -> Value {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(k, _)| !k.contains("second"))
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    strip(&serde_json::from_str(&std::fs::read_to_string(dir.join("out/summary.json")).unwrap()).unwrap())
}

/// The trained models' stage directories, with their result.json.
fn trainings(dir: &Path) -> Vec<(PathBuf, Value)> {
    let mut out: Vec<(PathBuf, Value)> = std::fs::read_dir(dir.join("out/cache"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("train-"))
        .map(|p| {
            let r = serde_json::from_str(&std::fs::read_to_string(p.join("result.json")).unwrap()).unwrap();
            (p, r)
        })
        .collect();
    out.sort_by_key(|(_, r)| (r["arch"].to_string(), r["recipe"].to_string(), r["seed"].as_u64()));
    out
}

/// Per (trained, source) pair: PyTorch's accuracy of the trained model on
/// the test split and its weights' relative distance from the source's (one
/// Python process for all: importing torch takes seconds). A written ONNX
/// file is also run as a graph by onnx's reference evaluator, which must
/// agree with PyTorch.
fn check(data: &Path, pairs: &[(PathBuf, PathBuf)]) -> Vec<(f64, f64)> {
    let mut args: Vec<&Path> = vec![Path::new("check"), data];
    for (t, s) in pairs {
        args.extend([t.as_path(), s.as_path()]);
    }
    let v: Vec<Value> = serde_json::from_str(&python("experiment_models.py", &args)).unwrap();
    v.iter()
        .zip(pairs)
        .map(|(r, (t, _))| {
            let accuracy = r["accuracy"].as_f64().unwrap();
            if let Some(g) = r.get("graph_accuracy") {
                assert_eq!(
                    g.as_f64(),
                    Some(accuracy),
                    "{}: the ONNX graph and PyTorch disagree",
                    t.display()
                );
            }
            (accuracy, r["distance"].as_f64().unwrap())
        })
        .collect()
}

/// Asserts that PyTorch's accuracy of each trained file, averaged over the
/// seeds, is the test accuracy summary.json reports for its group.
fn summary_accuracies_match(summary: &Value, rows: &[(&str, &str, f64)]) {
    let mut groups = 0;
    for g in summary["groups"].as_array().unwrap() {
        let (name, recipe) = (g["arch"].as_str().unwrap(), g["recipe"].as_str().unwrap());
        let ours: Vec<f64> = rows
            .iter()
            .filter(|r| r.0 == name && r.1 == recipe)
            .map(|r| r.2)
            .collect();
        if ours.is_empty() {
            continue;
        }
        groups += 1;
        let pytorch = ours.iter().sum::<f64>() / ours.len() as f64;
        let hart = g["test_accuracy"]["mean"].as_f64().unwrap();
        assert!(
            (pytorch - hart).abs() < 0.011,
            "{name}/{recipe}: PyTorch {pytorch}, summary.json {hart}"
        );
    }
    assert!(groups > 0);
}

/// Every name column of the report says "model" (there are `[[model]]` entries), as do the console's.
fn columns_say_model(dir: &Path, console: &str) {
    let report = std::fs::read_to_string(dir.join("out/report.html")).unwrap();
    assert!(report.contains("<th>model</th>") && !report.contains("<th>architecture</th>"));
    let md = std::fs::read_to_string(dir.join("out/summary.md")).unwrap();
    assert!(md.contains("| model | recipe |") && !md.contains("| architecture |"));
    assert!(console.lines().any(|l| l.starts_with("model ")), "{console}");
    assert!(!console.lines().any(|l| l.starts_with("architecture")), "{console}");
}

#[test]
fn own_models_train_measure_shard_and_resume() {
    let dir = workdir();
    let dir = dir.path();
    // Sharded, as on a cluster: two training shards, two measurement shards, the report.
    for phase in ["train", "measure"] {
        for shard in ["0/2", "1/2"] {
            ok(&experiment(dir, CONFIG, &["--phase", phase, "--shard", shard]));
        }
    }
    ok(&experiment(dir, CONFIG, &["--phase", "report"]));
    let sharded = summary(dir);
    // 4 models × 2 recipes × 2 seeds × (train, sweep, campaign): the shards did every stage.
    let whole = ok(&experiment(dir, CONFIG, &[]));
    assert!(whole.contains("48 stages: 0 computed, 48 from the cache"), "{whole}");
    assert_eq!(summary(dir), sharded);
    columns_say_model(dir, &whole);

    let names: Vec<&str> = sharded["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["arch"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "mlp",
            "mlp",
            "cnn",
            "cnn",
            "cnn-fresh",
            "cnn-fresh",
            "tiny-mlp",
            "tiny-mlp"
        ]
    );
    let report = std::fs::read_to_string(dir.join("out/report.html")).unwrap();
    for name in ["cnn-fresh", "tiny-mlp"] {
        assert!(report.contains(&format!("<td>{name}</td>")), "report lacks {name}");
    }

    // PyTorch loads every trained file from the cache (the ONNX written back,
    // the TorchScript module saved) and predicts as HART measured, per seed
    // and as summary.json's means; a fine-tune stays near the file's weights,
    // a re-initialisation does not.
    let trained = trainings(dir);
    assert_eq!(trained.len(), 16);
    let data = dir.join("data.npz");
    let mut pairs = vec![];
    let mut rows = vec![];
    for (stage, r) in &trained {
        let (name, seed) = (r["arch"].as_str().unwrap(), r["seed"].as_u64().unwrap());
        let (file, source) = match name {
            "mlp" => continue,
            "tiny-mlp" => (stage.join("model.pt"), dir.join("mlp.pt")),
            _ => (stage.join("model.onnx"), dir.join("cnn.onnx")),
        };
        pairs.push((file, source));
        let recipe = r["recipe"].as_str().unwrap();
        rows.push((name, seed, r["test_accuracy"].as_f64().unwrap(), recipe));
    }
    // Each seed draws its own initialisation, and each fine-tune its own data
    // order: one recipe's two seeds, against each other (sorted by recipe, then seed).
    let seeds = |entry: &str| {
        let of: Vec<_> = pairs.iter().zip(&rows).filter(|(_, r)| r.0 == entry).collect();
        assert_eq!((of.len(), of[0].1 .1, of[1].1 .1), (4, 0, 1));
        (of[0].0 .0.clone(), of[1].0 .0.clone())
    };
    let (fresh, tuned) = (seeds("cnn-fresh"), seeds("cnn"));
    pairs.extend([fresh, tuned]);
    let checked = check(&data, &pairs);
    let pytorch: Vec<(&str, &str, f64)> = rows.iter().zip(&checked).map(|(r, c)| (r.0, r.3, c.0)).collect();
    summary_accuracies_match(&sharded, &pytorch);
    for ((name, seed, hart, _), (accuracy, distance)) in rows.iter().zip(&checked) {
        assert!(
            (accuracy - hart).abs() < 0.011,
            "{name} seed {seed}: PyTorch {accuracy}, HART {hart}"
        );
        if *name == "cnn-fresh" {
            assert!(
                *distance > 0.3,
                "{name} seed {seed}: {distance} from the file's weights"
            );
        } else {
            assert!(
                *distance < 0.15,
                "{name} seed {seed}: {distance} from the file's weights"
            );
        }
    }
    let (fresh, tuned) = (checked[rows.len()].1, checked[rows.len() + 1].1);
    assert!(fresh > 0.3, "two seeds' initialisations: {fresh}");
    assert!(tuned > 1e-4, "two seeds' fine-tunes from the same weights: {tuned}");

    // One stage's output deleted: only it is recomputed, to the same summary.
    let campaign = std::fs::read_dir(dir.join("out/cache"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("campaign-"))
        .unwrap();
    std::fs::remove_dir_all(&campaign).unwrap();
    let resumed = ok(&experiment(dir, CONFIG, &[]));
    assert!(
        resumed.contains("48 stages: 1 computed, 47 from the cache"),
        "{resumed}"
    );
    assert_eq!(summary(dir), sharded);

    // A touched file keeps its stages (its bytes are the key, not its time) ...
    let onnx = dir.join("cnn.onnx");
    std::fs::File::options()
        .write(true)
        .open(&onnx)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    let touched = ok(&experiment(dir, CONFIG, &[]));
    assert!(
        touched.contains("48 stages: 0 computed, 48 from the cache"),
        "{touched}"
    );
    // ... changed bytes retrain both entries of the ONNX file and nothing else.
    std::fs::copy(dir.join("cnn-v2.onnx"), &onnx).unwrap();
    let changed = ok(&experiment(dir, CONFIG, &[]));
    assert!(
        changed.contains("48 stages: 24 computed, 24 from the cache"),
        "{changed}"
    );
}

#[test]
fn bad_model_entries_are_one_line_errors_before_any_stage() {
    let dir = workdir();
    let dir = dir.path();
    let one = |entry: &str| {
        CONFIG
            .replace("archs = [\"mlp\"]\n", "")
            .split("[[model]]")
            .next()
            .unwrap()
            .to_string()
            + entry
            + &CONFIG[CONFIG.find("[[recipe]]").unwrap()..]
    };
    std::fs::create_dir(dir.join("lone")).unwrap();
    std::fs::copy(dir.join("cnnw.safetensors"), dir.join("lone/cnnw.safetensors")).unwrap();
    let cnn = "[[model]]\nname = \"cnn\"\npath = \"cnn.onnx\"\n";
    let ts = "[[model]]\nname = \"ts\"\npath = \"mlp.pt\"\n";
    let cases: Vec<(String, &str)> = vec![
        (
            one("[[model]]\nname = \"cnn\"\npath = \"nope.onnx\"\n"),
            "model[0].path",
        ),
        (one("[[model]]\nname = \"cnn\"\npath = \"data.npz\"\n"), "model[0].path"),
        (one(&format!("{cnn}start = \"fresh\"\n")), "model[0].start"),
        (one(&format!("{cnn}strat = \"reinit\"\n")), "strat"),
        (one(&format!("{cnn}arch = \"lenet5\"\n")), "model[0].arch"),
        (
            one("[[model]]\nname = \"w\"\npath = \"cnnw.safetensors\"\narch = \"nope\"\n"),
            "model[0].arch",
        ),
        (
            one("[[model]]\nname = \"w\"\npath = \"cnnw.safetensors\"\narch = \"nope.onnx\"\n"),
            "model[0].arch",
        ),
        // A state dict of an imported graph, moved away from the graph it names.
        (
            one("[[model]]\nname = \"w\"\npath = \"lone/cnnw.safetensors\"\n"),
            "model[0]` (w)",
        ),
        (one(&format!("{cnn}{cnn}")), "model[1].name"),
        (
            one(&format!("{cnn}[[model]]\nname = \"a b\"\npath = \"mlp.pt\"\n")),
            "model[1].name",
        ),
        (
            format!(
                "archs = [\"mlp\"]\n{}",
                one("[[model]]\nname = \"mlp\"\npath = \"mlp.pt\"\n")
            ),
            "model[0].name",
        ),
        (one(&format!("{cnn}{ts}start = \"reinit\"\n")), "model[1].start"),
        (one(""), "archs"),
        // The model against the data: read once, before anything trains.
        (one(cnn).replace("data.npz", "wide.npz"), "model[0]` (cnn)"),
        (one(ts).replace("data.npz", "wide.npz"), "model[0]` (ts)"),
        // Every recipe against every model.
        (
            one(&format!("{cnn}{ts}")).replace(
                "hessian_lambda = 0.001",
                "hessian_lambda = 0.001\nhessian_layers = \"^nope\"",
            ),
            "recipe[1]` (hat) on model[0] (cnn)",
        ),
        (
            format!("{}[defense]\nsweep = [\"ranger\"]\n", one(&format!("{cnn}{ts}"))),
            "defense.sweep",
        ),
    ];
    for (config, needle) in cases {
        let o = experiment(dir, &config, &[]);
        assert_one_line_error(&o, needle);
        let cache = dir.join("out/cache");
        let stages = std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0);
        assert_eq!(stages, 0, "{needle}: a stage ran before the error");
    }
    // The same entries, well formed, run; the lone state dict with `arch` naming its graph.
    let lone = "[[model]]\nname = \"w\"\npath = \"lone/cnnw.safetensors\"\narch = \"cnn.onnx\"\n";
    let good = one(&format!("{cnn}{ts}{lone}"));
    ok(&experiment(dir, &good, &["--phase", "train"]));
    let lone: Vec<_> = trainings(dir).into_iter().filter(|(_, r)| r["arch"] == "w").collect();
    assert_eq!(lone.len(), 4);
    let graph = dir.join("cnn.onnx").canonicalize().unwrap();
    assert!(lone.iter().all(|(_, r)| r["graph"] == graph.to_str().unwrap()));
}

/// Every measurement section, on a state dict of an imported ONNX graph
/// (kept in a directory of its own with the graph it names) and a
/// TorchScript module: one seed, plain and HAT.
const EVERY_SECTION: &str = r#"
name = "every section"
seeds = [0]

[data]
dataset = "data.npz"
test_limit = 100

[train]
epochs = 1
optimizer = "rmsprop"
lr = 0.0001
momentum = 0.0

[[model]]
name = "cnnw"
path = "sub/cnnw.safetensors"

[[model]]
name = "tiny-mlp"
path = "mlp.pt"

[[recipe]]
name = "plain"

[[recipe]]
name = "hat"
regularizer = "hessian"
hessian_lambda = 0.001

[sweep]
bits = "30-31"
limit = 20
sample_params = 8

[analysis]
hessian_limit = 50
hessian_max_probes = 5
quantize_bits = [8, 4]
prune_sparsity = [0.5]

[analysis.landscape]
steps = 5
range = 0.5
limit = 50

[attack]
method = "both"
trials = 1
max_flips = 5
limit = 32
eval_limit = 50

[defense]
sweep = ["range", "radar:16"]

[[campaign]]
fault = "bitflip"
levels = [1e-3]
trials = 2
limit = 50

[[campaign]]
fault = "gaussian"
levels = [0.1]
trials = 2
limit = 50
"#;

#[test]
fn every_section_runs_on_a_state_dict_and_a_torchscript_module() {
    let dir = workdir();
    let dir = dir.path();
    std::fs::create_dir(dir.join("sub")).unwrap();
    for f in ["cnn.onnx", "cnnw.safetensors"] {
        std::fs::rename(dir.join(f), dir.join("sub").join(f)).unwrap();
    }
    // Per model: train, hessian, quantize, prune, landscape, sweep, 2 defended
    // sweeps, 2 attacks (BFA, random), 2 campaigns; × 2 models × 2 recipes.
    let first = ok(&experiment(dir, EVERY_SECTION, &[]));
    assert!(first.contains("48 stages: 48 computed, 0 from the cache"), "{first}");
    columns_say_model(dir, &first);
    let s = summary(dir);
    let groups = s["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 4);
    for g in groups {
        let name = format!("{}/{}", g["arch"], g["recipe"]);
        for key in [
            "hessian_trace",
            "quantize",
            "prune",
            "landscape",
            "erratic_bits",
            "attack",
            "defended",
            "campaign",
        ] {
            let v = &g[key];
            let empty = v.is_null()
                || v.as_array().is_some_and(|a| a.is_empty())
                || v.as_object().is_some_and(|o| o.is_empty());
            assert!(!empty, "{name}: no {key} in summary.json: {v}");
        }
    }

    // The trained state dict reloads onto its graph: PyTorch's accuracy is HART's.
    let trained = trainings(dir);
    let (pairs, rows): (Vec<_>, Vec<_>) = trained
        .iter()
        .filter(|(_, r)| r["arch"] == "cnnw")
        .map(|(stage, r)| {
            let pair = (stage.join("model.safetensors"), dir.join("sub/cnnw.safetensors"));
            (
                pair,
                (r["recipe"].as_str().unwrap(), r["test_accuracy"].as_f64().unwrap()),
            )
        })
        .unzip();
    assert_eq!(pairs.len(), 2);
    let checked = check(&dir.join("data.npz"), &pairs);
    for ((recipe, hart), (accuracy, distance)) in rows.iter().zip(&checked) {
        assert!(
            (accuracy - hart).abs() < 0.011,
            "cnnw/{recipe}: PyTorch {accuracy}, HART {hart}"
        );
        assert!(*distance < 0.15, "cnnw/{recipe}: {distance} from the file's weights");
    }
    let pytorch: Vec<(&str, &str, f64)> = rows.iter().zip(&checked).map(|(r, c)| ("cnnw", r.0, c.0)).collect();
    summary_accuracies_match(&s, &pytorch);

    // The graph the state dict names is part of its key: changed, it retrains
    // that entry's stages only.
    std::fs::copy(dir.join("cnn-v2.onnx"), dir.join("sub/cnn.onnx")).unwrap();
    let changed = ok(&experiment(dir, EVERY_SECTION, &[]));
    assert!(
        changed.contains("48 stages: 24 computed, 24 from the cache"),
        "{changed}"
    );
}
