//! Line plots with one or more named series.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::font::FAMILY;
use super::render::{tick, Chart, DrawResult};
use super::{padded_range, palette, Figure, Scale};

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.into(),
            points,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LinePlot {
    pub figure: Figure,
    pub series: Vec<Series>,
    pub y_scale: Scale,
    /// Where the legend sits; move it off the data (upper right by default).
    pub legend: SeriesLabelPosition,
}

impl LinePlot {
    pub fn new(figure: Figure, series: Vec<Series>) -> Self {
        LinePlot {
            figure,
            series,
            y_scale: Scale::Linear,
            legend: SeriesLabelPosition::UpperRight,
        }
    }

    pub fn legend_at(mut self, position: SeriesLabelPosition) -> Self {
        self.legend = position;
        self
    }

    pub fn log_y(mut self) -> Self {
        self.y_scale = Scale::Log;
        self
    }

    /// The points as drawn: log10(y) on a log axis (dropping y ≤ 0), non-finite points dropped.
    fn drawn(&self) -> Vec<Vec<(f64, f64)>> {
        let log = self.y_scale == Scale::Log;
        self.series
            .iter()
            .map(|s| {
                s.points
                    .iter()
                    .filter(|(_, y)| !log || *y > 0.0)
                    .map(|&(x, y)| (x, if log { y.log10() } else { y }))
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                    .collect()
            })
            .collect()
    }
}

fn bounds(points: impl Iterator<Item = f64>) -> (f64, f64) {
    points.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

impl Chart for LinePlot {
    fn figure(&self) -> &Figure {
        &self.figure
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let drawn = self.drawn();
        let all = || drawn.iter().flatten();
        let (x0, x1) = bounds(all().map(|p| p.0));
        let (y0, y1) = bounds(all().map(|p| p.1));
        let (x0, x1) = padded_range(x0, x1, 0.0);
        let (y0, y1) = padded_range(y0, y1, 0.05);
        let mut chart = ChartBuilder::on(root)
            .caption(&self.figure.title, (FAMILY, 24))
            .margin(15)
            .x_label_area_size(55)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        let log = self.y_scale == Scale::Log;
        let y_fmt = move |v: &f64| {
            if log {
                format!("{:.0e}", 10f64.powf(*v))
            } else {
                tick(*v)
            }
        };
        chart
            .configure_mesh()
            .x_desc(self.figure.x_label.as_str())
            .y_desc(self.figure.y_label.as_str())
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&y_fmt)
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        for (i, (s, points)) in self.series.iter().zip(drawn).enumerate() {
            let color = palette(i);
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(s.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .label_font((FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(self.legend.clone())
            .draw()
    }
}
