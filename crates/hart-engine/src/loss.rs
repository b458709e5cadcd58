//! The loss and the autograd helper that training, evaluation, the Hessian
//! engine and the attack share. They sit below all of them so that none of
//! those layers reaches up into another for a cross-entropy.

use tch::{Kind, Tensor};

use crate::error::Result;

/// Mean cross-entropy, in the logits' precision (so float64 checks stay float64).
pub fn cross_entropy(logits: &Tensor, y: &Tensor) -> Result<Tensor> {
    Ok(logits
        .f_log_softmax(-1, logits.kind())?
        .f_nll_loss(y, None::<Tensor>, tch::Reduction::Mean, -100)?)
}

/// Adds `grads` (one per tensor, undefined = nothing) to the tensors' `.grad`,
/// through a surrogate whose gradient they are (tch cannot assign `.grad`).
pub fn accumulate_grad(params: &[Tensor], grads: &[Tensor]) -> Result<()> {
    let surrogate = params
        .iter()
        .zip(grads)
        .filter(|(_, g)| g.defined())
        .map(|(p, g)| (p * g.detach()).sum(Kind::Double))
        .reduce(|a, b| a + b);
    if let Some(s) = surrogate {
        s.f_backward()?;
    }
    Ok(())
}
