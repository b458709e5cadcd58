//! Crash safety at random points: `hart sweep`, `hart experiment`, `hart
//! campaign` and `hart attack` are SIGKILLed at random moments and rerun
//! until they finish; every final table must equal an uninterrupted run's
//! byte for byte (0 rows lost, 0 duplicated) and the weights must hash the
//! same. `hart attack` keeps no journal, so its rerun starts over: the check
//! is that the same seed gives the same result. `HART_KILLS=N` sets the kills
//! per command (CI: 3; docs/robustness.md quotes a run with 20+). A new
//! resumable command is one more [`Case`].

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

/// Asserts that the table `name` in `t` (a CSV with a header) holds no two
/// rows with the same `key` columns, and returns its row count.
fn rows_once(t: &Tables, name: &str, key: std::ops::Range<usize>) -> usize {
    let csv = &t
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name}"))
        .1;
    let rows: Vec<&str> = std::str::from_utf8(csv).unwrap().lines().skip(1).collect();
    let keys: std::collections::HashSet<Vec<&str>> = rows
        .iter()
        .map(|r| r.split(',').skip(key.start).take(key.len()).collect())
        .collect();
    assert_eq!(keys.len(), rows.len(), "{name}: a row appears twice");
    rows.len()
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
            rows_once(&t, "flips.csv", 0..3);
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

/// The arguments `hart SUBCOMMAND --model MODEL --out OUT REST…` (REST split at spaces).
fn command(sub: &'static str, model: PathBuf, rest: &'static str) -> Args {
    Box::new(move |out| {
        let head = [sub, "--model", model.to_str().unwrap(), "--out", out.to_str().unwrap()];
        head.into_iter()
            .chain(rest.split_whitespace())
            .map(String::from)
            .collect()
    })
}

/// Rows of each campaign's trials table: 3 levels × 30 trials.
const CAMPAIGN_ROWS: usize = 90;

/// Three levels × 30 trials (9 journal parts per storage), fp32 and int8
/// storage in one command, so a kill can land between the two campaigns too.
fn campaign_case(model: PathBuf) -> Case {
    const REST: &str = "--limit 100 --fault bitflip --levels 0,1e-4,1e-3 --trials 30 --storage fp32,int8 --format csv";
    Case {
        name: "campaign",
        args: command("campaign", model, REST),
        tables: |out| {
            let t = files(out, &|rel| {
                rel.ends_with("/trials.csv") || rel.ends_with("/summary.json")
            });
            assert_eq!(t.len(), 4, "{t:?}");
            for storage in ["fp32", "int8"] {
                // Every (level, trial) exactly once: none duplicated, none lost.
                let rows = rows_once(&t, &format!("{storage}/trials.csv"), 0..2);
                assert_eq!(rows, CAMPAIGN_ROWS, "{storage}: trials lost");
            }
            t
        },
    }
}

/// BFA with its random baseline on int8 codes: two trials of five flips
/// each (target 0, so every trial spends its budget on the untrained model).
/// An attack has no journal: a killed one is rerun from the start.
fn attack_case(model: PathBuf) -> Case {
    const REST: &str =
        "--limit 16 --eval-limit 100 --storage int8 --trials 2 --max-flips 5 --top-k 2 --target-accuracy 0 --seed 3";
    Case {
        name: "attack",
        args: command("attack", model, REST),
        tables: |out| {
            let t = files(out, &|n| n == "flips.csv" || n == "summary.json");
            assert_eq!(t.len(), 2, "{t:?}");
            // Every (trial, method, iteration) once.
            assert!(rows_once(&t, "flips.csv", 1..4) > 0, "the attack flipped nothing");
            t
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

#[test]
fn killed_campaigns_resume_to_identical_tables() {
    let dir = tempfile::tempdir().unwrap();
    check(&campaign_case(random_model(dir.path(), "mlp")), dir.path(), 3);
}

#[test]
fn killed_attacks_rerun_to_identical_tables() {
    let dir = tempfile::tempdir().unwrap();
    check(&attack_case(random_model(dir.path(), "mlp")), dir.path(), 4);
}
