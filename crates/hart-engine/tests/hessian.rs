//! Hessian analysis against references it does not share code with: the
//! exact Hessian of tiny models assembled row by row by full double
//! back-propagation (one backward per gradient entry, on the whole slice at
//! once), and a quadratic whose spectrum is known in closed form.

mod common;

use common::seeded;
use hart::data::Dataset;
use hart::hessian::gauss_newton::gauss_newton_trace;
use hart::hessian::lanczos::top_eigenvalues;
use hart::hessian::{
    analyze, data_hessian, density::spectral_density, hutchinson, hutchpp, AnalysisConfig, HvpOperator, LayerSelection,
    LossHessian, ParamSet, TraceMethod, TraceOptions,
};
use hart::model::builder::GraphBuilder;
use hart::model::{load, GraphModel, LoadOptions, Mode, Model, ModelInfo, Op, ParamKind};
use indicatif::ProgressBar;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

const CLASSES: usize = 3;

/// Tiny tensors: one intra-op thread avoids spinning threads on a shared 2-core machine.
fn single_thread() {
    tch::set_num_threads(1);
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Random 1×4×4 images in 3 classes.
fn tiny_data(n: usize, seed: i64) -> Dataset {
    let (images, labels) = seeded(seed, || {
        let images = Tensor::randint(256, [n as i64 * 16], (Kind::Uint8, Device::Cpu));
        let labels = Tensor::randint(CLASSES as i64, [n as i64], (Kind::Int64, Device::Cpu));
        (
            Vec::<u8>::try_from(&images).unwrap(),
            Vec::<i64>::try_from(&labels).unwrap(),
        )
    });
    Dataset {
        name: "tiny".into(),
        images: images.into(),
        channels: 1,
        height: 4,
        width: 4,
        labels,
        num_classes: CLASSES,
        class_names: (0..CLASSES).map(|c| c.to_string()).collect(),
        source: "synthetic".into(),
    }
}

/// conv 3×3 (2 maps) → BatchNorm with non-trivial running statistics → tanh
/// → linear to 3 classes: 123 trainable scalars, smooth, and wrong in
/// training mode, so a Hessian taken with batch statistics would show.
fn tiny_model() -> Model {
    tiny_model_with(Op::Tanh)
}

/// [`tiny_model`] with another activation (ReLU makes it linear in each single weight).
fn tiny_model_with(activation: Op) -> Model {
    let (graph, mut params) = seeded(7, || {
        let mut b = GraphBuilder::new();
        let x = b
            .conv(
                "conv",
                GraphBuilder::INPUT,
                1,
                2,
                3,
                1,
                1,
                true,
                hart::model::builder::Init::Default,
            )
            .unwrap();
        let x = b.batch_norm("bn", x, 2).unwrap();
        let x = b.op("", activation, &[x]);
        let x = b.op("", Op::Flatten { axis: 1 }, &[x]);
        let out = b
            .linear("fc", x, 32, CLASSES as i64, hart::model::builder::Init::Default)
            .unwrap();
        b.finish(out)
    });
    params
        .assign("bn.running_mean", &Tensor::from_slice(&[0.3f32, -0.2]))
        .unwrap();
    params
        .assign("bn.running_var", &Tensor::from_slice(&[0.5f32, 2.0]))
        .unwrap();
    params.assign("bn.weight", &Tensor::from_slice(&[1.5f32, 0.7])).unwrap();
    let info = ModelInfo {
        arch: "tiny".into(),
        num_classes: CLASSES as i64,
        in_channels: 1,
        input_size: 4,
        normalize: None,
        dataset: None,
    };
    Model::Graph(GraphModel { graph, params, info })
}

/// The exact Hessian of the mean cross-entropy over all of `data`, in eval
/// mode, one double-backward row per parameter scalar.
fn exact_hessian(model: &Model, data: &Dataset) -> Tensor {
    let params: Vec<Tensor> = model.trainable().into_iter().map(|(_, t)| t).collect();
    let (x, y) = data.batch_range(0, data.len());
    let loss = model.forward(&x, Mode::Eval).unwrap().cross_entropy_for_logits(&y);
    let grads = Tensor::run_backward(&[&loss], &params, true, true);
    let g = Tensor::cat(&grads.iter().map(|g| g.reshape([-1])).collect::<Vec<_>>(), 0);
    let dim = g.size()[0];
    let rows: Vec<Tensor> = (0..dim)
        .map(|i| {
            let row = Tensor::run_backward(&[&g.get(i)], &params, true, false);
            Tensor::cat(&row.iter().map(|r| r.reshape([-1])).collect::<Vec<_>>(), 0)
        })
        .collect();
    let h = Tensor::stack(&rows, 0).to_kind(Kind::Double);
    (&h + h.tr()) * 0.5
}

/// The exact Gauss–Newton trace of the mean cross-entropy over `data`:
/// (1/N) Σᵢ Σ_y p(y|xᵢ)·‖∇ log p(y|xᵢ)‖², one backward per (sample, class).
fn exact_gauss_newton_trace(model: &Model, data: &Dataset) -> f64 {
    let params: Vec<Tensor> = model.trainable().into_iter().map(|(_, t)| t).collect();
    let (x, _) = data.batch_range(0, data.len());
    let logp = model.forward(&x, Mode::Eval).unwrap().log_softmax(-1, Kind::Double);
    let p = Vec::<f64>::try_from(&logp.exp().reshape([-1])).unwrap();
    let mut total = 0.0;
    for i in 0..data.len() as i64 {
        for c in 0..CLASSES as i64 {
            let g = Tensor::run_backward(&[&logp.get(i).get(c)], &params, true, false);
            let sq: f64 = g.iter().map(|g| g.square().sum(Kind::Double).double_value(&[])).sum();
            total += p[(i * CLASSES as i64 + c) as usize] * sq;
        }
    }
    total / data.len() as f64
}

fn rel_err(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

fn exact_eigenvalues_desc(h: &Tensor) -> Vec<f64> {
    let (e, _) = h.linalg_eigh("L");
    let mut v = Vec::<f64>::try_from(&e).unwrap();
    v.reverse();
    v
}

#[test]
fn hvps_summed_over_batches_equal_the_exact_hessian() {
    single_thread();
    let (model, data) = (tiny_model(), tiny_data(30, 1));
    let h = exact_hessian(&model, &data);
    let params = ParamSet::select(&model, &LayerSelection::All).unwrap();
    assert_eq!(params.dim(), h.size()[0]);
    // 7 does not divide 30: the last, short batch must be weighted by its size.
    let mut op = data_hessian(&model, &data, &params, 7, Device::Cpu).unwrap();
    let v = seeded(11, || Tensor::randn([3, params.dim()], (Kind::Float, Device::Cpu)));
    let hv = op.apply(&v).unwrap().to_kind(Kind::Double);
    let expected = v.to_kind(Kind::Double).matmul(&h);
    let err = (&hv - &expected).norm().double_value(&[]) / expected.norm().double_value(&[]);
    assert!(err < 1e-4, "H·v differs from the exact Hessian by {err:.2e} (relative)");
    assert_eq!(op.hvps(), 3);
}

#[test]
fn trace_top_eigenvalues_and_per_layer_traces_match_the_exact_hessian() {
    single_thread();
    let (model, data) = (tiny_model(), tiny_data(40, 2));
    let h = exact_hessian(&model, &data);
    let exact_trace = h.trace().double_value(&[]);
    let exact_eigs = exact_eigenvalues_desc(&h);
    let params = ParamSet::select(&model, &LayerSelection::All).unwrap();
    let diag = Vec::<f64>::try_from(&h.diagonal(0, 0, 1)).unwrap();
    let exact_per: Vec<f64> = (0..params.len())
        .map(|i| {
            let (s, n) = params.range(i);
            diag[s as usize..(s + n) as usize].iter().sum()
        })
        .collect();
    for method in [TraceMethod::Hutchinson, TraceMethod::HutchPlusPlus] {
        let mut op = data_hessian(&model, &data, &params, 16, Device::Cpu).unwrap();
        let cfg = AnalysisConfig {
            method,
            trace: TraceOptions {
                rel_stderr: 0.03,
                max_probes: 20_000,
                ..Default::default()
            },
            top_k: 3,
            eig_tol: 1e-5,
            seed: 3,
            ..Default::default()
        };
        let r = analyze(&mut op, &params, &cfg, &ProgressBar::hidden()).unwrap();
        assert!(
            r.converged,
            "{method:?} did not reach 3%: {} ± {} after {}",
            r.trace, r.trace_stderr, r.probes
        );
        assert!(r.trace_stderr <= 0.03 * r.trace.abs());
        let z = (r.trace - exact_trace).abs() / r.trace_stderr;
        assert!(
            z < 4.0,
            "{method:?}: trace {} vs exact {exact_trace} is {z:.1} stderr off",
            r.trace
        );
        for (i, ((name, t), (_, se))) in r.per_layer.0.iter().zip(&r.per_layer_stderr.0).enumerate() {
            assert_eq!(name, &params.names[i]);
            let off = (t - exact_per[i]).abs();
            assert!(
                off <= 4.0 * se + 1e-6 * exact_trace.abs(),
                "{method:?} {name}: {t} vs exact {} (stderr {se})",
                exact_per[i]
            );
        }
        let per_sum: f64 = r.per_layer.0.iter().map(|(_, t)| t).sum();
        let sum_err = rel_err(per_sum, r.trace);
        assert!(
            sum_err < 1e-5,
            "{method:?}: per-layer traces add up to {per_sum}, not {}",
            r.trace
        );
        for (k, (got, want)) in r.top_eigenvalues.iter().zip(&exact_eigs).enumerate() {
            assert!(rel_err(*got, *want) < 1e-3, "λ{}: Lanczos {got} vs exact {want}", k + 1);
        }
    }
}

#[test]
fn hessian_is_taken_over_the_selected_layers_only() {
    single_thread();
    let (model, data) = (tiny_model(), tiny_data(20, 3));
    let h = exact_hessian(&model, &data);
    let params = ParamSet::select(&model, &"last:1".parse().unwrap()).unwrap();
    assert_eq!(params.names, ["fc.weight", "fc.bias"]);
    let all = ParamSet::select(&model, &LayerSelection::All).unwrap();
    let start = all.range(all.names.iter().position(|n| n == "fc.weight").unwrap()).0;
    let block = h.narrow(0, start, params.dim()).narrow(1, start, params.dim());
    let mut op = data_hessian(&model, &data, &params, 8, Device::Cpu).unwrap();
    let v = seeded(12, || Tensor::randn([2, params.dim()], (Kind::Float, Device::Cpu)));
    let hv = op.apply(&v).unwrap().to_kind(Kind::Double);
    let expected = v.to_kind(Kind::Double).matmul(&block);
    let err = (&hv - &expected).norm().double_value(&[]) / expected.norm().double_value(&[]);
    assert!(err < 1e-4, "block HVP off by {err:.2e}");
    let regex = ParamSet::select(&model, &"^conv\\.".parse().unwrap()).unwrap();
    assert_eq!(regex.names, ["conv.weight", "conv.bias"]);
    let none = ParamSet::select(&model, &"^nothing$".parse().unwrap());
    assert!(none.err().unwrap().to_string().contains("^nothing$"));
}

#[test]
fn spectral_density_is_a_probability_within_the_spectrum() {
    single_thread();
    let (model, data) = (tiny_model(), tiny_data(30, 4));
    let h = exact_hessian(&model, &data);
    let eigs = exact_eigenvalues_desc(&h);
    let (top, bottom) = (eigs[0], eigs[eigs.len() - 1]);
    let params = ParamSet::select(&model, &LayerSelection::All).unwrap();
    let mut op = data_hessian(&model, &data, &params, 30, Device::Cpu).unwrap();
    let d = spectral_density(&mut op, 3, 40, Kind::Float, &mut rng(5)).unwrap();
    assert_eq!(d.hvps, 3 * 40);
    let dx = d.grid[1] - d.grid[0];
    let mass: f64 = d.density.iter().sum::<f64>() * dx;
    assert!((mass - 1.0).abs() < 0.01, "density integrates to {mass}");
    let span = top - bottom;
    for (nodes, weights) in d.nodes.iter().zip(&d.weights) {
        assert!(
            (weights.iter().sum::<f64>() - 1.0).abs() < 1e-6,
            "quadrature weights sum to 1"
        );
        // Ritz values lie inside the spectrum; 40 steps resolve its top end.
        assert!(nodes
            .iter()
            .all(|&t| t >= bottom - 1e-4 * span && t <= top + 1e-4 * span));
        let largest = nodes.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        assert!(rel_err(largest, top) < 1e-3, "largest node {largest} vs λmax {top}");
    }
    let dir = tempfile::tempdir().unwrap();
    for ext in ["png", "svg"] {
        let path = dir.path().join(format!("density.{ext}"));
        d.plot(&path, "tiny model").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 1000, "{ext} plot is {} bytes", bytes.len());
    }
}

/// f(w) = ½ wᵀAw with A = U diag(d) Uᵀ: the Hessian is A, whatever w is.
struct Quadratic {
    w: Tensor,
    a: Tensor,
    eigenvalues: Vec<f64>,
}

impl Quadratic {
    /// A few dominant eigenvalues over a bulk near 1: where Hutch++ shines.
    fn new(seed: i64) -> Self {
        let mut d = vec![1000.0, 500.0, 300.0, 200.0, 100.0, 50.0, 30.0, 20.0];
        d.extend((0..192).map(|i| 0.5 + i as f64 / 191.0));
        let n = d.len() as i64;
        let (g, w) = seeded(seed, || {
            (
                Tensor::randn([n, n], (Kind::Double, Device::Cpu)),
                Tensor::randn([n], (Kind::Float, Device::Cpu)),
            )
        });
        let (u, _) = Tensor::linalg_qr(&g, "reduced");
        let a = u
            .matmul(&Tensor::from_slice(&d).diag(0))
            .matmul(&u.tr())
            .to_kind(Kind::Float);
        let w = w.set_requires_grad(true);
        Quadratic { w, a, eigenvalues: d }
    }

    fn params(&self) -> ParamSet {
        ParamSet::from_tensors(vec!["w".into()], vec![self.w.shallow_clone()])
    }

    fn operator<'a>(&'a self, params: &'a ParamSet) -> LossHessian<'a> {
        LossHessian::new(params, 1, move |_| Ok((self.w.dot(&self.a.mv(&self.w)) * 0.5, 1.0)))
    }

    fn trace(&self) -> f64 {
        self.eigenvalues.iter().sum()
    }
}

#[test]
fn quadratic_trace_and_eigenvalues_match_the_closed_form() {
    single_thread();
    let q = Quadratic::new(11);
    let params = q.params();
    let opts = TraceOptions {
        rel_stderr: 0.02,
        max_probes: 20_000,
        ..Default::default()
    };
    let mut op = q.operator(&params);
    let plain = hutchinson(&mut op, &params, &opts, &mut rng(1), |_, _| {}).unwrap();
    let mut op = q.operator(&params);
    let pp = hutchpp(&mut op, &params, &opts, 10, &mut rng(1), |_, _| {}).unwrap();
    for (name, e) in [("hutchinson", &plain), ("hutch++", &pp)] {
        assert!(e.converged, "{name} did not converge");
        let z = (e.trace - q.trace()).abs() / e.stderr;
        assert!(
            z < 4.0,
            "{name}: {} vs closed form {} ({z:.1} stderr)",
            e.trace,
            q.trace()
        );
    }
    // The sketch captures the 8 dominant directions exactly, leaving little variance.
    assert!(
        pp.hvps * 10 < plain.hvps,
        "Hutch++ should need far fewer HVPs here: {} vs Hutchinson {}",
        pp.hvps,
        plain.hvps
    );
    let mut op = q.operator(&params);
    let top = top_eigenvalues(&mut op, 4, 200, 1e-8, Kind::Float, &mut rng(2)).unwrap();
    for (got, want) in top.values.iter().zip(&q.eigenvalues) {
        assert!(rel_err(*got, *want) < 1e-4, "eigenvalue {got} vs closed form {want}");
    }
}

/// An explicit symmetric matrix as an operator: cheap enough to rerun an estimator hundreds of times.
struct Matrix {
    a: Tensor,
    hvps: usize,
}

impl HvpOperator for Matrix {
    fn dim(&self) -> i64 {
        self.a.size()[0]
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn apply(&mut self, v: &Tensor) -> hart::Result<Tensor> {
        self.hvps += v.size()[0] as usize;
        Ok(v.matmul(&self.a))
    }
    fn hvps(&self) -> usize {
        self.hvps
    }
}

#[test]
fn stopping_rule_honours_its_error_target_over_seeds() {
    single_thread();
    let q = Quadratic::new(5);
    let params = q.params();
    let target = 0.05;
    let opts = TraceOptions {
        rel_stderr: target,
        max_probes: 100_000,
        ..Default::default()
    };
    let runs = 200;
    let mut within = 0;
    let mut hvps = Vec::new();
    for seed in 0..runs {
        let mut op = Matrix {
            a: q.a.shallow_clone(),
            hvps: 0,
        };
        let e = hutchinson(&mut op, &params, &opts, &mut rng(1000 + seed), |_, _| {}).unwrap();
        assert!(e.converged && e.stderr <= target * e.trace.abs());
        // A standard error of 5% means |error| ≤ 2·5% about 95% of the time.
        if rel_err(e.trace, q.trace()) <= 2.0 * target {
            within += 1;
        }
        hvps.push(e.hvps);
    }
    let share = within as f64 / runs as f64;
    assert!(
        share >= 0.9,
        "only {:.0}% of runs within 2× the stderr target",
        100.0 * share
    );
    // The rule adapts: the number of probes varies with the draws.
    assert!(hvps.iter().min() < hvps.iter().max());
}

#[test]
fn torchscript_models_get_the_same_exact_hessian() {
    single_thread();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.pt");
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    let script = r#"
import sys, torch
from torch import nn
torch.manual_seed(0)
class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(32, 3)
    def forward(self, x):
        return self.fc(torch.tanh(self.bn(self.conv(x))).flatten(1))
m = Tiny()
with torch.no_grad():
    m.bn.running_mean.copy_(torch.tensor([0.3, -0.2]))
    m.bn.running_var.copy_(torch.tensor([0.5, 2.0]))
torch.jit.save(torch.jit.script(m.eval()), sys.argv[1])
"#;
    // A file, not `-c`: torch.jit.script reads the module's source.
    let script_path = dir.path().join("export.py");
    std::fs::write(&script_path, script).unwrap();
    let out = std::process::Command::new(&python)
        .arg(&script_path)
        .arg(&path)
        .output()
        .expect("venv python runs");
    assert!(
        out.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let model = load(&path, &LoadOptions::default()).unwrap();
    assert!(matches!(model, Model::Script(_)));
    assert!(model.named_tensors().iter().all(|(_, _, k)| *k == ParamKind::Trainable));
    let data = tiny_data(25, 6);
    let h = exact_hessian(&model, &data);
    let params = ParamSet::select(&model, &LayerSelection::All).unwrap();
    let mut op = data_hessian(&model, &data, &params, 10, Device::Cpu).unwrap();
    let v = seeded(12, || Tensor::randn([2, params.dim()], (Kind::Float, Device::Cpu)));
    let hv = op.apply(&v).unwrap().to_kind(Kind::Double);
    let expected = v.to_kind(Kind::Double).matmul(&h);
    let err = (&hv - &expected).norm().double_value(&[]) / expected.norm().double_value(&[]);
    assert!(err < 1e-4, "TorchScript H·v off by {err:.2e}");
    let top = top_eigenvalues(&mut op, 2, 123, 1e-6, Kind::Float, &mut rng(3)).unwrap();
    let exact = exact_eigenvalues_desc(&h);
    assert!(rel_err(top.values[0], exact[0]) < 1e-3 && rel_err(top.values[1], exact[1]) < 1e-3);
}

#[test]
fn gauss_newton_trace_is_the_hessian_trace_only_where_the_network_is_linear_in_each_weight() {
    single_thread();
    let data = tiny_data(24, 6);
    let opts = TraceOptions {
        rel_stderr: 0.01,
        min_probes: 20,
        max_probes: 20_000,
        block: 64,
    };
    for (activation, identity) in [(Op::Relu, true), (Op::Tanh, false)] {
        let model = tiny_model_with(activation.clone());
        let params = ParamSet::select(&model, &LayerSelection::All).unwrap();
        let exact_h = exact_hessian(&model, &data).trace().double_value(&[]);
        let exact_gn = exact_gauss_newton_trace(&model, &data);
        // Uneven batches: the estimator must weight them like the Hessian of the whole slice.
        let est = gauss_newton_trace(&model, &data, &params, 7, &opts, &mut rng(3), |_, _| {}).unwrap();
        assert!(est.converged, "{activation:?}: {est:?}");
        assert_eq!(est.hvps, 0, "gradients only");
        let per_tensor: f64 = est.per_tensor.iter().sum();
        assert!(rel_err(per_tensor, est.trace) < 1e-9);
        assert!(
            (est.trace - exact_gn).abs() < 4.0 * est.stderr,
            "{activation:?}: estimate {} ± {} vs exact GN trace {exact_gn}",
            est.trace,
            est.stderr
        );
        // Exact against exact: the identity holds for ReLU to rounding, and tanh's second
        // derivatives make the traces differ (by ~3% on this net and slice).
        if identity {
            assert!(rel_err(exact_gn, exact_h) < 1e-4, "ReLU: GN {exact_gn} vs H {exact_h}");
        } else {
            assert!(rel_err(exact_gn, exact_h) > 0.02, "tanh: GN {exact_gn} vs H {exact_h}");
        }
    }
}
