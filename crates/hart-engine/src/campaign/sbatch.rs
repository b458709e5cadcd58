//! `hart campaign --emit-sbatch`: a Slurm array script, one shard per task,
//! all writing their parts into the same directory (parts are disjoint);
//! the same command without `--shard` then assembles the results.

use std::path::Path;

use crate::faults::sbatch::{shell_quote, Resources};

pub fn script(hart: &Path, args: &[String], out: &Path, shards: u32, res: &Resources) -> String {
    let q = |s: &str| shell_quote(s);
    let args: Vec<String> = args.iter().map(|a| q(a)).collect();
    let hart = q(&hart.display().to_string());
    let out = q(&out.display().to_string());
    let args = args.join(" ");
    format!(
        "#!/bin/bash\n\
         # Written by `hart campaign --emit-sbatch`: one shard of the campaign per array task.\n\
         # When all tasks have finished, assemble with: {hart} campaign {args} --out {out}\n\
         #SBATCH --job-name=hart-campaign\n\
         #SBATCH --array=0-{last}\n\
         {resources}\
         #SBATCH --output={out}/slurm-%A_%a.out\n\
         set -euo pipefail\n\
         # Each task resumes where it stopped if Slurm requeues it.\n\
         exec {hart} campaign {args} --out {out} \\\n    --shard \"$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT\"\n",
        last = shards.saturating_sub(1),
        resources = res.directives(),
    )
}
