//! HART library core: data, models, training, evaluation.
pub mod attack;
pub mod bench;
pub mod campaign;
pub mod compress;
pub mod data;
pub mod error;
pub mod eval;
pub mod experiment;
pub mod faults;
pub mod hessian;
pub mod interrupt;
pub mod landscape;
pub mod loss;
pub mod model;
pub mod outdir;
pub mod plot;
pub mod report;
pub mod stats;
pub mod train;
pub mod util;

pub use error::{HartError, Result};
