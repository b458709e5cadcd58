//! Viridis: perceptually uniform, readable in grey scale and by colour-blind
//! readers; the value scale of heat maps, contours and surfaces.

use plotters::style::RGBColor;

/// Nine samples of matplotlib's viridis, interpolated linearly between.
const STOPS: [(u8, u8, u8); 9] = [
    (68, 1, 84),
    (71, 44, 122),
    (59, 81, 139),
    (44, 113, 142),
    (33, 144, 141),
    (39, 173, 129),
    (92, 200, 99),
    (170, 220, 50),
    (253, 231, 37),
];

/// Colour of `t` in [0, 1] (clamped); non-finite values are grey.
pub fn viridis(t: f64) -> RGBColor {
    if !t.is_finite() {
        return RGBColor(160, 160, 160);
    }
    let s = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (s.floor() as usize).min(STOPS.len() - 2);
    let f = s - i as f64;
    let lerp = |a: u8, b: u8| (a as f64 + f * (b as f64 - a as f64)).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(lerp(a.0, b.0), lerp(a.1, b.1), lerp(a.2, b.2))
}

/// How values map to colour: linearly, or by log10 when they span decades
/// (a loss surface's basin would otherwise be one flat colour).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueScale {
    pub log: bool,
    /// Range in transformed units (log10 when `log`).
    pub lo: f64,
    pub hi: f64,
}

impl ValueScale {
    /// Log when every finite value is positive and they span more than `decade_ratio`.
    pub fn fit(values: &[f64], decade_ratio: f64) -> Self {
        let finite = values.iter().copied().filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        let log = lo > 0.0 && hi / lo > decade_ratio;
        let (lo, hi) = if log { (lo.log10(), hi.log10()) } else { (lo, hi) };
        let (lo, hi) = super::padded_range(lo, hi, 0.0);
        ValueScale { log, lo, hi }
    }

    /// A value in transformed units (non-positive values on a log scale are NaN).
    pub fn forward(&self, v: f64) -> f64 {
        if self.log {
            if v > 0.0 {
                v.log10()
            } else {
                f64::NAN
            }
        } else {
            v
        }
    }

    /// Transformed units back to the value, for tick labels.
    pub fn inverse(&self, t: f64) -> f64 {
        if self.log {
            10f64.powf(t)
        } else {
            t
        }
    }

    /// Tick label for a position in transformed units: two significant
    /// digits on a log scale, whose ticks fall between round numbers.
    pub fn label(&self, t: f64) -> String {
        let v = self.inverse(t);
        if !self.log || v == 0.0 || !v.is_finite() {
            return super::render::tick(v);
        }
        let f = 10f64.powf(1.0 - v.abs().log10().floor());
        format!("{}", (v * f).round() / f)
    }

    /// Position of a value in [0, 1] along the colour map.
    pub fn unit(&self, v: f64) -> f64 {
        (self.forward(v) - self.lo) / (self.hi - self.lo)
    }

    pub fn color(&self, v: f64) -> RGBColor {
        viridis(self.unit(v))
    }
}
