//! Which (flip, sample) pairs of a unit the bound cannot prove unaffected:
//! per flip, the chunk samples that must be evaluated.
//!
//! Two tests. The general one compares |δ|·A (the delta's sensitivity at
//! the cut) with each sample's margin. Where the cut is a 2-D linear layer
//! followed by ReLU/clip ops, each pair's change after those ops is one
//! number: it is computed exactly, as the sparse path would, and bounded
//! with the sensitivity past them — a unit that stays off makes the pair
//! harmless outright, which the |δ|·A test cannot see. That test runs as a
//! fused loop here: as tensor ops it cost more than the pairs it saved.

use std::cmp::Ordering;
use std::rc::Rc;

use tch::{Device, Kind, Tensor};

use super::delta::Delta;
use super::{Cut, Fast, UnitFlips, BOUND_SAFETY};
use crate::error::{HartError, Result};
use crate::model::graph::{Graph, Op};

/// The candidate samples of one flip in one chunk (offsets from its start).
pub enum Cand {
    /// Every sample of a chunk this long.
    All(usize),
    /// Ascending.
    List(Vec<u32>),
}

impl Cand {
    /// `samples` of a chunk of `ns`: no list where it is all of them (the
    /// common case for exponent flips, 4 bytes a sample otherwise).
    pub fn of(samples: Vec<u32>, ns: usize) -> Cand {
        if samples.len() == ns {
            Cand::All(ns)
        } else {
            Cand::List(samples)
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Cand::All(n) => *n,
            Cand::List(l) => l.len(),
        }
    }

    pub fn get(&self, k: usize) -> u32 {
        match self {
            Cand::All(_) => k as u32,
            Cand::List(l) => l[k],
        }
    }
}

/// An elementwise op of the chain after a linear cut.
#[derive(Debug, Clone, Copy)]
enum Act {
    /// `clamp(v, lo, hi)` as libtorch computes it on f32 (NaN stays NaN); ReLU is `lo = 0`.
    Clamp(Option<f32>, Option<f32>),
    Identity,
}

impl Act {
    fn apply(self, v: f32) -> f32 {
        match self {
            Act::Identity => v,
            Act::Clamp(lo, hi) => {
                if v.is_nan() {
                    return v;
                }
                let v = lo.map_or(v, |lo| v.max(lo));
                hi.map_or(v, |hi| v.min(hi))
            }
        }
    }
}

/// The exact-chain test of a linear cut: the chain's ops and the
/// sensitivity per unit at its end.
#[derive(Debug)]
pub struct Scalar {
    acts: Vec<Act>,
    g_end: Vec<f32>,
}

impl Scalar {
    /// For `chain` (node ids) if every op is a ReLU, clip or identity.
    pub fn new(graph: &Graph, chain: &[usize], g_end: &Tensor) -> Result<Option<Scalar>> {
        let mut acts = vec![];
        for &u in chain {
            acts.push(match graph.nodes[u].op {
                Op::Relu => Act::Clamp(Some(0.0), None),
                Op::Clip { min, max } => Act::Clamp(min.map(|v| v as f32), max.map(|v| v as f32)),
                Op::Identity | Op::Dropout { .. } => Act::Identity,
                _ => return Ok(None),
            });
        }
        if acts.is_empty() {
            return Ok(None);
        }
        let g_end = Vec::<f32>::try_from(g_end.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1))?;
        Ok(Some(Scalar { acts, g_end }))
    }
}

/// `t` (2-D) transposed into a row-major `Vec`: rows become units.
fn columns(t: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(
        t.to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .tr()
            .contiguous()
            .flatten(0, -1),
    )?)
}

/// A chunk of images `s0..s1` and its cached clean values.
#[derive(Clone, Copy)]
pub struct Chunk<'e> {
    pub env: &'e [Option<Tensor>],
    pub s0: usize,
    pub s1: usize,
}

/// What the exact-chain test reads, by unit (or input feature) and then
/// sample, for one cut and chunk: shared by the units of its tensor.
pub struct Columns {
    h: Vec<f32>,
    h_end: Vec<f32>,
    /// The layer input, `[samples, in]` row-major.
    x: Option<Vec<f32>>,
    /// max |x| per input feature (∞ where NaN).
    xmax: Option<Vec<f64>>,
    room: Vec<f32>,
    /// Samples by room, NaN first, and their rooms in that order.
    order: Vec<u32>,
    sorted: Vec<f32>,
}

impl Fast<'_> {
    fn build_columns(&self, cut: &Cut, chunk: &Chunk) -> Result<Columns> {
        let Chunk { env, s0, s1 } = *chunk;
        let ns = s1 - s0;
        let cached = |v: usize| {
            env[v]
                .as_ref()
                .ok_or_else(|| HartError::Model(format!("fast engine: value {v} not cached")))
        };
        let c = cut.plan.c;
        let end = cut.sparse.as_ref().map_or(c, |sp| sp.end(c));
        let room = Vec::<f32>::try_from(self.room(s0, ns).flatten(0, -1).to_kind(Kind::Float))?;
        let x = match &cut.delta {
            // Row-major: transposing the input per worker cost more than the strided reads.
            Delta::LinearWeight { input, .. } => Some(Vec::<f32>::try_from(
                cached(*input)?
                    .to_device(Device::Cpu)
                    .to_kind(Kind::Float)
                    .contiguous()
                    .flatten(0, -1),
            )?),
            _ => None,
        };
        let mut order: Vec<u32> = (0..ns as u32).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (room[a as usize], room[b as usize]);
            b.is_nan().cmp(&a.is_nan()).then(a.total_cmp(&b))
        });
        let sorted: Vec<f32> = order.iter().map(|&s| room[s as usize]).collect();
        let xmax = x.as_ref().map(|x| {
            let width = x.len() / ns.max(1);
            let mut m = vec![0f32; width];
            for row in x.chunks(width.max(1)) {
                for (m, v) in m.iter_mut().zip(row) {
                    if v.abs() > *m || v.is_nan() {
                        *m = v.abs();
                    }
                }
            }
            m.into_iter()
                .map(|m| if m.is_nan() { f64::INFINITY } else { m as f64 })
                .collect()
        });
        Ok(Columns {
            h: columns(cached(c)?)?,
            h_end: columns(cached(end)?)?,
            x,
            xmax,
            room,
            order,
            sorted,
        })
    }

    /// Each flip's candidate samples on chunk `s0..s1`.
    pub(super) fn candidates(&self, cut: &Cut, u: &UnitFlips, chunk: &Chunk) -> Result<Vec<Cand>> {
        let Chunk { env, s0, s1 } = *chunk;
        let ns = s1 - s0;
        let all = || u.flips.iter().map(|_| Cand::All(ns)).collect();
        let Some(g) = &cut.g else { return Ok(all()) };
        if let Some(sc) = &cut.scalar {
            return self.scalar_candidates(cut, sc, u, chunk);
        }
        let mut elements: Vec<i64> = u.flips.iter().map(|f| f.index).collect();
        elements.dedup();
        let Some(a) = cut.delta.sensitivity(g, env, &elements, ns as i64)? else {
            return Ok(all());
        };
        let a = a.to_device(Device::Cpu).to_kind(Kind::Float);
        let row: Vec<i64> = u
            .flips
            .iter()
            .map(|f| elements.iter().position(|&e| e == f.index).unwrap_or(0) as i64)
            .collect();
        let size: Vec<f64> = u
            .values
            .iter()
            .map(|&(old, new)| {
                if new.is_finite() {
                    (new as f64 - old as f64).abs() * BOUND_SAFETY
                } else {
                    f64::INFINITY
                }
            })
            .collect();
        // The smallest |δ| each (element, sample) bound cannot clear: a pair is
        // a candidate unless |δ| < crit. NaN (0/0, ∞/∞) and −∞ (NaN logit
        // rows) make every flip a candidate.
        let crit = self.room(s0, ns) / a;
        let mut out = Vec::with_capacity(u.flips.len());
        for f0 in (0..u.flips.len()).step_by(512) {
            let m = 512.min(u.flips.len() - f0);
            let rows = Tensor::from_slice(&row[f0..f0 + m]);
            let sz = Tensor::from_slice(&size[f0..f0 + m]).to_kind(Kind::Float).unsqueeze(1);
            let mask = crit.index_select(0, &rows).gt_tensor(&sz).logical_not();
            let pairs = Vec::<i64>::try_from(mask.nonzero().flatten(0, -1))?;
            let mut lists: Vec<Vec<u32>> = (0..m).map(|_| vec![]).collect();
            for p in pairs.chunks_exact(2) {
                lists[p[0] as usize].push(p[1] as u32);
            }
            out.extend(lists.into_iter().map(|l| Cand::of(l, ns)));
        }
        Ok(out)
    }

    /// `[1, ns]` f32: margin − slack of the chunk's samples.
    fn room(&self, s0: usize, ns: usize) -> Tensor {
        let clean = self.ctx.clean;
        (clean.margins.narrow(0, s0 as i64, ns as i64) - clean.slack.narrow(0, s0 as i64, ns as i64)).unsqueeze(0)
    }

    /// The exact-chain test (see the module text), one pass over
    /// (flip, sample) in Rust.
    fn scalar_candidates(&self, cut: &Cut, sc: &Scalar, u: &UnitFlips, chunk: &Chunk) -> Result<Vec<Cand>> {
        let Chunk { s0, s1, .. } = *chunk;
        let ns = s1 - s0;
        let in_features = match &cut.delta {
            Delta::LinearWeight { in_features, .. } => *in_features,
            _ => 1,
        };
        let key = (cut.plan.c, s0, s1, in_features);
        let cols = match self.columns.borrow().as_ref() {
            Some((k, cols)) if *k == key => Some(cols.clone()),
            _ => None,
        };
        let cols = match cols {
            Some(cols) => cols,
            None => {
                *self.columns.borrow_mut() = None;
                let cols = Rc::new(self.build_columns(cut, chunk)?);
                *self.columns.borrow_mut() = Some((key, cols.clone()));
                cols
            }
        };
        let Columns {
            h,
            h_end,
            x,
            xmax,
            room,
            order,
            sorted,
        } = &*cols;
        let safety = BOUND_SAFETY as f32;
        let mut out = Vec::with_capacity(u.flips.len());
        for (f, flip) in u.flips.iter().enumerate() {
            let (old, new) = u.values[f];
            if !new.is_finite() {
                out.push(Cand::All(ns));
                continue;
            }
            let d = new - old;
            let o = cut.delta.channel(flip.index) as usize;
            let i = (flip.index % in_features) as usize;
            let (h, h_end, g) = (&h[o * ns..][..ns], &h_end[o * ns..][..ns], sc.g_end[o]);
            let x = x.as_ref().map(|x| &x[i..]);
            // The clamps are 1-Lipschitz: |moved| ≤ 2|x·δ| after rounding
            // h + x·δ; 4 covers the rounding of the test's own products too.
            let reach = 4.0 * (d as f64).abs() * xmax.as_ref().map_or(1.0, |m| m[i]) * g as f64 * BOUND_SAFETY;
            let room = room.as_slice();
            // Samples whose room does not clear `reach` (NaN on either side included).
            let tested = sorted.partition_point(|&r| (r as f64).partial_cmp(&reach) != Some(Ordering::Greater));
            let test = |s: usize| {
                // As the sparse path computes it: clean + x·δ, then the chain.
                let change = x.map_or(d, |x| x[s * in_features as usize] * d);
                let v = sc.acts.iter().fold(h[s] + change, |v, a| a.apply(v));
                let bound = (v - h_end[s]).abs() * g * safety;
                bound.partial_cmp(&room[s]) != Some(Ordering::Less)
            };
            let list: Vec<u32> = if tested == ns {
                (0..ns as u32).filter(|&s| test(s as usize)).collect()
            } else {
                let mut l: Vec<u32> = order[..tested].iter().copied().filter(|&s| test(s as usize)).collect();
                l.sort_unstable();
                l
            };
            out.push(Cand::of(list, ns));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamp_acts_match_libtorch_bit_for_bit() {
        let v = [
            -3.5f32,
            -0.0,
            0.0,
            1e-39,
            0.7,
            6.0,
            6.5,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        let t = Tensor::from_slice(&v);
        let cases = [
            (Act::Clamp(Some(0.0), None), t.relu()),
            (Act::Clamp(Some(0.0), Some(6.0)), t.clamp(0.0, 6.0)),
            (Act::Clamp(None, Some(1.0)), t.clamp_max(1.0)),
            (Act::Identity, t.shallow_clone()),
        ];
        for (act, want) in cases {
            let want = Vec::<f32>::try_from(want).unwrap();
            for (x, w) in v.iter().zip(&want) {
                let got = act.apply(*x);
                assert!(
                    got.to_bits() == w.to_bits() || (got.is_nan() && w.is_nan()),
                    "{act:?}({x}) = {got}, libtorch {w}"
                );
            }
        }
    }
}
