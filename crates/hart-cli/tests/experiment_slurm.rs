//! `hart experiment` split into shards that share one `--out`: the training
//! shards run at once, the measurement shards one after another with one
//! killed halfway and rerun, and the script `--emit-sbatch` writes runs on
//! a real single-node Slurm cluster (scripts/slurm-test-cluster.sh). Each
//! assembled summary.json must equal the unsharded run's, timings aside; an
//! assembly with units missing is one line naming them.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::slurm::{ok, Cluster};
use common::{assert_one_line_error, stderr, stdout, TINY_EXPERIMENT};

/// The tiny config with HAT's λ searched: a `[tune]` search and four
/// trainings, then four models × (sweep, Hessian, quantize + prune, landscape).
fn tuned() -> String {
    let search =
        "[tune]\ngrid = [0.001, 0.01]\nepochs = 1\nlimit = 300\nval = 100\nsweep_params = 4\nsweep_images = 40\n\
        # Any λ passes, so the search picks one (no warning in the errors checked).\naccuracy_budget = 0.99\n\n[sweep]";
    let cfg = TINY_EXPERIMENT
        .replace("hessian_lambda = 0.001", "hessian_lambda = \"tuned\"")
        .replace("[sweep]", search);
    assert!(cfg.contains("\"tuned\"") && cfg.contains("[tune]"), "{cfg}");
    cfg
}

fn hart() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hart"))
}

/// `hart experiment CONFIG --out OUT EXTRA…`.
fn experiment(config: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = hart();
    c.arg("experiment").arg(config).arg("--out").arg(out).args(extra);
    c
}

fn shard(config: &Path, out: &Path, phase: &str, i: u32) -> Command {
    experiment(config, out, &["--phase", phase, "--shard", &format!("{i}/3")])
}

fn spawn(mut c: Command) -> Child {
    c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

fn finished(c: Child) -> Output {
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    o
}

/// summary.json without the wall-clock numbers: training times and the
/// "not better" statements that compare them.
fn summary(out: &Path) -> Value {
    let text = std::fs::read_to_string(out.join("summary.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", out.join("summary.json").display()));
    let mut v: Value = serde_json::from_str(&text).unwrap();
    for g in v["groups"].as_array_mut().unwrap() {
        g.as_object_mut()
            .unwrap()
            .remove("train_seconds")
            .expect("groups hold their training time");
    }
    let statements = v["not_better"].as_array_mut().unwrap();
    statements.retain(|s| !s.as_str().unwrap().contains("training time"));
    v
}

/// Finished stage directories in OUT/cache whose names start with `prefix`.
fn cached(out: &Path, prefix: &str) -> usize {
    std::fs::read_dir(out.join("cache"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with(prefix)
                        && !n.contains(".tmp")
                        && !n.ends_with(".lock")
                        && e.path().join("result.json").exists()
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn sharded_experiment_assembles_the_unsharded_summary() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tiny.toml");
    std::fs::write(&config, tuned()).unwrap();
    let whole = dir.path().join("whole");
    let o = ok(experiment(&config, &whole, &[]).output().unwrap());
    // 4 trainings + 4 × 5 measurement stages + the search.
    assert!(stdout(&o).contains("25 stages: 25 computed"), "{}", stdout(&o));
    let reference = summary(&whole);

    // By hand: the three training shards at once (the search is one
    // shard's unit; the others wait for it), then an assembly too early.
    let hand = dir.path().join("hand");
    // A measurement shard before any training: refused, naming the training, nothing trained.
    let early = dir.path().join("early");
    let o = shard(&config, &early, "measure", 0).output().unwrap();
    assert_one_line_error(&o, "train mlp/plain/seed0 (no --phase train shard has run)");
    assert_eq!(cached(&early, "train-"), 0);
    let train: Vec<Child> = [2, 0, 1].map(|i| spawn(shard(&config, &hand, "train", i))).into();
    for c in train {
        finished(c);
    }
    assert_eq!(cached(&hand, "tune-"), 1, "the search ran once");
    assert_eq!(cached(&hand, "train-"), 4);
    let early = experiment(&config, &hand, &["--phase", "report"]).output().unwrap();
    assert_one_line_error(&early, "16 units are not in");
    assert_one_line_error(&early, "sweep mlp/plain/seed0, hessian mlp/plain/seed0, compress mlp/plain/seed0 and 13 more (no --phase measure shard has run)");

    // The measurement shards in another order, the first killed once it has
    // finished a stage (tried again on a clean slate if it finished first), then rerun.
    let names = |out: &Path| -> Vec<String> {
        let entries = std::fs::read_dir(out.join("cache")).unwrap().flatten();
        entries.map(|e| e.file_name().to_string_lossy().into_owned()).collect()
    };
    let before = names(&hand);
    let finished_before = cached(&hand, "");
    let mut landed = false;
    for _ in 0..5 {
        let mut child = spawn(shard(&config, &hand, "measure", 1));
        let t0 = Instant::now();
        while cached(&hand, "") == finished_before && child.try_wait().unwrap().is_none() {
            assert!(t0.elapsed() < Duration::from_secs(120), "shard 1 finished no stage");
            std::thread::sleep(Duration::from_millis(1));
        }
        landed = child.try_wait().unwrap().is_none();
        child.kill().unwrap();
        child.wait().unwrap();
        if landed {
            break;
        }
        for n in names(&hand).iter().filter(|n| !before.contains(n)) {
            let p = hand.join("cache").join(n);
            let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
        }
    }
    assert!(landed, "shard 1 always finished before it could be killed");
    let o = experiment(&config, &hand, &["--phase", "report"]).output().unwrap();
    assert_one_line_error(&o, "(shard 1/3 of --phase measure did not finish)");
    finished(spawn(shard(&config, &hand, "measure", 1)));
    finished(spawn(shard(&config, &hand, "measure", 2)));
    // A missing unit is named, with whose it is.
    let o = experiment(&config, &hand, &["--phase", "report"]).output().unwrap();
    assert_one_line_error(&o, "(shard 0/3 of --phase measure has not run)");
    finished(spawn(shard(&config, &hand, "measure", 0)));
    let o = ok(experiment(&config, &hand, &["--phase", "report"]).output().unwrap());
    assert!(
        stdout(&o).contains("25 stages: 0 computed, 25 from the cache"),
        "{}",
        stdout(&o)
    );
    assert!(
        summary(&hand) == reference,
        "shards by hand differ from the unsharded run"
    );
    // One stage lost from the cache: the assembly names its unit; --allow-compute redoes it.
    let quantize = names(&hand).into_iter().find(|n| n.starts_with("quantize-")).unwrap();
    std::fs::remove_dir_all(hand.join("cache").join(quantize)).unwrap();
    let o = experiment(&config, &hand, &["--phase", "report"]).output().unwrap();
    assert_one_line_error(&o, "1 unit is not in");
    assert_one_line_error(&o, "finished without it: was the cache changed?)");
    assert_one_line_error(&o, "compress mlp/");
    let o = ok(experiment(&config, &hand, &["--phase", "report", "--allow-compute"])
        .output()
        .unwrap());
    assert!(
        stdout(&o).contains("25 stages: 1 computed, 24 from the cache"),
        "{}",
        stdout(&o)
    );
    assert!(summary(&hand) == reference, "the recomputed stage changed the report");

    // On Slurm: the script submits both arrays and the report job.
    let array = dir.path().join("array");
    let script = dir.path().join("experiment.sh");
    ok(experiment(&config, &array, &[])
        .arg("--emit-sbatch")
        .arg(&script)
        .args(["--shards", "3", "--cpus-per-task", "1", "--time", "30:00"])
        .output()
        .unwrap());
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(
        text.contains("--job-name=hart-train --array=0-2 --cpus-per-task=1 --time=30:00")
            && text.contains("--dependency=afterok:\"$train\"")
            && text.contains("--phase report\nJOB"),
        "{text}"
    );
    let cluster = Cluster::start(&dir.path().join("slurm"));
    let o = ok(cluster.cmd("bash").arg(&script).output().unwrap());
    let line = stdout(&o);
    let jobs: Vec<String> = line
        .lines()
        .find_map(|l| l.strip_prefix("submitted: "))
        .unwrap_or_else(|| panic!("{line}"))
        .split(", ")
        .filter_map(|part| part.rsplit(' ').next().map(String::from))
        .collect();
    assert_eq!(jobs.len(), 3, "{line}");
    cluster.wait(&jobs, Duration::from_secs(900));
    drop(cluster);
    let logs = || {
        let mut all = String::new();
        for e in std::fs::read_dir(array.join("slurm")).into_iter().flatten().flatten() {
            all += &format!(
                "== {}\n{}\n",
                e.path().display(),
                std::fs::read_to_string(e.path()).unwrap_or_default()
            );
        }
        all
    };
    assert!(array.join("summary.json").exists(), "no report; job logs:\n{}", logs());
    assert!(
        summary(&array) == reference,
        "the Slurm run differs from the unsharded run; logs:\n{}",
        logs()
    );
}
