//! Loss landscapes: loss and accuracy of a model moved along one or two
//! filter-normalised random directions, θ(α, β) = θ₀ + α·d₁ + β·d₂.
//! The model's weights are moved in place for each point and restored
//! bit-exactly at the end.

pub mod csv;
pub mod direction;
pub mod grid;

use serde::Serialize;
use tch::{Device, Tensor};

pub use direction::{random, Direction};
pub use grid::GridSpec;

use crate::compress::Snapshot;
use crate::data::Dataset;
use crate::error::{HartError, Result};
use crate::eval::evaluate;
use crate::model::Model;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub x: f64,
    pub y: Option<f64>,
    /// Mean cross-entropy (nats) over the samples with finite logits.
    pub loss: f64,
    pub accuracy: f64,
}

/// Evaluates `model` at every grid point; `tick` is called after each point
/// (progress reporting).
#[allow(clippy::too_many_arguments)]
pub fn compute(
    model: &Model,
    targets: &[(String, Tensor)],
    dirs: &[Direction],
    grid: &GridSpec,
    data: &Dataset,
    batch_size: usize,
    device: Device,
    mut tick: impl FnMut(),
) -> Result<Vec<Point>> {
    if dirs.len() != grid.dims {
        return Err(HartError::Invalid(format!(
            "{} direction(s) for a {}-D landscape",
            dirs.len(),
            grid.dims
        )));
    }
    let snapshot = Snapshot::take(targets);
    let origin: Vec<Tensor> = snapshot.originals().map(Tensor::shallow_clone).collect();
    let mut points = Vec::with_capacity(grid.len());
    for (x, y) in grid.points() {
        tch::no_grad(|| {
            for (i, (_, live)) in targets.iter().enumerate() {
                let mut moved = &origin[i] + &dirs[0].0[i] * x;
                if let Some(y) = y {
                    moved += &dirs[1].0[i] * y;
                }
                live.shallow_clone().copy_(&moved);
            }
        });
        crate::interrupt::check()?;
        let r = evaluate(model, data, batch_size, device)?;
        points.push(Point {
            x,
            y,
            loss: r.loss,
            accuracy: r.accuracy,
        });
        tick();
    }
    snapshot.restore();
    Ok(points)
}
