//! The two searches: BFA's progressive bit search and uniformly random flips.

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use super::{Attack, FlipRecord, Method, Trial};
use crate::error::{HartError, Result};
use crate::faults::bits::read_elements;
use crate::faults::inject::{BitFault, BitOp};
use crate::faults::storage::flip_word;
use crate::loss::cross_entropy;
use crate::model::Mode;

/// Cross-entropy of the model as it is on (x, y); a NaN loss (NaN logits)
/// counts as infinite: the flip broke the batch completely.
fn loss(attack: &Attack, x: &Tensor, y: &Tensor) -> Result<f64> {
    let l = tch::no_grad(|| -> Result<f64> {
        Ok(cross_entropy(&attack.model.forward(x, Mode::Eval)?, y)?.f_double_value(&[])?)
    })?;
    Ok(if l.is_nan() { f64::INFINITY } else { l })
}

/// Gradients of the attack-batch loss with respect to each attacked tensor, flat.
fn gradients(attack: &Attack, x: &Tensor, y: &Tensor) -> Result<Vec<Vec<f32>>> {
    let live: Vec<Tensor> = attack
        .layers
        .iter()
        .map(|&ti| {
            let name = &attack.inject.stored.tensors[ti].name;
            attack
                .model
                .named_tensors()
                .into_iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, t, _)| t)
                .ok_or_else(|| HartError::Model(format!("model has no tensor {name}")))
        })
        .collect::<Result<_>>()?;
    let l = cross_entropy(&attack.model.forward(x, Mode::Eval)?, y)?;
    let grads = Tensor::f_run_backward(&[l], &live, false, false)?;
    grads.iter().map(|g| read_elements(g, 0, g.numel() as i64)).collect()
}

/// The `k` flips of stored tensor `ti` with the largest first-order loss
/// increase g·Δw, Δw the change the flip makes to the current weight;
/// flips to a non-finite weight rank first. Skips positions already
/// flipped and, under `range`, flips the defence would catch.
fn top_k(
    attack: &Attack,
    ti: usize,
    grad: &[f32],
    faulty: &crate::faults::defense::Faulty,
    done: &HashSet<(usize, usize, u8)>,
) -> Vec<BitFault> {
    let st = &attack.inject.stored.tensors[ti];
    let k = attack.cfg.top_k;
    // The best k so far, ties broken by position (deterministic).
    let better =
        |a: &(f64, usize, u8), b: &(f64, usize, u8)| a.0.total_cmp(&b.0).then((b.1, b.2).cmp(&(a.1, a.2))).is_gt();
    let mut best: Vec<(f64, usize, u8)> = Vec::with_capacity(k + 1);
    for (i, &g) in grad.iter().enumerate() {
        let w = faulty.get(&(ti, i)).copied().unwrap_or(st.words[i]);
        let v = st.decode(i, w);
        for bit in 0..st.width {
            let new = st.decode(i, flip_word(w, bit));
            let score = if new.is_finite() {
                g as f64 * (new as f64 - v as f64)
            } else {
                f64::INFINITY
            };
            let c = (score, i, bit);
            if best.len() == k && !best.iter().any(|b| better(&c, b)) {
                continue;
            }
            if done.contains(&(ti, i, bit)) || !attack.inject.armed.in_range(ti, new) {
                continue;
            }
            best.push(c);
            if best.len() > k {
                let worst = (0..best.len()).fold(0, |w, j| if better(&best[w], &best[j]) { j } else { w });
                best.swap_remove(worst);
            }
        }
    }
    best.sort_by(|a, b| {
        if better(a, b) {
            std::cmp::Ordering::Less
        } else {
            std::cmp::Ordering::Greater
        }
    });
    best.into_iter()
        .map(|(_, index, bit)| BitFault {
            tensor: ti,
            index,
            bit,
            op: BitOp::Flip,
        })
        .collect()
}

/// Records a committed flip and measures the state it leaves.
struct Progress<'a, 'b> {
    attack: &'a Attack<'b>,
    trial: usize,
    method: Method,
    faults: Vec<BitFault>,
    done: HashSet<(usize, usize, u8)>,
    records: Vec<FlipRecord>,
    curve: Vec<f64>,
}

impl<'a, 'b> Progress<'a, 'b> {
    fn new(attack: &'a Attack<'b>, trial: usize, method: Method) -> Self {
        Progress {
            attack,
            trial,
            method,
            faults: vec![],
            done: HashSet::new(),
            records: vec![],
            curve: vec![attack.clean_accuracy],
        }
    }

    fn accuracy(&self) -> f64 {
        *self.curve.last().unwrap_or(&self.attack.clean_accuracy)
    }

    fn commit(&mut self, f: BitFault, attack_loss: f64) -> Result<()> {
        let st = &self.attack.inject.stored.tensors[f.tensor];
        let before = self.attack.inject.faulty(&self.faults)?;
        let w = before.get(&(f.tensor, f.index)).copied().unwrap_or(st.words[f.index]);
        self.faults.push(f);
        self.done.insert((f.tensor, f.index, f.bit));
        let accuracy = self.attack.accuracy(&self.faults)?;
        self.curve.push(accuracy);
        self.records.push(FlipRecord {
            group: format!("{}-{}", self.method, self.trial),
            trial: self.trial,
            method: self.method,
            iteration: self.records.len() + 1,
            param: st.name.clone(),
            index: f.index,
            bit: f.bit,
            old: st.decode(f.index, w),
            new: st.decode(f.index, flip_word(w, f.bit)),
            attack_loss,
            accuracy,
        });
        Ok(())
    }

    fn finish(self) -> Result<Trial> {
        let rec = self.attack.inject.recover(&self.faults)?;
        let final_accuracy = self.accuracy();
        Ok(Trial {
            trial: self.trial,
            method: self.method,
            flips: self.faults.len(),
            final_accuracy,
            reached: final_accuracy <= self.attack.target,
            curve: self.curve,
            detected_flips: rec.detected_flips,
            zeroed_weights: rec.zeroed_weights,
            zeroed_groups: rec.zeroed_groups,
            records: self.records,
        })
    }
}

/// BFA's progressive bit search for trial `t`: in-layer top-k ranking by
/// gradient, exact evaluation of each candidate, the best across layers
/// committed, until the target accuracy or the flip budget.
pub fn bfa(attack: &Attack, t: usize, progress: &mut dyn FnMut(u64)) -> Result<Trial> {
    let (x, y) = attack.attack_batch(t)?;
    let mut p = Progress::new(attack, t, Method::Bfa);
    while p.faults.len() < attack.cfg.max_flips && p.accuracy() > attack.target {
        crate::interrupt::check()?;
        let grads = attack
            .inject
            .with_faults(attack.model, &p.faults, |_| gradients(attack, &x, &y))?;
        let faulty = attack.inject.faulty(&p.faults)?;
        let mut best: Option<(f64, BitFault)> = None;
        let mut trial = p.faults.clone();
        for (&ti, g) in attack.layers.iter().zip(&grads) {
            for c in top_k(attack, ti, g, &faulty, &p.done) {
                trial.push(c);
                let l = attack
                    .inject
                    .with_faults(attack.model, &trial, |_| loss(attack, &x, &y))?;
                trial.pop();
                if best.is_none_or(|(b, _)| l > b) {
                    best = Some((l, c));
                }
            }
        }
        let Some((l, f)) = best else { break };
        p.commit(f, l)?;
        progress(1);
    }
    p.finish()
}

/// `budget` flips drawn uniformly over every bit of every attacked word
/// (distinct positions, seed + t); `stop` ends the trial at the target.
pub fn random(attack: &Attack, t: usize, budget: usize, stop: bool, progress: &mut dyn FnMut(u64)) -> Result<Trial> {
    let (x, y) = attack.attack_batch(t)?;
    let sizes: Vec<u64> = attack
        .layers
        .iter()
        .map(|&ti| {
            let st = &attack.inject.stored.tensors[ti];
            st.numel() as u64 * st.width as u64
        })
        .collect();
    let total: u64 = sizes.iter().sum();
    let budget = budget.min(total as usize);
    let mut rng = ChaCha8Rng::seed_from_u64(attack.cfg.seed.wrapping_add(t as u64) ^ 0x5241_4e44);
    let mut p = Progress::new(attack, t, Method::Random);
    while p.faults.len() < budget && !(stop && p.accuracy() <= attack.target) {
        let mut r = rng.random_range(0..total);
        let mut k = 0;
        while r >= sizes[k] {
            r -= sizes[k];
            k += 1;
        }
        let ti = attack.layers[k];
        let width = attack.inject.stored.tensors[ti].width as u64;
        let (index, bit) = ((r / width) as usize, (r % width) as u8);
        if p.done.contains(&(ti, index, bit)) {
            continue;
        }
        let f = BitFault {
            tensor: ti,
            index,
            bit,
            op: BitOp::Flip,
        };
        let mut all = p.faults.clone();
        all.push(f);
        let l = attack
            .inject
            .with_faults(attack.model, &all, |_| loss(attack, &x, &y))?;
        p.commit(f, l)?;
        progress(1);
    }
    p.finish()
}
