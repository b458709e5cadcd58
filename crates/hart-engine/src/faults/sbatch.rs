//! `--emit-sbatch`: a Slurm array script that runs the same sweep, one shard
//! per array task, into `OUT/shard-<task>`; `hart merge` joins them after.

use std::path::Path;

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
pub fn script(hart: &Path, sweep_args: &[String], out: &Path, shards: u32, cpus: u32) -> String {
    let q = |s: &str| shell_quote(s);
    let out_s = out.display().to_string();
    let args: Vec<String> = sweep_args.iter().map(|a| q(a)).collect();
    format!(
        "#!/bin/bash\n\
         # Written by `hart sweep --emit-sbatch`: one shard of the sweep per array task.\n\
         # When all tasks have finished: {hart} merge {out}/shard-* --out {out}\n\
         #SBATCH --job-name=hart-sweep\n\
         #SBATCH --array=0-{last}\n\
         #SBATCH --cpus-per-task={cpus}\n\
         #SBATCH --output={out}/slurm-%A_%a.out\n\
         set -euo pipefail\n\
         # Each task resumes where it stopped if Slurm requeues it.\n\
         exec {hart} sweep {args} --out {out}/shard-\"$SLURM_ARRAY_TASK_ID\" \\\n    --shard \"$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT\"\n",
        hart = q(&hart.display().to_string()),
        out = q(&out_s),
        last = shards.saturating_sub(1),
        args = args.join(" "),
    )
}
