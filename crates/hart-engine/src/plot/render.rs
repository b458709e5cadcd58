//! One drawing routine per chart, two output formats: the chart draws onto
//! any plotters backend and [`save`] picks SVG or PNG from the file name.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{font, Figure};
use crate::error::{HartError, Result};
use crate::util::write_atomic;

pub type DrawResult<DB> = std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A chart that can draw itself onto a white drawing area of its figure's size.
pub trait Chart {
    fn figure(&self) -> &Figure;
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

/// Writes `chart` to `path` as `.svg` or `.png` (atomically, like every HART output).
pub fn save(chart: &impl Chart, path: &Path) -> Result<()> {
    font::ensure()?;
    let fig = chart.figure();
    let size = (fig.width, fig.height);
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let failed = |e: String| HartError::Invalid(format!("{}: drawing the plot failed: {e}", path.display()));
    let bytes = match ext.as_deref() {
        Some("svg") => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
                paint(chart, &root).map_err(|e| failed(e.to_string()))?;
            }
            svg.into_bytes()
        }
        Some("png") => {
            let mut rgb = vec![0u8; fig.width as usize * fig.height as usize * 3];
            {
                let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
                paint(chart, &root).map_err(|e| failed(e.to_string()))?;
            }
            encode_png(&rgb, size).map_err(failed)?
        }
        _ => {
            return Err(HartError::Invalid(format!(
                "{}: plots are written as .png or .svg",
                path.display()
            )))
        }
    };
    write_atomic(path, &bytes)
}

fn paint<DB: DrawingBackend>(chart: &impl Chart, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    chart.draw(root)?;
    root.present()
}

// plotters' own PNG encoder pulls in a second, older `image`; the workspace's suffices.
fn encode_png(rgb: &[u8], (w, h): (u32, u32)) -> std::result::Result<Vec<u8>, String> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(rgb, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Tick labels that stay short over any magnitude.
pub(crate) fn tick(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if !(1e-3..1e4).contains(&a) {
        format!("{v:.1e}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}
