//! Several line plots stacked in one image, sharing nothing but the file
//! (loss and accuracy along the same direction, say).

use plotters::coord::Shift;
use plotters::prelude::*;

use super::line::LinePlot;
use super::render::{Chart, DrawResult};
use super::Figure;

#[derive(Debug, Clone)]
pub struct Panels {
    /// Overall size; the title is each panel's own.
    pub figure: Figure,
    pub panels: Vec<LinePlot>,
}

impl Panels {
    /// Panels stacked vertically, each at its own figure's height.
    pub fn stacked(panels: Vec<LinePlot>) -> Self {
        let width = panels.iter().map(|p| p.figure.width).max().unwrap_or(900);
        let height = panels.iter().map(|p| p.figure.height).sum();
        let title = panels.first().map(|p| p.figure.title.clone()).unwrap_or_default();
        Panels {
            figure: Figure {
                width,
                height,
                ..Figure::new(title, "", "")
            },
            panels,
        }
    }
}

impl Chart for Panels {
    fn figure(&self) -> &Figure {
        &self.figure
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let mut rest = root.clone();
        for p in &self.panels {
            let (top, bottom) = rest.split_vertically(p.figure.height);
            p.draw(&top)?;
            rest = bottom;
        }
        Ok(())
    }
}
