//! `hart sweep`: single-bit-flip sweep of a model's float32 tensors.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use hart::data::Split;
use hart::eval::NanPolicy;
use hart::faults::faultlist::Group;
use hart::faults::sbatch::script;
use hart::faults::stats::leveugle_sample_size;
use hart::faults::{
    faultlist, groups, prepare, sweep, BitSet, Defense, EngineKind, Format, SampleSize, Scope, Storage, Summary, Sweep,
    SweepConfig, VerdictMode,
};

use hart::faults::ranger::{DefenseChoice, Report};

use super::common::{self, parse_device, parse_scope, progress_bar, DataArgs, ModelArgs, RangerArgs, ShardArgs};

#[derive(Args, Debug)]
pub struct SweepArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, default_value = "test")]
    pub split: Split,
    /// all, sign, exponent, exponent-msb, mantissa, or positions such as 0,5,23-30 (0 = mantissa LSB, 31 = sign).
    #[arg(long, default_value = "all")]
    pub bits: String,
    /// Only tensors whose full name matches this regular expression.
    #[arg(long)]
    pub params: Option<String>,
    /// all: every float32 tensor (weights, biases, BatchNorm running statistics); params: trainable parameters only; conv: convolution weights (trainable 4-D tensors).
    #[arg(long, default_value = "all", value_parser = parse_scope)]
    pub scope: Scope,
    /// Sweep K randomly chosen elements, or a share of them such as 0.5 (all selected bits of each), and report estimates with confidence intervals.
    #[arg(long, value_name = "K|SHARE")]
    pub sample_params: Option<SampleSize>,
    /// Seed of the --sample-params draw and of the sample order of --verdict sequential.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Evaluate exactly the flips of this CSV `param,index,bit`; an optional `group` column applies rows with the same group together (one row per group in groups.csv).
    #[arg(long, value_name = "FILE.csv")]
    pub faults: Option<PathBuf>,
    /// Also write the sweep's flips as a fault list.
    #[arg(long, value_name = "FILE.csv")]
    pub write_faults: Option<PathBuf>,
    /// A flip is erratic when its RAD exceeds this.
    #[arg(long, default_value_t = 0.1)]
    pub threshold: f64,
    /// How a sample whose logits hold a NaN counts: wrong (HART's rule) or argmax (torch.argmax's: the first NaN's index is the prediction).
    #[arg(long, default_value = "wrong")]
    pub nan_policy: NanPolicy,
    /// Count every sample of every flip (otherwise counting stops once the erratic verdict is settled).
    #[arg(long)]
    pub exact_rad: bool,
    /// Output directory (resumes the sweep found there).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value = "parquet")]
    pub format: Format,
    #[command(flatten)]
    pub sharding: ShardArgs,
    /// auto (fast where the graph allows), generic, or reference (brute force).
    #[arg(long, default_value = "auto")]
    pub engine: EngineKind,
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print the statistical fault-injection sample size (Leveugle et al. 2009) for this error margin, e.g. 0.01.
    #[arg(long)]
    pub margin: Option<f64>,
    /// Confidence of the sampled estimate's interval and of sequential verdicts (default 0.95; 0.999 with --verdict sequential).
    #[arg(long)]
    pub confidence: Option<f64>,
    /// exact: every verdict sure (each flip counted until the open samples cannot change it); sequential: samples in one seeded random order (--seed), each flip stopped once an exact hypergeometric bound settles its verdict at --confidence.
    #[arg(long, default_value = "exact")]
    pub verdict: VerdictMode,
    /// Parallel workers on the CPU (fast and generic engines, TorchScript models included), each with its own copy of the weights and one libtorch thread (default: libtorch's thread count, i.e. the cores or OMP_NUM_THREADS).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// How weights are stored: fp32 (IEEE bits 0-31), or int8 / int4 (the symmetric codes of `hart quantize` for rank ≥ 2 weights, bits 0-7 / 0-3; other tensors stay fp32).
    #[arg(long, default_value = "fp32")]
    pub storage: Storage,
    /// Integer storage: one scale per output channel instead of per tensor.
    #[arg(long)]
    pub per_channel: bool,
    /// none, range (zero weights outside their tensor's clean [min, max]), radar[:G] (RADAR checksums over interleaved groups of G, default 16; the key is fixed by --seed) or ranger (every ReLU/clip/sigmoid/tanh output clamped to its range on --profile-limit training images; zoo and ONNX models).
    #[arg(long, default_value = "none")]
    pub defense: DefenseChoice,
    #[command(flatten)]
    pub ranger: RangerArgs,
}

pub fn run(a: SweepArgs) -> Result<()> {
    let shard = a.sharding.resolve()?;
    if let Some(file) = &a.sharding.emit_sbatch {
        return emit_sbatch(&a, file);
    }
    let _out = common::hold_out(&a.out, shard)?;
    let confidence = a.confidence.unwrap_or(a.verdict.default_confidence());
    let mut cfg = SweepConfig {
        bits: BitSet::parse(&a.bits)?,
        scope: a.scope,
        params: a.params.clone(),
        sample: a.sample_params.map(|k| (k, a.seed)),
        faults: a.faults.clone(),
        threshold: a.threshold,
        exact_rad: a.exact_rad,
        engine: a.engine,
        batch: a.batch_size,
        shard,
        confidence,
        verdict: a.verdict,
        jobs: a.jobs.map(|j| j as usize),
        storage: a.storage,
        per_channel: a.per_channel,
        defense: Defense::None,
        seed: a.seed,
        nan_policy: a.nan_policy,
        ..SweepConfig::new()
    };
    if let Some(m) = a.margin {
        if !(m > 0.0 && m < 1.0) {
            bail!("--margin {m} must be in (0, 1)");
        }
    }
    let device = parse_device(&a.device)?;
    let data = a.data.load(a.split)?;
    let model = a.model.load(&data, device)?;
    let (model, defense) = a.ranger.defend(a.defense, model, &a.data, &a.out, a.batch_size)?;
    cfg.defense = defense;
    let sw = prepare(&model, &data, &cfg)?;
    if let Some(m) = a.margin {
        let n = leveugle_sample_size(sw.space.population(), m, confidence);
        let per_element = sw.space.bits.len() as u64;
        println!(
            "sample size (Leveugle et al. 2009) for ±{:.2}% at {:.0}% confidence: {n} of {} flips (--sample-params {})",
            100.0 * m,
            100.0 * confidence,
            sw.space.population(),
            n.div_ceil(per_element.max(1))
        );
    }
    if let Some(path) = &a.write_faults {
        faultlist::write(path, &sw.space).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(groups) = &sw.groups {
        return run_groups(&sw, groups, &a);
    }
    let owned = sw.owned_flips();
    tracing::info!(flips = owned, units = sw.owned().len(), shard = ?shard, "sweeping");
    let bar = progress_bar(owned, "sweep");
    let started = Instant::now();
    sw.run(&a.out, &mut |n| {
        bar.inc(n);
        let rate = bar.position() as f64 / started.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!("{rate:.0} flips/s"));
    })?;
    bar.finish_and_clear();
    let summary = sweep::finish(&a.out, a.format)?;
    print_summary(&summary);
    println!(
        "{} flips in {:.1}s; table {} and summary.json in {}",
        owned,
        started.elapsed().as_secs_f64(),
        a.format.file_name(),
        a.out.display()
    );
    Ok(())
}

/// A grouped fault list: every group applied together, one exact row per group.
fn run_groups(sw: &Sweep, list: &[Group], a: &SweepArgs) -> Result<()> {
    if a.sharding.shard.is_some() {
        bail!("--shard does not apply to grouped fault lists (they run whole)");
    }
    let bar = progress_bar(list.len() as u64, "groups");
    let started = Instant::now();
    let rows = groups::evaluate(sw, list, &mut |n| bar.inc(n))?;
    bar.finish_and_clear();
    let s = groups::write(&a.out, sw, &rows)?;
    println!(
        "clean accuracy {:.2}% ({}/{}); storage {}, defense {}; {} groups, {} erratic (RAD > {}), {} flips detected",
        100.0 * s.clean_accuracy,
        s.clean_correct,
        s.total,
        s.storage,
        s.defense,
        s.groups,
        s.erratic_groups,
        s.threshold,
        s.detected_flips
    );
    println!(
        "\n{:<24} {:>6} {:>9} {:>8} {:>9} {:>7}",
        "group", "flips", "accuracy", "RAD", "detected", "zeroed"
    );
    for r in &rows {
        println!(
            "{:<24} {:>6} {:>8.2}% {:>8.4} {:>9} {:>7}",
            r.group,
            r.flips,
            100.0 * r.accuracy,
            r.rad,
            r.detected_flips,
            r.zeroed_weights
        );
    }
    println!(
        "{} groups in {:.1}s; groups.csv and summary.json in {}",
        rows.len(),
        started.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(())
}

fn emit_sbatch(a: &SweepArgs, file: &std::path::Path) -> Result<()> {
    let res = a.sharding.resources()?;
    let out = common::emit_sbatch("sweep", &a.out, file, a.sharding.shards, |hart, args, out| {
        script(hart, args, out, a.sharding.shards, &res)
    })?;
    println!(
        "wrote {} ({} array tasks); submit with `sbatch {}`, then `hart merge {}/shard-* --out {}`",
        file.display(),
        a.sharding.shards,
        file.display(),
        out.display(),
        out.display()
    );
    Ok(())
}

pub fn print_summary(s: &Summary) {
    println!(
        "clean accuracy {:.2}% ({}/{}); {} flips, {} erratic bits (RAD > {}), {} of {} parameters erratic; {} rows stopped early",
        100.0 * s.clean_accuracy,
        s.clean_correct,
        s.total,
        s.counts.flips,
        s.counts.erratic_bits,
        s.threshold,
        s.counts.erratic_params,
        s.counts.params,
        s.early_exit_rows
    );
    if let Some(r) = s
        .config
        .get("ranger")
        .and_then(|v| serde_json::from_value::<Report>(v.clone()).ok())
    {
        println!("{}", common::ranger_line(s.clean_accuracy, &r));
    }
    if let Some(q) = &s.sequential {
        println!(
            "sequential verdicts at {}% confidence: {} flips settled from part of their samples (at most {:.2} wrong verdicts expected), {} stopped surely, {} run to the end; {:.1} of {} samples per flip",
            100.0 * q.confidence,
            q.settled_at_confidence,
            q.expected_wrong_at_most,
            q.settled_surely,
            q.run_to_end,
            q.mean_samples,
            s.total
        );
    }
    if let Some(e) = &s.estimate {
        println!(
            "estimate over all {} flips: {:.3}% erratic ({:.3}–{:.3}% at {:.0}% confidence), about {:.0} ({:.0}–{:.0}) erratic bits",
            e.population_flips,
            100.0 * e.erratic_fraction,
            100.0 * e.erratic_fraction_ci.0,
            100.0 * e.erratic_fraction_ci.1,
            100.0 * e.confidence,
            e.erratic_bits_estimate,
            e.erratic_bits_ci.0,
            e.erratic_bits_ci.1
        );
    }
    println!(
        "\n{:<32} {:>10} {:>10} {:>8} {:>10}",
        "layer", "flips", "erratic", "params", "erratic"
    );
    for l in &s.per_layer {
        println!(
            "{:<32} {:>10} {:>10} {:>8} {:>10}",
            l.layer, l.counts.flips, l.counts.erratic_bits, l.counts.params, l.counts.erratic_params
        );
    }
    println!("\n{:>4} {:<9} {:>10} {:>10}", "bit", "field", "flips", "erratic");
    for b in &s.per_bit {
        println!("{:>4} {:<9} {:>10} {:>10}", b.bit, b.field, b.flips, b.erratic_bits);
    }
    println!("\nRAD histogram (5% bins): negative {}", s.rad_histogram.negative);
    for (k, c) in s.rad_histogram.counts.iter().enumerate().filter(|(_, c)| **c > 0) {
        println!(
            "  [{:>3}%, {:>3}%{} {c}",
            5 * k,
            5 * (k + 1),
            if k == 19 { "]" } else { ")" }
        );
    }
}
