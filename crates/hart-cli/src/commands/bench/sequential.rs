//! The sequential-verdict row of `hart bench sweep`: a BatchNorm + residual
//! CNN (resnet18-cifar, random weights, self-labelled images) swept by
//! strata with `--verdict sequential` (all 32 bits of a few random elements
//! of every conv/linear weight tensor, each tensor's time per flip weighted
//! by its size) against the brute-force loop on a subset of the same flips,
//! both on one libtorch thread; and its verdicts against the exact engine's
//! on another subset.

use anyhow::Result;
use hart::bench::Comparison;
use hart::data::Dataset;
use hart::faults::{SweepConfig, VerdictMode};
use hart::model::Model;
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::workload::{by_strata, configured_rows, one_thread, per_flip, reference_on, tempfile_dir, write_list};

/// What the row needs besides the model.
pub struct Plan {
    /// Elements per conv/linear weight tensor.
    pub elements: usize,
    pub confidence: f64,
    /// Flips whose sequential verdicts are compared with the exact engine's.
    pub check: usize,
    pub reference_flips: usize,
}

pub fn row(model: &Model, data: &Dataset, p: &Plan) -> Result<Comparison> {
    one_thread(|| row_here(model, data, p))
}

fn row_here(model: &Model, data: &Dataset, p: &Plan) -> Result<Comparison> {
    let dir = tempfile_dir()?;
    let seq_cfg = SweepConfig {
        verdict: VerdictMode::Sequential,
        confidence: p.confidence,
        ..SweepConfig::new()
    };
    let (seq, per) = by_strata(model, data, p.elements, seq_cfg, &dir)?;
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let mut chosen = sample(&mut rng, seq.len(), p.check.min(seq.len())).into_vec();
    chosen.sort_unstable();
    let sub = dir.join("check.csv");
    write_list(&sub, chosen.iter().map(|&i| &seq[i]))?;
    let exact_cfg = SweepConfig {
        batch: 500,
        ..SweepConfig::new()
    };
    let (exact, _) = configured_rows(model, data, &sub, exact_cfg, 1)?;
    let threshold = SweepConfig::new().threshold;
    let erratic = |rad: f64| rad > threshold;
    let equal = exact
        .iter()
        .zip(&chosen)
        .filter(|(e, &i)| erratic(e.rad) == erratic(seq[i].rad))
        .count();
    // The loop is timed on flips the exact engine checked, whose counts it must match.
    let (reference, ref_s) = reference_on("sequential", model, data, &dir, &exact, p.reference_flips)?;
    let _ = std::fs::remove_dir_all(&dir);
    let settled = seq.iter().filter(|r| !r.sure).count();
    let samples: i64 = seq.iter().map(|r| r.samples).sum();
    println!(
        "resnet18-cifar sequential by strata ({:.1}% confidence, one thread): {} flips in {} tensors on {} images, {:.1} flips/s weighted by tensor size; {settled} settled from part of their samples (at most {:.2} wrong expected), {:.0} samples known per flip; verdicts equal to the exact engine's on {equal} of {} random flips ({} of them erratic)",
        100.0 * p.confidence,
        seq.len(),
        seq.iter().map(|r| &r.param).collect::<std::collections::HashSet<_>>().len(),
        data.len(),
        1.0 / per,
        (1.0 - p.confidence) * settled as f64,
        samples as f64 / seq.len().max(1) as f64,
        exact.len(),
        exact.iter().filter(|r| erratic(r.rad)).count(),
    );
    Ok(Comparison::new(
        &format!(
            "resnet18-cifar sequential by strata, one thread ({} images)",
            data.len()
        ),
        per_flip("reference", &ref_s, reference.len()),
        per_flip("sequential", &[per], 1),
    ))
}
