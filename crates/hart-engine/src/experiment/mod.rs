//! `hart experiment`: baseline vs Hessian-aware training, end to end.

pub mod cache;
pub mod config;
pub mod recipe;
pub mod run;
pub mod stats;

pub use config::ExperimentConfig;
