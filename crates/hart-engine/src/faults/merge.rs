//! `hart merge`: shards of one sweep into one table and summary, refusing
//! shards of a different model, dataset slice or configuration.

use std::path::{Path, PathBuf};

use super::journal::{part_path, read_manifest, Manifest};
use super::output::Format;
use super::shard::Shard;
use super::summary::Summary;
use super::sweep::assemble;
use crate::error::{HartError, Result};

pub fn merge(dirs: &[PathBuf], out: &Path, format: Format) -> Result<Summary> {
    let Some(first_dir) = dirs.first() else {
        return Err(HartError::Invalid("merge needs at least one sweep directory".into()));
    };
    let manifests: Vec<Manifest> = dirs.iter().map(|d| read_manifest(d)).collect::<Result<_>>()?;
    let first = &manifests[0];
    let count = first.shard.count;
    let mut owner: Vec<Option<&Path>> = vec![None; count as usize];
    for (dir, m) in dirs.iter().zip(&manifests) {
        let differs = [
            ("model", m.hashes.model != first.hashes.model),
            ("dataset slice", m.hashes.data != first.hashes.data),
            (
                "configuration",
                m.hashes.config != first.hashes.config || m.units != first.units,
            ),
            ("shard count", m.shard.count != count),
        ];
        if let Some((what, _)) = differs.iter().find(|(_, d)| *d) {
            return Err(HartError::Invalid(format!(
                "{} is a sweep of a different {what} than {}; refusing to merge",
                dir.display(),
                first_dir.display()
            )));
        }
        let slot = &mut owner[m.shard.index as usize];
        if let Some(other) = slot {
            return Err(HartError::Invalid(format!(
                "{} and {} are both shard {}/{count}",
                other.display(),
                dir.display(),
                m.shard.index
            )));
        }
        *slot = Some(dir);
    }
    if let Some(missing) = owner.iter().position(Option::is_none) {
        return Err(HartError::Invalid(format!(
            "shard {missing}/{count} is missing from the merge"
        )));
    }
    let parts: Vec<PathBuf> = (0..first.units)
        .map(|u| part_path(owner[u % count as usize].unwrap_or(first_dir), u))
        .collect();
    let mut whole = first.clone();
    whole.shard = Shard::WHOLE;
    std::fs::create_dir_all(out).map_err(|e| HartError::io(out, e))?;
    assemble(out, &whole, format, parts)
}
