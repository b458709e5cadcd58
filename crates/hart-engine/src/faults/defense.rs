//! Run-time defences against weight faults, applied to the faulty stored
//! words before the forward pass:
//! - `range`: a weight outside its tensor's clean [min, max] (or not finite)
//!   is detected and set to 0 — the cheapest detector of exponent blow-ups;
//! - `radar[:G]`: RADAR (Li et al. 2021). Each tensor is split into
//!   interleaved groups of G words (element i in group i mod ⌈n/G⌉); a group's
//!   signature is bits W−1 and W−2 of M = Σ kᵢ·wᵢ, the sum of its stored words
//!   (int codes, or raw 32-bit fp32 words) under a secret ±1 key fixed by the
//!   seed, W the word width. Any flip of bit W−1 or W−2 changes the signature
//!   (it adds ±2^(W−1) or ±2^(W−2) to M); lower bits only through a carry.
//!   A group whose signature changed is detected and zeroed.

use std::collections::BTreeMap;

use serde::Serialize;

use super::storage::{Stored, StoredTensor};
use crate::error::{HartError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Defense {
    None,
    Range,
    Radar { group: usize },
}

pub const RADAR_GROUP: usize = 16;

impl std::str::FromStr for Defense {
    type Err = HartError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            HartError::Invalid(format!(
                "unknown defense {s:?} (none, range, radar or radar:G with G ≥ 2)"
            ))
        };
        match s.split_once(':') {
            None => match s {
                "none" => Ok(Defense::None),
                "range" => Ok(Defense::Range),
                "radar" => Ok(Defense::Radar { group: RADAR_GROUP }),
                _ => Err(bad()),
            },
            Some(("radar", g)) => match g.parse::<usize>() {
                Ok(group) if group >= 2 => Ok(Defense::Radar { group }),
                _ => Err(HartError::Invalid(format!(
                    "--defense {s}: the RADAR group size must be an integer ≥ 2"
                ))),
            },
            Some(_) => Err(bad()),
        }
    }
}

impl std::fmt::Display for Defense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Defense::None => f.write_str("none"),
            Defense::Range => f.write_str("range"),
            Defense::Radar { group } => write!(f, "radar:{group}"),
        }
    }
}

/// Faulty words by (stored tensor, element): only elements whose word differs from clean.
pub type Faulty = BTreeMap<(usize, usize), u32>;

/// What the defence did to one faulty state, and the element values the
/// forward pass must use (every element not listed keeps its clean value).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recovery {
    pub writes: Vec<(usize, usize, f32)>,
    /// Flipped bits inside detected words or groups.
    pub detected_flips: u64,
    pub zeroed_weights: u64,
    pub zeroed_groups: u64,
}

/// A defence set up on a clean model: the ranges or signatures it checks against.
#[derive(Debug, Clone)]
pub struct Armed {
    pub defense: Defense,
    seed: u64,
    ranges: Vec<(f32, f32)>,
    /// RADAR signatures per tensor, by group.
    signatures: Vec<Vec<u8>>,
}

/// splitmix64: a cheap keyed hash for the secret ±1 key of each word.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Armed {
    pub fn arm(defense: Defense, stored: &Stored, seed: u64) -> Armed {
        let ranges = match defense {
            Defense::Range => stored
                .tensors
                .iter()
                .map(|t| {
                    (0..t.numel())
                        .map(|i| t.value(i))
                        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
                })
                .collect(),
            _ => vec![],
        };
        let mut armed = Armed {
            defense,
            seed,
            ranges,
            signatures: vec![],
        };
        if let Defense::Radar { group } = defense {
            armed.signatures = stored
                .tensors
                .iter()
                .enumerate()
                .map(|(ti, t)| {
                    let m = groups(t.numel(), group);
                    (0..m).map(|g| armed.signature(ti, t, m, g, &|i| t.words[i])).collect()
                })
                .collect();
        }
        armed
    }

    /// The secret key of word `index` of tensor `ti`.
    pub fn key(&self, ti: usize, index: usize) -> i64 {
        if mix(self.seed ^ mix(((ti as u64) << 40) ^ index as u64)) & 1 == 0 {
            1
        } else {
            -1
        }
    }

    fn signature(&self, ti: usize, t: &StoredTensor, m: usize, g: usize, word: &dyn Fn(usize) -> u32) -> u8 {
        let sum = (g..t.numel()).step_by(m).fold(0i64, |acc, i| {
            acc.wrapping_add(self.key(ti, i).wrapping_mul(t.signed(word(i))))
        });
        ((sum >> (t.width - 2)) & 3) as u8
    }

    /// Whether a weight of tensor `ti` at `value` passes the range check.
    pub fn in_range(&self, ti: usize, value: f32) -> bool {
        match self.defense {
            Defense::Range => {
                let (lo, hi) = self.ranges[ti];
                value >= lo && value <= hi
            }
            _ => true,
        }
    }

    /// The value one faulty element takes after recovery when the defence
    /// acts on that element alone; None when it may rewrite others (RADAR).
    pub fn single(&self, ti: usize, value: f32) -> Option<f32> {
        match self.defense {
            Defense::None => Some(value),
            Defense::Range => Some(if self.in_range(ti, value) { value } else { 0.0 }),
            Defense::Radar { .. } => None,
        }
    }

    /// Detection and recovery on a faulty state.
    pub fn recover(&self, stored: &Stored, faulty: &Faulty) -> Recovery {
        let mut r = Recovery::default();
        let flips = |t: usize, i: usize, w: u32| (stored.tensors[t].words[i] ^ w).count_ones() as u64;
        match self.defense {
            Defense::None | Defense::Range => {
                for (&(t, i), &w) in faulty {
                    let v = stored.tensors[t].decode(i, w);
                    if self.in_range(t, v) {
                        r.writes.push((t, i, v));
                    } else {
                        r.writes.push((t, i, 0.0));
                        r.detected_flips += flips(t, i, w);
                        r.zeroed_weights += 1;
                    }
                }
            }
            Defense::Radar { group } => {
                let mut touched: BTreeMap<(usize, usize), Vec<(usize, u32)>> = BTreeMap::new();
                for (&(t, i), &w) in faulty {
                    let m = groups(stored.tensors[t].numel(), group);
                    touched.entry((t, i % m)).or_default().push((i, w));
                }
                for ((t, g), members) in touched {
                    let st = &stored.tensors[t];
                    let m = groups(st.numel(), group);
                    let word = |i: usize| members.iter().find(|(j, _)| *j == i).map_or(st.words[i], |(_, w)| *w);
                    if self.signature(t, st, m, g, &word) == self.signatures[t][g] {
                        r.writes.extend(members.iter().map(|&(i, w)| (t, i, st.decode(i, w))));
                    } else {
                        r.detected_flips += members.iter().map(|&(i, w)| flips(t, i, w)).sum::<u64>();
                        r.zeroed_groups += 1;
                        for i in (g..st.numel()).step_by(m) {
                            r.writes.push((t, i, 0.0));
                            r.zeroed_weights += 1;
                        }
                    }
                }
            }
        }
        r
    }
}

/// Interleaved groups of about `size` words over `numel` words.
pub fn groups(numel: usize, size: usize) -> usize {
    numel.div_ceil(size).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        assert_eq!("radar".parse::<Defense>().unwrap(), Defense::Radar { group: 16 });
        assert_eq!("radar:8".parse::<Defense>().unwrap(), Defense::Radar { group: 8 });
        for bad in ["radar:1", "radar:x", "rang", "range:3", ""] {
            assert!(bad.parse::<Defense>().is_err(), "{bad}");
        }
    }
}
