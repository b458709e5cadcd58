//! Trials as grouped fault lists (`group,param,index,bit`, group =
//! `LEVEL:TRIAL`): the bits each trial changed, which `hart sweep --faults`
//! replays group by group. A trial that changed no bit has no rows; its
//! accuracy is the clean one. Gaussian noise is not a bit fault and has no
//! fault list (its trials replay from the seed instead).

use std::io::Write;
use std::path::Path;

use super::run::Campaign;
use crate::error::{HartError, Result};

/// The group name of a trial in fault lists.
pub fn group(level: f64, trial: u64) -> String {
    format!("{level:e}:{trial}")
}

/// Writes every trial of every level (not just this shard's) to `path`.
pub fn write_faults(path: &Path, c: &Campaign) -> Result<()> {
    if !c.cfg.fault.is_bit() {
        return Err(HartError::Invalid(
            "--write-faults: Gaussian noise is not a list of bit faults (its trials are reproducible from --seed)"
                .into(),
        ));
    }
    let io = |e| HartError::io(path, e);
    let tmp = path.with_extension("csv.tmp");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
    writeln!(w, "group,param,index,bit").map_err(io)?;
    for &level in &c.cfg.levels {
        for trial in 0..c.cfg.trials {
            let faults = c.draw(level, trial);
            let patch = super::patch::Patch::from_bits(&c.inject, &c.stored_of, &faults, c.cfg.fault)?;
            let g = group(level, trial);
            for f in &patch.effective {
                writeln!(w, "{g},{},{},{}", c.targets[f.target].name, f.index, f.bit).map_err(io)?;
            }
        }
    }
    w.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
