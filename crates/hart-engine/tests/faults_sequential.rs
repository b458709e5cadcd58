//! Sequential verdicts against the exact engine on the same flips of a
//! BatchNorm + residual CNN (the ONNX import of tests/python/onnx_export.py):
//! disagreements within the stated rate, most flips settled from part of
//! their samples, and a flip at the threshold run to the end.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use hart::data::Dataset;
use hart::faults::record::Row;
use hart::faults::{prepare, SweepConfig, VerdictMode};
use hart::model::{LoadOptions, Model};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const IMAGES: usize = 512;

/// The residual CNN, self-labelled images, and a fault list of all 32 bits
/// of `elements` random elements of every tensor.
fn setup(elements: usize) -> (tempfile::TempDir, Model, Dataset, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    common::run_python("onnx_export.py", &[dir.path()]);
    let m = hart::model::load(&dir.path().join("cnn_raw.onnx"), &LoadOptions::default()).unwrap();
    let data = common::dataset(&m, IMAGES, 3, 16, 9);
    let faults = dir.path().join("faults.csv");
    all_bits(&m, &faults, elements);
    (dir, m, data, faults)
}

/// All 32 bits of `elements` random elements of every float tensor.
fn all_bits(model: &Model, path: &Path, elements: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut f = std::fs::File::create(path).unwrap();
    writeln!(f, "param,index,bit").unwrap();
    for (name, t, _) in model.named_tensors() {
        if t.kind() != tch::Kind::Float {
            continue;
        }
        let mut picks: Vec<i64> = (0..elements).map(|_| rng.random_range(0..t.numel() as i64)).collect();
        picks.sort_unstable();
        picks.dedup();
        for i in picks {
            for bit in 0..32 {
                writeln!(f, "{name},{i},{bit}").unwrap();
            }
        }
    }
}

/// The rows of a sweep with `verdict`, or with exact RAD when `None`, and
/// the clean correct count.
fn rows(model: &Model, data: &Dataset, faults: &Path, verdict: Option<VerdictMode>, threshold: f64) -> (Vec<Row>, i64) {
    let cfg = SweepConfig {
        exact_rad: verdict.is_none(),
        verdict: verdict.unwrap_or_default(),
        faults: Some(faults.to_path_buf()),
        confidence: 0.99,
        threshold,
        batch: 128,
        jobs: Some(2),
        ..SweepConfig::new()
    };
    let sw = prepare(model, data, &cfg).unwrap();
    (sw.collect().unwrap(), sw.clean.correct_count)
}

#[test]
fn sequential_verdicts_agree_with_exact_ones_within_the_stated_rate() {
    let (_dir, m, data, faults) = setup(8);
    let (exact, cc) = rows(&m, &data, &faults, Some(VerdictMode::Exact), 0.1);
    let (seq, _) = rows(&m, &data, &faults, Some(VerdictMode::Sequential), 0.1);
    assert_eq!(exact.len(), seq.len());
    let (mut wrong, mut settled, mut erratic, mut samples) = (0, 0, 0, 0);
    for (e, s) in exact.iter().zip(&seq) {
        assert_eq!((&e.param, e.index, e.bit), (&s.param, s.index, s.bit));
        wrong += ((e.rad > 0.1) != (s.rad > 0.1)) as usize;
        settled += !s.sure as usize;
        erratic += (e.rad > 0.1) as usize;
        samples += s.samples;
        if s.exact {
            assert_eq!(
                s.correct, e.correct,
                "{}[{}] bit {}: exact rows agree",
                s.param, s.index, s.bit
            );
        }
        if s.sure {
            assert_eq!(s.rad > 0.1, e.rad > 0.1, "sure verdicts are never wrong");
        } else {
            assert!(s.samples < IMAGES as i64 && !s.exact);
            // The bound is on the verdict's side of the threshold, as the rad estimate.
            assert_eq!(s.bound as f64 > 0.1 * cc as f64, s.rad > 0.1);
        }
    }
    let flips = exact.len();
    println!("{flips} flips, {erratic} erratic, {settled} settled at 99%, {wrong} wrong, {samples} samples known");
    assert!(flips > 3000, "several thousand flips: {flips}");
    assert!(erratic > 50, "the comparison needs erratic flips: {erratic}");
    assert!(
        settled > flips / 4,
        "the sequential rule must settle flips: {settled} of {flips}"
    );
    assert!(
        wrong as f64 <= 0.01 * settled as f64,
        "{wrong} wrong verdicts among {settled} settled at 99% confidence"
    );
}

/// A flip whose loss sits at the threshold cannot be settled from part of
/// the samples: it must be counted to the end, exactly.
#[test]
fn a_flip_at_the_threshold_runs_to_the_end() {
    let (dir, m, data, faults) = setup(2);
    let (exact, cc) = rows(&m, &data, &faults, None, 0.1);
    // A flip losing a fair share of the samples, with the threshold just below its loss.
    let pick = exact
        .iter()
        .filter(|r| r.exact && r.rad > 0.2 && r.rad < 0.8)
        .min_by(|a, b| (a.rad - 0.5).abs().total_cmp(&(b.rad - 0.5).abs()))
        .expect("a flip losing 20–80% of the samples");
    let lost = cc - pick.correct;
    let threshold = (lost as f64 - 0.5) / cc as f64;
    let one = dir.path().join("one.csv");
    std::fs::write(
        &one,
        format!("param,index,bit\n{},{},{}\n", pick.param, pick.index, pick.bit),
    )
    .unwrap();
    let (seq, _) = rows(&m, &data, &one, Some(VerdictMode::Sequential), threshold);
    let r = &seq[0];
    // No look settled it: counted until the few samples left could not
    // change the verdict (a sure early exit), well past the last look (256).
    assert!(r.sure && r.samples >= IMAGES as i64 - 16, "{r:?}");
    assert!(r.rad > threshold && r.bound as f64 > threshold * cc as f64, "{r:?}");
}
