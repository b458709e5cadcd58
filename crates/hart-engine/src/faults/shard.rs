//! Deterministic partition of the work units: shard I of N owns the units
//! whose id is I mod N, which spreads every tensor's cost over all shards.

use serde::{Deserialize, Serialize};

use crate::error::{HartError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// `I/N` with 0 ≤ I < N.
    pub fn parse(spec: &str) -> Result<Shard> {
        let bad = || HartError::Invalid(format!("--shard {spec:?}: expected I/N with 0 <= I < N, e.g. 0/4"));
        let (i, n) = spec.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// The shard a Slurm array task is (`SLURM_ARRAY_TASK_ID` counted from
    /// `SLURM_ARRAY_TASK_MIN`, out of `SLURM_ARRAY_TASK_COUNT`), if any.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>> {
        let (Some(id), Some(count)) = (get("SLURM_ARRAY_TASK_ID"), get("SLURM_ARRAY_TASK_COUNT")) else {
            return Ok(None);
        };
        let min = get("SLURM_ARRAY_TASK_MIN").unwrap_or_else(|| "0".into());
        let num = |s: &str| s.trim().parse::<i64>().ok();
        match (num(&id), num(&min)) {
            (Some(i), Some(m)) => Shard::parse(&format!("{}/{count}", i - m)).map(Some),
            _ => Err(HartError::Invalid(format!(
                "SLURM_ARRAY_TASK_ID {id:?} is not a number"
            ))),
        }
    }

    pub fn owns(&self, unit: usize) -> bool {
        unit as u64 % self.count as u64 == self.index as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(Shard::parse("1/4").unwrap(), Shard { index: 1, count: 4 });
        for bad in ["5/4", "4/4", "0/0", "1", "a/b", "-1/4"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let env = |k: &str| match k {
            "SLURM_ARRAY_TASK_ID" => Some("3".to_string()),
            "SLURM_ARRAY_TASK_COUNT" => Some("4".to_string()),
            "SLURM_ARRAY_TASK_MIN" => Some("1".to_string()),
            _ => None,
        };
        assert_eq!(Shard::from_env(env).unwrap(), Some(Shard { index: 2, count: 4 }));
        assert_eq!(Shard::from_env(|_| None).unwrap(), None);
    }
}
