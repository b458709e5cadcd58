//! A trial as a set of tensor changes: applied in place before the forward
//! pass and undone after it, bit for bit, touching only the changed elements
//! (bit faults) or the noisy tensors (Gaussian).

use tch::Tensor;

use super::draw::BitFault;
use super::model::FaultModel;
use crate::error::{HartError, Result};
use crate::faults::bits::gather_elements;

/// How the chosen tensors are stored: bits per element, the stored word of
/// an element, and the value a word decodes to.
pub trait Codec {
    fn width(&self, target: usize) -> u32;
    fn encode(&self, target: usize, index: i64, value: f32) -> u32;
    fn decode(&self, target: usize, index: i64, word: u32) -> f32;
}

/// IEEE-754 binary32: the word is the float's bits.
pub struct Fp32;

impl Codec for Fp32 {
    fn width(&self, _: usize) -> u32 {
        32
    }
    fn encode(&self, _: usize, _: i64, value: f32) -> u32 {
        value.to_bits()
    }
    fn decode(&self, _: usize, _: i64, word: u32) -> f32 {
        f32::from_bits(word)
    }
}

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
}

impl Patch {
    /// The changes `faults` (sorted, as drawn) make to `tensors` stored by `codec`.
    pub fn from_bits(tensors: &[Tensor], faults: &[BitFault], model: FaultModel, codec: &dyn Codec) -> Result<Patch> {
        let mut patch = Patch::default();
        for run in faults.chunk_by(|a, b| a.target == b.target) {
            let t = run[0].target;
            let mut index: Vec<i64> = run.iter().map(|f| f.index).collect();
            index.dedup();
            let clean = gather_elements(&tensors[t], &index)?;
            let (mut idx, mut old, mut new) = (vec![], vec![], vec![]);
            for (element, (&i, &v)) in run.chunk_by(|a, b| a.index == b.index).zip(index.iter().zip(&clean)) {
                let word = codec.encode(t, i, v);
                let mut w = word;
                for f in element {
                    let next = model.apply(w, f.bit);
                    if next != w {
                        patch.effective.push(*f);
                    }
                    w = next;
                }
                if w != word {
                    idx.push(i);
                    old.push(v);
                    new.push(codec.decode(t, i, w));
                }
            }
            if !idx.is_empty() {
                patch.changes.push(Change::Elements {
                    target: t,
                    index: idx,
                    old,
                    new,
                });
            }
        }
        Ok(patch)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_combine_per_element_and_restore_exactly() {
        let t = Tensor::from_slice(&[1.0f32, -0.0, 2.5, f32::NAN]);
        let before: Vec<u32> = Vec::<f32>::try_from(&t).unwrap().iter().map(|v| v.to_bits()).collect();
        let f = |index, bit| BitFault { target: 0, index, bit };
        // Element 1: sign flipped twice (no change); element 2: two bits.
        let faults = [f(1, 31), f(1, 31), f(2, 0), f(2, 31)];
        let p = Patch::from_bits(&[t.shallow_clone()], &faults, FaultModel::Bitflip, &Fp32).unwrap();
        assert_eq!(p.changes.len(), 1);
        let during = p
            .with(&[t.shallow_clone()], || Ok(Vec::<f32>::try_from(&t).unwrap()))
            .unwrap();
        assert_eq!(during[2].to_bits(), 2.5f32.to_bits() ^ 1 ^ (1 << 31));
        assert_eq!(during[1].to_bits(), (-0.0f32).to_bits());
        let after: Vec<u32> = Vec::<f32>::try_from(&t).unwrap().iter().map(|v| v.to_bits()).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn stuck_at_on_a_holding_bit_is_no_change() {
        let t = Tensor::from_slice(&[-1.0f32]);
        let p = Patch::from_bits(
            &[t],
            &[BitFault {
                target: 0,
                index: 0,
                bit: 31,
            }],
            FaultModel::StuckAt1,
            &Fp32,
        )
        .unwrap();
        assert!(p.is_empty() && p.effective.is_empty());
    }
}
