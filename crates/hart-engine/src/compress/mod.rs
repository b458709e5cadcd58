//! Weight compression as a robustness probe: uniform quantization and
//! magnitude pruning applied in place, evaluated, and undone, so a baseline
//! and a Hessian-aware model can be compared at each compression level.

pub mod curve;
pub mod prune;
pub mod quantize;
pub mod targets;

use tch::{Device, Tensor};

use crate::data::Dataset;
use crate::error::Result;
use crate::eval::{evaluate, EvalResult};
use crate::model::Model;
pub use curve::{anchored, prune_curve, quantize_curve, save_compressed, CurveRun, PruneRow, QuantizeRow};
pub use targets::{select, Selection, Snapshot};

/// Applies `apply` for each setting, evaluates, hands the result to `on_point`
/// (which may save the compressed model), then restores the original weights:
/// settings never compound, and the model leaves as it came in.
#[allow(clippy::too_many_arguments)]
pub fn sweep<S: Copy, R>(
    model: &Model,
    targets: &[(String, Tensor)],
    settings: &[S],
    data: &Dataset,
    batch_size: usize,
    device: Device,
    mut apply: impl FnMut(&[(String, Tensor)], S) -> Result<R>,
    mut on_point: impl FnMut(S, R, EvalResult) -> Result<()>,
) -> Result<()> {
    let snapshot = Snapshot::take(targets);
    for &s in settings {
        crate::interrupt::check()?;
        let applied = apply(targets, s)?;
        let r = evaluate(model, data, batch_size, device)?;
        on_point(s, applied, r)?;
        snapshot.restore();
    }
    Ok(())
}
