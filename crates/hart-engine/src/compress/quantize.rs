//! Weight-only uniform symmetric quantization: round to nearest (ties to
//! even, as `torch.round`), integer codes in ±(2^(b−1)−1), one scale per
//! tensor or per output channel (dim 0), scale = max|w| / (2^(b−1)−1).
//! Symmetric levels leave −2^(b−1) unused so zero is exactly representable
//! and the grid is the same on both sides.

use std::fmt;

use serde::Serialize;
use tch::{Kind, Tensor};

use crate::error::{HartError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Granularity {
    PerTensor,
    /// One scale per slice along dim 0 (output channel of a conv or linear layer).
    PerChannel,
}

impl Granularity {
    /// The granularity a `--per-channel` flag selects.
    pub fn of(per_channel: bool) -> Self {
        if per_channel {
            Granularity::PerChannel
        } else {
            Granularity::PerTensor
        }
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Granularity::PerTensor => "per-tensor",
            Granularity::PerChannel => "per-channel",
        })
    }
}

/// Bit widths below 2 have no non-zero level; above 16 the codes exceed what
/// float32's 24-bit mantissa reproduces exactly after scaling.
pub const BITS: std::ops::RangeInclusive<u32> = 2..=16;

pub fn check_bits(bits: u32) -> Result<()> {
    if BITS.contains(&bits) {
        Ok(())
    } else {
        Err(HartError::Invalid(format!(
            "--bits {bits} is out of range ({}..={})",
            BITS.start(),
            BITS.end()
        )))
    }
}

/// Largest code magnitude at `bits`: 2^(b−1) − 1.
pub fn max_code(bits: u32) -> i64 {
    (1i64 << (bits - 1)) - 1
}

/// A tensor as integer codes and scales: `codes * scale` (broadcast) is the
/// quantized tensor, bit for bit.
pub struct Quantized {
    /// Int32 codes in ±max_code(bits), same shape as the weight.
    pub codes: Tensor,
    /// Shape `[]` per tensor, `[C, 1, …]` per channel.
    pub scale: Tensor,
}

impl Quantized {
    pub fn dequantize(&self) -> Tensor {
        self.codes.to_kind(Kind::Float) * &self.scale
    }
}

pub fn quantize(w: &Tensor, bits: u32, granularity: Granularity) -> Result<Quantized> {
    check_bits(bits)?;
    let n = max_code(bits) as f64;
    let w = w.detach().to_kind(Kind::Float);
    let amax = match granularity {
        Granularity::PerChannel if w.dim() >= 1 => {
            let dims: Vec<i64> = (1..w.dim() as i64).collect();
            if dims.is_empty() {
                w.abs()
            } else {
                w.abs().amax(dims.as_slice(), true)
            }
        }
        _ => w.abs().max(),
    };
    let scale = amax / n;
    // An all-zero tensor or channel has scale 0; dividing by 1 instead keeps
    // its codes at 0 rather than NaN.
    let divisor = scale.where_scalarother(&scale.gt(0.0), 1.0);
    let codes = (&w / divisor).round().clamp(-n, n).to_kind(Kind::Int);
    Ok(Quantized { codes, scale })
}

/// Quantizes each tensor in place (they share storage with the model).
pub fn quantize_in_place(targets: &[(String, Tensor)], bits: u32, granularity: Granularity) -> Result<()> {
    for (name, t) in targets {
        let q = quantize(t, bits, granularity).map_err(|e| HartError::Invalid(format!("quantizing {name}: {e}")))?;
        tch::no_grad(|| t.shallow_clone().copy_(&q.dequantize()));
    }
    Ok(())
}

/// Parses `8,6,4`, rejecting empty entries, duplicates and widths out of range.
pub fn parse_bits(s: &str) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let b: u32 = part
            .parse()
            .map_err(|_| HartError::Invalid(format!("--bits: {part:?} is not a bit width")))?;
        check_bits(b)?;
        if out.contains(&b) {
            return Err(HartError::Invalid(format!("--bits: {b} is listed twice")));
        }
        out.push(b);
    }
    Ok(out)
}
