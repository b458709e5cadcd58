//! The fault models a campaign draws from, and how a drawn bit fault acts
//! on a stored word.

use crate::error::{HartError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultModel {
    /// Each stored bit flips with probability = level.
    Bitflip,
    /// Each stored bit is stuck at 0 with probability = level.
    StuckAt0,
    /// Each stored bit is stuck at 1 with probability = level.
    StuckAt1,
    /// w ← w + N(0, (level · max|W|)²), max per tensor or per output channel.
    Gaussian,
}

impl std::str::FromStr for FaultModel {
    type Err = HartError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "bitflip" => Ok(FaultModel::Bitflip),
            "stuck-at-0" => Ok(FaultModel::StuckAt0),
            "stuck-at-1" => Ok(FaultModel::StuckAt1),
            "gaussian" => Ok(FaultModel::Gaussian),
            _ => Err(HartError::Invalid(format!(
                "unknown fault {s:?} (bitflip, stuck-at-0, stuck-at-1 or gaussian)"
            ))),
        }
    }
}

impl FaultModel {
    /// Bit-level models (levels are rates); Gaussian levels are relative σ.
    pub fn is_bit(&self) -> bool {
        !matches!(self, FaultModel::Gaussian)
    }

    /// `word` with bit `bit` faulted; equal to `word` when a stuck-at cell
    /// already holds its stuck value.
    pub fn apply(&self, word: u32, bit: u8) -> u32 {
        let m = 1u32 << bit;
        match self {
            FaultModel::Bitflip => word ^ m,
            FaultModel::StuckAt0 => word & !m,
            FaultModel::StuckAt1 => word | m,
            FaultModel::Gaussian => word,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            FaultModel::Bitflip => "bitflip",
            FaultModel::StuckAt0 => "stuck-at-0",
            FaultModel::StuckAt1 => "stuck-at-1",
            FaultModel::Gaussian => "gaussian",
        }
    }
}

/// Parses `1e-6,1e-5,…`: finite, non-negative, at most 1 for rates, no duplicates.
pub fn parse_levels(spec: &str, fault: FaultModel) -> Result<Vec<f64>> {
    let levels = spec
        .split(',')
        .map(str::trim)
        .map(|part| {
            part.parse()
                .map_err(|_| HartError::Invalid(format!("--levels: {part:?} is not a number")))
        })
        .collect::<Result<Vec<f64>>>()?;
    check_levels(&levels, fault).map_err(|m| HartError::Invalid(format!("--levels: {m}")))?;
    Ok(levels)
}

/// Why `levels` is not a valid list for `fault` (each finite, non-negative,
/// at most 1 for rates, none twice); shared by `--levels` and the
/// experiment's `[campaign]` section, each naming its own key.
pub fn check_levels(levels: &[f64], fault: FaultModel) -> std::result::Result<(), String> {
    if levels.is_empty() {
        return Err("lists no level".into());
    }
    for (i, &v) in levels.iter().enumerate() {
        if !v.is_finite() || v < 0.0 || (fault.is_bit() && v > 1.0) {
            let range = if fault.is_bit() {
                "a bit-error rate in [0, 1]"
            } else {
                "a relative σ ≥ 0"
            };
            return Err(format!("{v} is not {range}"));
        }
        if levels[..i].contains(&v) {
            return Err(format!("{v} is listed twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_at_holding_its_value_changes_nothing() {
        assert_eq!(FaultModel::StuckAt1.apply(0b100, 2), 0b100);
        assert_eq!(FaultModel::StuckAt1.apply(0b000, 2), 0b100);
        assert_eq!(FaultModel::StuckAt0.apply(0b100, 2), 0);
        assert_eq!(FaultModel::Bitflip.apply(0b100, 2), 0);
    }

    #[test]
    fn levels() {
        assert_eq!(parse_levels("0, 1e-3", FaultModel::Bitflip).unwrap(), vec![0.0, 1e-3]);
        for bad in ["", "x", "-1", "2", "nan", "1e-3,1e-3"] {
            assert!(parse_levels(bad, FaultModel::Bitflip).is_err(), "{bad}");
        }
        assert!(parse_levels("2", FaultModel::Gaussian).is_ok());
    }
}
