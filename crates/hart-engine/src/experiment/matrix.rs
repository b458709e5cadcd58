//! The cross-recipe × fault-model verdict table: "what should I do against
//! my fault model?". Rows are the measurements' headline resilience figures
//! (each section's [`Headline`]s: single-bit flips, flips under each
//! defence, random-fault campaigns, attacks), columns the recipes; each cell
//! is the recipe's per-seed paired change against the baseline with its 95%
//! interval and a verdict word, given only at matched clean accuracy.

use serde::Serialize;

use super::measure::{Better, Change, Headline, REGISTRY};
use super::present::{Table, NAME_COLUMN};
use super::results::Group;
use crate::error::Result;
use crate::stats::MeanCi;

pub const EXPLANATION: &str = "Rows are fault models (and defences), columns training recipes. The baseline's column gives its value (mean ± 95% interval over seeds); every other cell gives the recipe's change against the baseline paired by seed (the same seed trained both ways, and meeting the same faults), as a relative change for counts (erratic bits, flips to crush) or a difference in percentage points for accuracies, with its 95% interval (Student t over the paired seeds). It helps when that interval lies wholly on the better side of zero (fewer erratic bits, more flips to crush, higher accuracy under faults), hurts when it lies wholly on the worse side, and is inconclusive otherwise (a single seed has no interval and is always inconclusive). Resilience is judged only at matched clean accuracy: a recipe whose mean paired clean test accuracy is more than the tolerance below the baseline's reads \"not comparable: lost N points\" in every fault row, since a model that has lost accuracy has less to lose to a fault.";

/// A cell's verdict word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Word {
    Helps,
    Hurts,
    Inconclusive,
    /// Clean accuracy more than the tolerance below the baseline's.
    NotComparable,
}

impl Word {
    fn as_str(self) -> &'static str {
        match self {
            Word::Helps => "helps",
            Word::Hurts => "hurts",
            Word::Inconclusive => "inconclusive",
            Word::NotComparable => "not comparable",
        }
    }
}

/// Whether a paired change's 95% interval lies wholly on the better side of
/// zero (helps), wholly on the worse side (hurts), or neither.
pub fn judge(change: &MeanCi, better: Better) -> Word {
    let Some((lo, hi)) = change.interval() else {
        return Word::Inconclusive;
    };
    // The interval of the gain: positive is better.
    let (lo, hi) = match better {
        Better::Higher => (lo, hi),
        Better::Lower => (-hi, -lo),
    };
    if lo > 0.0 {
        Word::Helps
    } else if hi < 0.0 {
        Word::Hurts
    } else {
        Word::Inconclusive
    }
}

/// One recipe's cell in one row.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub recipe: String,
    pub value: MeanCi,
    /// Paired against the baseline (None for the baseline itself).
    pub change: Option<MeanCi>,
    /// None for the baseline and the clean-accuracy row.
    pub verdict: Option<Word>,
    /// As the table prints it.
    pub text: String,
}

/// One row: an architecture's fault model (or its clean accuracy).
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub arch: String,
    pub fault: String,
    pub cells: Vec<Cell>,
}

fn show_value(v: &MeanCi, unit: Change) -> String {
    match unit {
        Change::Points => v.percent(),
        Change::Relative => v.to_string(),
    }
}

fn show_change(c: &MeanCi, unit: Change) -> String {
    match unit {
        Change::Points => c.points(),
        Change::Relative => c.signed_percent(),
    }
}

/// Points of clean accuracy the recipe lost against the baseline (paired
/// by seed; the means' difference where no seed pairs), when more than `tolerance`.
fn lost(g: &Group, base: &Group, tolerance: f64) -> Option<f64> {
    let diff = g
        .accuracy_diff
        .map_or(g.test_accuracy.mean - base.test_accuracy.mean, |d| d.mean);
    (diff < -tolerance).then_some(-diff)
}

/// The table's rows: per architecture with a baseline and another recipe,
/// clean accuracy first, then every measurement's headlines in registry order.
pub fn matrix(groups: &[Group], tolerance: f64) -> Result<Vec<Line>> {
    let mut out = vec![];
    let mut archs: Vec<&str> = vec![];
    for g in groups {
        if !archs.contains(&g.arch.as_str()) {
            archs.push(&g.arch);
        }
    }
    for arch in archs {
        let of: Vec<&Group> = groups.iter().filter(|g| g.arch == arch).collect();
        let Some(base) = of.iter().find(|g| g.baseline).copied() else {
            continue;
        };
        if of.len() < 2 {
            continue;
        }
        let lost: Vec<Option<f64>> = of.iter().map(|g| lost(g, base, tolerance)).collect();
        let clean = of
            .iter()
            .zip(&lost)
            .map(|(g, l)| {
                let text = match (g.baseline, g.accuracy_diff, l) {
                    (true, _, _) => g.test_accuracy.percent(),
                    (false, Some(d), None) => format!("{}: matched", d.points()),
                    (false, Some(d), Some(n)) => format!("{}: lost {:.1} points", d.points(), 100.0 * n),
                    (false, None, _) => "—".into(),
                };
                Cell {
                    recipe: g.recipe.clone(),
                    value: g.test_accuracy,
                    change: g.accuracy_diff,
                    verdict: None,
                    text,
                }
            })
            .collect();
        out.push(Line {
            arch: arch.to_string(),
            fault: format!("clean test accuracy (matched within {:.1} points)", 100.0 * tolerance),
            cells: clean,
        });
        let mut per_group: Vec<Vec<Headline>> = vec![];
        for g in &of {
            let mut h = vec![];
            for m in REGISTRY {
                h.extend(m.headlines(g)?);
            }
            per_group.push(h);
        }
        let base_index = of.iter().position(|g| g.baseline).unwrap_or(0);
        for row in &per_group[base_index] {
            let cells = of
                .iter()
                .zip(&per_group)
                .zip(&lost)
                .map(|((g, heads), l)| {
                    let Some(h) = heads.iter().find(|h| h.fault == row.fault) else {
                        return Cell {
                            recipe: g.recipe.clone(),
                            value: MeanCi {
                                mean: f64::NAN,
                                ci95: f64::NAN,
                                n: 0,
                            },
                            change: None,
                            verdict: None,
                            text: "—".into(),
                        };
                    };
                    let (verdict, text) = match (g.baseline, h.change, l) {
                        (true, _, _) => (None, show_value(&h.value, h.unit)),
                        (false, _, Some(n)) => (
                            Some(Word::NotComparable),
                            format!("not comparable: lost {:.1} points", 100.0 * n),
                        ),
                        (false, Some(c), None) => {
                            let w = judge(&c, h.better);
                            (Some(w), format!("{}: {}", show_change(&c, h.unit), w.as_str()))
                        }
                        (false, None, None) => (None, "—".into()),
                    };
                    let text = match (&h.note, verdict) {
                        (Some(n), v) if v != Some(Word::NotComparable) => format!("{text} ({n})"),
                        _ => text,
                    };
                    Cell {
                        recipe: g.recipe.clone(),
                        value: h.value,
                        change: h.change,
                        verdict,
                        text,
                    }
                })
                .collect();
            out.push(Line {
                arch: arch.to_string(),
                fault: row.fault.clone(),
                cells,
            });
        }
    }
    Ok(out)
}

/// The rows as one table (architecture, fault model, one column per recipe,
/// the baseline's first); None when no architecture has two recipes.
pub fn table(lines: &[Line]) -> Option<Table> {
    let first = lines.first()?;
    let mut header = vec![NAME_COLUMN.to_string(), "fault model".to_string()];
    header.extend(first.cells.iter().map(|c| {
        if first.cells[0].recipe == c.recipe {
            format!("{} (baseline)", c.recipe)
        } else {
            format!("{} vs {}", c.recipe, first.cells[0].recipe)
        }
    }));
    let rows = lines
        .iter()
        .map(|l| {
            let mut row = vec![l.arch.clone(), l.fault.clone()];
            row.extend(l.cells.iter().map(|c| c.text.clone()));
            row
        })
        .collect();
    Some((header, rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ci(mean: f64, ci95: f64, n: usize) -> serde_json::Value {
        json!({"mean": mean, "ci95": ci95, "n": n})
    }

    /// A group with a sweep (erratic bits and their paired change) and one
    /// int8 campaign level (accuracy and its paired difference).
    fn group(
        recipe: &str,
        accuracy: f64,
        accuracy_diff: Option<serde_json::Value>,
        bits: serde_json::Value,
        bits_change: Option<serde_json::Value>,
        ber: serde_json::Value,
        ber_diff: Option<serde_json::Value>,
    ) -> Group {
        serde_json::from_value(json!({
            "arch": "lenet5", "recipe": recipe, "baseline": recipe == "plain", "seeds": [0, 1, 2],
            "test_accuracy": ci(accuracy, 0.01, 3), "train_seconds": ci(10.0, 1.0, 3),
            "accuracy_diff": accuracy_diff, "regularizer": "none",
            "flips": 100.0, "erratic_bits": bits, "erratic_params": bits, "severe_bits": bits,
            "erratic_bits_change": bits_change, "rad_histogram": [], "erratic_per_bit": [],
            "erratic_per_layer": {}, "bits": [30], "quantize": [], "prune": [],
            "campaign": [{"fault": "bitflip", "storage": "int8", "trials": 20, "params": ".*weight",
                "levels": [{"level": 0.03, "accuracy": ber, "per_seed": [], "diff": ber_diff}]}],
        }))
        .unwrap()
    }

    /// Mean and 95% half-width (t with n − 1 = 2 degrees of freedom: 4.303) of three paired values.
    fn by_hand(xs: [f64; 3]) -> serde_json::Value {
        let mean = (xs[0] + xs[1] + xs[2]) / 3.0;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 2.0;
        ci(mean, 4.303 * (var / 3.0).sqrt(), 3)
    }

    /// plain; randbet (matched, fewer erratic bits, better at BER 0.03);
    /// noise (more erratic bits in every seed, BER change inconclusive); hat
    /// (6 points of clean accuracy lost). Paired values per seed in the comments.
    fn fixture() -> Vec<Group> {
        let plain = group("plain", 0.80, None, ci(1000.0, 50.0, 3), None, ci(0.65, 0.05, 3), None);
        // Erratic bits −10%, −12%, −14% (mean −12%, half-width 4.303·0.02/√3 = 4.97%);
        // accuracy at BER 0.03 +10, +12, +14 points; clean accuracy −1 point in every seed.
        let randbet = group(
            "randbet",
            0.79,
            Some(by_hand([-0.01, -0.01, -0.01])),
            ci(880.0, 40.0, 3),
            Some(by_hand([-0.10, -0.12, -0.14])),
            ci(0.77, 0.02, 3),
            Some(by_hand([0.10, 0.12, 0.14])),
        );
        // Erratic bits +5, +6, +7%; BER accuracy −2, +1, +4 points.
        let noise = group(
            "noise",
            0.80,
            Some(by_hand([0.0, 0.01, -0.01])),
            ci(1060.0, 40.0, 3),
            Some(by_hand([0.05, 0.06, 0.07])),
            ci(0.66, 0.03, 3),
            Some(by_hand([-0.02, 0.01, 0.04])),
        );
        // Clean accuracy −5, −6, −7 points; erratic bits −90, −90, −91%.
        let collapsed = group(
            "hat",
            0.74,
            Some(by_hand([-0.05, -0.06, -0.07])),
            ci(100.0, 10.0, 3),
            Some(by_hand([-0.90, -0.90, -0.91])),
            ci(0.70, 0.02, 3),
            Some(by_hand([0.05, 0.05, 0.05])),
        );
        vec![plain, randbet, noise, collapsed]
    }

    #[test]
    fn cells_are_paired_changes_judged_at_matched_accuracy() {
        let lines = matrix(&fixture(), 0.02).unwrap();
        let (header, rows) = table(&lines).unwrap();
        assert_eq!(
            header,
            [
                "architecture",
                "fault model",
                "plain (baseline)",
                "randbet vs plain",
                "noise vs plain",
                "hat vs plain"
            ]
        );
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0][1], "clean test accuracy (matched within 2.0 points)");
        assert_eq!(rows[0][2], "80.00 ± 1.00%");
        assert_eq!(rows[0][3], "-1.00 ± 0.00 points: matched");
        // −5, −6, −7: mean −6, sd 1, half-width 4.303·1/√3 = 2.48 points.
        assert_eq!(rows[0][5], "-6.00 ± 2.48 points: lost 6.0 points");
        assert_eq!(rows[1][1], "single bit flips (exponent MSB): erratic bits");
        assert_eq!(rows[1][2], "1000 ± 50");
        assert_eq!(rows[1][3], "-12.0 ± 5.0%: helps");
        assert_eq!(rows[1][4], "+6.0 ± 2.5%: hurts");
        assert_eq!(rows[1][5], "not comparable: lost 6.0 points");
        assert_eq!(
            rows[2][1],
            "bit errors in int8 storage (tensors matching .*weight), rate 0.03: accuracy"
        );
        assert_eq!(rows[2][2], "65.00 ± 5.00%");
        assert_eq!(rows[2][3], "+12.00 ± 4.97 points: helps");
        // −2, +1, +4: mean +1, sd 3, half-width 4.303·3/√3 = 7.45 points.
        assert_eq!(rows[2][4], "+1.00 ± 7.45 points: inconclusive");
        assert_eq!(rows[2][5], "not comparable: lost 6.0 points");
        assert_eq!(lines[1].cells[1].verdict, Some(Word::Helps));
        assert_eq!(lines[2].cells[3].verdict, Some(Word::NotComparable));
        assert_eq!(lines[1].cells[0].verdict, None);
    }

    #[test]
    fn the_tolerance_decides_what_is_comparable() {
        // At 10 points the hat recipe is judged: −90, −90, −91% is mean −90.3, half-width
        // 4.303·0.00577/√3 = 1.4%.
        let rows = table(&matrix(&fixture(), 0.10).unwrap()).unwrap().1;
        assert_eq!(rows[0][5], "-6.00 ± 2.48 points: matched");
        assert_eq!(rows[1][5], "-90.3 ± 1.4%: helps");
        // A lone baseline has nothing to compare.
        assert!(matrix(&fixture()[..1], 0.02).unwrap().is_empty());
        assert!(table(&[]).is_none());
    }

    /// `groups` with a BFA result: flips to crush and trials reaching the target.
    fn with_attack(groups: Vec<Group>, flips: [f64; 2], reached: [usize; 2]) -> Vec<Group> {
        groups
            .into_iter()
            .enumerate()
            .map(|(i, g)| {
                let mut v = serde_json::to_value(&g).unwrap();
                let k = i.min(1);
                v["attack"] = json!([{
                    "method": "bfa", "storage": "int8", "clean_accuracy": ci(0.8, 0.01, 3),
                    "target_accuracy": 0.11, "flips": ci(flips[k], 1.0, 3), "per_seed": [],
                    "reached": reached[k], "trials": 9,
                    "change": (i > 0).then(|| by_hand([0.1, 0.2, 0.3])), "random_accuracy": null,
                }]);
                serde_json::from_value(v).unwrap()
            })
            .collect()
    }

    #[test]
    fn attacks_cut_off_at_their_budget_say_so() {
        let rows = table(&matrix(&with_attack(fixture(), [90.0, 100.0], [9, 2]), 0.02).unwrap())
            .unwrap()
            .1;
        let attack = rows.iter().find(|r| r[1].starts_with("BFA")).unwrap();
        assert_eq!(attack[2], "90.00 ± 1.00");
        assert_eq!(
            attack[3],
            "+20.0 ± 24.8%: inconclusive (7 of 9 trials cut off at the budget: a lower bound)"
        );
        assert_eq!(attack[5], "not comparable: lost 6.0 points");
        let rows = table(&matrix(&with_attack(fixture(), [90.0, 100.0], [3, 9]), 0.02).unwrap())
            .unwrap()
            .1;
        let attack = rows.iter().find(|r| r[1].starts_with("BFA")).unwrap();
        assert_eq!(
            attack[2],
            "90.00 ± 1.00 (6 of 9 trials cut off at the budget: a lower bound)"
        );
        assert_eq!(attack[3], "+20.0 ± 24.8%: inconclusive");
    }

    #[test]
    fn verdicts_need_the_interval_clear_of_zero() {
        let m = |mean, ci95| MeanCi { mean, ci95, n: 5 };
        assert_eq!(judge(&m(-0.10, 0.05), Better::Lower), Word::Helps);
        assert_eq!(judge(&m(-0.10, 0.05), Better::Higher), Word::Hurts);
        assert_eq!(judge(&m(0.02, 0.05), Better::Higher), Word::Inconclusive);
        assert_eq!(judge(&m(0.10, 0.10), Better::Higher), Word::Inconclusive);
        assert_eq!(judge(&m(0.30, f64::NAN), Better::Higher), Word::Inconclusive);
    }
}
