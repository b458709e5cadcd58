//! What every engine shares: the evaluation context, the per-flip outcome,
//! and applying a flip with a guaranteed bit-exact restore.

use tch::{Device, Kind, Tensor};

use super::bits::{flip, gather_elements, read_elements, write_element};
use super::clean::Clean;
use super::space::{Flip, FlipSpace};
use crate::data::Dataset;
use crate::error::{HartError, Result};
use crate::model::{Mode, Model};

/// Everything an engine needs besides the flips.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub model: &'a Model,
    pub data: &'a Dataset,
    pub clean: &'a Clean,
    /// Images per forward pass of the reference and generic loops.
    pub batch: usize,
    pub device: Device,
    pub threshold: f64,
    /// Count every sample of every flip (no early exit).
    pub exact_rad: bool,
}

impl Ctx<'_> {
    /// Images and labels `start..end`, on the engine's device.
    pub fn images(&self, start: usize, end: usize) -> (Tensor, Tensor) {
        let (x, y) = self.data.batch_range(start, end);
        (x.to_device(self.device), y.to_device(self.device))
    }

    /// Per-sample correctness of the model as it currently is, on `start..end`.
    pub fn correct_on(&self, start: usize, end: usize) -> Result<Tensor> {
        let (x, y) = self.images(start, end);
        let logits = tch::no_grad(|| self.model.forward(&x, Mode::Eval))?;
        Ok(self.clean.policy.correct(&logits, &y).to_device(Device::Cpu))
    }
}

/// One flip's measurement: the faulty correct count over the `total` samples,
/// exact or (after an early exit) on the verdict's side of the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub correct: i64,
    pub exact: bool,
}

/// How an engine spent its work so far: (flip, sample) pairs run through
/// the network, and pairs the linear-region certificate settled instead.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    pub evaluated_pairs: u64,
    pub certified_pairs: u64,
}

pub trait Engine {
    /// Outcomes for `flips`, all of one target tensor, in order; `values`
    /// holds each flip's clean and flipped value ([`old_new`]).
    fn run(&mut self, space: &FlipSpace, flips: &[Flip], values: &[(f32, f32)]) -> Result<Vec<Outcome>>;

    /// Counts since the engine was made (engines that count nothing: zeros).
    fn stats(&self) -> EngineStats {
        EngineStats::default()
    }
}

/// The clean and flipped values of each flip, read from the tensor itself.
pub fn old_new(space: &FlipSpace, flips: &[Flip]) -> Result<Vec<(f32, f32)>> {
    let mut out = Vec::with_capacity(flips.len());
    // One gather per run of flips of one tensor (a unit is one run).
    for run in flips.chunk_by(|a, b| a.target == b.target) {
        let indices: Vec<i64> = run.iter().map(|f| f.index).collect();
        let old = gather_elements(&space.targets[run[0].target].tensor, &indices)?;
        out.extend(run.iter().zip(old).map(|(f, old)| (old, flip(old, f.bit))));
    }
    Ok(out)
}

/// Runs `body` with the flip applied and restores the clean value whatever
/// `body` returns; a failed restore is an error, never silent corruption.
pub fn with_flip<T>(tensor: &Tensor, index: i64, old: f32, new: f32, body: impl FnOnce() -> Result<T>) -> Result<T> {
    write_element(tensor, index, new)?;
    let out = body();
    write_element(tensor, index, old)?;
    let back = read_elements(tensor, index, 1)?[0];
    if back.to_bits() != old.to_bits() {
        return Err(HartError::Model(format!(
            "restoring element {index} failed: {back} != {old}"
        )));
    }
    out
}

/// Lost-minus-won count of `faulty` against the clean correctness of the same samples.
pub fn lost(clean: &Tensor, faulty: &Tensor) -> Result<i64> {
    Ok(clean.to_kind(Kind::Int64).sum(Kind::Int64).f_int64_value(&[])?
        - faulty.to_kind(Kind::Int64).sum(Kind::Int64).f_int64_value(&[])?)
}
