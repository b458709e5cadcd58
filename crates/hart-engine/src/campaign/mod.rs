//! Fault campaigns: many random trials per fault level (bit-error rate of
//! bit flips or stuck-at cells, or relative σ of analog Gaussian noise),
//! accuracy per trial, statistics per level. See docs/campaign.md.

pub mod eval;
pub mod model;
pub mod patch;
pub mod plot;
pub mod replay;
pub mod run;
pub mod sbatch;
pub mod stats;
pub mod table;

// The draws sit one layer down in faults/ because training (randbet, noise)
// draws the same faults; campaign::draw and campaign::noise stay valid paths.
pub use crate::faults::{draw, noise};

pub use model::FaultModel;
pub use run::{prepare, Campaign, CampaignConfig};
pub use stats::LevelStats;
