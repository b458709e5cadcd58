//! Bit faults on stored words, recovered by a defence and written into the
//! model for the forward pass: the one path every multi-bit fault takes
//! (grouped fault lists, attacks, campaigns).

use std::collections::HashMap;

use tch::Tensor;

use super::bits::{read_elements, write_element};
use super::defense::{Armed, Defense, Faulty, Recovery};
use super::storage::{flip_word, set_word, Storage, Stored};
use crate::compress::quantize::Granularity;
use crate::error::{HartError, Result};
use crate::model::Model;

/// What a fault does to its bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitOp {
    Flip,
    /// Stuck-at-0 or stuck-at-1.
    Stuck(bool),
}

/// One bit fault: bit `bit` of word `index` of stored tensor `tensor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitFault {
    pub tensor: usize,
    pub index: usize,
    pub bit: u8,
    pub op: BitOp,
}

/// A model's stored words and the defence armed on them.
#[derive(Debug, Clone)]
pub struct Injector {
    pub stored: Stored,
    pub armed: Armed,
}

impl Injector {
    /// Encodes `model` in `storage` (quantizing int-stored tensors in place)
    /// and arms `defense` on the clean words; `seed` fixes RADAR's key.
    pub fn new(model: &Model, storage: Storage, granularity: Granularity, defense: Defense, seed: u64) -> Result<Self> {
        let stored = Stored::encode(model, storage, granularity)?;
        let armed = Armed::arm(defense, &stored, seed);
        Ok(Injector { stored, armed })
    }

    /// True when nothing differs from the plain fp32 sweep (IEEE flips, no defence).
    pub fn is_plain(&self) -> bool {
        self.stored.storage == Storage::Fp32 && self.armed.defense == Defense::None
    }

    /// The words `faults` leave behind, applied in order (later faults see
    /// earlier ones); words that end up clean are dropped.
    pub fn faulty(&self, faults: &[BitFault]) -> Result<Faulty> {
        let mut out = Faulty::new();
        for f in faults {
            let t = self
                .stored
                .tensors
                .get(f.tensor)
                .ok_or_else(|| HartError::Invalid(format!("no stored tensor #{}", f.tensor)))?;
            t.check_bit(f.bit)?;
            if f.index >= t.numel() {
                return Err(HartError::Invalid(format!(
                    "index {} out of range for {} ({} elements)",
                    f.index,
                    t.name,
                    t.numel()
                )));
            }
            let w = out.get(&(f.tensor, f.index)).copied().unwrap_or(t.words[f.index]);
            let w = match f.op {
                BitOp::Flip => flip_word(w, f.bit),
                BitOp::Stuck(v) => set_word(w, f.bit, v).0,
            };
            if w == t.words[f.index] {
                out.remove(&(f.tensor, f.index));
            } else {
                out.insert((f.tensor, f.index), w);
            }
        }
        Ok(out)
    }

    /// Detection and recovery of the state `faults` leave behind.
    pub fn recover(&self, faults: &[BitFault]) -> Result<Recovery> {
        Ok(self.armed.recover(&self.stored, &self.faulty(faults)?))
    }

    /// Runs `body` on `model` with `faults` applied and recovered, then
    /// writes the clean values back and checks them bit for bit.
    pub fn with_faults<T>(
        &self,
        model: &Model,
        faults: &[BitFault],
        body: impl FnOnce(&Recovery) -> Result<T>,
    ) -> Result<T> {
        let rec = self.recover(faults)?;
        let live: HashMap<String, Tensor> = model.named_tensors().into_iter().map(|(n, t, _)| (n, t)).collect();
        let tensor = |t: usize| {
            let name = &self.stored.tensors[t].name;
            live.get(name)
                .ok_or_else(|| HartError::Model(format!("model has no tensor {name}")))
        };
        let mut written = vec![];
        let mut failed = None;
        for &(t, i, v) in &rec.writes {
            if let Err(e) = tensor(t).and_then(|x| write_element(x, i as i64, v)) {
                failed = Some(e);
                break;
            }
            written.push((t, i));
        }
        let out = match failed {
            Some(e) => Err(e),
            None => body(&rec),
        };
        for (t, i) in written {
            let clean = self.stored.tensors[t].value(i);
            let x = tensor(t)?;
            write_element(x, i as i64, clean)?;
            let back = read_elements(x, i as i64, 1)?[0];
            if back.to_bits() != clean.to_bits() {
                return Err(HartError::Model(format!(
                    "restoring {}[{i}] failed: {back} != {clean}",
                    self.stored.tensors[t].name
                )));
            }
        }
        out
    }
}
