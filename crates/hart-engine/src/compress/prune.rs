//! Magnitude pruning: zero the smallest-|w| weights, exactly
//! round(sparsity · n) of them, either over all selected tensors at once
//! (global) or within each tensor (layer). Ties are broken by position
//! (stable sort), so a run is deterministic and the count is exact even when
//! many weights share a magnitude.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use tch::{Kind, Tensor};

use crate::error::{HartError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// One threshold across every selected tensor: layers with many small
    /// weights lose more.
    Global,
    /// The same fraction removed from every tensor.
    Layer,
}

impl FromStr for Scope {
    type Err = HartError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "global" => Ok(Scope::Global),
            "layer" => Ok(Scope::Layer),
            _ => Err(HartError::Invalid(format!("unknown scope {s:?} (global or layer)"))),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Global => "global",
            Scope::Layer => "layer",
        })
    }
}

/// What a pruning pass achieved over the selected tensors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pruned {
    /// Weights that are zero afterwards (those pruned plus any that already were).
    pub zeros: i64,
    pub total: i64,
    /// zeros / total.
    pub sparsity: f64,
}

pub fn check_sparsity(s: f64) -> Result<()> {
    if (0.0..=1.0).contains(&s) {
        Ok(())
    } else {
        Err(HartError::Invalid(format!("--sparsity {s} is outside [0, 1]")))
    }
}

/// How many of `n` weights a sparsity removes.
pub fn prune_count(sparsity: f64, n: i64) -> i64 {
    (sparsity * n as f64).round() as i64
}

/// Prunes in place (the tensors share storage with the model).
pub fn prune_in_place(targets: &[(String, Tensor)], sparsity: f64, scope: Scope) -> Result<Pruned> {
    check_sparsity(sparsity)?;
    match scope {
        Scope::Layer => {
            for (_, t) in targets {
                zero_smallest(std::slice::from_ref(t), sparsity);
            }
        }
        Scope::Global => {
            let ts: Vec<Tensor> = targets.iter().map(|(_, t)| t.shallow_clone()).collect();
            zero_smallest(&ts, sparsity);
        }
    }
    Ok(measure(targets))
}

/// Zeroes the round(sparsity · n) smallest magnitudes over `ts` taken together.
fn zero_smallest(ts: &[Tensor], sparsity: f64) {
    let sizes: Vec<i64> = ts.iter().map(|t| t.numel() as i64).collect();
    let n: i64 = sizes.iter().sum();
    let k = prune_count(sparsity, n);
    if k == 0 {
        return;
    }
    tch::no_grad(|| {
        let flat: Vec<Tensor> = ts.iter().map(|t| t.detach().abs().flatten(0, -1)).collect();
        let mags = Tensor::cat(&flat, 0);
        let order = mags.argsort_stable(true, 0, false);
        let mut keep = Tensor::ones([n], (Kind::Float, mags.device()));
        let _ = keep.index_fill_(0, &order.narrow(0, 0, k), 0.0);
        for (t, m) in ts.iter().zip(keep.split_with_sizes(sizes.as_slice(), 0)) {
            let _ = t.shallow_clone().g_mul_(&m.view(t.size().as_slice()).to_kind(t.kind()));
        }
    });
}

/// Exact sparsity of the selected tensors as they are now.
pub fn measure(targets: &[(String, Tensor)]) -> Pruned {
    let (mut zeros, mut total) = (0i64, 0i64);
    for (_, t) in targets {
        total += t.numel() as i64;
        zeros += t.numel() as i64 - t.count_nonzero(None).int64_value(&[]);
    }
    Pruned {
        zeros,
        total,
        sparsity: if total > 0 { zeros as f64 / total as f64 } else { 0.0 },
    }
}

/// Parses `0.5,0.7,0.9`, rejecting values outside [0, 1] and duplicates.
pub fn parse_sparsities(s: &str) -> Result<Vec<f64>> {
    let mut out: Vec<f64> = Vec::new();
    for part in s.split(',').map(str::trim) {
        let v: f64 = part
            .parse()
            .map_err(|_| HartError::Invalid(format!("--sparsity: {part:?} is not a number")))?;
        check_sparsity(v)?;
        if out.contains(&v) {
            return Err(HartError::Invalid(format!("--sparsity: {v} is listed twice")));
        }
        out.push(v);
    }
    Ok(out)
}
