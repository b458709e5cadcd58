//! Fault lists: CSV `param,index,bit` (header optional), one flip a line,
//! `index` the flat row-major element index. With a header, columns are found
//! by name and others ignored, so richer tables (an attack's flips.csv) are
//! fault lists too; an optional `group` column gathers rows that are applied
//! together into one fault.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use tch::Kind;

use super::space::{Flip, FlipSpace, Target};
use super::storage::Stored;
use crate::error::{HartError, Result};
use crate::model::Model;

/// A group of flips applied together: its name and the flips' positions in the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub members: Vec<usize>,
}

/// A fault list's flips in file order, and its groups (in order of first appearance) if it has a `group` column.
#[derive(Debug, Clone)]
pub struct FaultList {
    pub flips: Vec<Flip>,
    pub groups: Option<Vec<Group>>,
}

/// Column positions of param, index, bit and (optional) group.
struct Columns {
    param: usize,
    index: usize,
    bit: usize,
    group: Option<usize>,
}

impl Columns {
    const PLAIN: Columns = Columns {
        param: 0,
        index: 1,
        bit: 2,
        group: None,
    };

    /// The columns of a header line, or None if the line is data.
    fn header(fields: &[&str], path: &Path) -> Result<Option<Columns>> {
        if !fields.contains(&"param") {
            return Ok(None);
        }
        let find = |name: &str| fields.iter().position(|f| *f == name);
        let need = |name: &str| {
            find(name).ok_or_else(|| HartError::data(path, format!("line 1: header has no {name:?} column")))
        };
        Ok(Some(Columns {
            param: need("param")?,
            index: need("index")?,
            bit: need("bit")?,
            group: find("group"),
        }))
    }
}

/// Reads a fault list against `targets` (the float tensors in scope), each
/// bit checked against its tensor's word width in `stored` (32 without);
/// `model` only serves to explain why a name outside `targets` is refused.
pub fn read(path: &Path, model: &Model, targets: &[Target], stored: Option<&Stored>) -> Result<FaultList> {
    let text = std::fs::read_to_string(path).map_err(|e| HartError::io(path, e))?;
    let all = model.named_tensors();
    let mut flips = vec![];
    let mut cols: Option<Columns> = None;
    let mut headed = false;
    let mut groups: Vec<Group> = vec![];
    let mut seen: HashSet<(String, usize, i64, u8)> = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let lineno = n + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if cols.is_none() {
            if let Some(c) = Columns::header(&fields, path)? {
                cols = Some(c);
                headed = true;
                continue;
            }
        }
        let c = cols.get_or_insert(Columns::PLAIN);
        let bad = |msg: String| HartError::data(path, format!("line {lineno}: {msg}"));
        let needed = [Some(c.param), Some(c.index), Some(c.bit), c.group]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(0)
            + 1;
        if (headed && fields.len() < needed) || (!headed && fields.len() != 3) {
            return Err(bad(format!("expected param,index,bit, got {line:?}")));
        }
        let (param, index, bit) = (fields[c.param], fields[c.index], fields[c.bit]);
        let target = match targets.iter().position(|t| t.name == param) {
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
        let bit: u8 = bit
            .parse()
            .map_err(|_| bad(format!("bit {bit:?} is not a bit position")))?;
        match stored {
            Some(s) => s.get(param)?.check_bit(bit).map_err(|e| bad(e.to_string()))?,
            None if bit >= 32 => return Err(bad(format!("bit {bit} outside 0-31"))),
            None => {}
        }
        if let Some(g) = c.group {
            let name = fields[g].to_string();
            let k = match groups.iter().position(|x| x.name == name) {
                Some(k) => k,
                None => {
                    groups.push(Group {
                        name: name.clone(),
                        members: vec![],
                    });
                    groups.len() - 1
                }
            };
            if !seen.insert((name.clone(), target, index, bit)) {
                return Err(bad(format!("group {name:?} flips {param}[{index}] bit {bit} twice")));
            }
            groups[k].members.push(flips.len());
        }
        flips.push(Flip { target, index, bit });
    }
    if flips.is_empty() {
        return Err(HartError::data(path, "fault list holds no flips"));
    }
    Ok(FaultList {
        flips,
        groups: cols.and_then(|c| c.group).map(|_| groups),
    })
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

/// Whether a fault list has a header naming a `group` column (read before
/// the list itself, to know whether the sweep needs stored words).
pub fn has_groups(path: &Path) -> Result<bool> {
    let text = std::fs::read_to_string(path).map_err(|e| HartError::io(path, e))?;
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    Ok(first.is_some_and(|l| {
        let fields: Vec<&str> = l.split(',').map(str::trim).collect();
        fields.contains(&"param") && fields.contains(&"group")
    }))
}
