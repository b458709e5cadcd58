//! Crash safety at random points: `hart sweep` and `hart experiment` are
//! SIGKILLed at random moments and rerun until they finish; every final
//! table must equal an uninterrupted run's byte for byte (0 rows lost, 0
//! duplicated) and the weights must hash the same. `HART_KILLS=N` sets the
//! kills per command (CI: 3; docs/robustness.md quotes a run with 20+).
//! A new resumable command is one more [`Case`] (e.g. `hart campaign`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod common;
use common::{random_model, stderr, sweep_args};

/// Files by relative path, with their bytes.
type Tables = Vec<(String, Vec<u8>)>;
type Args = Box<dyn Fn(&Path) -> Vec<String>>;

struct Case {
    name: &'static str,
    /// The command's arguments for an output directory.
    args: Args,
    /// The files whose bytes must match an uninterrupted run, by relative path.
    tables: fn(&Path) -> Tables,
}

fn kills() -> usize {
    std::env::var("HART_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

fn sha(path: &Path) -> String {
    hart::faults::hash::bytes_hash(&std::fs::read(path).unwrap())
}

/// Every file under `dir` whose relative path satisfies `keep`, skipping stage
/// directories a killed run left half-written (`*.tmpPID`, never read back).
fn files(dir: &Path, keep: &dyn Fn(&str) -> bool) -> Tables {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() && !name.contains(".tmp") {
                stack.push(p);
            } else if p.is_file() {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                if keep(&rel) {
                    out.push((rel, std::fs::read(&p).unwrap()));
                }
            }
        }
    }
    out.sort();
    out
}

/// Runs `case` to completion once, then kills fresh runs at random moments
/// until `kills()` kills have landed on a running process, comparing the
/// tables after each interrupted run is finished.
fn check(case: &Case, dir: &Path, seed: u64) -> usize {
    let hart = env!("CARGO_BIN_EXE_hart");
    let run = |out: &Path| {
        let mut c = Command::new(hart);
        c.args((case.args)(out)).stdout(Stdio::null()).stderr(Stdio::piped());
        c
    };
    let reference_out = dir.join(format!("{}-reference", case.name));
    let t0 = Instant::now();
    let o = run(&reference_out).output().unwrap();
    assert!(o.status.success(), "{}: {}", case.name, stderr(&o));
    let span = t0.elapsed();
    let reference = (case.tables)(&reference_out);
    assert!(!reference.is_empty(), "{}: no tables to compare", case.name);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut landed, mut episodes) = (0, 0);
    while landed < kills() {
        assert!(episodes < 10 * kills(), "{}: only {landed} kills landed", case.name);
        episodes += 1;
        let out = dir.join(format!("{}-{episodes}", case.name));
        loop {
            let mut child = run(&out).spawn().unwrap();
            std::thread::sleep(span.mul_f64(rng.random_range(0.0..1.0)));
            if child.try_wait().unwrap().is_some() {
                let o = child.wait_with_output().unwrap();
                assert!(o.status.success(), "{} resumed: {}", case.name, stderr(&o));
                break;
            }
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            landed += 1;
        }
        let got = (case.tables)(&out);
        let names = |t: &Tables| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&got),
            names(&reference),
            "{} episode {episodes}: other tables",
            case.name
        );
        for ((name, a), (_, b)) in got.iter().zip(&reference) {
            assert!(
                a == b,
                "{} episode {episodes}: {name} differs from the uninterrupted run",
                case.name
            );
        }
        let _ = std::fs::remove_dir_all(&out);
    }
    eprintln!(
        "{}: {landed} kills over {episodes} resumed runs, tables identical",
        case.name
    );
    landed
}

fn sweep_case(model: PathBuf) -> Case {
    Case {
        name: "sweep",
        args: Box::new(move |out| {
            let args = sweep_args(model.to_str().unwrap(), out.to_str().unwrap(), &[]);
            args.into_iter().map(String::from).collect()
        }),
        tables: |out| {
            let t = files(out, &|n| n == "flips.csv" || n == "summary.json");
            assert_eq!(t.len(), 2, "{t:?}");
            // No flip counted twice: every (param, index, bit) once.
            let csv = &t.iter().find(|(n, _)| n == "flips.csv").expect("flips.csv").1;
            let rows: Vec<&str> = std::str::from_utf8(csv).unwrap().lines().skip(1).collect();
            let keys: std::collections::HashSet<_> = rows
                .iter()
                .map(|r| r.splitn(4, ',').take(3).collect::<Vec<_>>())
                .collect();
            assert_eq!(keys.len(), rows.len(), "a flip appears twice");
            t
        },
    }
}

const TINY: &str = r#"
name = "kill"
archs = ["mlp"]
seeds = [0]
[data]
train_limit = 200
test_limit = 60
[train]
epochs = 1
[[recipe]]
name = "plain"
[sweep]
bits = "29-31"
limit = 20
sample_params = 6
[analysis]
hessian = false
quantize_bits = [4]
prune_sparsity = []
"#;

fn experiment_case(config: PathBuf) -> Case {
    Case {
        name: "experiment",
        args: Box::new(move |out| {
            ["experiment", config.to_str().unwrap(), "--out", out.to_str().unwrap()]
                .map(String::from)
                .to_vec()
        }),
        // Trained weights and each sweep stage's table and summary (the
        // report's own summary.json at the top holds training times).
        tables: |out| {
            let name = |rel: &str| Path::new(rel).file_name().unwrap().to_string_lossy().into_owned();
            files(out, &|rel| {
                let n = name(rel);
                n.ends_with(".safetensors") || n.starts_with("flips.") || n == "summary.json" && rel.contains('/')
            })
        },
    }
}

#[test]
fn killed_runs_resume_to_identical_tables() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_model(dir.path(), "mlp");
    let before = sha(&model);
    check(&sweep_case(model.clone()), dir.path(), 1);
    assert_eq!(sha(&model), before, "the sweeps changed the model file");
    let config = dir.path().join("kill.toml");
    std::fs::write(&config, TINY).unwrap();
    check(&experiment_case(config), dir.path(), 2);
}
