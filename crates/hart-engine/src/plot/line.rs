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
    /// Palette index (default: the series' position).
    pub color: Option<usize>,
    /// Thin dashed line (a secondary curve such as a percentile beside its mean).
    pub dashed: bool,
    /// A shaded band `(x, lo, hi)` drawn under the line in its colour.
    pub band: Vec<(f64, f64, f64)>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.into(),
            points,
            color: None,
            dashed: false,
            band: vec![],
        }
    }

    pub fn color(mut self, palette_index: usize) -> Self {
        self.color = Some(palette_index);
        self
    }

    pub fn dashed(mut self) -> Self {
        self.dashed = true;
        self
    }

    pub fn band(mut self, band: Vec<(f64, f64, f64)>) -> Self {
        self.band = band;
        self
    }
}

#[derive(Debug, Clone)]
pub struct LinePlot {
    pub figure: Figure,
    pub series: Vec<Series>,
    pub y_scale: Scale,
    /// A log x axis draws log10(x) with ticks labelled as x (x ≤ 0 dropped).
    pub x_scale: Scale,
    /// Where the legend sits; move it off the data (upper right by default).
    pub legend: SeriesLabelPosition,
}

impl LinePlot {
    pub fn new(figure: Figure, series: Vec<Series>) -> Self {
        LinePlot {
            figure,
            series,
            y_scale: Scale::Linear,
            x_scale: Scale::Linear,
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

    pub fn log_x(mut self) -> Self {
        self.x_scale = Scale::Log;
        self
    }

    /// A point as drawn: log10 of a coordinate on a log axis; None where
    /// that is not finite.
    fn place(&self, x: f64, y: f64) -> Option<(f64, f64)> {
        let f = |v: f64, s: Scale| if s == Scale::Log { v.log10() } else { v };
        let p = (f(x, self.x_scale), f(y, self.y_scale));
        (p.0.is_finite() && p.1.is_finite()).then_some(p)
    }

    /// The points as drawn: log10 on a log axis (dropping values ≤ 0), non-finite points dropped.
    fn drawn(&self) -> Vec<Vec<(f64, f64)>> {
        self.series
            .iter()
            .map(|s| s.points.iter().filter_map(|&(x, y)| self.place(x, y)).collect())
            .collect()
    }

    /// Each series' band as a closed outline (upper edge, then lower edge back).
    fn bands(&self) -> Vec<Vec<(f64, f64)>> {
        self.series
            .iter()
            .map(|s| {
                let hi = s.band.iter().filter_map(|&(x, _, hi)| self.place(x, hi));
                let lo: Vec<_> = s.band.iter().filter_map(|&(x, lo, _)| self.place(x, lo)).collect();
                hi.chain(lo.into_iter().rev()).collect()
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
        let bands = self.bands();
        let all = || drawn.iter().flatten().chain(bands.iter().flatten());
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
        let fmt = |scale: Scale| {
            move |v: &f64| {
                if scale == Scale::Log {
                    format!("{:.0e}", 10f64.powf(*v))
                } else {
                    tick(*v)
                }
            }
        };
        let (x_fmt, y_fmt) = (fmt(self.x_scale), fmt(self.y_scale));
        chart
            .configure_mesh()
            .x_desc(self.figure.x_label.as_str())
            .y_desc(self.figure.y_label.as_str())
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        for (i, (s, band)) in self.series.iter().zip(&bands).enumerate() {
            if band.len() > 2 {
                let color = palette(s.color.unwrap_or(i));
                chart.draw_series(std::iter::once(Polygon::new(band.clone(), color.mix(0.2).filled())))?;
            }
        }
        for (i, (s, points)) in self.series.iter().zip(drawn).enumerate() {
            let color = palette(s.color.unwrap_or(i));
            let style = color.stroke_width(if s.dashed { 1 } else { 2 });
            let anno = if s.dashed {
                chart.draw_series(DashedLineSeries::new(points, 6, 4, style))?
            } else {
                chart.draw_series(LineSeries::new(points, style))?
            };
            anno.label(s.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
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
