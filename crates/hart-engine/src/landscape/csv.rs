//! The grid as CSV: the coordinates, `loss`, `accuracy`, one row per point.

use std::fmt::Write;
use std::path::Path;

use super::Point;
use crate::error::Result;
use crate::util::write_atomic;

pub fn to_csv(points: &[Point]) -> String {
    let two_d = points.first().is_some_and(|p| p.y.is_some());
    let mut out = String::from(if two_d {
        "x,y,loss,accuracy\n"
    } else {
        "x,loss,accuracy\n"
    });
    for p in points {
        // `{}` prints the shortest decimal that reads back to the same f64.
        let _ = match p.y {
            Some(y) => writeln!(out, "{},{},{},{}", p.x, y, p.loss, p.accuracy),
            None => writeln!(out, "{},{},{}", p.x, p.loss, p.accuracy),
        };
    }
    out
}

pub fn write_csv(path: &Path, points: &[Point]) -> Result<()> {
    write_atomic(path, to_csv(points).as_bytes())
}
