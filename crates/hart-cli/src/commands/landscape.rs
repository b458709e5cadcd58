//! `hart landscape`: loss and accuracy of each model along one or two
//! filter-normalised random directions, as CSV grids and plots.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use hart::compress::{select, Selection};
use hart::data::{Dataset, Split};
use hart::landscape::{self, csv::write_csv, GridSpec, Point};
use hart::plot::{self, ContourPlot, Figure, LinePlot, Panels, Series, SeriesLabelPosition, SurfacePlot};

use serde::Serialize;

use super::common::{parse_device, progress_bar, write_json, DataArgs};
use super::quantize::ModelsArgs;

#[derive(Args, Debug)]
pub struct LandscapeArgs {
    #[command(flatten)]
    pub models: ModelsArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, default_value = "test")]
    pub split: Split,
    /// 1: a line along one direction; 2: a grid over two.
    #[arg(long, default_value_t = 1)]
    pub dims: usize,
    /// Step range along each direction, MIN:MAX in filter-norm units.
    #[arg(long, default_value = "-1:1", allow_hyphen_values = true)]
    pub range: String,
    /// Points per axis (odd, with a symmetric range, puts one on the trained weights).
    #[arg(long, default_value_t = 51)]
    pub steps: usize,
    /// Move only this layer's tensors (graph node name, e.g. conv1 or layer1.0.conv2).
    #[arg(long)]
    pub layer: Option<String>,
    /// Seed of the random directions; the same seed gives the same directions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Give biases and normalisation parameters a direction too (Li et al.: the weight itself).
    #[arg(long)]
    pub include_bias_bn: bool,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Folder for the CSV grids, the plots and landscape.json.
    #[arg(long, default_value = "hart-landscape")]
    pub out: PathBuf,
    /// Plot format: png or svg.
    #[arg(long, default_value = "png", value_parser = ["png", "svg"])]
    pub format: String,
}

#[derive(Serialize)]
struct ModelSummary {
    label: String,
    path: PathBuf,
    csv: PathBuf,
    tensors: usize,
    clean_loss: f64,
    clean_accuracy: f64,
    min_loss: f64,
    seconds: f64,
}

#[derive(Serialize)]
struct Summary<'a> {
    grid: GridSpec,
    seed: u64,
    layer: Option<&'a str>,
    include_bias_bn: bool,
    dataset: &'a str,
    split: String,
    images: usize,
    models: Vec<ModelSummary>,
    plots: Vec<PathBuf>,
}

pub fn run(a: LandscapeArgs) -> Result<()> {
    let grid = GridSpec::new(a.dims, &a.range, a.steps)?;
    let device = parse_device(&a.device)?;
    let data = a.data.load(a.split)?;
    let models = a.models.load_all(&data, device)?;
    let sel = Selection {
        include_bias_bn: a.include_bias_bn,
        layer: a.layer.clone(),
    };
    let bar = progress_bar((models.len() * grid.len()) as u64, "landscape");
    let mut summaries = Vec::new();
    let mut grids = Vec::new();
    for ((label, model), path) in models.iter().zip(&a.models.models) {
        let targets = select(model, &sel).with_context(|| label.clone())?;
        let dirs = landscape::random(&targets, a.seed, grid.dims);
        let clean = hart::eval::evaluate(model, &data, a.batch_size, device)?;
        let start = Instant::now();
        let points = landscape::compute(model, &targets, &dirs, &grid, &data, a.batch_size, device, || {
            bar.inc(1)
        })?;
        let seconds = start.elapsed().as_secs_f64();
        tracing::info!(model = %label, seconds, points = points.len(), "landscape done");
        let csv = a.out.join(format!("{label}.csv"));
        write_csv(&csv, &points)?;
        summaries.push(ModelSummary {
            label: label.clone(),
            path: path.clone(),
            csv,
            tensors: targets.len(),
            clean_loss: clean.loss,
            clean_accuracy: clean.accuracy,
            min_loss: points.iter().map(|p| p.loss).fold(f64::INFINITY, f64::min),
            seconds,
        });
        grids.push((label.clone(), points));
    }
    bar.finish_and_clear();
    let what = Caption {
        data: &data,
        split: a.split,
        seed: a.seed,
        layer: a.layer.as_deref(),
    };
    let plots = if grid.dims == 1 {
        vec![plot_1d(&a.out, &a.format, &grids, &what)?]
    } else {
        let mut v = Vec::new();
        for (label, points) in &grids {
            v.extend(plot_2d(&a.out, &a.format, label, &grid, points, &what)?);
        }
        v
    };
    for s in &summaries {
        println!(
            "{}: clean loss {:.4} (accuracy {:.2}%), lowest loss on the grid {:.4}; {} points in {:.1} s -> {}",
            s.label,
            s.clean_loss,
            100.0 * s.clean_accuracy,
            s.min_loss,
            grid.len(),
            s.seconds,
            s.csv.display()
        );
    }
    for p in &plots {
        println!("plot: {}", p.display());
    }
    let summary = Summary {
        grid,
        seed: a.seed,
        layer: a.layer.as_deref(),
        include_bias_bn: a.include_bias_bn,
        dataset: &data.name,
        split: a.split.to_string(),
        images: data.len(),
        models: summaries,
        plots,
    };
    write_json(&a.out.join("landscape.json"), &summary)
}

/// What every plot title states, so a figure read on its own says what it shows.
struct Caption<'a> {
    data: &'a Dataset,
    split: Split,
    seed: u64,
    layer: Option<&'a str>,
}

impl Caption<'_> {
    /// Data and moved tensors, e.g. "fashion-mnist test, 1000 images, all layers".
    fn scope(&self) -> String {
        let layers = self.layer.map_or("all layers".to_string(), |l| format!("layer {l}"));
        format!(
            "{} {}, {} images, {layers}",
            self.data.name,
            self.split,
            self.data.len()
        )
    }

    fn subtitle(&self) -> String {
        format!("{}, seed {}", self.scope(), self.seed)
    }
}

const LOSS: &str = "loss (mean cross-entropy, nats)";
const ALPHA: &str = "α (steps along direction 1, filter-norm units)";
const BETA: &str = "β (steps along direction 2, filter-norm units)";

fn plot_1d(out: &Path, format: &str, grids: &[(String, Vec<Point>)], what: &Caption) -> Result<PathBuf> {
    let series = |f: &dyn Fn(&Point) -> f64| -> Vec<Series> {
        grids
            .iter()
            .map(|(label, pts)| Series::new(label.clone(), pts.iter().map(|p| (p.x, f(p))).collect()))
            .collect()
    };
    // Two panels so each title stays short enough to read: what moved, then on what data.
    let loss = LinePlot::new(
        Figure::new(
            format!("Loss along a random filter-normalised direction (seed {})", what.seed),
            ALPHA,
            LOSS,
        ),
        series(&|p| p.loss),
    )
    // Loss is lowest at the centre, accuracy highest: those middles are free.
    .legend_at(SeriesLabelPosition::UpperMiddle);
    let acc = LinePlot::new(
        Figure::new(format!("Accuracy along it ({})", what.scope()), ALPHA, "accuracy (%)"),
        series(&|p| 100.0 * p.accuracy),
    )
    .legend_at(SeriesLabelPosition::LowerMiddle);
    let path = out.join(format!("landscape-1d.{format}"));
    plot::save(&Panels::stacked(vec![loss, acc]), &path)?;
    Ok(path)
}

fn plot_2d(
    out: &Path,
    format: &str,
    label: &str,
    grid: &GridSpec,
    points: &[Point],
    what: &Caption,
) -> Result<Vec<PathBuf>> {
    let axis = grid.axis();
    let z: Vec<f64> = points.iter().map(|p| p.loss).collect();
    let contour = ContourPlot {
        figure: Figure::new(format!("Loss contours of {label} ({})", what.subtitle()), ALPHA, BETA),
        x: axis.clone(),
        y: axis.clone(),
        z: z.clone(),
        z_label: LOSS.into(),
        levels: 12,
        marker: Some(((0.0, 0.0), format!("{label} (trained weights)"))),
    };
    let surface = SurfacePlot {
        figure: Figure::new(
            format!("Loss surface of {label} ({})", what.subtitle()),
            "α (filter-norm units)",
            "β (filter-norm units)",
        ),
        x: axis.clone(),
        y: axis,
        z,
        z_label: "loss (nats)".into(),
    };
    let c = out.join(format!("{label}-contour.{format}"));
    let s = out.join(format!("{label}-surface.{format}"));
    plot::save(&contour, &c)?;
    plot::save(&surface, &s)?;
    Ok(vec![c, s])
}
