//! Accuracy against fault level: per curve the mean accuracy with its
//! confidence band and the 5th percentile (dashed); rates on a log axis.

use std::path::Path;

use super::run::Summary;
use crate::error::Result;
use crate::plot::{save, Figure, LinePlot, Series, SeriesLabelPosition};

/// One figure with a curve per `(label, summary)` (e.g. one per storage format).
pub fn plot(curves: &[(String, &Summary)], title: &str, path: &Path) -> Result<()> {
    let Some((_, first)) = curves.first() else {
        return Ok(());
    };
    let bit = first.fault.is_bit();
    let mut series = vec![];
    for (i, (label, s)) in curves.iter().enumerate() {
        let pct = |v: f64| 100.0 * v;
        let mean = s.levels.iter().map(|l| (l.level, pct(l.mean_accuracy))).collect();
        let band = s
            .levels
            .iter()
            .filter_map(|l| l.ci95.map(|(lo, hi)| (l.level, pct(lo), pct(hi))))
            .collect();
        let p5 = s.levels.iter().map(|l| (l.level, pct(l.p5_accuracy))).collect();
        let conf = (100.0 * s.confidence).round();
        series.push(
            Series::new(format!("{label} mean ({conf}% CI)"), mean)
                .color(i)
                .band(band),
        );
        series.push(Series::new(format!("{label} 5th percentile"), p5).color(i).dashed());
    }
    let x = if bit {
        "bit-error rate (per stored bit)"
    } else {
        "relative noise σ / max|W|"
    };
    let chart = LinePlot::new(Figure::new(title, x, "accuracy (%)"), series).legend_at(SeriesLabelPosition::LowerLeft);
    let chart = if bit { chart.log_x() } else { chart };
    save(&chart, path)
}
