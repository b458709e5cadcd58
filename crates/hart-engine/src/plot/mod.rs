//! Small shared plotting layer over plotters: titled figures with labelled
//! axes (units in the label text) and a legend, written as PNG or SVG by the
//! output file's extension.
//!
//! A chart type implements [`Chart`] (draw onto any plotters backend) and
//! gets both formats from [`save`]. Line plots with several series and
//! histograms exist today; a contour or heat-map chart is one more `Chart`
//! implementation beside them, reusing [`Figure`], [`palette`] and [`save`].

mod colormap;
mod contour;
mod font;
mod histogram;
mod line;
mod panels;
mod render;
mod surface;

pub use colormap::{viridis, ValueScale};
pub use contour::ContourPlot;
pub use histogram::Histogram;
pub use line::{LinePlot, Series};
pub use panels::Panels;
pub use plotters::chart::SeriesLabelPosition;
pub use render::{save, Chart, DrawResult};
pub use surface::SurfacePlot;

use plotters::style::RGBColor;

/// What every chart carries: its title and axis labels (with units) and its size.
#[derive(Debug, Clone)]
pub struct Figure {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub width: u32,
    pub height: u32,
}

impl Figure {
    pub fn new(title: impl Into<String>, x_label: impl Into<String>, y_label: impl Into<String>) -> Self {
        Figure {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            width: 900,
            height: 600,
        }
    }
}

/// A y axis drawn linearly or in decades (values ≤ 0 are dropped on a log axis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    Log,
}

/// Series colours: distinguishable, and safe for the common colour-vision deficiencies (Okabe–Ito).
pub fn palette(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 8] = [
        RGBColor(0, 114, 178),
        RGBColor(213, 94, 0),
        RGBColor(0, 158, 115),
        RGBColor(204, 121, 167),
        RGBColor(230, 159, 0),
        RGBColor(86, 180, 233),
        RGBColor(0, 0, 0),
        RGBColor(240, 228, 66),
    ];
    COLORS[i % COLORS.len()]
}

/// `lo..hi` widened by a margin, and never empty (a constant series still gets an axis).
pub(crate) fn padded_range(lo: f64, hi: f64, margin: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    if span <= f64::EPSILON * hi.abs().max(1.0) {
        let d = 0.5 * hi.abs().max(1.0);
        return (lo - d, hi + d);
    }
    (lo - margin * span, hi + margin * span)
}
