//! Histograms of one or more named samples over shared bins.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::font::FAMILY;
use super::render::{tick, Chart, DrawResult};
use super::{padded_range, palette, Figure};

#[derive(Debug, Clone)]
pub struct Histogram {
    pub figure: Figure,
    /// (legend name, sample values); non-finite values are not counted.
    pub series: Vec<(String, Vec<f64>)>,
    pub bins: usize,
}

impl Histogram {
    /// Bin edges shared by all series, and each series' counts.
    pub fn counts(&self) -> (Vec<f64>, Vec<Vec<usize>>) {
        let finite = || {
            self.series
                .iter()
                .flat_map(|(_, v)| v.iter().copied())
                .filter(|v| v.is_finite())
        };
        let lo = finite().fold(f64::INFINITY, f64::min);
        let hi = finite().fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = padded_range(lo, hi, 0.0);
        let bins = self.bins.max(1);
        let width = (hi - lo) / bins as f64;
        let edges = (0..=bins).map(|i| lo + width * i as f64).collect();
        let counts = self
            .series
            .iter()
            .map(|(_, values)| {
                let mut c = vec![0usize; bins];
                for v in values.iter().filter(|v| v.is_finite()) {
                    let b = (((v - lo) / width) as usize).min(bins - 1);
                    c[b] += 1;
                }
                c
            })
            .collect();
        (edges, counts)
    }
}

impl Chart for Histogram {
    fn figure(&self) -> &Figure {
        &self.figure
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let (edges, counts) = self.counts();
        let top = counts.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.figure.title, (FAMILY, 24))
            .margin(15)
            .x_label_area_size(55)
            .y_label_area_size(80)
            .build_cartesian_2d(edges[0]..edges[edges.len() - 1], 0f64..top * 1.05)?;
        chart
            .configure_mesh()
            .x_desc(self.figure.x_label.as_str())
            .y_desc(self.figure.y_label.as_str())
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        for (i, ((name, _), c)) in self.series.iter().zip(&counts).enumerate() {
            let color = palette(i);
            let bars = c
                .iter()
                .enumerate()
                .map(|(b, &n)| Rectangle::new([(edges[b], 0.0), (edges[b + 1], n as f64)], color.mix(0.45).filled()));
            chart
                .draw_series(bars)?
                .label(name.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.mix(0.45).filled()));
        }
        chart
            .configure_series_labels()
            .label_font((FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
    }
}
