//! Correct counts of the model as it currently is (a trial applied), sharing
//! the clean pass: a trial that changes nothing is the clean count, and on a
//! graph model whose clean values were kept, the forward pass starts at the
//! first node that reads a changed tensor.

use tch::{Kind, Tensor};

use crate::data::Dataset;
use crate::error::Result;
use crate::eval::correct_mask;
use crate::faults::clean::Clean;
use crate::model::{Mode, Model};

pub struct Evaluator<'a> {
    pub model: &'a Model,
    pub data: &'a Dataset,
    pub clean: &'a Clean,
    pub batch: usize,
    /// Per target, the first graph node reading it (None: run from the start).
    first_reader: Vec<Option<usize>>,
}

impl<'a> Evaluator<'a> {
    pub fn new(model: &'a Model, data: &'a Dataset, clean: &'a Clean, batch: usize, names: &[String]) -> Self {
        let first_reader = names
            .iter()
            .map(|n| model.graph().and_then(|g| g.graph.first_consumer(n)))
            .collect();
        Evaluator {
            model,
            data,
            clean,
            batch,
            first_reader,
        }
    }

    /// Correct count with tensors `changed` (target indices) faulty; the
    /// others must hold their clean values.
    pub fn correct(&self, changed: &[usize]) -> Result<i64> {
        if changed.is_empty() {
            return Ok(self.clean.correct_count);
        }
        let start = changed
            .iter()
            .map(|&t| self.first_reader[t])
            .try_fold(usize::MAX, |m, s| s.map(|s| m.min(s)))
            .unwrap_or(0);
        let mut correct = 0;
        tch::no_grad(|| -> Result<()> {
            for s0 in (0..self.data.len()).step_by(self.batch) {
                let s1 = (s0 + self.batch).min(self.data.len());
                let (x, y) = self.data.batch_range(s0, s1);
                let device = self.model.device();
                let (x, y) = (x.f_to_device(device)?, y.f_to_device(device)?);
                let logits = self.logits(&x, start, s0, s1)?;
                correct += correct_mask(&logits, &y).f_sum(Kind::Int64)?.f_int64_value(&[])?;
            }
            Ok(())
        })?;
        Ok(correct)
    }

    fn logits(&self, x: &Tensor, start: usize, s0: usize, s1: usize) -> Result<Tensor> {
        let stored = &self.clean.values;
        let Some(gm) = self.model.graph().filter(|_| start > 0 && !stored.is_empty()) else {
            return self.model.forward(x, Mode::Eval);
        };
        // Nodes before `start` read no changed tensor: their batched values
        // are the clean pass's (same batches), the rest are recomputed.
        let mut env: Vec<Option<Tensor>> = (0..gm.graph.nodes.len()).map(|_| None).collect();
        let mut recompute = vec![];
        for (v, slot) in env.iter_mut().enumerate().take(start) {
            match &stored[v] {
                Some(t) => *slot = Some(t.f_narrow(0, s0 as i64, (s1 - s0) as i64)?),
                None => recompute.push(v),
            }
        }
        gm.graph.forward_nodes(&gm.params, x, recompute, &mut env, Mode::Eval)?;
        gm.graph.forward_from(&gm.params, x, start, &mut env, Mode::Eval)
    }
}
