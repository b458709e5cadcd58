//! summary.json: clean accuracy, erratic bits and parameters (total, per
//! layer, per bit), the RAD histogram, and sample estimates with intervals.
//! Built by streaming the table's rows, so memory does not grow with flips.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use super::bits::field;
use super::journal::Manifest;
use super::record::Row;
use super::stats::wilson;
use super::verdict::erratic;

#[derive(Debug, Default, Clone, Serialize)]
pub struct Counts {
    pub flips: u64,
    pub erratic_bits: u64,
    /// Distinct elements among the flips (a sample or list covers only some).
    pub params: u64,
    /// Elements with at least one erratic bit.
    pub erratic_params: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerCounts {
    pub layer: String,
    #[serde(flatten)]
    pub counts: Counts,
}

#[derive(Debug, Clone, Serialize)]
pub struct BitCounts {
    pub bit: u8,
    pub field: &'static str,
    pub flips: u64,
    pub erratic_bits: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Histogram {
    pub bin_width: f64,
    /// Flips that raised accuracy (RAD < 0).
    pub negative: u64,
    /// `counts[k]` = flips with RAD in [5k %, 5(k+1) %); the last bin includes 100 %.
    pub counts: Vec<u64>,
}

#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Default, Clone, Serialize)]
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

#[derive(Debug, Clone, Serialize)]
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
    last: Option<(String, i64)>,
    erratic_elements: HashSet<(String, i64)>,
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
            last: None,
            erratic_elements: HashSet::new(),
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
        let new_element = self.last.as_ref().is_none_or(|(p, i)| p != &r.param || *i != r.index);
        let newly_erratic = is_erratic && self.erratic_elements.insert((r.param.clone(), r.index));
        let entry = self.layers.entry(layer).or_default();
        for c in [&mut self.total, entry] {
            c.flips += 1;
            c.erratic_bits += is_erratic as u64;
            c.params += new_element as u64;
            c.erratic_params += newly_erratic as u64;
        }
        if new_element {
            self.last = Some((r.param.clone(), r.index));
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
                    field: field(bit as u8),
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
