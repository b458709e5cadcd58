//! NumPy's `.npy` array format (versions 1–3), read by hand: the magic, the
//! header (a Python dict literal holding `descr`, `fortran_order` and
//! `shape`) and the raw data, returned as little-endian bytes in C order.
//! Errors are plain messages; the caller adds the file and array names.

use std::io::Read;

/// The element types a tensor data set may hold (pixels or labels); any other
/// `descr` is kept as written so the error can name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dtype {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    Other(String),
}

impl Dtype {
    pub(crate) fn size(&self) -> usize {
        match self {
            Dtype::U8 | Dtype::I8 => 1,
            Dtype::U16 | Dtype::I16 => 2,
            Dtype::U32 | Dtype::I32 | Dtype::F32 => 4,
            Dtype::U64 | Dtype::I64 => 8,
            Dtype::Other(_) => 0,
        }
    }

    pub(crate) fn is_integer(&self) -> bool {
        !matches!(self, Dtype::F32 | Dtype::Other(_))
    }

    /// NumPy's name for the type, as a user would write it in `astype`.
    pub(crate) fn name(&self) -> &str {
        match self {
            Dtype::U8 => "uint8",
            Dtype::I8 => "int8",
            Dtype::U16 => "uint16",
            Dtype::I16 => "int16",
            Dtype::U32 => "uint32",
            Dtype::I32 => "int32",
            Dtype::U64 => "uint64",
            Dtype::I64 => "int64",
            Dtype::F32 => "float32",
            Dtype::Other(s) => s,
        }
    }
}

/// One array: its declared shape, and the data of its first `kept` records
/// (the leading axis) as little-endian bytes in C order.
#[derive(Debug, Clone)]
pub(crate) struct Array {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub kept: usize,
    pub data: Vec<u8>,
}

impl Array {
    /// Elements per record (the product of the shape after the first axis).
    pub(crate) fn record_elems(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    /// The shape as NumPy prints it: `(100, 1, 28, 28)`.
    pub(crate) fn shape_str(&self) -> String {
        shape_str(&self.shape)
    }
}

pub(crate) fn shape_str(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        s => format!("({})", s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

const MAGIC: &[u8] = b"\x93NUMPY";
/// No header NumPy writes comes near this; a larger length is a corrupt file.
const MAX_HEADER: usize = 1 << 20;

/// Reads one `.npy` stream. `available` is the stream's length when the
/// container knows it (a zip member's size), so a header promising more data
/// than the file holds fails before anything is allocated for it; `keep`
/// limits the records read (Fortran-ordered arrays are read whole, since
/// their first records are not contiguous).
pub(crate) fn read(r: &mut impl Read, available: Option<u64>, keep: Option<usize>) -> Result<Array, String> {
    let mut pre = [0u8; 8];
    read_exact(r, &mut pre, "the .npy preamble")?;
    if &pre[..6] != MAGIC {
        return Err("not a .npy array (no \\x93NUMPY magic)".into());
    }
    let (major, minor) = (pre[6], pre[7]);
    let len_bytes = match major {
        1 => 2,
        2 | 3 => 4,
        _ => {
            return Err(format!(
                ".npy format version {major}.{minor} is not supported (1.0, 2.0 or 3.0)"
            ))
        }
    };
    let mut lb = [0u8; 4];
    read_exact(r, &mut lb[..len_bytes], "the .npy header length")?;
    let header_len = u32::from_le_bytes(lb) as usize;
    if header_len > MAX_HEADER {
        return Err(format!(".npy header length {header_len} is implausible"));
    }
    let mut hb = vec![0u8; header_len];
    read_exact(r, &mut hb, "the .npy header")?;
    let text = std::str::from_utf8(&hb).map_err(|_| "the .npy header is not text".to_string())?;
    let header = Header::parse(text)?;
    let dtype = header.dtype;
    let shape = header.shape;
    if dtype.size() == 0 {
        return Err(format!(
            "(shape {}) has dtype {}, which is not supported: pixels are uint8 (0..255) or float32 (in [0, 1]), labels integers",
            shape_str(&shape),
            dtype.name()
        ));
    }
    let elems = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("shape {} overflows", shape_str(&shape)))?;
    let total_bytes = elems
        .checked_mul(dtype.size())
        .ok_or_else(|| format!("shape {} overflows", shape_str(&shape)))?;
    let pre_len = (8 + len_bytes + header_len) as u64;
    if let Some(avail) = available {
        let data_len = avail.saturating_sub(pre_len);
        if (total_bytes as u64) > data_len {
            return Err(format!(
                "truncated: shape {} of {} needs {total_bytes} bytes of data, the file holds {data_len}",
                shape_str(&shape),
                dtype.name()
            ));
        }
    }
    let records = shape.first().copied().unwrap_or(1);
    let kept = match keep {
        Some(k) if !header.fortran && !shape.is_empty() => k.min(records),
        _ => records,
    };
    let rec_bytes = total_bytes.checked_div(records).unwrap_or(0);
    let want = if shape.is_empty() {
        total_bytes
    } else {
        kept * rec_bytes
    };
    let mut data = Vec::new();
    r.take(want as u64)
        .read_to_end(&mut data)
        .map_err(|e| format!("reading the .npy data: {e}"))?;
    if data.len() != want {
        return Err(format!(
            "truncated: shape {} of {} needs {want} bytes of data, the file holds {}",
            shape_str(&shape),
            dtype.name(),
            data.len()
        ));
    }
    if header.big_endian {
        for chunk in data.chunks_exact_mut(dtype.size()) {
            chunk.reverse();
        }
    }
    if header.fortran && shape.len() > 1 {
        data = fortran_to_c(&data, &shape, dtype.size());
    }
    let mut a = Array {
        dtype,
        shape,
        kept,
        data,
    };
    if let Some(k) = keep {
        truncate(&mut a, k);
    }
    Ok(a)
}

/// Keeps the first `k` records of `a` (a no-op for scalars or when fewer).
pub(crate) fn truncate(a: &mut Array, k: usize) {
    if a.shape.is_empty() || k >= a.kept {
        return;
    }
    let rec_bytes = a.record_elems() * a.dtype.size();
    a.data.truncate(k * rec_bytes);
    a.kept = k;
}

fn read_exact(r: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), String> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => format!("truncated in {what}"),
        _ => format!("reading {what}: {e}"),
    })
}

/// Column-major element order to row-major, for any rank.
fn fortran_to_c(data: &[u8], shape: &[usize], size: usize) -> Vec<u8> {
    let n: usize = shape.iter().product();
    let mut out = vec![0u8; data.len()];
    // Fortran strides (in elements): axis 0 moves fastest.
    let mut fstride = vec![1usize; shape.len()];
    for k in 1..shape.len() {
        fstride[k] = fstride[k - 1] * shape[k - 1];
    }
    let mut idx = vec![0usize; shape.len()];
    for c in 0..n {
        let f: usize = idx.iter().zip(&fstride).map(|(i, s)| i * s).sum();
        out[c * size..(c + 1) * size].copy_from_slice(&data[f * size..(f + 1) * size]);
        // Advance the C-order multi-index: the last axis moves fastest.
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}

struct Header {
    dtype: Dtype,
    big_endian: bool,
    fortran: bool,
    shape: Vec<usize>,
}

impl Header {
    fn parse(text: &str) -> Result<Header, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let (mut descr, mut fortran, mut shape) = (None, None, None);
        p.expect(b'{')?;
        loop {
            p.ws();
            if p.eat(b'}') {
                break;
            }
            let key = p.string()?;
            p.ws();
            p.expect(b':')?;
            p.ws();
            match key.as_str() {
                "descr" => {
                    if p.peek() == Some(b'[') {
                        return Err("structured dtypes (record arrays) are not supported".into());
                    }
                    descr = Some(p.string()?);
                }
                "fortran_order" => fortran = Some(p.boolean()?),
                "shape" => shape = Some(p.tuple()?),
                k => return Err(format!("unexpected key {k:?} in the .npy header")),
            }
            p.ws();
            if !p.eat(b',') {
                p.ws();
                p.expect(b'}')?;
                break;
            }
        }
        let descr = descr.ok_or("the .npy header has no 'descr'")?;
        let fortran = fortran.ok_or("the .npy header has no 'fortran_order'")?;
        let shape = shape.ok_or("the .npy header has no 'shape'")?;
        let (big_endian, dtype) = parse_descr(&descr);
        Ok(Header {
            dtype,
            big_endian,
            fortran,
            shape,
        })
    }
}

/// `<f4`, `|u1`, `>i8`, … → (big-endian?, type). Anything else is `Other`.
fn parse_descr(d: &str) -> (bool, Dtype) {
    let (order, code) = match d.as_bytes().first() {
        Some(b'<' | b'>' | b'|' | b'=') => (d.as_bytes()[0], &d[1..]),
        _ => (b'=', d),
    };
    let dtype = match code {
        "u1" | "B" => Dtype::U8,
        "i1" | "b" => Dtype::I8,
        "u2" => Dtype::U16,
        "i2" => Dtype::I16,
        "u4" => Dtype::U32,
        "i4" => Dtype::I32,
        "u8" => Dtype::U64,
        "i8" => Dtype::I64,
        "f4" => Dtype::F32,
        _ => Dtype::Other(named_descr(d)),
    };
    // '=' is native order; HART runs on little-endian machines.
    (order == b'>', dtype)
}

/// A readable name for the descrs users meet most, e.g. `<f8 (float64)`.
fn named_descr(d: &str) -> String {
    let name = match d.trim_start_matches(['<', '>', '|', '=']) {
        "f8" => "float64",
        "f2" => "float16",
        "b1" => "bool",
        "c8" => "complex64",
        "c16" => "complex128",
        "O" => "object",
        _ => return format!("{d:?}"),
    };
    format!("{d} ({name})")
}

/// Just enough of Python's literal syntax for NumPy's header dict.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!(
                "malformed .npy header: expected '{}' at byte {}",
                c as char, self.i
            ))
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("malformed .npy header: expected a string at byte {}", self.i)),
        };
        self.i += 1;
        let start = self.i;
        while let Some(c) = self.peek() {
            if c == quote {
                let s = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                self.i += 1;
                return Ok(s);
            }
            self.i += 1;
        }
        Err("malformed .npy header: unterminated string".into())
    }

    fn boolean(&mut self) -> Result<bool, String> {
        for (word, v) in [("True", true), ("False", false)] {
            if self.s[self.i..].starts_with(word.as_bytes()) {
                self.i += word.len();
                return Ok(v);
            }
        }
        Err(format!(
            "malformed .npy header: expected True or False at byte {}",
            self.i
        ))
    }

    fn tuple(&mut self) -> Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut dims = vec![];
        loop {
            self.ws();
            if self.eat(b')') {
                return Ok(dims);
            }
            let start = self.i;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
            let digits = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
            let d = digits
                .parse::<usize>()
                .map_err(|_| format!("malformed .npy header: bad dimension at byte {start}"))?;
            // Python 2's NumPy wrote long integers as `3L`.
            self.eat(b'L');
            dims.push(d);
            self.ws();
            if !self.eat(b',') {
                self.ws();
                self.expect(b')')?;
                return Ok(dims);
            }
        }
    }
}
