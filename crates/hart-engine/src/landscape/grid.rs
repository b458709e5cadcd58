//! The coordinates a landscape is evaluated at.

use serde::Serialize;

use crate::error::{HartError, Result};

/// A 1-D line or a 2-D square grid of `steps` points per axis over [min, max].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GridSpec {
    pub dims: usize,
    pub min: f64,
    pub max: f64,
    pub steps: usize,
}

impl GridSpec {
    pub fn new(dims: usize, range: &str, steps: usize) -> Result<Self> {
        if !(1..=2).contains(&dims) {
            return Err(HartError::Invalid(format!("--dims {dims}: expected 1 or 2")));
        }
        if steps < 2 {
            return Err(HartError::Invalid(format!(
                "--steps {steps}: need at least 2 points per axis"
            )));
        }
        let (min, max) = parse_range(range)?;
        Ok(GridSpec { dims, min, max, steps })
    }

    /// Axis coordinates, computed as min + (max − min)·i/(steps − 1) so that a
    /// symmetric range with an odd step count hits 0 exactly (the clean model).
    pub fn axis(&self) -> Vec<f64> {
        let last = (self.steps - 1) as f64;
        (0..self.steps)
            .map(|i| self.min + (self.max - self.min) * i as f64 / last)
            .collect()
    }

    /// Every point, x-major: `(x, None)` in 1-D, `(x, Some(y))` in 2-D.
    pub fn points(&self) -> Vec<(f64, Option<f64>)> {
        let axis = self.axis();
        match self.dims {
            1 => axis.iter().map(|&x| (x, None)).collect(),
            _ => axis
                .iter()
                .flat_map(|&x| axis.iter().map(move |&y| (x, Some(y))))
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.steps.pow(self.dims as u32)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `-1:1` → (−1, 1).
fn parse_range(s: &str) -> Result<(f64, f64)> {
    let bad = || HartError::Invalid(format!("--range {s:?}: expected MIN:MAX with MIN < MAX, e.g. -1:1"));
    let (a, b) = s.split_once(':').ok_or_else(bad)?;
    let (a, b): (f64, f64) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a.is_finite() && b.is_finite() && a < b {
        Ok((a, b))
    } else {
        Err(bad())
    }
}
