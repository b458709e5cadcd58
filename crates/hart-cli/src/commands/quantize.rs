//! `hart quantize`: accuracy under weight-only uniform quantization, one
//! line per model, so a baseline and a Hessian-aware model compare side by
//! side. Also home of the arguments and output `hart prune` and
//! `hart landscape` share (several models, an output folder, a plot).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use hart::compress::quantize::{parse_bits, Granularity};
use hart::compress::{quantize_curve, select, CurveRun, QuantizeRow, Selection};
use hart::data::{Dataset, Split};
use hart::model::Model;
use hart::plot::{self, Figure, LinePlot, Series, SeriesLabelPosition};

use tch::Device;

use super::common::{parse_device, progress_bar, write_json, DataArgs, ModelArgs};

/// One or more models, loaded like `hart eval`'s single one.
#[derive(Args, Debug, Clone)]
pub struct ModelsArgs {
    /// Model file (.safetensors, .onnx or TorchScript .pt); repeat to compare several.
    #[arg(long = "model", required = true)]
    pub models: Vec<PathBuf>,
    /// Zoo architecture for state dicts without HART metadata (applies to every --model).
    #[arg(long)]
    pub arch: Option<String>,
    /// Input normalisation for foreign state dicts: none, a dataset name, or MEAN,..:STD,..
    #[arg(long)]
    pub normalize: Option<String>,
}

impl ModelsArgs {
    /// Each model with its legend label (the file stem, made unique).
    pub fn load_all(&self, data: &Dataset, device: Device) -> Result<Vec<(String, Model)>> {
        let labels = labels(&self.models);
        self.models
            .iter()
            .zip(labels)
            .map(|(path, label)| {
                let one = ModelArgs {
                    model: path.clone(),
                    arch: self.arch.clone(),
                    normalize: self.normalize.clone(),
                };
                let model = one
                    .load(data, device)
                    .with_context(|| format!("loading {}", path.display()))?;
                Ok((label, model))
            })
            .collect()
    }
}

/// File stems as legend labels; a repeated stem gets its position appended.
fn labels(paths: &[PathBuf]) -> Vec<String> {
    let stems: Vec<String> = paths
        .iter()
        .map(|p| {
            p.file_stem()
                .map_or_else(|| p.display().to_string(), |s| s.to_string_lossy().into_owned())
        })
        .collect();
    stems
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if stems.iter().filter(|t| *t == s).count() > 1 {
                format!("{s}#{}", i + 1)
            } else {
                s.clone()
            }
        })
        .collect()
}

/// Everything a compression sweep needs besides its own settings.
#[derive(Args, Debug)]
pub struct SweepArgs {
    #[command(flatten)]
    pub models: ModelsArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, default_value = "test")]
    pub split: Split,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Compress biases and normalisation parameters (rank-1 tensors) too.
    #[arg(long)]
    pub include_bias_bn: bool,
    /// Folder for the JSON results and the plot (default: hart-quantize or hart-prune).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Plot format: png or svg.
    #[arg(long, default_value = "png", value_parser = ["png", "svg"])]
    pub format: String,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A model with its legend label and the weight tensors a sweep compresses.
pub type Labelled = (String, Model, Vec<(String, tch::Tensor)>);

/// A loaded sweep: data, device and models.
pub struct Loaded {
    pub data: Dataset,
    pub device: Device,
    pub models: Vec<Labelled>,
}

impl SweepArgs {
    pub fn load(&self) -> Result<Loaded> {
        let device = parse_device(&self.device)?;
        let data = self.data.load(self.split)?;
        let sel = Selection {
            include_bias_bn: self.include_bias_bn,
            layer: None,
        };
        let models = self
            .models
            .load_all(&data, device)?
            .into_iter()
            .map(|(label, m)| {
                let targets = select(&m, &sel).with_context(|| label.clone())?;
                Ok((label, m, targets))
            })
            .collect::<Result<_>>()?;
        Ok(Loaded { data, device, models })
    }

    pub fn out_dir(&self, default: &str) -> PathBuf {
        self.out.clone().unwrap_or_else(|| PathBuf::from(default))
    }
}

impl Loaded {
    /// The engine's curve settings for these data, saving into `save` when given.
    pub fn curve_run<'a>(&'a self, batch_size: usize, save: Option<&'a Path>) -> CurveRun<'a> {
        CurveRun {
            data: &self.data,
            batch_size,
            device: self.device,
            save,
        }
    }
}

/// Prints a table with a header row, columns padded to their widest cell.
pub fn print_table(header: &[String], rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect();
        println!("{}", padded.join("  "));
    };
    line(header);
    for r in rows {
        line(r);
    }
}

/// Writes one accuracy-vs-setting line per model, the legend where the lines are not.
pub fn plot_lines(path: &Path, figure: Figure, series: Vec<Series>, legend: SeriesLabelPosition) -> Result<()> {
    plot::save(&LinePlot::new(figure, series).legend_at(legend), path)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    #[command(flatten)]
    pub sweep: SweepArgs,
    /// Bit widths to evaluate, e.g. 8,6,4,3,2.
    #[arg(long, default_value = "8,6,4,3,2")]
    pub bits: String,
    /// One scale per output channel (dim 0) instead of one per tensor.
    #[arg(long)]
    pub per_channel: bool,
    /// Also write each quantized model into the output folder.
    #[arg(long)]
    pub save: bool,
}

pub fn run(a: QuantizeArgs) -> Result<()> {
    let bits = parse_bits(&a.bits)?;
    let granularity = Granularity::of(a.per_channel);
    let out = a.sweep.out_dir("hart-quantize");
    let l = a.sweep.load()?;
    let bar = progress_bar((l.models.len() * (bits.len() + 1)) as u64, "quantize");
    let run = l.curve_run(a.sweep.batch_size, a.save.then_some(out.as_path()));
    let mut rows = Vec::new();
    for (label, model, targets) in &l.models {
        rows.extend(quantize_curve(label, model, targets, &bits, granularity, &run, || {
            bar.inc(1)
        })?);
    }
    bar.finish_and_clear();
    write_json(&out.join("quantize.json"), &rows)?;
    if a.sweep.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_quantize_table(&l.models, &bits, &rows);
    }
    let series = l
        .models
        .iter()
        .map(|(label, _, _)| {
            let mine: Vec<&QuantizeRow> = rows.iter().filter(|r| &r.model == label).collect();
            let float = mine.first().map_or(f64::NAN, |r| r.float_accuracy);
            let points = mine.iter().map(|r| (r.bits as f64, 100.0 * r.accuracy)).collect();
            Series::new(format!("{label} (float32: {:.2}%)", 100.0 * float), points)
        })
        .collect();
    let figure = Figure::new(
        format!(
            "Accuracy under {granularity} weight quantization ({} {}, {} images)",
            l.data.name,
            a.sweep.split,
            l.data.len()
        ),
        "weight bit width (bits)",
        format!("{} accuracy (%)", a.sweep.split),
    );
    // Accuracy is high at the wide (right) end and falls to the left: the lower right is free.
    plot_lines(
        &out.join(format!("quantize.{}", a.sweep.format)),
        figure,
        series,
        SeriesLabelPosition::LowerRight,
    )
}

fn print_quantize_table(models: &[Labelled], bits: &[u32], rows: &[QuantizeRow]) {
    let mut header = vec!["bits".to_string()];
    header.extend(models.iter().map(|(l, _, _)| l.clone()));
    let acc = |label: &str, pick: &dyn Fn(&QuantizeRow) -> Option<f64>| {
        rows.iter()
            .filter(|r| r.model == label)
            .find_map(pick)
            .map_or("-".into(), |a| format!("{:.2}%", 100.0 * a))
    };
    let mut table = vec![std::iter::once("float32".to_string())
        .chain(models.iter().map(|(l, _, _)| acc(l, &|r| Some(r.float_accuracy))))
        .collect()];
    for &b in bits {
        table.push(
            std::iter::once(b.to_string())
                .chain(
                    models
                        .iter()
                        .map(|(l, _, _)| acc(l, &|r| (r.bits == b).then_some(r.accuracy))),
                )
                .collect(),
        );
    }
    print_table(&header, &table);
}
