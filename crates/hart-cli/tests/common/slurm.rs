//! A throw-away single-node Slurm cluster for the scale-out tests: Debian's
//! munge, slurmctld and slurmd as root, started by
//! scripts/slurm-test-cluster.sh and stopped however the test ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Stops the daemons it started when dropped.
pub struct Cluster(PathBuf);

impl Cluster {
    pub fn start(dir: &Path) -> Cluster {
        let c = Cluster(dir.to_path_buf());
        ok(Command::new("bash")
            .arg(repo().join("scripts/slurm-test-cluster.sh"))
            .arg("start")
            .arg(dir)
            .output()
            .unwrap());
        c
    }
    pub fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        c.env("SLURM_CONF", self.0.join("slurm.conf"));
        c
    }
    /// Waits until none of `jobs` is queued or running (at most `limit`).
    pub fn wait(&self, jobs: &[String], limit: Duration) {
        let t0 = Instant::now();
        loop {
            let q = ok(self.cmd("squeue").args(["-h", "-j", &jobs.join(",")]).output().unwrap());
            if String::from_utf8_lossy(&q.stdout).trim().is_empty() {
                return;
            }
            assert!(t0.elapsed() < limit, "jobs {jobs:?} did not finish in {limit:?}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("scripts/slurm-test-cluster.sh"))
            .arg("stop")
            .arg(&self.0)
            .output();
    }
}
