//! Random bit error training (RandBET, Stutz et al., MLSys 2021 / TPAMI
//! 2022): each step quantises the weights into the integer codes a
//! deployment stores (`--storage int8|int4`, the campaign's symmetric
//! per-tensor codes), computes the loss there, draws random bit errors of
//! rate p in those codes and computes the loss again; the objective is the
//! mean of the two losses. Both gradients are taken at the quantised (and
//! faulty) weights and applied to the float weights unchanged (straight-
//! through), which stay the optimiser's state. Encoding, the draw and the
//! decoding of faulty codes are the campaign engine's own (faults::storage,
//! faults::draw, faults::inject), so a model is trained against exactly the
//! fault model `hart campaign --fault bitflip --storage …` measures.
//! Float32 tensors (biases, normalisation) are neither quantised nor hit.

use std::collections::HashMap;

use serde::Serialize;
use tch::Tensor;

use super::buffers::{with_restored, Snapshot};
use super::{cross_entropy, Regularizer, RegularizerConfig, StepOutcome};
use crate::compress::quantize::Granularity;
use crate::error::{HartError, Result};
use crate::faults::draw::StoredBits;
use crate::faults::inject::{BitFault, BitOp, Injector};
use crate::faults::space::select_targets;
use crate::faults::storage::stored_as_int;
use crate::faults::Defense;
use crate::model::{Mode, Model, ParamKind};

/// What one step injected.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Injected {
    /// Bit errors drawn.
    pub bit_errors: u64,
    /// Stored bits they were drawn over.
    pub stored_bits: u64,
    /// Cross-entropy at the faulty weights (the quantised loss when none was drawn).
    pub perturbed_loss: f64,
}

/// The tensors a step quantises, and the stored bits errors may hit.
pub(super) struct Targets {
    /// Every integer-stored tensor (all are quantised, as the campaign stores them).
    quantised: Vec<Tensor>,
    /// The chosen integer-stored tensors, in the order of `bits`.
    names: Vec<String>,
    bits: StoredBits,
}

impl Targets {
    pub(super) fn new(model: &Model, cfg: &RegularizerConfig) -> Result<Targets> {
        let width = cfg.storage.int_bits().ok_or_else(|| {
            HartError::Invalid(format!(
                "--storage {}: randbet trains on integer codes (int8 or int4)",
                cfg.storage
            ))
        })?;
        // Frozen weights are stored as codes like the rest (the step runs at
        // their quantised values) but take no bit errors and no update.
        let quantised = model
            .named_tensors()
            .into_iter()
            .filter(|(_, t, k)| {
                stored_as_int(
                    t,
                    if *k == ParamKind::Frozen {
                        ParamKind::Trainable
                    } else {
                        *k
                    },
                )
            })
            .map(|(_, t, _)| t)
            .collect();
        let chosen: Vec<_> = select_targets(model, cfg.scope, cfg.params.as_deref())?
            .into_iter()
            .filter(|t| stored_as_int(&t.tensor, t.kind))
            .collect();
        if chosen.is_empty() {
            return Err(HartError::Invalid(
                "--regularizer randbet: --scope/--params choose no weight tensor stored as integer codes (rank ≥ 2)"
                    .into(),
            ));
        }
        let numel: Vec<i64> = chosen.iter().map(|t| t.numel).collect();
        let bits = StoredBits::new(&numel, &vec![width; numel.len()]);
        Ok(Targets {
            quantised,
            names: chosen.into_iter().map(|t| t.name).collect(),
            bits,
        })
    }
}

pub(super) fn step(reg: &mut Regularizer, model: &Model, x: &Tensor, y: &Tensor) -> Result<StepOutcome> {
    let Some(targets) = reg.randbet.take() else {
        return Err(HartError::Invalid("randbet step without its targets".into()));
    };
    let out = with_restored(&targets.quantised, || inject_step(reg, &targets, model, x, y));
    reg.randbet = Some(targets);
    let (outcome, injected) = out?;
    reg.injected = Some(injected);
    Ok(outcome)
}

fn inject_step(
    reg: &mut Regularizer,
    targets: &Targets,
    model: &Model,
    x: &Tensor,
    y: &Tensor,
) -> Result<(StepOutcome, Injected)> {
    // Encoding quantises the integer-stored tensors in place; the caller puts
    // the float weights back after the backward passes.
    let inject = Injector::new(model, reg.cfg.storage, Granularity::PerTensor, Defense::None, 0)?;
    let logits = model.forward(x, Mode::Train)?;
    let ce = cross_entropy(&logits, y)?;
    let loss = ce.f_double_value(&[])?;
    let drawn = targets.bits.draw(reg.cfg.bit_error_rate, &mut reg.rng);
    let mut injected = Injected {
        bit_errors: drawn.len() as u64,
        stored_bits: targets.bits.total(),
        perturbed_loss: loss,
    };
    let outcome = |logits: Tensor| StepOutcome {
        loss,
        logits,
        trace: None,
        fired: true,
        reading: None,
    };
    if drawn.is_empty() {
        // The faulty weights are the quantised ones: the mean of two equal losses.
        ce.f_backward()?;
        return Ok((outcome(logits.f_detach()?), injected));
    }
    ce.f_mul_scalar(0.5)?.f_backward()?;
    let stored_of = targets
        .names
        .iter()
        .map(|n| {
            inject
                .stored
                .index(n)
                .ok_or_else(|| HartError::Model(format!("{n} is not stored")))
        })
        .collect::<Result<Vec<_>>>()?;
    let faults: Vec<BitFault> = drawn
        .iter()
        .map(|f| BitFault {
            tensor: stored_of[f.target],
            index: f.index as usize,
            bit: f.bit,
            op: BitOp::Flip,
        })
        .collect();
    write_recovered(model, &inject, &faults)?;
    let buffers = Snapshot::take(model);
    let perturbed = cross_entropy(&model.forward(x, Mode::Train)?, y)?;
    injected.perturbed_loss = perturbed.f_double_value(&[])?;
    perturbed.f_mul_scalar(0.5)?.f_backward()?;
    buffers.restore()?;
    Ok((outcome(logits.f_detach()?), injected))
}

/// Writes the decoded faulty values into the model, one indexed copy per tensor.
fn write_recovered(model: &Model, inject: &Injector, faults: &[BitFault]) -> Result<()> {
    let mut rec = inject.recover(faults)?;
    rec.writes.sort_by_key(|&(t, i, _)| (t, i));
    let live: HashMap<String, Tensor> = model.named_tensors().into_iter().map(|(n, t, _)| (n, t)).collect();
    tch::no_grad(|| -> Result<()> {
        for run in rec.writes.chunk_by(|a, b| a.0 == b.0) {
            let name = &inject.stored.tensors[run[0].0].name;
            let t = live
                .get(name)
                .ok_or_else(|| HartError::Model(format!("model has no tensor {name}")))?;
            let index: Vec<i64> = run.iter().map(|w| w.1 as i64).collect();
            let value: Vec<f32> = run.iter().map(|w| w.2).collect();
            let idx = Tensor::f_from_slice(&index)?.f_to_device(t.device())?;
            let src = Tensor::f_from_slice(&value)?.f_to_device(t.device())?;
            let _ = t.f_view([-1])?.f_index_copy_(0, &idx, &src)?;
        }
        Ok(())
    })
}
