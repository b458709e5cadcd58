//! What every engine shares: the evaluation context, the engine trait,
//! and applying a flip with a guaranteed bit-exact restore.

use tch::{Device, Tensor};

use super::bits::{flip, gather_elements, read_elements, write_element};
use super::clean::Clean;
use super::record::Row;
use super::space::{Flip, FlipSpace, Unit};
use super::verdict::{rad, Outcome, Sequential};
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
    /// Sequential verdicts: the schedule of looks and their level.
    pub sequential: Option<Sequential>,
}

impl Ctx<'_> {
    /// Images and labels `start..end`, on the engine's device.
    pub fn images(&self, start: usize, end: usize) -> Result<(Tensor, Tensor)> {
        let (x, y) = match &self.clean.inputs {
            Some(x) => {
                let rows = |t: &Tensor| t.f_narrow(0, start as i64, (end - start) as i64);
                (rows(x)?, rows(&self.clean.labels)?)
            }
            None => self.data.batch_range(start, end),
        };
        Ok((x.f_to_device(self.device)?, y.f_to_device(self.device)?))
    }

    /// Per-sample correctness of the model as it currently is, on `start..end`.
    pub fn correct_on(&self, start: usize, end: usize) -> Result<Tensor> {
        let (x, y) = self.images(start, end)?;
        let logits = tch::no_grad(|| self.model.forward(&x, Mode::Eval))?;
        Ok(self.clean.policy.correct(&logits, &y).f_to_device(Device::Cpu)?)
    }
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

/// The clean and flipped values of each flip: the IEEE flip of the value
/// read from the tensor, or, with a storage format or defence, the decoded
/// flipped word after the defence's single-element recovery (RADAR, which
/// rewrites whole groups, leaves the decoded word: its engine applies the rest).
pub fn old_new(space: &FlipSpace, flips: &[Flip]) -> Result<Vec<(f32, f32)>> {
    let mut out = Vec::with_capacity(flips.len());
    if let Some(inj) = &space.inject {
        for f in flips {
            let name = &space.targets[f.target].name;
            let (old, new) = inj.stored.flip_values(name, f.index, f.bit)?;
            let ti = inj.stored.index(name).unwrap_or(0);
            out.push((old, inj.armed.single(ti, new).unwrap_or(new)));
        }
        return Ok(out);
    }
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

/// Rows of one unit, computed by `engine`.
pub fn unit_rows(space: &FlipSpace, clean: &Clean, engine: &mut dyn Engine, unit: &Unit) -> Result<Vec<Row>> {
    let flips = space.unit_flips(unit);
    let values = old_new(space, &flips)?;
    let outcomes = engine.run(space, &flips, &values)?;
    let cc = clean.correct_count;
    Ok(flips
        .iter()
        .zip(values)
        .zip(outcomes)
        .map(|((f, (old, new)), o)| Row {
            param: space.targets[f.target].name.clone(),
            index: f.index,
            bit: f.bit,
            old,
            new,
            correct: o.correct,
            total: clean.n as i64,
            rad: rad(cc, o.correct),
            exact: o.exact,
            samples: o.samples,
            bound: o.bound,
            sure: o.sure,
        })
        .collect())
}
