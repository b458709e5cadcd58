//! `hart experiment --emit-sbatch`: one bash script that submits the
//! experiment as three Slurm jobs sharing `--out` — the training array,
//! the measurement array once every training task has succeeded, and the
//! job that assembles the report once every measurement task has.

use std::path::Path;

use crate::faults::sbatch::{shell_quote, Resources};

/// Tasks of each array: `train` and `measure` shards.
#[derive(Debug, Clone, Copy)]
pub struct Arrays {
    pub train: u32,
    pub measure: u32,
}

/// The script: `hart experiment ARGS` (the experiment's arguments without
/// `--out`, `--phase`, `--shard` and the sbatch options) run per phase.
pub fn script(hart: &Path, args: &[String], out: &Path, arrays: Arrays, res: &Resources) -> String {
    let q = |s: &str| shell_quote(s);
    let hart = q(&hart.display().to_string());
    let out = q(&out.display().to_string());
    let args: Vec<String> = args.iter().map(|a| q(a)).collect();
    let command = format!("{hart} experiment {} --out {out}", args.join(" "));
    let options = res.options().join(" ");
    let shard = "--shard \"$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT\"";
    let job = |phase: &str, tail: &str| format!("#!/bin/bash\nexec {command} --phase {phase}{tail}\nJOB\n)\n");
    let (t, m) = (arrays.train, arrays.measure);
    format!(
        "#!/bin/bash\n\
         # Written by `hart experiment --emit-sbatch`. Run it with bash: it submits three jobs\n\
         # sharing {out}: {t} training shards, then {m} measurement shards once every training\n\
         # task has succeeded, then the report once every measurement task has.\n\
         # Without a cluster the same runs one after another:\n\
         #   for i in $(seq 0 {tl}); do {command} --phase train --shard $i/{t}; done\n\
         #   for i in $(seq 0 {ml}); do {command} --phase measure --shard $i/{m}; done\n\
         #   {command} --phase report\n\
         set -euo pipefail\n\
         mkdir -p {out}/slurm\n\
         submit() {{ sbatch --parsable \"$@\" | cut -d';' -f1; }}\n\
         train=$(submit --job-name=hart-train --array=0-{tl} {options} \\\n    --output={out}/slurm/train-%A_%a.out <<'JOB'\n{train}\
         measure=$(submit --job-name=hart-measure --array=0-{ml} {options} \\\n    --dependency=afterok:\"$train\" --kill-on-invalid-dep=yes \\\n    --output={out}/slurm/measure-%A_%a.out <<'JOB'\n{measure}\
         report=$(submit --job-name=hart-report {options} \\\n    --dependency=afterok:\"$measure\" --kill-on-invalid-dep=yes \\\n    --output={out}/slurm/report-%j.out <<'JOB'\n{report}\
         echo \"submitted: training array $train, measurement array $measure, report job $report\"\n\
         echo \"report: {out}/report.html (job logs in {out}/slurm/)\"\n",
        tl = t.saturating_sub(1),
        ml = m.saturating_sub(1),
        train = job("train", &format!(" {shard}")),
        measure = job("measure", &format!(" {shard}")),
        report = job("report", ""),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_jobs_chained_by_their_dependencies() {
        let res = Resources::new(2, Some("1:00:00".into()), None).unwrap();
        let args = ["/cfg/my study.toml".to_string()];
        let s = script(
            Path::new("/bin/hart"),
            &args,
            Path::new("/o"),
            Arrays { train: 3, measure: 2 },
            &res,
        );
        let run = "/bin/hart experiment '/cfg/my study.toml' --out /o --phase";
        assert!(
            s.contains("--job-name=hart-train --array=0-2 --cpus-per-task=2 --time=1:00:00"),
            "{s}"
        );
        assert!(s.contains(&format!(
            "exec {run} train --shard \"$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT\"\nJOB\n)"
        )));
        assert!(s.contains("--array=0-1 --cpus-per-task=2 --time=1:00:00 \\\n    --dependency=afterok:\"$train\""));
        assert!(s.contains(&format!("exec {run} report\nJOB\n)")));
        assert!(s.contains("--dependency=afterok:\"$measure\""));
        assert!(s.contains("for i in $(seq 0 1); do /bin/hart experiment '/cfg/my study.toml' --out /o --phase measure --shard $i/2; done"));
    }
}
