//! Plain statements of where a recipe is *not* better than the baseline:
//! the report shows them before anything else, so no number is hidden.

use super::results::Group;
use super::stats::MeanCi;

#[derive(Clone, Copy)]
enum Better {
    Lower,
    Higher,
}

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

pub fn not_better(groups: &[Group]) -> Vec<String> {
    let mut out = vec![];
    for g in groups.iter().filter(|g| !g.baseline) {
        let Some(base) = groups.iter().find(|b| b.baseline && b.arch == g.arch) else {
            continue;
        };
        let mut check = |what: &str, x: Option<&MeanCi>, b: Option<&MeanCi>, better: Better| {
            if let (Some(x), Some(b)) = (x, b) {
                if let Some(verdict) = judge(x, b, better) {
                    // Accuracies read as the tables print them.
                    let show = |m: &MeanCi| {
                        if what.contains("accuracy") {
                            m.percent()
                        } else {
                            m.to_string()
                        }
                    };
                    out.push(format!(
                        "{}: {} is {verdict} {} on {what}: {} vs {}.",
                        g.arch,
                        g.recipe,
                        base.recipe,
                        show(x),
                        show(b)
                    ));
                }
            }
        };
        check(
            "erratic bits",
            Some(&g.erratic_bits),
            Some(&base.erratic_bits),
            Better::Lower,
        );
        check(
            "erratic parameters",
            Some(&g.erratic_params),
            Some(&base.erratic_params),
            Better::Lower,
        );
        check(
            "clean test accuracy",
            Some(&g.test_accuracy),
            Some(&base.test_accuracy),
            Better::Higher,
        );
        check(
            "training time (s)",
            Some(&g.train_seconds),
            Some(&base.train_seconds),
            Better::Lower,
        );
        check(
            "Hessian trace",
            g.hessian_trace.as_ref(),
            base.hessian_trace.as_ref(),
            Better::Lower,
        );
        check(
            "top Hessian eigenvalue",
            g.top_eigenvalue.as_ref(),
            base.top_eigenvalue.as_ref(),
            Better::Lower,
        );
        for ((s, x), (_, b)) in g.quantize.iter().zip(&base.quantize) {
            check(
                &format!("accuracy at {s}-bit quantization"),
                Some(x),
                Some(b),
                Better::Higher,
            );
        }
        for ((s, x), (_, b)) in g.prune.iter().zip(&base.prune) {
            check(
                &format!("accuracy at {:.0}% sparsity", 100.0 * s),
                Some(x),
                Some(b),
                Better::Higher,
            );
        }
        for a in &g.attack {
            let b = base.attack.iter().find(|b| b.method == a.method);
            check(
                &format!("{} flips to crush", a.method),
                Some(&a.flips),
                b.map(|b| &b.flips),
                Better::Higher,
            );
        }
        for d in &g.defended {
            let b = base.defended.iter().find(|b| b.defense == d.defense);
            check(
                &format!("erratic bits with the {} defence", d.defense),
                Some(&d.erratic_bits),
                b.map(|b| &b.erratic_bits),
                Better::Lower,
            );
        }
        if let (Some(c), Some(bc)) = (&g.campaign, &base.campaign) {
            for (x, b) in c.levels.iter().zip(&bc.levels) {
                check(
                    &format!("accuracy under {} at level {}", c.fault, x.level),
                    Some(&x.accuracy),
                    Some(&b.accuracy),
                    Better::Higher,
                );
            }
        }
    }
    out
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
        let notes = not_better(&[group("plain", 0.8566, 100.0), group("hat", 0.8505, 200.0)]);
        let acc = notes.iter().find(|n| n.contains("clean test accuracy")).unwrap();
        assert!(acc.contains(": 85.05 ± 0.85% vs 85.66 ± 0.86%"), "{acc}");
        let bits = notes.iter().find(|n| n.contains("on erratic bits")).unwrap();
        assert!(bits.contains(": 200"), "{bits}");
    }
}
