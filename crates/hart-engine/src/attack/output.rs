//! An attack's results: flips.csv (a grouped fault list `hart sweep
//! --faults` replays), summary.json and the accuracy-against-flips plot.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Attack, Method, Trial};
use crate::error::{HartError, Result};
use crate::plot::{save, Figure, LinePlot, Series, SeriesLabelPosition};
use crate::stats::{mean_ci, MeanCi};
use crate::util::write_atomic;

/// What `--json` prints and summary.json holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub method: Method,
    pub storage: String,
    pub defense: String,
    pub clean_accuracy: f64,
    /// Under Ranger: its bounds and the clean accuracy without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranger: Option<crate::faults::ranger::Report>,
    pub target_accuracy: f64,
    pub trials: Vec<TrialSummary>,
    /// Flips to reach the target over the method's trials (all trials, reached or not).
    pub mean_flips: f64,
    /// 95% interval of the mean (Student t); null with one trial.
    pub ci95: Option<[f64; 2]>,
    /// With `bfa`: the random baseline at each trial's BFA budget.
    pub random_baseline: Vec<TrialSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrialSummary {
    pub trial: usize,
    pub flips: usize,
    pub final_accuracy: f64,
    pub reached: bool,
    pub detected_flips: u64,
    pub zeroed_weights: u64,
    pub zeroed_groups: u64,
    pub curve: Vec<f64>,
}

fn brief(t: &Trial) -> TrialSummary {
    TrialSummary {
        trial: t.trial,
        flips: t.flips,
        final_accuracy: t.final_accuracy,
        reached: t.reached,
        detected_flips: t.detected_flips,
        zeroed_weights: t.zeroed_weights,
        zeroed_groups: t.zeroed_groups,
        curve: t.curve.clone(),
    }
}

pub fn summarize(attack: &Attack, trials: &[Trial]) -> Summary {
    let main: Vec<TrialSummary> = trials
        .iter()
        .filter(|t| t.method == attack.cfg.method)
        .map(brief)
        .collect();
    let flips: Vec<f64> = main.iter().map(|t| t.flips as f64).collect();
    let MeanCi { mean, ci95, .. } = mean_ci(&flips);
    Summary {
        method: attack.cfg.method,
        storage: attack.cfg.storage.to_string(),
        defense: crate::faults::ranger::label(attack.cfg.defense, attack.ranger.as_ref()),
        clean_accuracy: attack.clean_accuracy,
        ranger: attack.ranger.clone(),
        target_accuracy: attack.target,
        trials: main,
        mean_flips: mean,
        ci95: (!ci95.is_nan()).then_some([mean - ci95, mean + ci95]),
        random_baseline: if attack.cfg.method == Method::Bfa {
            trials
                .iter()
                .filter(|t| t.method == Method::Random)
                .map(brief)
                .collect()
        } else {
            vec![]
        },
    }
}

/// Writes flips.csv, summary.json and accuracy.png into `dir`.
pub fn write(dir: &Path, attack: &Attack, trials: &[Trial], summary: &Summary) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| HartError::io(dir, e))?;
    let path = dir.join("flips.csv");
    let mut w = csv::Writer::from_writer(vec![]);
    for r in trials.iter().flat_map(|t| &t.records) {
        w.serialize(r).map_err(|e| HartError::data(&path, e.to_string()))?;
    }
    let mut bytes = w.into_inner().map_err(|e| HartError::data(&path, e.to_string()))?;
    if bytes.is_empty() {
        // No flip committed: still a table with its header.
        bytes = b"group,trial,method,iteration,param,index,bit,old,new,attack_loss,accuracy\n".to_vec();
    }
    write_atomic(&path, &bytes)?;
    let text = serde_json::to_string_pretty(summary).map_err(|e| HartError::Invalid(e.to_string()))?;
    write_atomic(&dir.join("summary.json"), text.as_bytes())?;
    plot(dir, attack, trials)
}

/// Mean accuracy after n flips per method (a finished trial holds its last value).
fn mean_curve(trials: &[&Trial]) -> Vec<(f64, f64)> {
    let len = trials.iter().map(|t| t.curve.len()).max().unwrap_or(0);
    (0..len)
        .map(|n| {
            let acc: f64 = trials
                .iter()
                .map(|t| t.curve.get(n).or(t.curve.last()).copied().unwrap_or(f64::NAN))
                .sum::<f64>()
                / trials.len().max(1) as f64;
            (n as f64, 100.0 * acc)
        })
        .collect()
}

fn plot(dir: &Path, attack: &Attack, trials: &[Trial]) -> Result<()> {
    let series: Vec<Series> = [Method::Bfa, Method::Random]
        .into_iter()
        .filter_map(|m| {
            let of: Vec<&Trial> = trials.iter().filter(|t| t.method == m).collect();
            (!of.is_empty()).then(|| Series::new(format!("{m} (mean of {} trials)", of.len()), mean_curve(&of)))
        })
        .collect();
    let chart = LinePlot::new(
        Figure::new(
            format!(
                "accuracy against bit flips ({} storage, defense {})",
                attack.cfg.storage,
                crate::faults::ranger::label(attack.cfg.defense, attack.ranger.as_ref())
            ),
            "flips",
            "accuracy on the evaluation slice (%)",
        ),
        series,
    )
    .legend_at(SeriesLabelPosition::UpperRight);
    save(&chart, &dir.join("accuracy.png"))
}
