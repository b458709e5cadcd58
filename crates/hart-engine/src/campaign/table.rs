//! The trials table (`trials.parquet` or `trials.csv`: level, trial, faults,
//! changed, detected, correct, total, rad) and the header-less CSV of journal parts.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::data_type::{DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use super::stats::Trial;
use crate::error::{HartError, Result};
use crate::faults::Format;
use crate::util::write_atomic;

pub fn file_name(format: Format) -> &'static str {
    match format {
        Format::Parquet => "trials.parquet",
        Format::Csv => "trials.csv",
    }
}

pub fn to_csv(trials: &[Trial], header: bool) -> Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new().has_headers(header).from_writer(vec![]);
    for t in trials {
        w.serialize(t).map_err(|e| HartError::Invalid(e.to_string()))?;
    }
    w.into_inner().map_err(|e| HartError::Invalid(e.to_string()))
}

pub fn read_csv(path: &Path, header: bool) -> Result<Vec<Trial>> {
    let bytes = std::fs::read(path).map_err(|e| HartError::io(path, e))?;
    let mut r = csv::ReaderBuilder::new()
        .has_headers(header)
        .from_reader(bytes.as_slice());
    r.deserialize()
        .enumerate()
        .map(|(i, t)| t.map_err(|e| HartError::data(path, format!("record {}: {e}", i + 1))))
        .collect()
}

const SCHEMA: &str = "message trials {
    REQUIRED DOUBLE level;
    REQUIRED INT64 trial;
    REQUIRED INT64 faults;
    REQUIRED INT64 changed;
    REQUIRED INT64 detected;
    REQUIRED INT64 correct;
    REQUIRED INT64 total;
    REQUIRED DOUBLE rad;
}";

/// Writes the table atomically (it is small: levels × trials rows).
pub fn write(dir: &Path, format: Format, trials: &[Trial]) -> Result<()> {
    let path = dir.join(file_name(format));
    match format {
        Format::Csv => write_atomic(&path, &to_csv(trials, true)?),
        Format::Parquet => {
            let tmp = dir.join(format!(".{}.tmp", file_name(format)));
            write_parquet(&tmp, trials)?;
            std::fs::rename(&tmp, &path).map_err(|e| HartError::io(&path, e))
        }
    }
}

fn write_parquet(path: &Path, trials: &[Trial]) -> Result<()> {
    let e = |e: parquet::errors::ParquetError| HartError::data(path, format!("parquet: {e}"));
    let schema = Arc::new(parse_message_type(SCHEMA).map_err(e)?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_created_by("hart campaign".into())
            .build(),
    );
    let file = File::create(path).map_err(|err| HartError::io(path, err))?;
    let mut w = SerializedFileWriter::new(file, schema, props).map_err(e)?;
    let mut rg = w.next_row_group().map_err(e)?;
    let mut k = 0;
    while let Some(mut col) = rg.next_column().map_err(e)? {
        let ints = |f: fn(&Trial) -> i64| trials.iter().map(f).collect::<Vec<i64>>();
        let floats = |f: fn(&Trial) -> f64| trials.iter().map(f).collect::<Vec<f64>>();
        match k {
            0 => col.typed::<DoubleType>().write_batch(&floats(|t| t.level), None, None),
            7 => col.typed::<DoubleType>().write_batch(&floats(|t| t.rad), None, None),
            _ => {
                let f: fn(&Trial) -> i64 = match k {
                    1 => |t| t.trial as i64,
                    2 => |t| t.faults as i64,
                    3 => |t| t.changed as i64,
                    4 => |t| t.detected as i64,
                    5 => |t| t.correct,
                    _ => |t| t.total,
                };
                col.typed::<Int64Type>().write_batch(&ints(f), None, None)
            }
        }
        .map_err(e)?;
        col.close().map_err(e)?;
        k += 1;
    }
    rg.close().map_err(e)?;
    let file = w.into_inner().map_err(e)?;
    file.sync_all().map_err(|err| HartError::io(path, err))
}
