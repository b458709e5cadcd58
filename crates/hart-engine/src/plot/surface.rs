//! 3-D surface of a value over a regular 2-D grid, coloured by height.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::colormap::ValueScale;
use super::font::FAMILY;
use super::render::{tick, Chart, DrawResult};
use super::Figure;

/// A grid cell to paint: projected depth, corners (x, height, y), mean height.
type Quad = (i32, Vec<(f64, f64, f64)>, f64);

#[derive(Debug, Clone)]
pub struct SurfacePlot {
    pub figure: Figure,
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    /// Values x-major: `z[i * y.len() + j]` is the value at `(x[i], y[j])`.
    pub z: Vec<f64>,
    /// Vertical axis label, with units.
    pub z_label: String,
}

impl Chart for SurfacePlot {
    fn figure(&self) -> &Figure {
        &self.figure
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let scale = ValueScale::fit(&self.z, 20.0);
        let ny = self.y.len();
        let h = |i: usize, j: usize| scale.forward(self.z[i * ny + j]);
        let (x0, x1) = (self.x[0], self.x[self.x.len() - 1]);
        let (y0, y1) = (self.y[0], self.y[ny - 1]);
        // plotters' 3-D y axis is the vertical one: the value goes there.
        let mut chart = ChartBuilder::on(root)
            .caption(&self.figure.title, (FAMILY, 24))
            .margin(20)
            .build_cartesian_3d(x0..x1, scale.lo..scale.hi, y0..y1)?;
        // A low box: loss walls are steep, and seen from this elevation a
        // wall steeper than the view shows its underside and hides the basin.
        let (px_w, px_h) = root.dim_in_pixel();
        chart.set_3d_pixel_range((px_w as i32 * 3 / 5, px_h as i32 / 3, px_w as i32 * 3 / 5));
        chart.with_projection(|mut p| {
            p.yaw = 0.7;
            p.pitch = 0.45;
            p.scale = 0.85;
            p.into_matrix()
        });
        let fmt = |t: &f64| scale.label(*t);
        chart
            .configure_axes()
            .light_grid_style(BLACK.mix(0.1))
            .max_light_lines(3)
            .label_style((FAMILY, 13))
            .x_formatter(&|v| tick(*v))
            .z_formatter(&|v| tick(*v))
            .y_formatter(&fmt)
            .draw()?;
        // Painter's algorithm: plotters does not sort by depth, so draw the
        // farthest quads first and let nearer ones cover them.
        let coord = chart.as_coord_spec();
        let mut quads: Vec<Quad> = Vec::new();
        for i in 0..self.x.len() - 1 {
            for j in 0..ny - 1 {
                let v = [h(i, j), h(i + 1, j), h(i + 1, j + 1), h(i, j + 1)];
                if !v.iter().all(|v| v.is_finite()) {
                    continue;
                }
                let corners = vec![
                    (self.x[i], v[0], self.y[j]),
                    (self.x[i + 1], v[1], self.y[j]),
                    (self.x[i + 1], v[2], self.y[j + 1]),
                    (self.x[i], v[3], self.y[j + 1]),
                ];
                let mean = v.iter().sum::<f64>() / 4.0;
                let (cx, cz) = (0.5 * (self.x[i] + self.x[i + 1]), 0.5 * (self.y[j] + self.y[j + 1]));
                quads.push((coord.projected_depth(&cx, &mean, &cz), corners, mean));
            }
        }
        quads.sort_by_key(|q| std::cmp::Reverse(q.0));
        let unit = |t: f64| (t - scale.lo) / (scale.hi - scale.lo);
        chart.draw_series(
            quads
                .into_iter()
                .map(|(_, corners, mean)| Polygon::new(corners, super::colormap::viridis(unit(mean)).filled())),
        )?;
        // Axis titles: the 3-D axes have no description slot. With this yaw
        // the ticks sit on the edges through the nearest corner (x1, ·, y1),
        // so each title goes beside the middle of its edge, centred, outside the box.
        let centred = Pos::new(HPos::Center, VPos::Center);
        let style = TextStyle::from((FAMILY, 15).into_font()).color(&BLACK).pos(centred);
        let area = chart.plotting_area();
        let (mid_x, mid_y) = (0.5 * (x0 + x1), 0.5 * (y0 + y1));
        let out_x = x1 + 0.4 * (x1 - x0);
        let out_y = y1 + 0.4 * (y1 - y0);
        area.draw(&Text::new(
            self.figure.x_label.clone(),
            (mid_x, scale.lo, out_y),
            style.clone(),
        ))?;
        area.draw(&Text::new(
            self.figure.y_label.clone(),
            (out_x, scale.lo, mid_y),
            style.clone(),
        ))?;
        area.draw(&Text::new(
            self.z_label.clone(),
            (x0, scale.hi + 0.08 * (scale.hi - scale.lo), y0),
            style,
        ))?;
        Ok(())
    }
}
