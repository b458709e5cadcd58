//! summary.json: clean accuracy, erratic bits and parameters (total, per
//! layer, per bit), the RAD histogram, and sample estimates with intervals.
//! Built by streaming the table's rows, so memory does not grow with flips.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::bits::field;
use super::journal::Manifest;
use super::record::Row;
use super::stats::wilson;
use super::verdict::erratic;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Counts {
    pub flips: u64,
    pub erratic_bits: u64,
    /// Distinct elements among the flips (a sample or list covers only some).
    pub params: u64,
    /// Elements with at least one erratic bit.
    pub erratic_params: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerCounts {
    pub layer: String,
    #[serde(flatten)]
    pub counts: Counts,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BitCounts {
    pub bit: u8,
    pub field: String,
    pub flips: u64,
    pub erratic_bits: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Histogram {
    pub bin_width: f64,
    /// Flips that raised accuracy (RAD < 0).
    pub negative: u64,
    /// `counts[k]` = flips with RAD in [5k %, 5(k+1) %); the last bin includes 100 %.
    pub counts: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Estimate {
    pub confidence: f64,
    pub population_flips: u64,
    pub sampled_flips: u64,
    pub erratic_fraction: f64,
    pub erratic_fraction_ci: (f64, f64),
    pub erratic_bits_estimate: f64,
    pub erratic_bits_ci: (f64, f64),
}

/// What sequential verdicts mean for the counts above.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct SequentialCounts {
    pub confidence: f64,
    /// Flips whose verdict the sequential rule settled from part of the
    /// samples: each is wrong with probability at most 1 − confidence.
    pub settled_at_confidence: u64,
    /// Expected wrong verdicts among all flips, at most
    /// (1 − confidence) × settled_at_confidence ≤ (1 − confidence) × flips.
    pub expected_wrong_at_most: f64,
    /// Flips the rule never settled, counted over every sample (exact RAD).
    pub run_to_end: u64,
    /// Flips stopped early with a sure verdict (the open samples could not change it).
    pub settled_surely: u64,
    /// Mean samples whose outcome was known per flip (of `total`).
    pub mean_samples: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub clean_correct: i64,
    pub total: i64,
    pub clean_accuracy: f64,
    pub threshold: f64,
    #[serde(flatten)]
    pub counts: Counts,
    /// Rows whose count stopped early once the verdict was settled.
    pub early_exit_rows: u64,
    pub per_layer: Vec<LayerCounts>,
    pub per_bit: Vec<BitCounts>,
    pub rad_histogram: Histogram,
    pub estimate: Option<Estimate>,
    /// Present for `--verdict sequential`.
    pub sequential: Option<SequentialCounts>,
    pub config: serde_json::Value,
    pub hashes: serde_json::Value,
}

pub struct SummaryBuilder<'a> {
    manifest: &'a Manifest,
    total: Counts,
    early: u64,
    seq: SequentialCounts,
    layers: BTreeMap<String, Counts>,
    bits: [(u64, u64); 32],
    hist: Histogram,
    elements: Seen,
    erratic_elements: Seen,
}

/// The set of (tensor, index) elements met so far, exact whatever order rows
/// come in (a fault list may repeat an element anywhere). Per tensor, a
/// bitset covers indices below 64 × (its rows + 1024) — so its memory stays
/// within about 8 bytes a row — and rarer indices beyond go to a hash set.
#[derive(Default)]
struct Seen {
    dense: HashMap<String, (u64, Vec<u64>)>,
    sparse: HashSet<(String, i64)>,
}

impl Seen {
    /// True the first time `(param, index)` is inserted.
    fn insert(&mut self, param: &str, index: i64) -> bool {
        let (rows, bits) = self.dense.entry(param.to_string()).or_default();
        *rows += 1;
        let word = (index / 64) as usize;
        if index < 0 || index as u64 >= 64 * (*rows + 1024) {
            return self.sparse.insert((param.to_string(), index));
        }
        // Once an index is in the dense range it stays there; it may have been sparse before.
        if self.sparse.contains(&(param.to_string(), index)) {
            return false;
        }
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        let mask = 1u64 << (index % 64);
        let new = bits[word] & mask == 0;
        bits[word] |= mask;
        new
    }
}

impl<'a> SummaryBuilder<'a> {
    pub fn new(manifest: &'a Manifest) -> Self {
        SummaryBuilder {
            manifest,
            total: Counts::default(),
            early: 0,
            seq: SequentialCounts::default(),
            layers: BTreeMap::new(),
            bits: [(0, 0); 32],
            hist: Histogram {
                bin_width: 0.05,
                negative: 0,
                counts: vec![0; 20],
            },
            elements: Seen::default(),
            erratic_elements: Seen::default(),
        }
    }

    pub fn add(&mut self, r: &Row) {
        let layer = self
            .manifest
            .layers
            .get(&r.param)
            .cloned()
            .unwrap_or_else(|| r.param.clone());
        let is_erratic = erratic(r.rad, self.manifest.threshold);
        let new_element = self.elements.insert(&r.param, r.index);
        let newly_erratic = is_erratic && self.erratic_elements.insert(&r.param, r.index);
        let entry = self.layers.entry(layer).or_default();
        for c in [&mut self.total, entry] {
            c.flips += 1;
            c.erratic_bits += is_erratic as u64;
            c.params += new_element as u64;
            c.erratic_params += newly_erratic as u64;
        }
        self.early += !r.exact as u64;
        self.seq.settled_at_confidence += !r.sure as u64;
        self.seq.run_to_end += r.exact as u64;
        self.seq.settled_surely += (r.sure && !r.exact) as u64;
        self.seq.mean_samples += r.samples as f64;
        let b = &mut self.bits[r.bit as usize % 32];
        b.0 += 1;
        b.1 += is_erratic as u64;
        if r.rad < 0.0 {
            self.hist.negative += 1;
        } else {
            let k = ((r.rad / 0.05).floor() as usize).min(19);
            self.hist.counts[k] += 1;
        }
    }

    pub fn finish(self, confidence: f64) -> Summary {
        let m = self.manifest;
        let estimate = m.sampled.then(|| {
            let (k, n, pop) = (self.total.erratic_bits, self.total.flips, m.population);
            let ci = wilson(k, n, pop, confidence);
            let frac = k as f64 / n.max(1) as f64;
            Estimate {
                confidence,
                population_flips: pop,
                sampled_flips: n,
                erratic_fraction: frac,
                erratic_fraction_ci: ci,
                erratic_bits_estimate: frac * pop as f64,
                erratic_bits_ci: (ci.0 * pop as f64, ci.1 * pop as f64),
            }
        });
        let sequential = (m.config.get("verdict").and_then(|v| v.as_str()) == Some("sequential")).then(|| {
            let mut seq = self.seq;
            seq.confidence = confidence;
            seq.expected_wrong_at_most = (1.0 - confidence) * seq.settled_at_confidence as f64;
            seq.mean_samples /= self.total.flips.max(1) as f64;
            seq
        });
        Summary {
            sequential,
            clean_correct: m.clean_correct,
            total: m.total,
            clean_accuracy: m.clean_correct as f64 / m.total.max(1) as f64,
            threshold: m.threshold,
            counts: self.total,
            early_exit_rows: self.early,
            per_layer: self
                .layers
                .into_iter()
                .map(|(layer, counts)| LayerCounts { layer, counts })
                .collect(),
            per_bit: self
                .bits
                .iter()
                .enumerate()
                .filter(|(_, b)| b.0 > 0)
                .map(|(bit, b)| BitCounts {
                    bit: bit as u8,
                    field: field(bit as u8).to_string(),
                    flips: b.0,
                    erratic_bits: b.1,
                })
                .collect(),
            rad_histogram: self.hist,
            estimate,
            config: m.config.clone(),
            hashes: serde_json::to_value(&m.hashes).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::journal::Hashes;
    use crate::faults::shard::Shard;

    fn manifest() -> Manifest {
        Manifest {
            version: 1,
            hashes: Hashes {
                model: String::new(),
                data: String::new(),
                config: String::new(),
            },
            config: serde_json::Value::Null,
            shard: Shard::WHOLE,
            units: 1,
            flips: 0,
            population: 0,
            sampled: false,
            threshold: 0.1,
            confidence: 0.95,
            clean_correct: 10,
            total: 10,
            layers: BTreeMap::new(),
        }
    }

    fn row(param: &str, index: i64, bit: u8, rad: f64) -> Row {
        Row {
            param: param.into(),
            index,
            bit,
            old: 0.0,
            new: 0.0,
            correct: 0,
            total: 10,
            rad,
            exact: true,
            samples: 10,
            bound: 0,
            sure: true,
        }
    }

    /// Distinct and erratic elements counted by brute force over the whole list.
    fn reference(rows: &[Row]) -> (u64, u64) {
        let all: HashSet<_> = rows.iter().map(|r| (&r.param, r.index)).collect();
        let bad: HashSet<_> = rows
            .iter()
            .filter(|r| erratic(r.rad, 0.1))
            .map(|r| (&r.param, r.index))
            .collect();
        (all.len() as u64, bad.len() as u64)
    }

    #[test]
    fn element_counts_are_exact_for_any_order() {
        let m = manifest();
        // Element (w, 5) erratic twice, non-contiguously; indices far apart
        // (sparse path), negative-free, and one beyond the dense range early on.
        let mut rows = vec![
            row("w", 5, 30, 0.9),
            row("b", 0, 30, 0.0),
            row("w", 5, 31, 0.5),
            row("w", 1 << 40, 30, 0.9),
            row("b", 0, 29, 0.2),
            row("w", 6, 30, 0.0),
            row("w", 1 << 40, 1, 0.0),
        ];
        // Many orders of the same list, including each rotation and reversal.
        let mut seed = 7u64;
        for k in 0..200 {
            // A small LCG shuffle: the test needs variety, not quality.
            for i in (1..rows.len()).rev() {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                rows.swap(i, (seed >> 33) as usize % (i + 1));
            }
            if k % 2 == 1 {
                rows.reverse();
            }
            let mut b = SummaryBuilder::new(&m);
            rows.iter().for_each(|r| b.add(r));
            let s = b.finish(0.95);
            assert_eq!((s.counts.params, s.counts.erratic_params), reference(&rows), "{rows:?}");
            assert_eq!((s.counts.params, s.counts.erratic_params), (4, 3));
        }
    }

    #[test]
    fn sparse_then_dense_index_counts_once() {
        let mut seen = Seen::default();
        assert!(seen.insert("w", 5000 * 64), "beyond 64 × 1025: sparse");
        for i in 0..5000 {
            seen.insert("w", i);
        }
        assert!(
            !seen.insert("w", 5000 * 64),
            "now in the dense range, found in the sparse set"
        );
    }
}
