//! `hart merge`: combine the shards of one sweep.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use hart::faults::merge::merge;
use hart::faults::Format;

use super::sweep::print_summary;

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Shard output directories (from `hart sweep --shard I/N --out DIR`).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value = "parquet")]
    pub format: Format,
}

pub fn run(a: MergeArgs) -> Result<()> {
    let summary = merge(&a.dirs, &a.out, a.format)?;
    print_summary(&summary);
    println!("merged {} shards into {}", a.dirs.len(), a.out.display());
    Ok(())
}
