//! Real scale-out: a single-node Slurm cluster (Debian's munge, slurmctld and
//! slurmd as root, started by scripts/slurm-test-cluster.sh) runs the script
//! `hart sweep --emit-sbatch` writes as a 4-task array; the merged shards
//! must equal the unsharded run byte for byte. The daemons are stopped
//! however the test ends.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

mod common;
use common::random_model;
use common::slurm::{ok, Cluster};

#[test]
fn slurm_array_sweep_merges_to_the_unsharded_table() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_model(dir.path(), "mlp");
    let hart = env!("CARGO_BIN_EXE_hart");
    let sweep = [
        "sweep",
        "--model",
        model.to_str().unwrap(),
        "--limit",
        "200",
        "--params",
        "fc3.weight",
        "--bits",
        "22-31",
        "--format",
        "csv",
    ];
    let whole = dir.path().join("whole");
    ok(Command::new(hart)
        .args(sweep)
        .arg("--out")
        .arg(&whole)
        .output()
        .unwrap());

    let array = dir.path().join("array");
    let script = dir.path().join("sweep.sbatch");
    ok(Command::new(hart)
        .args(sweep)
        .arg("--out")
        .arg(&array)
        .arg("--emit-sbatch")
        .arg(&script)
        .args(["--shards", "4", "--cpus-per-task", "1"])
        .output()
        .unwrap());
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(
        text.contains("#SBATCH --array=0-3")
            && text.contains("--shard \"$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT\""),
        "{text}"
    );

    let cluster = Cluster::start(&dir.path().join("slurm"));
    let out = ok(cluster.cmd("sbatch").arg("--parsable").arg(&script).output().unwrap());
    let job = String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap_or("")
        .to_string();
    cluster.wait(&[job], Duration::from_secs(300));
    drop(cluster);

    let shards: Vec<PathBuf> = (0..4).map(|i| array.join(format!("shard-{i}"))).collect();
    let merged = dir.path().join("merged");
    let logs = || {
        std::fs::read_dir(&array)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "out"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let o = Command::new(hart)
        .arg("merge")
        .args(&shards)
        .arg("--out")
        .arg(&merged)
        .args(["--format", "csv"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "merge failed: {}\ntask logs:\n{}",
        String::from_utf8_lossy(&o.stderr),
        logs()
    );
    let a = std::fs::read(whole.join("flips.csv")).unwrap();
    let b = std::fs::read(merged.join("flips.csv")).unwrap();
    assert!(a == b, "merged Slurm shards differ from the unsharded sweep");
}
