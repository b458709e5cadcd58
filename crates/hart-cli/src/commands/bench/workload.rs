//! The workloads the sweep benches share: Fashion-MNIST models trained
//! briefly, the residual CNN on random images, fault lists of whole
//! elements, and the engine and the reference loop timed on them.

use std::io::Write;
use std::time::Instant;

use anyhow::{ensure, Result};
use hart::bench::{median, Timing};
use hart::data::{DataSpec, Dataset, Split};
use hart::faults::{prepare, record::Row, EngineKind, SweepConfig};
use hart::model::{zoo, Model, ModelInfo};
use hart::train::{train, OptimizerConfig, OptimizerKind, TrainConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub(super) fn fashion(split: Split, n: usize) -> Result<Dataset> {
    let mut spec = DataSpec::new("fashion-mnist", split);
    spec.limit = Some(n);
    Ok(hart::data::load(&spec)?)
}

pub(super) fn trained(arch: &str) -> Result<(Model, Dataset)> {
    tch::manual_seed(0);
    let data = fashion(Split::Train, 10_000)?;
    let model = Model::Graph(zoo::build(&ModelInfo::for_data(arch, &data))?);
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 64,
        optimizer: OptimizerConfig {
            kind: OptimizerKind::Sgd,
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 0.0,
        },
        seed: 0,
        device: tch::Device::Cpu,
        clip_grad_norm: None,
    };
    train(&model, &data, &cfg, &indicatif::ProgressBar::hidden())?;
    Ok((model, fashion(Split::Test, 10_000)?))
}

/// The first `n` (at most 2000) of a fixed draw of random 32×32 RGB images,
/// labelled by the model itself (CIFAR is not shipped); the same images and
/// labels whatever `n` (eval-mode predictions do not depend on the batch).
pub(super) fn residual_cnn(n: usize) -> Result<(Model, Dataset)> {
    tch::manual_seed(0);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (n, c, s) = (n.clamp(1, 2000), 3, 32);
    let mut data = Dataset {
        name: "cifar10".into(),
        images: (0..n * c * s * s).map(|_| rng.random()).collect(),
        channels: c,
        height: s,
        width: s,
        labels: vec![0; n],
        num_classes: 10,
        class_names: (0..10).map(|i| i.to_string()).collect(),
        source: "synthetic".into(),
    };
    let model = Model::Graph(zoo::build(&ModelInfo::for_data("resnet18-cifar", &data))?);
    let clean = hart::faults::clean::clean_pass(&model, &data, 500, tch::Device::Cpu, 0)?;
    data.labels = Vec::<i64>::try_from(clean.logits.argmax(1, false))?;
    Ok((model, data))
}

/// All 32 bits of `elements` random elements (an exhaustive sweep's mix).
pub(super) fn flips(model: &Model, elements: usize, path: &std::path::Path) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let tensors: Vec<(String, i64)> = model
        .named_tensors()
        .into_iter()
        .filter(|(_, t, _)| t.kind() == tch::Kind::Float)
        .map(|(n, t, _)| (n, t.numel() as i64))
        .collect();
    let total: i64 = tensors.iter().map(|t| t.1).sum();
    let mut picks: Vec<i64> = (0..elements).map(|_| rng.random_range(0..total)).collect();
    picks.sort_unstable();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(f, "param,index,bit")?;
    for p in picks {
        let (mut t, mut i) = (0, p);
        while i >= tensors[t].1 {
            i -= tensors[t].1;
            t += 1;
        }
        for bit in 0..32 {
            writeln!(f, "{},{i},{bit}", tensors[t].0)?;
        }
    }
    Ok(())
}

/// The sweep's rows and the seconds of each of `runs` timed runs (sorted).
pub(super) fn sweep_rows(
    model: &Model,
    data: &Dataset,
    faults: &std::path::Path,
    engine: EngineKind,
    runs: usize,
    jobs: Option<usize>,
) -> Result<(Vec<Row>, Vec<f64>)> {
    let cfg = SweepConfig {
        engine,
        jobs,
        batch: 500,
        ..SweepConfig::new()
    };
    configured_rows(model, data, faults, cfg, runs)
}

/// [`sweep_rows`] with any configuration (its fault list set here).
pub(super) fn configured_rows(
    model: &Model,
    data: &Dataset,
    faults: &std::path::Path,
    cfg: SweepConfig,
    runs: usize,
) -> Result<(Vec<Row>, Vec<f64>)> {
    let cfg = SweepConfig {
        faults: Some(faults.to_path_buf()),
        ..cfg
    };
    let sw = prepare(model, data, &cfg)?;
    let mut rows = vec![];
    let mut seconds = vec![];
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        rows = sw.collect()?;
        seconds.push(t.elapsed().as_secs_f64());
    }
    seconds.sort_by(f64::total_cmp);
    Ok((rows, seconds))
}

pub(super) fn per_flip(name: &str, seconds: &[f64], flips: usize) -> Timing {
    let per = |s: f64| s / flips.max(1) as f64;
    Timing {
        name: name.into(),
        median_s: per(median(seconds)),
        min_s: per(seconds[0]),
        max_s: per(seconds[seconds.len() - 1]),
        runs: seconds.len(),
    }
}

/// The reference on `count` random flips of the engine's `fast` rows (in
/// `dir`), whose verdicts (and exact counts) must agree; its rows and seconds.
pub(super) fn reference_on(
    what: &str,
    model: &Model,
    data: &Dataset,
    dir: &std::path::Path,
    fast: &[Row],
    count: usize,
) -> Result<(Vec<Row>, Vec<f64>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut chosen: Vec<usize> = (0..count).map(|_| rng.random_range(0..fast.len())).collect();
    chosen.sort_unstable();
    chosen.dedup();
    let sub = dir.join("sub.csv");
    write_list(&sub, chosen.iter().map(|&i| &fast[i]))?;
    let (reference, ref_s) = sweep_rows(model, data, &sub, EngineKind::Reference, 1, None)?;
    for (r, &i) in reference.iter().zip(&chosen) {
        let f = &fast[i];
        ensure!(
            (f.rad > 0.1) == (r.rad > 0.1) && (!f.exact || f.correct == r.correct),
            "{what}: engine and reference disagree on {}[{}] bit {}",
            r.param,
            r.index,
            r.bit
        );
    }
    Ok((reference, ref_s))
}

/// `f` on one libtorch thread (the previous count restored after).
pub(super) fn one_thread<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    let threads = tch::get_num_threads();
    tch::set_num_threads(1);
    let out = f();
    tch::set_num_threads(threads);
    out
}

/// All 32 bits of `k` random elements of every conv/linear weight tensor
/// swept under `cfg` by one engine (one worker), in the sweep's unit order;
/// the rows and the seconds per flip, each tensor's per-flip time weighted
/// by its size (what an exhaustive sweep of the model would cost per flip).
pub(super) fn by_strata(
    model: &Model,
    data: &Dataset,
    k: usize,
    cfg: SweepConfig,
    dir: &std::path::Path,
) -> Result<(Vec<Row>, f64)> {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut size = std::collections::HashMap::new();
    let mut body = vec![];
    for (name, t, _) in model.named_tensors() {
        if t.kind() != tch::Kind::Float || t.dim() < 2 {
            continue;
        }
        let numel = t.numel() as i64;
        let mut picks: Vec<i64> = (0..k).map(|_| rng.random_range(0..numel)).collect();
        picks.sort_unstable();
        picks.dedup();
        body.extend(
            picks
                .iter()
                .flat_map(|i| (0..32).map(move |bit| (*i, bit)))
                .map(|(i, bit)| format!("{name},{i},{bit}")),
        );
        size.insert(name, numel as f64);
    }
    let list = dir.join("strata.csv");
    std::fs::write(&list, format!("param,index,bit\n{}\n", body.join("\n")))?;
    let cfg = SweepConfig {
        faults: Some(list),
        jobs: Some(1),
        batch: 500,
        ..cfg
    };
    let sw = prepare(model, data, &cfg)?;
    let mut engine = sw.engine();
    // Per tensor: seconds and flips.
    let mut spent: std::collections::HashMap<String, (f64, usize)> = Default::default();
    let mut rows = vec![];
    for unit in sw.owned() {
        let t = Instant::now();
        let got = sw.rows(engine.as_mut(), &unit)?;
        let seconds = t.elapsed().as_secs_f64();
        if let Some(first) = got.first() {
            tracing::info!(tensor = %first.param, flips = got.len(), seconds, "stratum timed");
            let e = spent.entry(first.param.clone()).or_default();
            e.0 += seconds;
            e.1 += got.len();
        }
        rows.extend(got);
    }
    let (mut weighted, mut total) = (0f64, 0f64);
    for (name, (seconds, flips)) in &spent {
        let numel = size.get(name).copied().unwrap_or(0.0);
        weighted += numel * seconds / (*flips).max(1) as f64;
        total += numel;
    }
    Ok((rows, weighted / total.max(1.0)))
}

/// The flips of `rows` as a fault list.
pub(super) fn write_list<'r>(path: &std::path::Path, rows: impl Iterator<Item = &'r Row>) -> Result<()> {
    let body: Vec<String> = rows.map(|r| format!("{},{},{}", r.param, r.index, r.bit)).collect();
    std::fs::write(path, format!("param,index,bit\n{}\n", body.join("\n")))?;
    Ok(())
}

pub(super) fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("hart-bench-sweep-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
