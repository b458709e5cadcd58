//! Applying the linear-region certificate of [`super::linear`] to a chunk's
//! candidate pairs: one tangent pass per (element, sample), and per bit the
//! test whether the sample keeps its correctness along the tangent with
//! room for rounding.

use std::rc::Rc;

use tch::{Device, Kind, Tensor};

use super::candidates::{Cand, Chunk};
use super::delta::add_to_channel;
use super::linear::{host, Linear};
use super::{Cut, Env, Fast, UnitFlips, BOUND_SAFETY};
use crate::error::{HartError, Result};
use crate::model::graph::{Mode, Op};

/// Relative rounding allowance on the tangent's logit change.
const TANGENT_SAFETY: f64 = 1.0 / 128.0;

/// Whether a sample keeps its correctness when its logits move from `z` to
/// `z + d·v`: the label's logit stays strictly above (correct) or some other
/// class's strictly above the label's (wrong), by more than twice the
/// rounding slack plus an allowance on the computed change. NaN, or a
/// tangent that is not finite, never keeps. The reference for [`keep_limits`].
#[cfg(test)]
fn keeps(z: &[f32], v: &[f32], d: f64, label: usize, correct: bool, slack: f32) -> bool {
    if !v.iter().all(|x| x.is_finite()) {
        return false;
    }
    let vmax = v.iter().fold(0f64, |m, &x| m.max((x as f64).abs()));
    let err = slack as f64 + d.abs() * vmax * TANGENT_SAFETY;
    let moved = |j: usize| z[j] as f64 + d * v[j] as f64;
    let own = moved(label);
    let mut others = (0..z.len()).filter(|&j| j != label).map(moved);
    if correct {
        others.all(|o| own - o > 2.0 * err)
    } else {
        others.any(|o| o - own > 2.0 * err)
    }
}

/// The largest δ ≥ 0 and the largest −δ ≥ 0 below which [`keeps`] holds
/// for every smaller move that way (0 where it fails at once or anything is
/// NaN): each class's condition is linear in |δ| on either side, so the
/// set where it holds is a half-line, and the sample keeps on their
/// intersection (correct) or union (wrong). Two numbers per (element,
/// sample) instead of its logits' change, checked against every bit.
fn keep_limits(z: &[f32], v: &[f32], label: usize, correct: bool, slack: f32) -> (f32, f32) {
    if !v.iter().chain(z).all(|x| x.is_finite()) || !slack.is_finite() {
        return (0.0, 0.0);
    }
    let vmax = v.iter().fold(0f64, |m, &x| m.max((x as f64).abs()));
    let grow = 2.0 * vmax * TANGENT_SAFETY;
    let limit = |sign: f64| -> f64 {
        // Per class: lead(τ) = n + k·τ for τ = |δ| ≥ 0, with the label's
        // lead (correct) or the class's lead over the label (wrong).
        let lines = (0..z.len()).filter(|&j| j != label).map(|j| {
            let (gap, slope) = (z[label] as f64 - z[j] as f64, sign * (v[label] as f64 - v[j] as f64));
            let (n, k) = if correct { (gap, slope) } else { (-gap, -slope) };
            (n - 2.0 * slack as f64, k - grow)
        });
        if correct {
            lines.fold(f64::INFINITY, |m, (n, k)| match (n > 0.0, k < 0.0) {
                (false, _) => 0.0,
                (true, true) => m.min(-n / k),
                (true, false) => m,
            })
        } else {
            // Classes leading from the start keep it up to -n/k; classes that
            // take the lead later (n ≤ 0 < k) cover everything past -n/k.
            let (mut head, mut tail) = (0f64, f64::INFINITY);
            for (n, k) in lines {
                if n > 0.0 {
                    head = head.max(if k < 0.0 { -n / k } else { f64::INFINITY });
                } else if k > 0.0 {
                    tail = tail.min(-n / k);
                }
            }
            if tail < head {
                f64::INFINITY
            } else {
                head
            }
        }
    };
    (limit(1.0) as f32, limit(-1.0) as f32)
}

impl Fast<'_> {
    /// Removes from `cands` the pairs the linear-region certificate proves
    /// harmless. Runs one tangent pass per (element, sample) that has a
    /// candidate flip small enough to hope for (|δ| ≤ 2|old|, or subnormal).
    pub(super) fn certify(
        &self,
        cut: &Cut,
        lin: &Linear,
        u: &UnitFlips,
        chunk: &Chunk,
        cands: &mut [Cand],
    ) -> Result<()> {
        let Chunk { env, s0, s1 } = *chunk;
        let ns = s1 - s0;
        let hopeful = |f: usize| {
            let (old, new) = u.values[f];
            let d = (new as f64 - old as f64).abs();
            new.is_finite() && (d <= 2.0 * (old as f64).abs() || d < 1e-30)
        };
        // Runs of one element (a unit's flips come element by element); a
        // run's pairs are contiguous, found through `slot` (per chunk sample:
        // the pair's index, u32::MAX if none), filled for one run at a time.
        let mut elements: Vec<i64> = vec![];
        let mut run_of = Vec::with_capacity(u.flips.len());
        let mut run_pairs: Vec<std::ops::Range<usize>> = vec![];
        let mut slot: Vec<u32> = vec![u32::MAX; ns];
        let mut pairs: Vec<(u32, u32)> = vec![];
        for (f, flip) in u.flips.iter().enumerate() {
            if elements.last() != Some(&flip.index) {
                for &(_, s) in &pairs[run_pairs.last().map_or(0, |r| r.start)..] {
                    slot[s as usize] = u32::MAX;
                }
                elements.push(flip.index);
                run_pairs.push(pairs.len()..pairs.len());
            }
            let e = elements.len() - 1;
            run_of.push(e);
            if !hopeful(f) {
                continue;
            }
            for k in 0..cands[f].len() {
                let s = cands[f].get(k) as usize;
                if slot[s] == u32::MAX {
                    slot[s] = pairs.len() as u32;
                    pairs.push((e as u32, s as u32));
                }
            }
            run_pairs[e].end = pairs.len();
        }
        if pairs.is_empty() {
            return Ok(());
        }
        let clean_values = self.suffix(cut, lin, chunk)?;
        let out_shape = env[cut.plan.c]
            .as_ref()
            .ok_or_else(|| HartError::Model("fast engine: cut value missing".into()))?
            .size();
        let clean = self.ctx.clean;
        let k = clean.logits.size()[1] as usize;
        let rows = |t: &Tensor| t.narrow(0, s0 as i64, ns as i64).to_device(Device::Cpu);
        let z = host(&rows(&clean.logits))?;
        let labels = Vec::<i64>::try_from(rows(&clean.labels))?;
        let was = Vec::<bool>::try_from(rows(&clean.correct))?;
        let slack = host(&rows(&clean.slack))?;
        // Per pair, the largest |δ| each way that is both linear and keeps.
        let (mut up, mut down) = (Vec::with_capacity(pairs.len()), Vec::with_capacity(pairs.len()));
        for batch in pairs.chunks(cut.max_pairs as usize) {
            let s: Vec<i64> = batch.iter().map(|&(_, s)| s as i64).collect();
            let el: Vec<i64> = batch.iter().map(|&(e, _)| elements[e as usize]).collect();
            let s_dev = Tensor::from_slice(&s).to_device(self.ctx.device);
            let (mut genv, x) = self.gather(&cut.plan, env, &s_dev);
            let graph = &self.gm.graph;
            graph.forward_nodes(
                &self.gm.params,
                &x,
                cut.plan.shapes.iter().copied(),
                &mut genv,
                Mode::Eval,
            )?;
            let ones = vec![1f32; batch.len()];
            let change = cut.delta.change(&out_shape, env, &s_dev, &el, &ones)?;
            let mut shape = out_shape.clone();
            shape[0] = batch.len() as i64;
            let tangent = Tensor::zeros(shape.as_slice(), (Kind::Float, self.ctx.device));
            let channels: Vec<i64> = el.iter().map(|&e| cut.delta.channel(e)).collect();
            add_to_channel(&tangent, &channels, &change)?;
            genv[cut.plan.c] = Some(tangent);
            let clean = |v: usize| -> Result<Tensor> {
                Ok(clean_values[v]
                    .as_ref()
                    .ok_or_else(|| HartError::Model(format!("linear certificate: clean value {v} missing")))?
                    .index_select(0, &s_dev))
            };
            let r = lin.run(graph, &x, &mut genv, clean, &self.last_use, batch.len() as i64)?;
            for (q, &s) in s.iter().enumerate() {
                let s = s as usize;
                let (ku, kd) = keep_limits(
                    &z[s * k..][..k],
                    &r.logits[q * k..][..k],
                    labels[s] as usize,
                    was[s],
                    slack[s],
                );
                // NaN crossings (NaN clean values) certify nothing.
                let both = |cross: f32, keep: f32| if cross.is_nan() { 0.0 } else { cross.min(keep) };
                up.push(both(r.up[q], ku));
                down.push(both(r.down[q], kd));
            }
        }
        let before: usize = cands.iter().map(Cand::len).sum();
        let mut filled = usize::MAX;
        for (f, &e) in run_of.iter().enumerate() {
            if !hopeful(f) {
                continue;
            }
            if filled != e {
                for (p, &(_, s)) in pairs.iter().enumerate().take(run_pairs[e].end).skip(run_pairs[e].start) {
                    slot[s as usize] = p as u32;
                }
                filled = e;
            }
            let (old, new) = u.values[f];
            let d = new as f64 - old as f64;
            let limits = if d >= 0.0 { &up } else { &down };
            let kept: Vec<u32> = (0..cands[f].len())
                .map(|k| cands[f].get(k))
                .filter(|&s| d.abs() * BOUND_SAFETY >= limits[slot[s as usize] as usize] as f64)
                .collect();
            cands[f] = Cand::of(kept, ns);
        }
        let after: usize = cands.iter().map(Cand::len).sum();
        self.count(|s| s.certified_pairs += (before - after) as u64);
        tracing::debug!(
            tangents = pairs.len(),
            candidates = before,
            certified = before - after,
            "linear-region certificate"
        );
        Ok(())
    }

    /// The clean values of the ReLU and max-pool inputs after the cut on the
    /// chunk: views of the clean pass's stored values, or one pass over the
    /// nodes after the cut, kept for the next units on the same images (of
    /// this tensor or a later one).
    fn suffix(&self, cut: &Cut, lin: &Linear, chunk: &Chunk) -> Result<Rc<Env>> {
        let Chunk { env, s0, s1 } = *chunk;
        let graph = &self.gm.graph;
        let n = graph.nodes.len();
        let stored = &self.ctx.clean.values;
        if !stored.is_empty() {
            let mut out: Env = (0..n).map(|_| None).collect();
            for &v in &lin.clean_inputs {
                out[v] = stored[v].as_ref().map(|t| t.narrow(0, s0 as i64, (s1 - s0) as i64));
            }
            return Ok(Rc::new(out));
        }
        let key = (cut.plan.c, s0, s1);
        if let Some((k, values)) = self.suffix_cache.borrow().as_ref() {
            // A pass from an earlier cut on the same images holds every
            // ReLU and max-pool input after it; units come in graph order.
            let covers = k.0 <= key.0 && (k.1, k.2) == (s0, s1);
            if covers && lin.clean_inputs.iter().all(|&v| values[v].is_some()) {
                return Ok(values.clone());
            }
        }
        *self.suffix_cache.borrow_mut() = None;
        let (x, _) = self.ctx.images(s0, s1)?;
        let mut work: Env = env.iter().map(|t| t.as_ref().map(Tensor::shallow_clone)).collect();
        graph.forward_nodes(
            &self.gm.params,
            &x,
            cut.plan.shapes.iter().copied(),
            &mut work,
            Mode::Eval,
        )?;
        let mut out: Env = (0..n).map(|_| None).collect();
        // The cut's own output, when a ReLU reads it, is in the prefix.
        out[cut.plan.c] = env[cut.plan.c].as_ref().map(Tensor::shallow_clone);
        let masked = |v: usize| {
            (v + 1..n).any(|w| {
                graph.nodes[w].inputs.first() == Some(&v)
                    && matches!(graph.nodes[w].op, Op::Relu | Op::MaxPool2d { .. })
            })
        };
        let keep = |v: usize| lin.clean_inputs.binary_search(&v).is_ok() || masked(v);
        graph.forward_nodes_freeing(&self.gm.params, &x, &cut.plan.after, &mut work, Mode::Eval, keep)?;
        for &u in cut.plan.after.iter().filter(|&&u| keep(u)) {
            out[u] = work[u].take();
        }
        let out = Rc::new(out);
        *self.suffix_cache.borrow_mut() = Some((key, out.clone()));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::{keep_limits, keeps};

    /// The limits against the pointwise reference: every move below a limit
    /// keeps, and a finite limit is where keeping stops.
    #[test]
    fn keep_limits_match_the_pointwise_test() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut bounded = 0;
        for case in 0..2000 {
            let k = 2 + case % 5;
            let z: Vec<f32> = (0..k).map(|_| rng.random_range(-2.0f32..2.0)).collect();
            let v: Vec<f32> = (0..k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let label = case % k;
            let correct = case % 2 == 0;
            let slack = if case % 3 == 0 { 0.0 } else { 0.01 };
            let (up, down) = keep_limits(&z, &v, label, correct, slack);
            for (limit, sign) in [(up as f64, 1.0), (down as f64, -1.0)] {
                assert!(limit >= 0.0, "case {case}: {limit}");
                let probe = |d: f64| keeps(&z, &v, sign * d, label, correct, slack);
                let top = if limit.is_finite() { limit } else { 50.0 };
                for i in (0..200).filter(|_| limit > 0.0) {
                    let d = top * 0.999 * i as f64 / 200.0;
                    assert!(probe(d), "case {case} sign {sign}: limit {limit} but not kept at {d}");
                }
                if limit.is_finite() {
                    assert!(
                        !probe(limit * 1.001 + 1e-9),
                        "case {case} sign {sign}: kept past {limit}"
                    );
                    bounded += (limit > 0.0) as usize;
                }
            }
        }
        assert!(
            bounded > 500,
            "only {bounded} positive finite limits: the probes test little"
        );
        assert_eq!(keep_limits(&[1.0, 0.0], &[f32::NAN, 0.0], 0, true, 0.0), (0.0, 0.0));
    }

    #[test]
    fn keeps_needs_room_beyond_the_slack() {
        let z = [1.0f32, 0.0, -1.0];
        // Correct sample (label 0): the label's lead of 1 shrinks by 0.5·d.
        let v = [0.0f32, 0.5, 0.0];
        assert!(keeps(&z, &v, 1.0, 0, true, 0.1));
        assert!(!keeps(&z, &v, 1.9, 0, true, 0.1));
        assert!(!keeps(&z, &v, 1.0, 0, true, 0.3));
        // Wrong sample (label 2): stays wrong while another class leads it.
        let v = [0.0f32, 0.0, 1.0];
        assert!(keeps(&z, &v, 1.0, 2, false, 0.1));
        assert!(!keeps(&z, &v, 2.0, 2, false, 0.1));
        // NaN never keeps.
        assert!(!keeps(&[f32::NAN, 0.0, 0.0], &v, 0.0, 0, true, 0.0));
        assert!(!keeps(&z, &[f32::NAN, 0.0, 0.0], 1.0, 2, false, 0.0));
    }
}
