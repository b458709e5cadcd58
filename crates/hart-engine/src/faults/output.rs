//! The flips table, streamed row by row into Parquet or CSV through a
//! temporary file renamed at the end (a killed run never leaves half a table).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, FloatType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use super::record::{to_csv, Row, COLUMNS};
use crate::error::{HartError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Parquet,
    Csv,
}

impl std::str::FromStr for Format {
    type Err = HartError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "parquet" => Ok(Format::Parquet),
            "csv" => Ok(Format::Csv),
            _ => Err(HartError::Invalid(format!("unknown format {s:?} (parquet or csv)"))),
        }
    }
}

impl Format {
    pub fn file_name(&self) -> &'static str {
        match self {
            Format::Parquet => "flips.parquet",
            Format::Csv => "flips.csv",
        }
    }
}

pub trait TableWriter {
    fn push(&mut self, row: Row) -> Result<()>;
    /// Flushes, syncs and moves the table into place.
    fn finish(self: Box<Self>) -> Result<()>;
}

pub fn create(dir: &Path, format: Format) -> Result<Box<dyn TableWriter>> {
    let path = dir.join(format.file_name());
    let tmp = dir.join(format!(".{}.tmp", format.file_name()));
    let file = File::create(&tmp).map_err(|e| HartError::io(&tmp, e))?;
    Ok(match format {
        Format::Csv => {
            let mut w = BufWriter::new(file);
            writeln!(w, "{}", COLUMNS.join(",")).map_err(|e| HartError::io(&tmp, e))?;
            Box::new(CsvTable { w, tmp, path })
        }
        Format::Parquet => Box::new(ParquetTable::new(file, tmp, path)?),
    })
}

fn rename(tmp: &Path, path: &Path) -> Result<()> {
    std::fs::rename(tmp, path).map_err(|e| HartError::io(path, e))
}

struct CsvTable {
    w: BufWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
}

impl TableWriter for CsvTable {
    fn push(&mut self, row: Row) -> Result<()> {
        let line = to_csv(std::slice::from_ref(&row))?;
        self.w.write_all(&line).map_err(|e| HartError::io(&self.tmp, e))
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let tmp = self.tmp.clone();
        let file = self.w.into_inner().map_err(|e| HartError::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| HartError::io(&tmp, e))?;
        rename(&self.tmp, &self.path)
    }
}

/// Rows per Parquet row group: bounds the writer's memory whatever the table size.
const ROW_GROUP: usize = 65_536;

/// Uncompressed Parquet through the low-level column writer (no Arrow),
/// readable by pandas/pyarrow.
struct ParquetTable {
    w: SerializedFileWriter<File>,
    rows: Vec<Row>,
    tmp: PathBuf,
    path: PathBuf,
}

const SCHEMA: &str = "message flips {
    REQUIRED BYTE_ARRAY param (UTF8);
    REQUIRED INT64 index;
    REQUIRED INT32 bit;
    REQUIRED FLOAT old;
    REQUIRED FLOAT new;
    REQUIRED INT64 correct;
    REQUIRED INT64 total;
    REQUIRED DOUBLE rad;
    REQUIRED BOOLEAN exact;
    REQUIRED INT64 samples;
    REQUIRED INT64 bound;
    REQUIRED BOOLEAN sure;
}";

fn pq(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> HartError + '_ {
    move |e| HartError::data(path, format!("parquet: {e}"))
}

impl ParquetTable {
    fn new(file: File, tmp: PathBuf, path: PathBuf) -> Result<Self> {
        let schema = Arc::new(parse_message_type(SCHEMA).map_err(pq(&tmp))?);
        let props = Arc::new(WriterProperties::builder().set_created_by("hart sweep".into()).build());
        let w = SerializedFileWriter::new(file, schema, props).map_err(pq(&tmp))?;
        Ok(ParquetTable {
            w,
            rows: Vec::with_capacity(ROW_GROUP),
            tmp,
            path,
        })
    }

    fn flush(&mut self) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let e = pq(&self.tmp);
        let rows = std::mem::take(&mut self.rows);
        let mut rg = self.w.next_row_group().map_err(&e)?;
        let mut k = 0;
        while let Some(mut col) = rg.next_column().map_err(&e)? {
            macro_rules! put {
                ($t:ty, $f:expr) => {{
                    let v: Vec<_> = rows.iter().map($f).collect();
                    col.typed::<$t>().write_batch(&v, None, None).map_err(&e)?;
                }};
            }
            match k {
                0 => put!(ByteArrayType, |r: &Row| ByteArray::from(r.param.as_str())),
                1 => put!(Int64Type, |r: &Row| r.index),
                2 => put!(Int32Type, |r: &Row| r.bit as i32),
                3 => put!(FloatType, |r: &Row| r.old),
                4 => put!(FloatType, |r: &Row| r.new),
                5 => put!(Int64Type, |r: &Row| r.correct),
                6 => put!(Int64Type, |r: &Row| r.total),
                7 => put!(DoubleType, |r: &Row| r.rad),
                8 => put!(BoolType, |r: &Row| r.exact),
                9 => put!(Int64Type, |r: &Row| r.samples),
                10 => put!(Int64Type, |r: &Row| r.bound),
                _ => put!(BoolType, |r: &Row| r.sure),
            }
            col.close().map_err(&e)?;
            k += 1;
        }
        rg.close().map_err(&e)?;
        Ok(())
    }
}

impl TableWriter for ParquetTable {
    fn push(&mut self, row: Row) -> Result<()> {
        self.rows.push(row);
        if self.rows.len() >= ROW_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        self.flush()?;
        let file = self.w.into_inner().map_err(pq(&self.tmp))?;
        file.sync_all().map_err(|e| HartError::io(&self.tmp, e))?;
        rename(&self.tmp, &self.path)
    }
}

/// Reads a flips table back (tests, and tools that post-process a sweep).
pub fn read_table(path: &Path) -> Result<Vec<Row>> {
    if path.extension().is_some_and(|e| e == "csv") {
        let text = std::fs::read(path).map_err(|e| HartError::io(path, e))?;
        let body = text
            .iter()
            .position(|&b| b == b'\n')
            .map_or(&text[..0], |i| &text[i + 1..]);
        return super::record::parse_csv(body, path);
    }
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::RowAccessor;
    let file = File::open(path).map_err(|e| HartError::io(path, e))?;
    let e = pq(path);
    let reader = SerializedFileReader::new(file).map_err(&e)?;
    let mut rows = vec![];
    for rec in reader.get_row_iter(None).map_err(&e)? {
        let r = rec.map_err(&e)?;
        rows.push(Row {
            param: r.get_string(0).map_err(&e)?.clone(),
            index: r.get_long(1).map_err(&e)?,
            bit: r.get_int(2).map_err(&e)? as u8,
            old: r.get_float(3).map_err(&e)?,
            new: r.get_float(4).map_err(&e)?,
            correct: r.get_long(5).map_err(&e)?,
            total: r.get_long(6).map_err(&e)?,
            rad: r.get_double(7).map_err(&e)?,
            exact: r.get_bool(8).map_err(&e)?,
            samples: r.get_long(9).map_err(&e)?,
            bound: r.get_long(10).map_err(&e)?,
            sure: r.get_bool(11).map_err(&e)?,
        });
    }
    Ok(rows)
}
