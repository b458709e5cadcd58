//! Bit-flip fault injection: single-bit flips of float32 tensors and their
//! Relative Accuracy Drop, measured exactly and fast, resumably and in shards.
//! See docs/sweep.md for the method and its guarantees.

pub mod axes;
pub mod bits;
pub mod clean;
pub mod defense;
pub mod draw;
pub mod engine;
pub mod fast;
pub mod faulted;
pub mod faultlist;
pub mod generic;
pub mod groups;
pub mod hash;
pub mod hypergeom;
pub mod inject;
pub mod journal;
pub mod kind;
pub mod merge;
pub mod noise;
pub mod output;
pub mod ranger;
pub mod record;
pub mod reference;
pub mod sbatch;
pub mod shard;
pub mod space;
pub mod stats;
pub mod storage;
pub mod summary;
pub mod sweep;
pub mod verdict;
pub mod workers;

pub use bits::BitSet;
pub use defense::Defense;
pub use engine::{Engine, EngineStats};
pub use kind::EngineKind;
pub use output::Format;
pub use shard::Shard;
pub use space::{Flip, FlipSpace, SampleSize, Scope};
pub use storage::Storage;
pub use summary::Summary;
pub use sweep::{prepare, Sweep, SweepConfig};
pub use verdict::{Outcome, VerdictMode};
