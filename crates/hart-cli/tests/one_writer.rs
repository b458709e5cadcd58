//! One writer per output directory: for every resumable command, a second
//! run on an `--out` a live run holds is refused at start with one line
//! naming the holder's pid, and a SIGKILLed holder's lock is taken over by
//! the next run, which then finishes. Shards of one campaign share their
//! `--out` and run side by side. The holder is stopped with SIGSTOP while
//! the second run starts, so "at once" does not depend on timing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{assert_one_line_error, hart, random_model, stderr, sweep_args};

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {}", child.id());
}

/// Starts `args` and waits until it holds `lock` (the file names its pid),
/// then stops it there.
fn start_and_stop(args: &[String], lock: &Path) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hart"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let t0 = Instant::now();
    loop {
        if std::fs::read_to_string(lock).is_ok_and(|s| s.trim() == pid) {
            signal(&child, "-STOP");
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{args:?} ended ({status}) before it was seen holding {}",
                lock.display()
            );
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{args:?} never took {}",
            lock.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child
}

fn run(args: &[String]) -> std::process::Output {
    hart(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

const TINY: &str = r#"
name = "lock"
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

/// A command's arguments for an output directory.
type Args = Box<dyn Fn(&str) -> Vec<String>>;

/// Each resumable command, by name.
fn commands(dir: &Path) -> Vec<(&'static str, Args)> {
    let model = random_model(dir, "mlp").to_str().unwrap().to_string();
    let config = dir.join("lock.toml");
    std::fs::write(&config, TINY).unwrap();
    let config = config.to_str().unwrap().to_string();
    let m = model.clone();
    let sweep = move |out: &str| strings(&sweep_args(&m, out, &[]));
    let m = model.clone();
    let campaign = move |out: &str| {
        let rest = "--limit 60 --fault bitflip --levels 0,1e-3 --trials 4 --format csv";
        strings(&["campaign", "--model", &m, "--out", out])
            .into_iter()
            .chain(rest.split_whitespace().map(String::from))
            .collect()
    };
    let m = model;
    let attack = move |out: &str| {
        let rest = "--limit 8 --eval-limit 40 --trials 1 --max-flips 2 --top-k 2 --target-accuracy 0";
        strings(&["attack", "--model", &m, "--out", out])
            .into_iter()
            .chain(rest.split_whitespace().map(String::from))
            .collect()
    };
    let experiment = move |out: &str| strings(&["experiment", &config, "--out", out]);
    vec![
        ("sweep", Box::new(sweep)),
        ("campaign", Box::new(campaign)),
        ("attack", Box::new(attack)),
        ("experiment", Box::new(experiment)),
    ]
}

#[test]
fn a_second_run_is_refused_and_a_killed_holder_is_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, args) in commands(tmp.path()) {
        let out: PathBuf = tmp.path().join(name);
        let o = out.to_str().unwrap();
        let mut holder = start_and_stop(&args(o), &out.join(".hart-lock"));
        let second = run(&args(o));
        assert_one_line_error(&second, &format!("pid {}", holder.id()));
        assert!(stderr(&second).contains(o), "{name}: the refusal names the directory");
        assert!(
            holder.try_wait().unwrap().is_none(),
            "{name}: the holder is still there"
        );

        holder.kill().unwrap(); // SIGKILL, even while stopped
        holder.wait().unwrap();
        let after = run(&args(o));
        assert!(
            after.status.success(),
            "{name} after a killed holder: {}",
            stderr(&after)
        );
        assert!(out.join("summary.json").exists(), "{name}: no summary.json");
        assert!(!out.join(".hart-lock").exists(), "{name}: the lock outlived its run");
    }
}

#[test]
fn shards_of_one_campaign_share_their_out() {
    let tmp = tempfile::tempdir().unwrap();
    let model = random_model(tmp.path(), "mlp");
    let out = tmp.path().join("sharded");
    let args = |shard: Option<&str>| {
        let mut v = strings(&[
            "campaign",
            "--model",
            model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        v.extend(
            "--limit 60 --fault bitflip --levels 0,1e-3 --trials 6 --format csv"
                .split_whitespace()
                .map(String::from),
        );
        v.extend(shard.map(|s| format!("--shard={s}")));
        v
    };
    let first = start_and_stop(&args(Some("0/2")), &out.join(".hart-lock.shard-0-of-2"));
    // Shard 1 runs to the end beside shard 0; shard 0 twice, or the whole
    // campaign beside a shard, is refused naming shard 0's process.
    let other = run(&args(Some("1/2")));
    assert!(other.status.success(), "shard 1 beside shard 0: {}", stderr(&other));
    let pid = format!("pid {} (shard 0/2)", first.id());
    assert_one_line_error(&run(&args(Some("0/2"))), &pid);
    assert_one_line_error(&run(&args(None)), &pid);

    signal(&first, "-CONT");
    let done = first.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "shard 0: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    let whole = run(&args(None));
    assert!(whole.status.success(), "assembling: {}", stderr(&whole));
    assert!(out.join("trials.csv").exists());
    let left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".hart-lock"))
        .collect();
    assert!(left.is_empty(), "lock files left behind: {left:?}");
}
