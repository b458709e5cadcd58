//! Filled contour map of a value over a regular 2-D grid: a heat map with
//! iso-lines (marching squares) and a labelled colour bar.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::colormap::{viridis, ValueScale};
use super::font::FAMILY;
use super::render::{tick, Chart, DrawResult};
use super::Figure;

/// A piece of iso-line between two points in data coordinates.
pub type Segment = ((f64, f64), (f64, f64));

#[derive(Debug, Clone)]
pub struct ContourPlot {
    pub figure: Figure,
    /// Grid coordinates along x and y (increasing).
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    /// Values x-major: `z[i * y.len() + j]` is the value at `(x[i], y[j])`.
    pub z: Vec<f64>,
    /// Colour-bar label, with units.
    pub z_label: String,
    /// Number of iso-lines.
    pub levels: usize,
    /// A point to mark (the trained weights at the origin) and its legend text.
    pub marker: Option<((f64, f64), String)>,
}

impl ContourPlot {
    fn at(&self, i: usize, j: usize) -> f64 {
        self.z[i * self.y.len() + j]
    }

    /// Iso-line segments at each level, by marching squares on transformed values.
    pub fn segments(&self, scale: &ValueScale) -> Vec<Segment> {
        let (nx, ny) = (self.x.len(), self.y.len());
        let mut out = Vec::new();
        for k in 1..=self.levels {
            let level = scale.lo + (scale.hi - scale.lo) * k as f64 / (self.levels + 1) as f64;
            for i in 0..nx.saturating_sub(1) {
                for j in 0..ny.saturating_sub(1) {
                    let v = [
                        scale.forward(self.at(i, j)),
                        scale.forward(self.at(i + 1, j)),
                        scale.forward(self.at(i + 1, j + 1)),
                        scale.forward(self.at(i, j + 1)),
                    ];
                    if v.iter().all(|v| v.is_finite()) {
                        cell_segments(&self.x, &self.y, i, j, v, level, &mut out);
                    }
                }
            }
        }
        out
    }
}

/// Crossings of `level` on the edges of cell (i, j), corners counter-clockwise
/// from (x_i, y_j), joined into segments. At a saddle (four crossings) the
/// cell centre decides which corners the level separates.
fn cell_segments(x: &[f64], y: &[f64], i: usize, j: usize, v: [f64; 4], level: f64, out: &mut Vec<Segment>) {
    let corners = [(x[i], y[j]), (x[i + 1], y[j]), (x[i + 1], y[j + 1]), (x[i], y[j + 1])];
    let above = |t: f64| t >= level;
    let mut hits = Vec::with_capacity(4);
    for e in 0..4 {
        let (a, b) = (e, (e + 1) % 4);
        if above(v[a]) != above(v[b]) {
            let f = (level - v[a]) / (v[b] - v[a]);
            let (pa, pb) = (corners[a], corners[b]);
            hits.push((pa.0 + f * (pb.0 - pa.0), pa.1 + f * (pb.1 - pa.1)));
        }
    }
    match hits.len() {
        2 => out.push((hits[0], hits[1])),
        4 => {
            let centre = v.iter().sum::<f64>() / 4.0;
            if above(centre) == above(v[0]) {
                out.push((hits[0], hits[1]));
                out.push((hits[2], hits[3]));
            } else {
                out.push((hits[0], hits[3]));
                out.push((hits[1], hits[2]));
            }
        }
        _ => {}
    }
}

/// Ticks computed from half-cell edges land a rounding error off zero; show them as 0.
fn snap(v: f64, axis: &[f64]) -> f64 {
    let span = axis[axis.len() - 1] - axis[0];
    if v.abs() < 1e-9 * span.abs() {
        0.0
    } else {
        v
    }
}

/// Cell edges halfway between grid coordinates, so each value fills the area nearest to it.
fn edges(c: &[f64]) -> Vec<f64> {
    let n = c.len();
    if n == 1 {
        return vec![c[0] - 0.5, c[0] + 0.5];
    }
    let mut e = Vec::with_capacity(n + 1);
    e.push(c[0] - 0.5 * (c[1] - c[0]));
    e.extend(c.windows(2).map(|w| 0.5 * (w[0] + w[1])));
    e.push(c[n - 1] + 0.5 * (c[n - 1] - c[n - 2]));
    e
}

impl Chart for ContourPlot {
    fn figure(&self) -> &Figure {
        &self.figure
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let scale = ValueScale::fit(&self.z, 20.0);
        let root = root.titled(&self.figure.title, (FAMILY, 24))?;
        let (w, _) = root.dim_in_pixel();
        let (main, bar) = root.split_horizontally(w.saturating_sub(130));
        let (ex, ey) = (edges(&self.x), edges(&self.y));
        let mut chart = ChartBuilder::on(&main)
            .margin(15)
            .x_label_area_size(55)
            .y_label_area_size(70)
            .build_cartesian_2d(ex[0]..ex[ex.len() - 1], ey[0]..ey[ey.len() - 1])?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(self.figure.x_label.as_str())
            .y_desc(self.figure.y_label.as_str())
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .x_label_formatter(&|v| tick(snap(*v, &self.x)))
            .y_label_formatter(&|v| tick(snap(*v, &self.y)))
            .draw()?;
        let cells = (0..self.x.len()).flat_map(|i| (0..self.y.len()).map(move |j| (i, j)));
        chart.draw_series(cells.map(|(i, j)| {
            Rectangle::new(
                [(ex[i], ey[j]), (ex[i + 1], ey[j + 1])],
                scale.color(self.at(i, j)).filled(),
            )
        }))?;
        chart.draw_series(
            self.segments(&scale)
                .into_iter()
                .map(|(a, b)| PathElement::new(vec![a, b], WHITE.mix(0.8).stroke_width(1))),
        )?;
        if let Some(((mx, my), label)) = &self.marker {
            let style = ShapeStyle::from(&RED).stroke_width(3);
            chart
                .draw_series(std::iter::once(Cross::new((*mx, *my), 8, style)))?
                .label(label.as_str())
                .legend(move |(x, y)| Cross::new((x + 8, y), 6, style));
            chart
                .configure_series_labels()
                .label_font((FAMILY, 14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()?;
        }
        colour_bar(&bar, &scale, &self.z_label)
    }
}

/// A vertical strip of the colour map with value ticks (log-spaced when the scale is).
fn colour_bar<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, scale: &ValueScale, label: &str) -> DrawResult<DB> {
    let mut bar = ChartBuilder::on(area)
        .margin_top(15)
        .margin_bottom(70)
        .margin_right(10)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..1f64, scale.lo..scale.hi)?;
    let fmt = |t: &f64| scale.label(*t);
    bar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_desc(label)
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 15))
        .y_label_formatter(&fmt)
        .draw()?;
    const STRIPES: usize = 128;
    let step = (scale.hi - scale.lo) / STRIPES as f64;
    bar.draw_series((0..STRIPES).map(|k| {
        let lo = scale.lo + step * k as f64;
        Rectangle::new(
            [(0.0, lo), (1.0, lo + step)],
            viridis((k as f64 + 0.5) / STRIPES as f64).filled(),
        )
    }))?;
    Ok(())
}
