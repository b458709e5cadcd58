//! Fault lists: CSV `param,index,bit` (header optional), one flip a line,
//! `index` the flat row-major element index.

use std::io::Write;
use std::path::Path;

use tch::Kind;

use super::bits::parse_bit;
use super::space::{Flip, FlipSpace, Target};
use crate::error::{HartError, Result};
use crate::model::Model;

/// Reads a fault list against `targets` (the float tensors in scope);
/// `model` only serves to explain why a name outside `targets` is refused.
pub fn read(path: &Path, model: &Model, targets: &[Target]) -> Result<Vec<Flip>> {
    let text = std::fs::read_to_string(path).map_err(|e| HartError::io(path, e))?;
    let all = model.named_tensors();
    let mut flips = vec![];
    for (n, line) in text.lines().enumerate() {
        let lineno = n + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || (flips.is_empty() && line.replace(' ', "") == "param,index,bit")
        {
            continue;
        }
        let bad = |msg: String| HartError::data(path, format!("line {lineno}: {msg}"));
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [param, index, bit] = fields.as_slice() else {
            return Err(bad(format!("expected param,index,bit, got {line:?}")));
        };
        let target = match targets.iter().position(|t| t.name == *param) {
            Some(t) => t,
            None => {
                return Err(bad(match all.iter().find(|(name, _, _)| name == param) {
                    Some((_, t, _)) if t.kind() != Kind::Float => {
                        format!("parameter {param} is {:?}, not float32", t.kind())
                    }
                    Some(_) => format!("parameter {param} is outside the sweep's scope (--scope/--params)"),
                    None => format!("unknown parameter {param:?}"),
                }))
            }
        };
        let numel = targets[target].numel;
        let index: i64 = index
            .parse()
            .ok()
            .filter(|i| (0..numel).contains(i))
            .ok_or_else(|| bad(format!("index {index} out of range for {param} ({numel} elements)")))?;
        let bit = parse_bit(bit).ok_or_else(|| bad(format!("bit {bit} outside 0-31")))?;
        flips.push(Flip { target, index, bit });
    }
    if flips.is_empty() {
        return Err(HartError::data(path, "fault list holds no flips"));
    }
    Ok(flips)
}

/// Writes the space's flips as a fault list (streamed: exhaustive spaces are large).
pub fn write(path: &Path, space: &FlipSpace) -> Result<()> {
    let io = |e| HartError::io(path, e);
    let tmp = path.with_extension("csv.tmp");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
    writeln!(w, "param,index,bit").map_err(io)?;
    for o in 0..space.len() {
        let f = space.flip(o);
        writeln!(w, "{},{},{}", space.targets[f.target].name, f.index, f.bit).map_err(io)?;
    }
    w.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
