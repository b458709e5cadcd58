//! A data set in one file: `.npz` (NumPy's zip of `.npy` arrays, stored or
//! deflated, as `numpy.savez` / `savez_compressed` write it) or
//! `.safetensors`, holding `x` (N×C×H×W pixels: uint8 in 0..255 or float32
//! in [0, 1]) and `y` (integer labels), and optionally `x_test`/`y_test`.
//! Without them the test split is `x`/`y` themselves, with a warning: the
//! common case is a user's own evaluation set for a model trained elsewhere.
//! Every array is checked (names, rank, dtype, lengths, label and pixel
//! values) before a record reaches a model.

use std::path::Path;

use super::npy::{self, Array, Dtype};
use super::{numbered_classes, Dataset, Pixels, Split};
use crate::error::{HartError, Result};

/// The arrays a tensor data set may hold.
const NAMES: [&str; 4] = ["x", "y", "x_test", "y_test"];
/// Labels index class-name tables and one-hot rows; far above any real task.
const MAX_CLASSES: i64 = 1 << 20;

/// A file this loader reads, by its extension.
pub(crate) fn is_tensor_file(path: &Path) -> bool {
    path.is_file() && container(path).is_some()
}

#[derive(Clone, Copy, PartialEq)]
enum Container {
    Npz,
    Safetensors,
}

impl Container {
    fn name(self) -> &'static str {
        match self {
            Container::Npz => ".npz",
            Container::Safetensors => ".safetensors",
        }
    }
}

fn container(path: &Path) -> Option<Container> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "npz" => Some(Container::Npz),
        "safetensors" => Some(Container::Safetensors),
        _ => None,
    }
}

/// The arrays of one file: which names it has, and a reader for one of them
/// (its first `keep` records, or all).
trait Source {
    fn names(&self) -> &[String];
    fn array(&mut self, name: &str, keep: Option<usize>) -> std::result::Result<Array, String>;
}

pub(crate) fn load(path: &Path, split: Split, limit: Option<usize>) -> Result<Dataset> {
    let kind = container(path).ok_or_else(|| HartError::data(path, "not a .npz or .safetensors file"))?;
    let bytes;
    let mut src: Box<dyn Source + '_> = match kind {
        Container::Npz => {
            let file = std::fs::File::open(path).map_err(|e| HartError::io(path, e))?;
            Box::new(Npz::open(std::io::BufReader::new(file)).map_err(|e| HartError::data(path, e))?)
        }
        Container::Safetensors => {
            bytes = std::fs::read(path).map_err(|e| HartError::io(path, e))?;
            Box::new(Safetensors::open(&bytes).map_err(|e| HartError::data(path, e))?)
        }
    };
    read_set(src.as_mut(), kind, split, limit).map_err(|e| HartError::data(path, e))
}

fn read_set(
    src: &mut dyn Source,
    kind: Container,
    split: Split,
    limit: Option<usize>,
) -> std::result::Result<Dataset, String> {
    let names = src.names().to_vec();
    let have = |n: &str| names.iter().any(|m| m == n);
    if let Some(odd) = names.iter().find(|n| !NAMES.contains(&n.as_str())) {
        return Err(format!(
            "unexpected array {odd:?} (a {} data set holds x, y and optionally x_test, y_test)",
            kind.name()
        ));
    }
    for (a, b) in [("x", "y"), ("x_test", "y_test")] {
        match (have(a), have(b)) {
            (true, false) => return Err(format!("{a} has no labels: the file holds no {b}")),
            (false, true) => return Err(format!("{b} has no images: the file holds no {a}")),
            _ => {}
        }
    }
    if !have("x") {
        return Err(format!(
            "no array x (a {} data set holds x: N×C×H×W images and y: labels)",
            kind.name()
        ));
    }
    let test_arrays = have("x_test");
    let (xn, yn) = match split {
        Split::Test if test_arrays => ("x_test", "y_test"),
        Split::Test => {
            tracing::warn!("the file holds no x_test/y_test: the test split reads x, y (the training data)");
            ("x", "y")
        }
        Split::Train => ("x", "y"),
    };
    // The class count spans both splits' labels, so a model trained on one
    // split has outputs for every label of the other.
    let mut num_classes = 0;
    let mut labels = vec![];
    let mut y_desc = String::new();
    for name in ["y", "y_test"].into_iter().filter(|n| have(n)) {
        let y = src.array(name, None).map_err(|e| sep(name, e))?;
        let values = read_labels(name, &y)?;
        num_classes = num_classes.max(values.iter().max().map_or(0, |m| m + 1));
        if name == yn {
            y_desc = format!("{name} {} {}", y.shape_str(), y.dtype.name());
            labels = values;
        }
    }
    let x = src.array(xn, limit).map_err(|e| sep(xn, e))?;
    check_images(xn, &x)?;
    if x.shape[0] != labels.len() {
        return Err(format!(
            "{xn} holds {} images (shape {}) but {yn} holds {} labels",
            x.shape[0],
            x.shape_str(),
            labels.len()
        ));
    }
    labels.truncate(x.kept);
    let pixels = match x.dtype {
        Dtype::U8 => Pixels::U8(x.data.clone()),
        _ => Pixels::F32(float_pixels(xn, &x)?),
    };
    Ok(Dataset {
        name: String::new(),
        images: pixels,
        channels: x.shape[1],
        height: x.shape[2],
        width: x.shape[3],
        labels,
        num_classes: num_classes as usize,
        class_names: numbered_classes(num_classes as usize),
        source: format!(
            "{} arrays {xn} {} {}, {y_desc}",
            kind.name(),
            x.shape_str(),
            x.dtype.name()
        ),
    })
}

/// `x: message`, or `x (shape …) …` for messages that continue the name.
fn sep(name: &str, e: String) -> String {
    if e.starts_with('(') {
        format!("{name} {e}")
    } else {
        format!("{name}: {e}")
    }
}

fn check_images(name: &str, x: &Array) -> std::result::Result<(), String> {
    let shape = x.shape_str();
    if x.shape.len() != 4 {
        let hint = match x.shape.len() {
            3 => format!("; for one channel save {name}[:, None]"),
            _ => String::new(),
        };
        return Err(format!("{name} has shape {shape}: expected 4 dims N×C×H×W{hint}"));
    }
    if !matches!(x.dtype, Dtype::U8 | Dtype::F32) {
        return Err(format!(
            "{name} (shape {shape}) has dtype {}: expected uint8 (0..255) or float32 (in [0, 1])",
            x.dtype.name()
        ));
    }
    if x.shape[0] == 0 {
        return Err(format!("{name} has shape {shape}: no images"));
    }
    if x.shape[1..].contains(&0) {
        return Err(format!("{name} has shape {shape}: an image dimension is 0"));
    }
    // Channels-last arrays (N×H×W×C, as Keras and PIL stack them) are the likeliest mistake.
    if matches!(x.shape[3], 1 | 3 | 4) && x.shape[1] > 4 {
        let fix = format!("save numpy.moveaxis({name}, -1, 1)");
        return Err(format!(
            "{name} has shape {shape}, which looks channels-last (N×H×W×C): HART takes N×C×H×W; {fix}"
        ));
    }
    Ok(())
}

/// float32 pixels, each checked finite and in [0, 1].
fn float_pixels(name: &str, x: &Array) -> std::result::Result<Vec<f32>, String> {
    let values: Vec<f32> = x
        .data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if let Some(i) = values.iter().position(|v| !(0.0..=1.0).contains(v)) {
        let v = values[i];
        let why = if v.is_nan() {
            String::new()
        } else {
            ", outside [0, 1] (for 0..255 values save them as uint8, or divide by 255)".to_string()
        };
        let v = if v.is_nan() { "NaN".to_string() } else { v.to_string() };
        return Err(format!(
            "{name} (shape {}) holds {v} at {}{why}",
            x.shape_str(),
            index_str(i, &x.shape)
        ));
    }
    Ok(values)
}

/// Labels as i64, each a class index in 0..MAX_CLASSES.
fn read_labels(name: &str, y: &Array) -> std::result::Result<Vec<i64>, String> {
    if y.shape.len() != 1 {
        let hint = if y.shape.len() == 2 && y.shape[1] == 1 {
            format!("; save {name}.ravel()")
        } else if y.shape.len() == 2 {
            format!(" (one-hot rows? save {name}.argmax(1))")
        } else {
            String::new()
        };
        return Err(format!(
            "{name} has shape {}: expected one label per image, shape (N,){hint}",
            y.shape_str()
        ));
    }
    if !y.dtype.is_integer() {
        return Err(format!(
            "{name} (shape {}) has dtype {}: labels must be integers (save {name}.astype(numpy.int64))",
            y.shape_str(),
            y.dtype.name()
        ));
    }
    let size = y.dtype.size();
    let mut out = Vec::with_capacity(y.data.len() / size);
    for (i, c) in y.data.chunks_exact(size).enumerate() {
        let v: i128 = match y.dtype {
            Dtype::U8 => c[0] as i128,
            Dtype::I8 => c[0] as i8 as i128,
            Dtype::U16 => u16::from_le_bytes([c[0], c[1]]) as i128,
            Dtype::I16 => i16::from_le_bytes([c[0], c[1]]) as i128,
            Dtype::U32 => u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i128,
            Dtype::I32 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i128,
            Dtype::U64 => u64::from_le_bytes(c.try_into().unwrap_or_default()) as i128,
            _ => i64::from_le_bytes(c.try_into().unwrap_or_default()) as i128,
        };
        if v < 0 || v >= MAX_CLASSES as i128 {
            return Err(format!(
                "{name} (shape {}) holds label {v} at [{i}]: labels are class indices 0..{}",
                y.shape_str(),
                MAX_CLASSES - 1
            ));
        }
        out.push(v as i64);
    }
    Ok(out)
}

/// `[i, j, k, l]` of flat C-order element `flat` in `shape`.
fn index_str(mut flat: usize, shape: &[usize]) -> String {
    let mut idx = vec![0; shape.len()];
    for k in (0..shape.len()).rev() {
        idx[k] = flat % shape[k].max(1);
        flat /= shape[k].max(1);
    }
    format!("[{}]", idx.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "))
}

/// NumPy's `.npz`: a zip whose members are `NAME.npy`.
struct Npz<R: std::io::Read + std::io::Seek> {
    zip: zip::ZipArchive<R>,
    names: Vec<String>,
}

impl<R: std::io::Read + std::io::Seek> Npz<R> {
    fn open(reader: R) -> std::result::Result<Self, String> {
        let zip = zip::ZipArchive::new(reader).map_err(|e| format!("not a readable .npz (zip) file: {e}"))?;
        let mut names = vec![];
        for member in zip.file_names() {
            let member = member.map_err(|e| format!("unreadable zip member name: {e}"))?;
            let name = member
                .strip_suffix(".npy")
                .ok_or_else(|| format!("member {member:?} is not a .npy array"))?;
            names.push(name.to_string());
        }
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("array {:?} is stored twice", w[0]));
        }
        Ok(Npz { zip, names })
    }
}

impl<R: std::io::Read + std::io::Seek> Source for Npz<R> {
    fn names(&self) -> &[String] {
        &self.names
    }

    fn array(&mut self, name: &str, keep: Option<usize>) -> std::result::Result<Array, String> {
        let mut member = self
            .zip
            .by_name(&format!("{name}.npy"))
            .map_err(|e| format!("unreadable zip member: {e}"))?;
        let size = member.size();
        npy::read(&mut member, Some(size), keep)
    }
}

/// A safetensors file read as named arrays (little-endian, C order).
struct Safetensors<'a> {
    st: safetensors::SafeTensors<'a>,
    names: Vec<String>,
}

impl<'a> Safetensors<'a> {
    fn open(bytes: &'a [u8]) -> std::result::Result<Self, String> {
        let st =
            safetensors::SafeTensors::deserialize(bytes).map_err(|e| format!("not a valid safetensors file: {e}"))?;
        let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
        names.sort();
        Ok(Safetensors { st, names })
    }
}

impl Source for Safetensors<'_> {
    fn names(&self) -> &[String] {
        &self.names
    }

    fn array(&mut self, name: &str, keep: Option<usize>) -> std::result::Result<Array, String> {
        use safetensors::Dtype as D;
        let view = self.st.tensor(name).map_err(|e| e.to_string())?;
        let dtype = match view.dtype() {
            D::U8 => Dtype::U8,
            D::I8 => Dtype::I8,
            D::U16 => Dtype::U16,
            D::I16 => Dtype::I16,
            D::U32 => Dtype::U32,
            D::I32 => Dtype::I32,
            D::U64 => Dtype::U64,
            D::I64 => Dtype::I64,
            D::F32 => Dtype::F32,
            other => Dtype::Other(format!("{other:?}")),
        };
        let shape = view.shape().to_vec();
        let records = shape.first().copied().unwrap_or(1);
        let kept = match keep {
            Some(k) if !shape.is_empty() => k.min(records),
            _ => records,
        };
        // Copy only the records kept: the header has already checked the data's length.
        let rec_bytes = view.data().len() / records.max(1);
        let data = view.data()[..kept * rec_bytes].to_vec();
        Ok(Array {
            dtype,
            shape,
            kept,
            data,
        })
    }
}
