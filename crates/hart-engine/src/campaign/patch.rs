//! A trial as a set of tensor changes: applied in place before the forward
//! pass and undone after it, bit for bit, touching only the changed elements
//! (bit faults on stored words, through the defence) or the noisy tensors
//! (Gaussian).

use tch::Tensor;

use std::collections::HashMap;

use super::draw::BitFault;
use super::model::FaultModel;
use crate::error::{HartError, Result};
use crate::faults::bits::gather_elements;
use crate::faults::inject::{self, BitOp, Injector};

pub enum Change {
    /// Elements of one tensor (flat indices) with their clean and faulty values.
    Elements {
        target: usize,
        index: Vec<i64>,
        old: Vec<f32>,
        new: Vec<f32>,
    },
    /// A whole tensor replaced.
    Whole { target: usize, old: Tensor, new: Tensor },
}

impl Change {
    pub fn target(&self) -> usize {
        match self {
            Change::Elements { target, .. } | Change::Whole { target, .. } => *target,
        }
    }
}

/// One trial's changes, and the bit faults that made them (empty for noise).
#[derive(Default)]
pub struct Patch {
    pub changes: Vec<Change>,
    /// The faults that changed a stored bit (a stuck-at cell already holding
    /// its value is left out), in drawn order.
    pub effective: Vec<BitFault>,
    /// Flipped bits the defence detected.
    pub detected: u64,
}

impl Patch {
    /// The changes `faults` (sorted, as drawn) make: the stored words of
    /// target `t` are `inject.stored.tensors[stored_of[t]]`; the defence
    /// armed in `inject` decides the values the forward pass sees.
    pub fn from_bits(inject: &Injector, stored_of: &[usize], faults: &[BitFault], model: FaultModel) -> Result<Patch> {
        let stored = &inject.stored.tensors;
        let mut effective = vec![];
        let mut words: HashMap<(usize, i64), u32> = HashMap::new();
        for f in faults {
            let clean = stored[stored_of[f.target]].words[f.index as usize];
            let w = words.entry((f.target, f.index)).or_insert(clean);
            let next = model.apply(*w, f.bit);
            if next != *w {
                effective.push(*f);
            }
            *w = next;
        }
        let op = match model {
            FaultModel::StuckAt0 => BitOp::Stuck(false),
            FaultModel::StuckAt1 => BitOp::Stuck(true),
            _ => BitOp::Flip,
        };
        let theirs: Vec<inject::BitFault> = faults
            .iter()
            .map(|f| inject::BitFault {
                tensor: stored_of[f.target],
                index: f.index as usize,
                bit: f.bit,
                op,
            })
            .collect();
        let mut rec = inject.recover(&theirs)?;
        rec.writes.sort_by_key(|&(t, i, _)| (t, i));
        let mut changes = vec![];
        for run in rec.writes.chunk_by(|a, b| a.0 == b.0) {
            let s = run[0].0;
            let target = stored_of.iter().position(|&x| x == s).ok_or_else(|| {
                HartError::Model(format!(
                    "the defence rewrote {}, outside the campaign's tensors",
                    stored[s].name
                ))
            })?;
            changes.push(Change::Elements {
                target,
                index: run.iter().map(|w| w.1 as i64).collect(),
                old: run.iter().map(|w| stored[s].value(w.1)).collect(),
                new: run.iter().map(|w| w.2).collect(),
            });
        }
        Ok(Patch {
            changes,
            effective,
            detected: rec.detected_flips,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Runs `body` with the changes applied and undoes them whatever it
    /// returns; a restore that does not give back the clean bits is an error.
    pub fn with<T>(&self, tensors: &[Tensor], body: impl FnOnce() -> Result<T>) -> Result<T> {
        for c in &self.changes {
            write(&tensors[c.target()], c, true)?;
        }
        let out = body();
        for c in self.changes.iter().rev() {
            write(&tensors[c.target()], c, false)?;
        }
        for c in &self.changes {
            if let Change::Elements { target, index, old, .. } = c {
                let back = gather_elements(&tensors[*target], index)?;
                if back.iter().zip(old).any(|(b, o)| b.to_bits() != o.to_bits()) {
                    return Err(HartError::Model("restoring a trial's faulted elements failed".into()));
                }
            }
        }
        out
    }
}

fn write(t: &Tensor, change: &Change, faulty: bool) -> Result<()> {
    tch::no_grad(|| -> Result<()> {
        match change {
            Change::Elements { index, old, new, .. } => {
                let values = if faulty { new } else { old };
                // Raw floats through from_slice + index_copy_: no arithmetic, so
                // NaN payloads and signed zeros come back as they were.
                let src = Tensor::from_slice(values).f_to_device(t.device())?;
                let idx = Tensor::from_slice(index).f_to_device(t.device())?;
                let _ = t.f_view([-1])?.f_index_copy_(0, &idx, &src)?;
            }
            Change::Whole { old, new, .. } => {
                t.shallow_clone().f_copy_(if faulty { new } else { old })?;
            }
        }
        Ok(())
    })
}
