//! `hart experiment` on users' own models: `[[model]]` entries (an ONNX CNN
//! exported by PyTorch, fine-tuned and re-initialised, and a TorchScript
//! MLP) beside a zoo architecture, on a `.npz` data set; sharded, resumed
//! after a stage is deleted, retrained when the file changes; the trained
//! files checked by PyTorch; bad entries refused before any stage runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

mod common;
use common::{assert_one_line_error, python, stderr, stdout};
use serde_json::Value;

/// Exported once for every test here (PyTorch's export takes seconds):
/// data.npz, wide.npz, cnn.onnx, cnn-v2.onnx, mlp.pt.
fn fixtures() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        python("experiment_models.py", &[Path::new("export"), dir.path()]);
        dir
    })
    .path()
}

/// A fresh directory holding the fixtures, where the experiment runs (its
/// relative paths are read from the working directory).
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["data.npz", "wide.npz", "cnn.onnx", "cnn-v2.onnx", "mlp.pt"] {
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
/// Python process for all: importing torch takes seconds).
fn check(data: &Path, pairs: &[(PathBuf, PathBuf)]) -> Vec<(f64, f64)> {
    let mut args: Vec<&Path> = vec![Path::new("check"), data];
    for (t, s) in pairs {
        args.extend([t.as_path(), s.as_path()]);
    }
    let v: Vec<Value> = serde_json::from_str(&python("experiment_models.py", &args)).unwrap();
    v.iter()
        .map(|r| (r["accuracy"].as_f64().unwrap(), r["distance"].as_f64().unwrap()))
        .collect()
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
    // the TorchScript module saved) and predicts as HART measured; a
    // fine-tune stays near the file's weights, a re-initialisation does not.
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
        rows.push((name, seed, r["test_accuracy"].as_f64().unwrap()));
    }
    // Each seed draws its own initialisation: one recipe's re-initialised seeds, against each other
    // (sorted by recipe, then seed).
    let fresh: Vec<_> = pairs.iter().zip(&rows).filter(|(_, r)| r.0 == "cnn-fresh").collect();
    assert_eq!((fresh.len(), fresh[0].1 .1, fresh[1].1 .1), (4, 0, 1));
    pairs.push((fresh[0].0 .0.clone(), fresh[1].0 .0.clone()));
    let checked = check(&data, &pairs);
    for ((name, seed, hart), (accuracy, distance)) in rows.iter().zip(&checked) {
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
    assert!(
        checked[rows.len()].1 > 0.3,
        "two seeds' initialisations: {:?}",
        checked[rows.len()]
    );

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
    // The same entries, well formed, run.
    let good = one(&format!("{cnn}{ts}"));
    assert!(experiment(dir, &good, &["--phase", "train", "--shard", "0/4"])
        .status
        .success());
}
