//! Hessian-vector products by exact double back-propagation, summed over a
//! whole data slice: the Hessian of the mean loss over N samples is the
//! batch-size-weighted sum of the per-batch Hessians, so no single batch
//! stands in for the slice.

use indicatif::ProgressBar;
use tch::{Device, Kind, Tensor};

use super::params::ParamSet;
use crate::data::Dataset;
use crate::error::{HartError, Result};
use crate::eval::check_logits;
use crate::model::{Mode, Model};

/// A symmetric linear operator applied to blocks of vectors.
pub trait HvpOperator {
    /// Length of the vectors the operator acts on.
    fn dim(&self) -> i64;
    fn device(&self) -> Device;
    /// `H vᵢ` for every row `vᵢ` of the `[k, dim]` block.
    fn apply(&mut self, v: &Tensor) -> Result<Tensor>;
    /// Single-vector products computed so far (the cost measure).
    fn hvps(&self) -> usize;
}

/// The Hessian of `Σ_b w_b · loss_b(θ)` w.r.t. `params`, where `loss_of(b)`
/// rebuilds batch `b`'s loss graph and returns it with its weight `w_b`.
pub struct LossHessian<'a> {
    params: &'a ParamSet,
    batches: usize,
    loss_of: Box<dyn FnMut(usize) -> Result<(Tensor, f64)> + 'a>,
    hvps: usize,
}

impl<'a> LossHessian<'a> {
    pub fn new(params: &'a ParamSet, batches: usize, loss_of: impl FnMut(usize) -> Result<(Tensor, f64)> + 'a) -> Self {
        LossHessian {
            params,
            batches,
            loss_of: Box::new(loss_of),
            hvps: 0,
        }
    }
}

/// `Σᵢ gᵢ·vᵢ` over the tensors a gradient is defined for.
pub(crate) fn dot_parts(g: &[Tensor], v: &[Tensor]) -> Option<Tensor> {
    g.iter()
        .zip(v)
        .filter(|(g, _)| g.defined())
        .map(|(g, v)| (g * v).sum(g.kind()))
        .reduce(|a, b| a + b)
}

impl HvpOperator for LossHessian<'_> {
    fn dim(&self) -> i64 {
        self.params.dim()
    }

    fn device(&self) -> Device {
        self.params.device()
    }

    fn apply(&mut self, v: &Tensor) -> Result<Tensor> {
        let k = v.size()[0];
        let out = v.zeros_like();
        let rows: Vec<Vec<Tensor>> = (0..k).map(|j| self.params.split(&v.get(j))).collect();
        for b in 0..self.batches {
            let (loss, weight) = (self.loss_of)(b)?;
            if !loss.requires_grad() {
                continue; // the loss does not depend on these parameters: zero curvature
            }
            // One gradient graph per batch serves all k probes.
            let grads = Tensor::f_run_backward(&[&loss], &self.params.tensors, true, true)?;
            for (j, row) in rows.iter().enumerate() {
                let Some(gv) = dot_parts(&grads, row).filter(|gv| gv.requires_grad()) else {
                    continue;
                };
                let hv = Tensor::f_run_backward(&[&gv], &self.params.tensors, (j as i64) < k - 1, false)?;
                let hv = self.params.flatten(&hv);
                let _ = out.get(j as i64).f_add_(&(hv * weight))?;
            }
        }
        self.hvps += k as usize;
        Ok(out)
    }

    fn hvps(&self) -> usize {
        self.hvps
    }
}

/// The Hessian of one minibatch loss whose gradient graph a training step
/// already built (`grads` from a backward with `create_graph`): each product
/// is one more backward through that graph, no forward pass.
pub struct GraphHessian<'a> {
    params: &'a ParamSet,
    grads: &'a [Tensor],
    hvps: usize,
}

impl<'a> GraphHessian<'a> {
    pub fn new(params: &'a ParamSet, grads: &'a [Tensor]) -> Self {
        GraphHessian { params, grads, hvps: 0 }
    }
}

impl HvpOperator for GraphHessian<'_> {
    fn dim(&self) -> i64 {
        self.params.dim()
    }

    fn device(&self) -> Device {
        self.params.device()
    }

    fn apply(&mut self, v: &Tensor) -> Result<Tensor> {
        let k = v.size()[0];
        let rows = (0..k)
            .map(|j| -> Result<Tensor> {
                let vj = v.get(j);
                let parts = self.params.split(&vj);
                // The graph stays: the step still needs it for its own backward.
                match dot_parts(self.grads, &parts).filter(|t| t.requires_grad()) {
                    Some(gv) => {
                        Ok(self
                            .params
                            .flatten(&Tensor::f_run_backward(&[&gv], &self.params.tensors, true, false)?))
                    }
                    None => Ok(vj.f_zeros_like()?),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        self.hvps += k as usize;
        Ok(Tensor::f_stack(&rows, 0)?)
    }

    fn hvps(&self) -> usize {
        self.hvps
    }
}

/// The Hessian of the mean cross-entropy of `model` (eval mode: BatchNorm
/// uses its running statistics) over all of `data`, in batches of `batch_size`.
pub fn data_hessian<'a>(
    model: &'a Model,
    data: &'a Dataset,
    params: &'a ParamSet,
    batch_size: usize,
    device: Device,
) -> Result<LossHessian<'a>> {
    if data.is_empty() {
        return Err(HartError::Invalid("cannot take a Hessian over an empty dataset".into()));
    }
    if batch_size == 0 {
        return Err(HartError::Invalid("--batch-size must be at least 1".into()));
    }
    let n = data.len();
    let batches = n.div_ceil(batch_size);
    Ok(LossHessian::new(params, batches, move |b| {
        let (start, end) = (b * batch_size, ((b + 1) * batch_size).min(n));
        let (x, y) = data.batch_range(start, end);
        let (x, y) = (x.to_device(device), y.to_device(device));
        let logits = model.forward(&x, Mode::Eval)?;
        check_logits(&logits, data, end - start)?;
        let loss = logits
            .f_log_softmax(-1, Kind::Float)?
            .f_nll_loss(&y, None::<Tensor>, tch::Reduction::Mean, -100)?;
        Ok((loss, (end - start) as f64 / n as f64))
    }))
}

/// Counts products on a progress bar as they happen.
pub struct Progressed<'a, O: HvpOperator + ?Sized> {
    pub inner: &'a mut O,
    pub bar: &'a ProgressBar,
}

impl<O: HvpOperator + ?Sized> HvpOperator for Progressed<'_, O> {
    fn dim(&self) -> i64 {
        self.inner.dim()
    }
    fn device(&self) -> Device {
        self.inner.device()
    }
    fn apply(&mut self, v: &Tensor) -> Result<Tensor> {
        crate::interrupt::check()?;
        let out = self.inner.apply(v)?;
        self.bar.inc(v.size()[0] as u64);
        Ok(out)
    }
    fn hvps(&self) -> usize {
        self.inner.hvps()
    }
}
