//! `--emit-sbatch`: a Slurm array script that runs the same sweep, one shard
//! per array task, into `OUT/shard-<task>`; `hart merge` joins them after.

use std::path::Path;

use crate::error::{HartError, Result};

/// What every job of an emitted script asks Slurm for: CPUs per task, and
/// the time limit and partition when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub cpus: u32,
    pub time: Option<String>,
    pub partition: Option<String>,
}

impl Resources {
    /// Checks the values, which go into the script verbatim.
    pub fn new(cpus: u32, time: Option<String>, partition: Option<String>) -> Result<Resources> {
        if cpus == 0 {
            return Err(HartError::Invalid("--cpus-per-task must be at least 1".into()));
        }
        let word =
            |v: &Option<String>, ok: fn(char) -> bool| v.as_ref().is_none_or(|v| !v.is_empty() && v.chars().all(ok));
        if !word(&time, |c| c.is_ascii_digit() || c == ':' || c == '-') {
            return Err(HartError::Invalid(format!(
                "--time {:?}: expected a Slurm time limit such as 30, 2:00:00 or 1-12:00:00",
                time.unwrap_or_default()
            )));
        }
        if !word(&partition, |c| c.is_ascii_alphanumeric() || "_.,-".contains(c)) {
            return Err(HartError::Invalid(format!(
                "--partition {:?}: expected a partition name (letters, digits, `_.,-`)",
                partition.unwrap_or_default()
            )));
        }
        Ok(Resources { cpus, time, partition })
    }

    /// As sbatch options: `--cpus-per-task=C [--time=T] [--partition=P]`.
    pub fn options(&self) -> Vec<String> {
        let mut out = vec![format!("--cpus-per-task={}", self.cpus)];
        out.extend(self.time.iter().map(|t| format!("--time={t}")));
        out.extend(self.partition.iter().map(|p| format!("--partition={p}")));
        out
    }

    /// As `#SBATCH` lines, each ending in a newline.
    pub fn directives(&self) -> String {
        self.options().iter().map(|o| format!("#SBATCH {o}\n")).collect()
    }
}

/// Quotes a word for bash.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The script: `hart` and `sweep_args` (the sweep's arguments without
/// `--out`, `--shard` and the sbatch options) run once per array task.
pub fn script(hart: &Path, sweep_args: &[String], out: &Path, shards: u32, res: &Resources) -> String {
    let q = |s: &str| shell_quote(s);
    let out_s = out.display().to_string();
    let args: Vec<String> = sweep_args.iter().map(|a| q(a)).collect();
    format!(
        "#!/bin/bash\n\
         # Written by `hart sweep --emit-sbatch`: one shard of the sweep per array task.\n\
         # When all tasks have finished: {hart} merge {out}/shard-* --out {out}\n\
         #SBATCH --job-name=hart-sweep\n\
         #SBATCH --array=0-{last}\n\
         {resources}\
         #SBATCH --output={out}/slurm-%A_%a.out\n\
         set -euo pipefail\n\
         # Each task resumes where it stopped if Slurm requeues it.\n\
         exec {hart} sweep {args} --out {out}/shard-\"$SLURM_ARRAY_TASK_ID\" \\\n    --shard \"$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT\"\n",
        hart = q(&hart.display().to_string()),
        out = q(&out_s),
        last = shards.saturating_sub(1),
        args = args.join(" "),
        resources = res.directives(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_checked_and_become_directives() {
        let r = Resources::new(4, Some("1-02:00:00".into()), Some("gpu_a.1".into())).unwrap();
        assert_eq!(
            r.directives(),
            "#SBATCH --cpus-per-task=4\n#SBATCH --time=1-02:00:00\n#SBATCH --partition=gpu_a.1\n"
        );
        assert_eq!(Resources::new(2, None, None).unwrap().options(), ["--cpus-per-task=2"]);
        for (time, partition) in [
            (Some("2h"), None),
            (Some(""), None),
            (None, Some("a b")),
            (None, Some("x\n#SBATCH")),
        ] {
            let e = Resources::new(1, time.map(String::from), partition.map(String::from)).unwrap_err();
            assert!(e.to_string().starts_with("--"), "{e}");
        }
        assert!(Resources::new(0, None, None).is_err());
    }
}
