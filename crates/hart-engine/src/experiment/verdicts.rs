//! Plain statements of where a recipe is *not* better than the baseline:
//! the report shows them before anything else, so no number is hidden.

use super::claims::{within, Claim, ClaimContext, Verdict};
use super::measure::{Better, Comparison, REGISTRY};
use super::results::Group;
use crate::error::Result;
use crate::stats::MeanCi;

/// Whether `x` beats `base` with non-overlapping 95% intervals; ties and
/// overlaps are reported as "not better".
fn judge(x: &MeanCi, base: &MeanCi, better: Better) -> Option<&'static str> {
    if !(x.mean.is_finite() && base.mean.is_finite()) {
        return None;
    }
    // How much better x is (positive) or worse (negative).
    let gain = match better {
        Better::Lower => base.mean - x.mean,
        Better::Higher => x.mean - base.mean,
    };
    let spread = x.ci95 + base.ci95;
    if gain < 0.0 {
        Some("worse than")
    } else if gain == 0.0 || (!spread.is_nan() && gain <= spread) {
        Some("not clearly better than (95% intervals overlap)")
    } else {
        // Separated intervals, or a single seed taken at face value.
        None
    }
}

/// One row per (architecture, Hessian-aware recipe, claim): the primary
/// measurement's claims, the accuracy claim, then every other measurement's.
pub fn claims_table(groups: &[Group]) -> Result<Vec<Claim>> {
    let mut out = vec![];
    for g in groups.iter().filter(|g| !g.baseline && g.regularizer == "hessian") {
        let accuracy = g.accuracy_diff.map(|d| within(&d, 0.01));
        let cx = ClaimContext {
            group: g,
            base: groups.iter().find(|b| b.baseline && b.arch == g.arch),
            name: match g.lambda {
                Some(l) => format!("{} (λ = {l})", g.recipe),
                None => g.recipe.clone(),
            },
            collapsed: accuracy == Some(Verdict::NotReproduced),
        };
        let (primary, rest) = REGISTRY.split_first().map_or((None, &[][..]), |(p, r)| (Some(p), r));
        if let Some(p) = primary {
            out.extend(p.claims(&cx, groups)?);
        }
        out.push(cx.claim(
            format!("{}: test accuracy within 1 point", cx.name),
            g.accuracy_diff.map_or("—".into(), |d| d.points()),
            accuracy,
        ));
        for m in rest {
            out.extend(m.claims(&cx, groups)?);
        }
    }
    Ok(out)
}

/// Every statement, per non-baseline recipe: the primary measurement's
/// quantities, clean accuracy and training time, then every other measurement's.
pub fn not_better(groups: &[Group]) -> Result<Vec<String>> {
    let mut out = vec![];
    for g in groups.iter().filter(|g| !g.baseline) {
        let Some(base) = groups.iter().find(|b| b.baseline && b.arch == g.arch) else {
            continue;
        };
        let mut core = Some(vec![
            Comparison::new(
                "clean test accuracy",
                g.test_accuracy,
                Some(base.test_accuracy),
                Better::Higher,
            ),
            Comparison::new(
                "training time (s)",
                g.train_seconds,
                Some(base.train_seconds),
                Better::Lower,
            ),
        ]);
        let mut comparisons = vec![];
        for m in REGISTRY {
            comparisons.extend(m.comparisons(g, base)?);
            // After the primary measurement's.
            comparisons.extend(core.take().into_iter().flatten());
        }
        for c in comparisons {
            let Some(b) = c.baseline else { continue };
            if let Some(verdict) = judge(&c.value, &b, c.better) {
                // Accuracies read as the tables print them.
                let show = |m: &MeanCi| {
                    if c.what.contains("accuracy") {
                        m.percent()
                    } else {
                        m.to_string()
                    }
                };
                out.push(format!(
                    "{}: {} is {verdict} {} on {}: {} vs {}.",
                    g.arch,
                    g.recipe,
                    base.recipe,
                    c.what,
                    show(&c.value),
                    show(&b)
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(mean: f64, ci95: f64) -> MeanCi {
        MeanCi { mean, ci95, n: 3 }
    }

    #[test]
    fn only_separated_intervals_count_as_better() {
        assert_eq!(judge(&m(10.0, 1.0), &m(20.0, 1.0), Better::Lower), None);
        assert_eq!(judge(&m(25.0, 1.0), &m(20.0, 1.0), Better::Lower), Some("worse than"));
        assert!(judge(&m(19.0, 2.0), &m(20.0, 2.0), Better::Lower)
            .unwrap()
            .starts_with("not clearly"));
        assert_eq!(judge(&m(0.9, 0.01), &m(0.8, 0.01), Better::Higher), None);
        assert_eq!(judge(&m(0.7, 0.01), &m(0.8, 0.01), Better::Higher), Some("worse than"));
        // One seed: no interval, so a lower mean is taken at face value.
        assert_eq!(judge(&m(10.0, f64::NAN), &m(20.0, f64::NAN), Better::Lower), None);
    }

    fn group(recipe: &str, accuracy: f64, bits: f64) -> Group {
        let ci = |mean: f64| serde_json::json!({"mean": mean, "ci95": 0.01 * mean, "n": 3});
        serde_json::from_value(serde_json::json!({
            "arch": "lenet5", "recipe": recipe, "baseline": recipe == "plain", "seeds": [0, 1, 2],
            "test_accuracy": ci(accuracy), "train_seconds": ci(10.0), "flips": 100.0,
            "erratic_bits": ci(bits), "erratic_params": ci(bits), "severe_bits": ci(bits),
            "regularizer": "none", "rad_histogram": [], "erratic_per_bit": [],
            "erratic_per_layer": {}, "quantize": [], "prune": [],
        }))
        .unwrap()
    }

    #[test]
    fn notes_print_accuracies_as_the_tables_do() {
        let notes = not_better(&[group("plain", 0.8566, 100.0), group("hat", 0.8505, 200.0)]).unwrap();
        let acc = notes.iter().find(|n| n.contains("clean test accuracy")).unwrap();
        assert!(acc.contains(": 85.05 ± 0.85% vs 85.66 ± 0.86%"), "{acc}");
        let bits = notes.iter().find(|n| n.contains("on erratic bits")).unwrap();
        assert!(bits.contains(": 200"), "{bits}");
    }

    fn hat(accuracy_diff: f64, change: f64) -> Group {
        let ci = |mean: f64| serde_json::json!({"mean": mean, "ci95": 0.005, "n": 5});
        serde_json::from_value(serde_json::json!({
            "arch": "lenet5", "recipe": "hat", "baseline": false, "seeds": [0, 1, 2, 3, 4],
            "test_accuracy": ci(0.8), "train_seconds": ci(10.0), "flips": 100.0,
            "erratic_bits": ci(10.0), "erratic_params": ci(10.0), "severe_bits": ci(10.0),
            "erratic_params_change": ci(change), "severe_bits_change": ci(change),
            "accuracy_diff": ci(accuracy_diff), "regularizer": "hessian", "lambda": 1.0,
            "rad_histogram": [], "erratic_per_bit": [], "erratic_per_layer": {}, "quantize": [], "prune": [],
        }))
        .unwrap()
    }

    #[test]
    fn a_collapsed_recipe_is_not_comparable() {
        let verdicts = |g: Group| {
            claims_table(&[g])
                .unwrap()
                .into_iter()
                .map(|c| c.verdict)
                .collect::<Vec<_>>()
        };
        // 77 points lost: fewer erratic parameters say nothing.
        assert_eq!(
            verdicts(hat(-0.77, -0.98)),
            [Verdict::NotComparable, Verdict::NotComparable, Verdict::NotReproduced]
        );
        // Matched accuracy: judged as usual.
        assert_eq!(
            verdicts(hat(0.002, -0.10)),
            [Verdict::Reproduced, Verdict::Reproduced, Verdict::Reproduced]
        );
    }
}
