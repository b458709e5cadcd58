//! `[sweep]`: the single-bit-flip sweep of every trained model (`hart sweep`'s
//! summary), its erratic bits and parameters, RAD histogram and the per-bit
//! and per-layer counts; the primary measurement of the experiment.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{stats, with_stats, Better, Change, Comparison, Headline, Measurement, NOMINAL_PARAMS};
use crate::data::{self, Split};
use crate::error::Result;
use crate::experiment::claims::{describe, reduction, sam_no_better, Claim, ClaimContext};
use crate::experiment::config::ExperimentConfig;
use crate::experiment::present::{figure, per_arch, NAME_COLUMN};
use crate::experiment::results::{elementwise_mean, mean_of, paired_change, Group, Row};
use crate::experiment::run::{Runner, TrainedModel};
use crate::faults::ranger::{self, DefenseChoice};
use crate::faults::{self, BitSet, Defense, Format, Summary};
use crate::plot::{Figure, LinePlot, Series, SeriesLabelPosition};
use crate::report::Report;
use crate::stats::MeanCi;

/// A recipe's sweep over seeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepStats {
    #[serde(deserialize_with = "crate::util::f64_or_nan")]
    pub flips: f64,
    pub erratic_bits: MeanCi,
    pub erratic_params: MeanCi,
    /// Per-seed relative change against the baseline recipe with the same seed.
    pub erratic_bits_change: Option<MeanCi>,
    pub erratic_params_change: Option<MeanCi>,
    /// Flips with RAD in 90–100%, and their per-seed relative change.
    pub severe_bits: MeanCi,
    pub severe_bits_change: Option<MeanCi>,
    /// Mean counts per RAD bin: `[negative, 0–5 %, …, 95–100 %]`.
    pub rad_histogram: Vec<f64>,
    pub erratic_per_bit: Vec<f64>,
    pub erratic_per_layer: BTreeMap<String, f64>,
    /// The bit positions swept (for the verdict table's row).
    #[serde(default)]
    pub bits: Vec<u32>,
}

/// The bit positions a sweep flipped (its summary's configuration).
pub fn swept_bits(s: &Summary) -> Vec<u32> {
    serde_json::from_value(s.config["bits"].clone()).unwrap_or_default()
}

/// "single bit flips (exponent MSB)" and the like, for the verdict table.
pub fn flips_label(bits: &[u32]) -> String {
    let which = match bits {
        [30] => "exponent MSB".to_string(),
        b if b.len() == 32 => "all 32 bits".to_string(),
        [] => "fault list".to_string(),
        b => format!("bits {}", b.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(",")),
    };
    format!("single bit flips ({which})")
}

fn erratic_bits(s: &Summary) -> f64 {
    s.counts.erratic_bits as f64
}
fn erratic_params(s: &Summary) -> f64 {
    s.counts.erratic_params as f64
}

/// RAD histogram counts: `[negative, 0–5 %, …, 95–100 %]`.
fn rad_histogram(s: &Summary) -> Vec<f64> {
    let h = &s.rad_histogram;
    std::iter::once(h.negative as f64)
        .chain(h.counts.iter().map(|&c| c as f64))
        .collect()
}

/// Flips that cost 90–100% of the accuracy (the paper's catastrophic bin).
fn severe_bits(s: &Summary) -> f64 {
    let h = rad_histogram(s);
    match (h.get(19), h.get(20)) {
        (Some(a), Some(b)) => a + b,
        _ => f64::NAN,
    }
}

fn erratic_per_bit(s: &Summary) -> Vec<f64> {
    let mut out = vec![0.0; 32];
    for b in &s.per_bit {
        out[b.bit as usize % 32] = b.erratic_bits as f64;
    }
    out
}

/// The sweep of model `m` under `defense`: every faulty word passed through
/// a word-level one (RADAR's key fixed by the model's seed), or Ranger's
/// clamps built into the model at the bounds profiled on the first
/// `profile_limit` training images; `[defense]` reuses it.
pub fn sweep_under(
    run: &mut Runner,
    m: &TrainedModel,
    defense: DefenseChoice,
    profile_limit: usize,
) -> Result<Summary> {
    let s = run.cfg.sweep.clone();
    let data = run.test_prefix(s.limit)?;
    let settings = serde_json::to_value(&s).unwrap_or_default();
    // The undefended key is the one earlier versions wrote, so their caches stay valid.
    let (settings, stage) = match defense {
        DefenseChoice::Words(Defense::None) => (settings, "sweep".to_string()),
        DefenseChoice::Words(d) => (
            serde_json::json!({"sweep": settings, "defense": d.to_string()}),
            format!("sweep[{d}]"),
        ),
        DefenseChoice::Ranger => (
            serde_json::json!({"sweep": settings, "defense": "ranger", "profile_limit": profile_limit}),
            "sweep[ranger]".to_string(),
        ),
    };
    let key = run.key(m, "sweep", settings);
    let device = run.device;
    let profile = run.spec(Split::Train, Some(profile_limit));
    run.bar
        .set_message(format!("{stage} {}/{}/seed{}", m.arch, m.recipe, m.seed));
    let (summary, _, outcome) = run.cache.stage("sweep", &key, |dir| {
        let mut model = m.open(device)?;
        let words = match defense {
            DefenseChoice::Words(d) => d,
            DefenseChoice::Ranger => {
                let bounds = ranger::profile(&model, &data::load(&profile)?, super::attack::BATCH)?;
                let text =
                    serde_json::to_string_pretty(&bounds).map_err(|e| crate::HartError::Invalid(e.to_string()))?;
                crate::util::write_atomic(&dir.join("ranger.json"), text.as_bytes())?;
                model = ranger::protect(model, &bounds)?;
                Defense::None
            }
        };
        let cfg = faults::SweepConfig {
            bits: BitSet::parse(&s.bits)?,
            sample: s.sample_params.map(|k| (faults::SampleSize::Count(k as u64), m.seed)),
            threshold: s.threshold,
            exact_rad: s.exact_rad,
            defense: words,
            seed: m.seed,
            ..faults::SweepConfig::new()
        };
        let sweep = faults::prepare(&model, &data, &cfg)?;
        let out = dir.join("sweep");
        sweep.run(&out, &mut |_| {})?;
        faults::sweep::finish(&out, Format::Parquet)
    })?;
    run.note(&stage, m, outcome);
    Ok(summary)
}

/// One sweep's cost: every flip evaluated on every image (the fast engine
/// skips most of that, alike for every model, so the ratio stands).
pub fn sweep_cost(cfg: &ExperimentConfig) -> f64 {
    let s = &cfg.sweep;
    let bits = BitSet::parse(&s.bits).map_or(32, |b| b.0.count_ones()) as f64;
    bits * s.sample_params.map_or(NOMINAL_PARAMS, |k| k as f64) * s.limit as f64
}

pub struct Sweep;

impl Measurement for Sweep {
    const NAME: &'static str = "sweep";
    type Result = Summary;
    type Stats = SweepStats;

    fn stages(&self, _cfg: &ExperimentConfig) -> u64 {
        1
    }

    fn cost(&self, cfg: &ExperimentConfig) -> f64 {
        sweep_cost(cfg)
    }

    fn test_images(&self, cfg: &ExperimentConfig) -> Option<usize> {
        Some(cfg.sweep.limit)
    }

    fn measure(&self, run: &mut Runner, m: &TrainedModel) -> Result<Summary> {
        sweep_under(run, m, DefenseChoice::Words(Defense::None), 0)
    }

    fn aggregate(&self, rows: &[Row<Summary>], base: &[Row<Summary>], is_base: bool) -> SweepStats {
        let change = |f: fn(&Summary) -> f64| (!is_base).then(|| paired_change(rows, base, f)).flatten();
        let mut per_layer: BTreeMap<String, f64> = BTreeMap::new();
        for r in rows {
            for l in &r.result.per_layer {
                *per_layer.entry(l.layer.clone()).or_default() += l.counts.erratic_bits as f64 / rows.len() as f64;
            }
        }
        SweepStats {
            flips: rows.first().map_or(f64::NAN, |r| r.result.counts.flips as f64),
            erratic_bits: mean_of(rows, erratic_bits),
            erratic_params: mean_of(rows, erratic_params),
            erratic_bits_change: change(erratic_bits),
            erratic_params_change: change(erratic_params),
            severe_bits: mean_of(rows, severe_bits),
            severe_bits_change: change(severe_bits),
            rad_histogram: elementwise_mean(&rows.iter().map(|r| rad_histogram(r.result)).collect::<Vec<_>>()),
            erratic_per_bit: elementwise_mean(&rows.iter().map(|r| erratic_per_bit(r.result)).collect::<Vec<_>>()),
            erratic_per_layer: per_layer,
            bits: rows.first().map(|r| swept_bits(r.result)).unwrap_or_default(),
        }
    }

    fn headlines(&self, s: &SweepStats) -> Vec<Headline> {
        vec![Headline {
            fault: format!("{}: erratic bits", flips_label(&s.bits)),
            value: s.erratic_bits,
            change: s.erratic_bits_change,
            unit: Change::Relative,
            better: Better::Lower,
            note: None,
        }]
    }

    fn comparisons(&self, g: &SweepStats, base: &SweepStats) -> Vec<Comparison> {
        vec![
            Comparison::new("erratic bits", g.erratic_bits, Some(base.erratic_bits), Better::Lower),
            Comparison::new(
                "erratic parameters",
                g.erratic_params,
                Some(base.erratic_params),
                Better::Lower,
            ),
        ]
    }

    fn claims(&self, cx: &ClaimContext, groups: &[Group]) -> Result<Vec<Claim>> {
        let s = stats::<Self>(cx.group)?;
        let name = &cx.name;
        let mut out = vec![
            cx.claim(
                format!("{name}: 6–12% fewer erratic parameters"),
                describe(&s.erratic_params_change),
                cx.resilience(s.erratic_params_change.map(|c| reduction(&c, -0.06))),
            ),
            cx.claim(
                format!("{name}: 20–50% fewer bits in the 90–100% RAD bin"),
                describe(&s.severe_bits_change),
                cx.resilience(s.severe_bits_change.map(|c| reduction(&c, -0.20))),
            ),
        ];
        for sam in groups
            .iter()
            .filter(|g| g.arch == cx.group.arch && g.regularizer == "sam")
        {
            let sam_stats = stats::<Self>(sam)?;
            let verdict = match (&sam_stats.erratic_params_change, &s.erratic_params_change) {
                (Some(x), Some(h)) => Some(sam_no_better(x, h)),
                _ => None,
            };
            out.push(cx.claim(
                format!("{name}: SAM ({}) gives no such benefit", sam.recipe),
                format!(
                    "erratic parameters: {} {}, {name} {}",
                    sam.recipe,
                    describe(&sam_stats.erratic_params_change),
                    describe(&s.erratic_params_change)
                ),
                cx.resilience(verdict),
            ));
        }
        Ok(out)
    }

    fn report(&self, r: &mut Report, groups: &[Group], archs: &[String], plots: &Path) -> Result<()> {
        let all = with_stats::<Self>(groups)?;
        r.heading("Erratic bits and parameters");
        r.paragraph("An erratic bit is a single (parameter element, bit) flip whose relative accuracy drop exceeds the threshold; an erratic parameter has at least one. Changes are relative to the baseline recipe with the same seed, averaged over seeds.");
        let header = [
            NAME_COLUMN,
            "recipe",
            "flips",
            "erratic bits",
            "change",
            "erratic params",
            "change",
        ];
        let change = |c: &Option<MeanCi>| c.map_or("baseline".into(), |c| c.signed_percent());
        let rows = all
            .iter()
            .map(|(g, s)| {
                vec![
                    g.arch.clone(),
                    g.recipe.clone(),
                    format!("{:.0}", s.flips),
                    s.erratic_bits.to_string(),
                    change(&s.erratic_bits_change),
                    s.erratic_params.to_string(),
                    change(&s.erratic_params_change),
                ]
            })
            .collect();
        r.table(header.map(String::from).to_vec(), rows);

        r.heading("RAD histograms");
        let header = [
            NAME_COLUMN,
            "recipe",
            "RAD < 0",
            "90–95 %",
            "95–100 %",
            "90–100 %",
            "change",
        ];
        let rows = all
            .iter()
            .map(|(g, s)| {
                let h = &s.rad_histogram;
                let at = |i: usize| h.get(i).map_or("—".into(), |v| format!("{v:.1}"));
                vec![
                    g.arch.clone(),
                    g.recipe.clone(),
                    at(0),
                    at(19),
                    at(20),
                    s.severe_bits.to_string(),
                    change(&s.severe_bits_change),
                ]
            })
            .collect();
        r.table(header.map(String::from).to_vec(), rows);
        for arch in archs {
            let series = per_arch(&all, arch)
                .map(|(g, s)| {
                    let pts = s
                        .rad_histogram
                        .iter()
                        .skip(1)
                        .enumerate()
                        .map(|(k, &c)| (5.0 * k as f64 + 2.5, c))
                        .collect();
                    Series::new(&g.recipe, pts)
                })
                .collect();
            let chart = LinePlot::new(
                Figure::new(
                    format!("{arch}: RAD histogram (5% bins)"),
                    "relative accuracy drop (%)",
                    "flips per bin (mean over seeds)",
                ),
                series,
            )
            .log_y();
            figure(r, plots, &format!("{arch}-rad"), chart, format!("{arch}: flips per 5% RAD bin, one line per recipe (log scale); the 90–100% bins are the catastrophic flips."))?;
        }

        r.heading("Erratic bits per bit position and per layer");
        for arch in archs {
            let series = per_arch(&all, arch)
                .map(|(g, s)| {
                    Series::new(
                        &g.recipe,
                        s.erratic_per_bit
                            .iter()
                            .enumerate()
                            .map(|(b, &c)| (b as f64, c))
                            .collect(),
                    )
                })
                .collect();
            let chart = LinePlot::new(
                Figure::new(
                    format!("{arch}: erratic bits per bit position"),
                    "bit position (0 = mantissa LSB, 30 = exponent MSB, 31 = sign)",
                    "erratic bits (mean over seeds)",
                ),
                series,
            )
            .legend_at(SeriesLabelPosition::UpperLeft);
            figure(
                r,
                plots,
                &format!("{arch}-bits"),
                chart,
                format!("{arch}: erratic bits by IEEE-754 bit position."),
            )?;
            let layers: Vec<String> = per_arch(&all, arch)
                .flat_map(|(_, s)| s.erratic_per_layer.keys().cloned())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let mut header = vec!["layer".to_string()];
            header.extend(per_arch(&all, arch).map(|(g, _)| g.recipe.clone()));
            let rows = layers
                .iter()
                .map(|l| {
                    let mut row = vec![format!("{arch} {l}")];
                    row.extend(
                        per_arch(&all, arch)
                            .map(|(_, s)| format!("{:.1}", s.erratic_per_layer.get(l).copied().unwrap_or(0.0))),
                    );
                    row
                })
                .collect();
            r.table(header, rows);
        }
        Ok(())
    }

    /// The headline table: accuracy and erratic counts per recipe.
    fn console(&self, groups: &[Group]) -> Result<Vec<String>> {
        let line = |cells: [&str; 5]| {
            format!(
                "{:<16} {:<12} {:>18} {:>22} {:>22}",
                cells[0], cells[1], cells[2], cells[3], cells[4]
            )
        };
        let mut out = vec![line([
            NAME_COLUMN,
            "recipe",
            "test accuracy",
            "erratic bits",
            "erratic params",
        ])];
        for (g, s) in with_stats::<Self>(groups)? {
            out.push(line([
                &g.arch,
                &g.recipe,
                &g.test_accuracy.percent(),
                &s.erratic_bits.to_string(),
                &s.erratic_params.to_string(),
            ]));
        }
        Ok(out)
    }
}
