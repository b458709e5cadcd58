//! `hart bench landscape`: the cost of a loss-landscape grid point against a
//! plain evaluation of the same model on the same images — the floor a grid
//! point cannot go below — and the 51×51 grid time that implies.

use anyhow::Result;
use hart::bench::{time, Comparison};
use hart::compress::{select, Selection};
use hart::data::{self, DataSpec, Split};
use hart::eval::evaluate;
use hart::landscape::{self, GridSpec};
use hart::model::{zoo, Model, ModelInfo};
use tch::Device;

pub fn run(images: usize, steps: usize, batch_size: usize, runs: usize) -> Result<Vec<Comparison>> {
    let mut spec = DataSpec::new("fashion-mnist", Split::Test);
    spec.limit = Some(images);
    let data = data::load(&spec)?;
    tch::manual_seed(0);
    let info = ModelInfo::fashion_mnist("lenet5");
    let model = Model::Graph(zoo::build(&info)?);
    let grid = GridSpec::new(2, "-1:1", steps)?;
    let targets = select(&model, &Selection::default())?;
    let dirs = landscape::random(&targets, 0, 2);
    let n = grid.len();
    let what = format!("lenet5 {steps}x{steps} grid, {} images", data.len());
    let c = Comparison::new(
        &what,
        time("evaluate x points", runs, || {
            for _ in 0..n {
                evaluate(&model, &data, batch_size, Device::Cpu).expect("evaluate");
            }
        }),
        time("landscape grid", runs, || {
            landscape::compute(&model, &targets, &dirs, &grid, &data, batch_size, Device::Cpu, || {})
                .expect("landscape");
        }),
    );
    let per_point = c.candidate.median_s / n as f64;
    // stderr: `--json` keeps stdout for the comparisons alone.
    eprintln!(
        "{:.1} ms per grid point: a 51x51 grid on these {} images takes about {:.0} s",
        1e3 * per_point,
        data.len(),
        per_point * 2601.0
    );
    Ok(vec![c])
}
