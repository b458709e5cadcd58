//! Hessian-aware training and its baselines on tiny float64 models, where
//! finite differences are accurate enough to check gradients tightly.

mod common;

use common::seeded;
use hart::hessian::gauss_newton::gauss_newton_penalty;
use hart::hessian::probe::rademacher;
use hart::hessian::{LayerSelection, ParamSet};
use hart::loss::cross_entropy;
use hart::model::builder::{GraphBuilder, Init};
use hart::model::{GraphModel, Mode, Model, ModelInfo, Op, ParamKind, ParamStore};
use hart::train::regularizer::selective::State;
use hart::train::regularizer::{hutchinson_penalty, Reading, Selective};
use hart::train::{HessianMethod, Regularizer, RegularizerConfig, RegularizerKind};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

fn info() -> ModelInfo {
    ModelInfo {
        arch: "tiny".into(),
        num_classes: 3,
        in_channels: 1,
        input_size: 6,
        normalize: None,
        dataset: None,
    }
}

/// linear 6→5 → tanh → linear 5→3, every tensor in float64.
fn tiny_f64() -> Model {
    let (graph, params) = seeded(3, || {
        let mut b = GraphBuilder::new();
        let h = b.linear("fc1", GraphBuilder::INPUT, 6, 5, Init::Default).unwrap();
        let h = b.op("", Op::Tanh, &[h]);
        let out = b.linear("fc2", h, 5, 3, Init::Default).unwrap();
        b.finish(out)
    });
    let mut double = ParamStore::new();
    for (name, t, kind) in params.iter() {
        double.insert(name, t.to_kind(Kind::Double), kind).unwrap();
    }
    Model::Graph(GraphModel {
        graph,
        params: double,
        info: info(),
    })
}

fn batch() -> (Tensor, Tensor) {
    seeded(4, || {
        let x = Tensor::randn([12, 6], (Kind::Double, Device::Cpu));
        let y = Tensor::randint(3, [12], (Kind::Int64, Device::Cpu));
        (x, y)
    })
}

fn trainable(model: &Model) -> Vec<Tensor> {
    model.trainable().into_iter().map(|(_, t)| t).collect()
}

fn flat(ts: &[Tensor]) -> Tensor {
    Tensor::cat(&ts.iter().map(|t| t.reshape([-1])).collect::<Vec<_>>(), 0)
}

fn set_flat(params: &[Tensor], values: &Tensor) {
    let mut at = 0;
    tch::no_grad(|| {
        for p in params {
            let n = p.numel() as i64;
            p.shallow_clone()
                .copy_(&values.narrow(0, at, n).view(p.size().as_slice()));
            at += n;
        }
    });
}

fn grads(params: &[Tensor]) -> Tensor {
    flat(&params.iter().map(|p| p.grad().copy()).collect::<Vec<_>>())
}

fn zero_grads(params: &[Tensor]) {
    for p in params {
        p.shallow_clone().zero_grad();
    }
}

fn rel(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).norm().double_value(&[]) / b.norm().double_value(&[])
}

/// These tests compare exact and finite-difference curvature to 1e-5 and set
/// libtorch's global thread count; run concurrently, one test's thread
/// changes reorder another's reductions. One at a time keeps them exact.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn penalty_gradient_matches_finite_differences_of_vhv() {
    let _serial = serial();
    tch::set_num_threads(1);
    let model = tiny_f64();
    let (x, y) = batch();
    let all = trainable(&model);
    for sel in [LayerSelection::All, LayerSelection::Last(1)] {
        let set = ParamSet::select(&model, &sel).unwrap();
        let v = rademacher(
            &mut ChaCha8Rng::seed_from_u64(9),
            2,
            set.dim(),
            Kind::Double,
            Device::Cpu,
        );
        let vhv = || {
            let loss = cross_entropy(&model.forward(&x, Mode::Train).unwrap(), &y).unwrap();
            hutchinson_penalty(&loss, &set, &v).unwrap().value
        };
        let pen = vhv();
        let analytic = Tensor::run_backward(&[&pen], &all, false, false);
        let analytic = flat(&analytic);
        let w0 = flat(&all).detach().copy();
        let eps = 1e-5;
        for k in 0..4 {
            let d = seeded(100 + k, || Tensor::randn_like(&w0));
            set_flat(&all, &(&w0 + &d * eps));
            let up = vhv().double_value(&[]);
            set_flat(&all, &(&w0 - &d * eps));
            let down = vhv().double_value(&[]);
            set_flat(&all, &w0);
            let numeric = (up - down) / (2.0 * eps);
            let exact = analytic.dot(&d).double_value(&[]);
            assert!(
                (numeric - exact).abs() <= 1e-6 * exact.abs().max(1e-3),
                "{sel}: directional derivative of vᵀHv {exact} vs finite difference {numeric}"
            );
        }
    }
}

/// The Hutchinson penalty: fd-hessian approximates it probe for probe, and the
/// firing tests below were written against it.
fn reg_config(kind: RegularizerKind) -> RegularizerConfig {
    RegularizerConfig {
        kind,
        lambda: 0.3,
        method: HessianMethod::Hutchinson,
        ..Default::default()
    }
}

/// Gradient a regulariser leaves in `.grad` for one step from the same weights.
fn step_grad(model: &Model, cfg: &RegularizerConfig, seed: u64) -> (Tensor, Option<f64>) {
    let (x, y) = batch();
    let all = trainable(model);
    zero_grads(&all);
    let mut reg = Regularizer::new(model, cfg, seed).unwrap();
    let out = reg.step(model, &x, &y).unwrap();
    (grads(&all), out.trace)
}

#[test]
fn finite_difference_penalty_approximates_the_exact_one() {
    let _serial = serial();
    tch::set_num_threads(1);
    let model = tiny_f64();
    let w0 = flat(&trainable(&model)).detach().copy();
    let exact_cfg = reg_config(RegularizerKind::Hessian);
    let (exact, exact_trace) = step_grad(&model, &exact_cfg, 5);
    let plain = step_grad(&model, &reg_config(RegularizerKind::None), 5).0;
    let fd_cfg = RegularizerConfig {
        fd_sigma: 1e-3,
        ..reg_config(RegularizerKind::FdHessian)
    };
    // Same seed, same single probe: the two estimate the same vᵀHv and its gradient.
    let (fd, fd_trace) = step_grad(&model, &fd_cfg, 5);
    let (et, ft) = (exact_trace.unwrap(), fd_trace.unwrap());
    assert!((et - ft).abs() < 1e-5 * et.abs(), "vᵀHv: exact {et} vs two-point {ft}");
    let pen_exact = &exact - &plain;
    let pen_fd = &fd - &plain;
    assert!(pen_exact.norm().double_value(&[]) > 1e-3, "the penalty must contribute");
    let err = rel(&pen_fd, &pen_exact);
    assert!(err < 1e-4, "finite-difference penalty gradient off by {err:.1e}");
    assert!(
        flat(&trainable(&model)).equal(&w0),
        "fd-hessian must restore the weights exactly"
    );
}

#[test]
fn sam_takes_the_gradient_at_the_ascent_point() {
    let _serial = serial();
    tch::set_num_threads(1);
    let model = tiny_f64();
    let (x, y) = batch();
    let all = trainable(&model);
    let w0 = flat(&all).detach().copy();
    for adaptive in [false, true] {
        let rho = 0.05;
        let cfg = RegularizerConfig {
            sam_rho: rho,
            sam_adaptive: adaptive,
            ..reg_config(RegularizerKind::Sam)
        };
        let (sam, _) = step_grad(&model, &cfg, 0);
        assert!(flat(&all).equal(&w0), "SAM must restore the weights exactly");
        // Reference, written out: ε = ρ T²g / ‖T g‖, gradient at w + ε.
        let loss = cross_entropy(&model.forward(&x, Mode::Train).unwrap(), &y).unwrap();
        let g = flat(&Tensor::run_backward(&[&loss], &all, false, false));
        let t = if adaptive { w0.abs() + 0.01 } else { w0.ones_like() };
        let eps = &t * &t * &g * (rho / (&t * &g).norm().double_value(&[]));
        set_flat(&all, &(&w0 + &eps));
        let loss = cross_entropy(&model.forward(&x, Mode::Train).unwrap(), &y).unwrap();
        let expected = flat(&Tensor::run_backward(&[&loss], &all, false, false));
        set_flat(&all, &w0);
        let err = rel(&sam, &expected);
        assert!(err < 1e-10, "SAM (adaptive {adaptive}) gradient off by {err:.1e}");
        assert!(rel(&sam, &g) > 1e-4, "SAM's gradient must differ from the plain one");
    }
}

#[test]
fn every_k_steps_and_the_selective_rule_decide_when_the_penalty_fires() {
    let _serial = serial();
    tch::set_num_threads(1);
    let mut s = State::default();
    let fired: Vec<bool> = [1.0, 2.0, 0.5, 3.0, 1.0].iter().map(|&r| s.decide(r)).collect();
    // Running means before each reading: none, 1, 1.5, 1.1667, 1.625.
    assert_eq!(fired, [true, true, false, true, false]);

    let model = tiny_f64();
    let (x, y) = batch();
    let cfg = RegularizerConfig {
        every: 3,
        ..reg_config(RegularizerKind::Hessian)
    };
    let mut reg = Regularizer::new(&model, &cfg, 1).unwrap();
    let outs: Vec<_> = (0..7).map(|_| reg.step(&model, &x, &y).unwrap()).collect();
    let evaluated: Vec<bool> = outs.iter().map(|o| o.trace.is_some()).collect();
    assert_eq!(evaluated, [true, false, false, true, false, false, true]);
    assert!(outs.iter().all(|o| o.fired == o.trace.is_some()));

    let cfg = RegularizerConfig {
        selective: Some(Selective {
            reading: Reading::Diag,
            top_p: 2,
            diag_frac: 0.1,
        }),
        ..reg_config(RegularizerKind::Hessian)
    };
    let mut reg = Regularizer::new(&model, &cfg, 2).unwrap();
    let outs: Vec<_> = (0..8).map(|_| reg.step(&model, &x, &y).unwrap()).collect();
    assert!(outs[0].fired, "the first reading has no history and fires");
    let readings: Vec<f64> = outs.iter().map(|o| o.reading.unwrap()).collect();
    for (i, o) in outs.iter().enumerate().skip(1) {
        let mean = readings[..i].iter().sum::<f64>() / i as f64;
        assert_eq!(
            o.fired,
            readings[i] > mean,
            "step {i}: reading {} vs running mean {mean}",
            readings[i]
        );
    }
}

/// The exact Hessian of the minibatch loss (training mode) w.r.t. all parameters.
fn minibatch_hessian(model: &Model) -> Tensor {
    let (x, y) = batch();
    let all = trainable(model);
    let loss = cross_entropy(&model.forward(&x, Mode::Train).unwrap(), &y).unwrap();
    let g = flat(&Tensor::run_backward(&[&loss], &all, true, true));
    let rows: Vec<Tensor> = (0..g.size()[0])
        .map(|i| flat(&Tensor::run_backward(&[&g.get(i)], &all, true, false)))
        .collect();
    Tensor::stack(&rows, 0)
}

#[test]
fn power_reading_converges_to_the_top_p_eigenvalue_mean() {
    let _serial = serial();
    tch::set_num_threads(1);
    let model = tiny_f64();
    let (x, y) = batch();
    let h = minibatch_hessian(&model);
    let (e, _) = h.linalg_eigh("L");
    let e = Vec::<f64>::try_from(&e).unwrap();
    let top2 = (e[e.len() - 1] + e[e.len() - 2]) / 2.0;
    let cfg = RegularizerConfig {
        selective: Some(Selective {
            reading: Reading::Power,
            top_p: 2,
            diag_frac: 0.1,
        }),
        ..reg_config(RegularizerKind::Hessian)
    };
    let mut reg = Regularizer::new(&model, &cfg, 3).unwrap();
    let readings: Vec<f64> = (0..250)
        .map(|_| reg.step(&model, &x, &y).unwrap().reading.unwrap())
        .collect();
    // Ritz values never exceed the eigenvalues they approximate, and warm starts converge
    // (slowly here: the third-largest |λ| is 94% of the second).
    assert!(
        readings.iter().all(|r| *r <= top2 * (1.0 + 1e-9)),
        "{readings:?} vs {top2}"
    );
    let last = readings[readings.len() - 1];
    assert!(
        (last - top2).abs() < 1e-3 * top2.abs(),
        "power reading {last} vs exact top-2 mean {top2}; spectrum ends {:?} {:?}",
        &e[..3],
        &e[e.len() - 4..]
    );
}

/// The paper's reading (Lanczos top-p mean) and the audit's converged
/// reference against the exact eigenvalues; the audit keeps every N-th step.
#[test]
fn lanczos_reading_and_audit_reference_match_the_exact_top_p_mean() {
    let _serial = serial();
    tch::set_num_threads(1);
    let model = tiny_f64();
    let (x, y) = batch();
    let (e, _) = minibatch_hessian(&model).linalg_eigh("L");
    let e = Vec::<f64>::try_from(&e).unwrap();
    let p = 3;
    let top = e[e.len() - p..].iter().sum::<f64>() / p as f64;
    let top5 = e[e.len() - 5..].iter().sum::<f64>() / 5.0;
    let cfg = RegularizerConfig {
        selective: Some(Selective {
            reading: Reading::Lanczos,
            top_p: p,
            diag_frac: 0.1,
        }),
        audit_every: 2,
        ..reg_config(RegularizerKind::Hessian)
    };
    let mut reg = Regularizer::new(&model, &cfg, 5).unwrap();
    // No optimiser step: every step sees the same Hessian.
    let readings: Vec<f64> = (0..5)
        .map(|_| reg.step(&model, &x, &y).unwrap().reading.unwrap())
        .collect();
    // Ritz values interlace: their top-p mean never exceeds the true one. 13
    // steps leave it 1-2% low here (λ3 and λ4 are close), the reference not.
    for r in &readings {
        assert!(*r <= top * (1.0 + 1e-9) && *r > 0.95 * top, "{r} vs {top}");
    }
    let audit = reg.take_audit();
    assert_eq!(audit.iter().map(|r| r.step).collect::<Vec<_>>(), vec![0, 2, 4]);
    for row in &audit {
        assert!(row.converged);
        assert!(
            (row.reference - top).abs() < 1e-6 * top.abs(),
            "{} vs {top}",
            row.reference
        );
        assert!(row.lanczos <= top * (1.0 + 1e-9) && row.lanczos > 0.95 * top);
        // The audited power reading is the p = 5 one.
        assert!(row.power <= top5 * (1.0 + 1e-9), "{} vs top-5 mean {top5}", row.power);
    }
    assert!(reg.take_audit().is_empty(), "rows are handed out once");
}

#[test]
fn bad_regularizer_settings_are_refused_with_the_value() {
    let _serial = serial();
    let model = tiny_f64();
    let bad = [
        (
            RegularizerConfig {
                lambda: -1.0,
                ..reg_config(RegularizerKind::Hessian)
            },
            "-1",
        ),
        (
            RegularizerConfig {
                every: 0,
                ..reg_config(RegularizerKind::Hessian)
            },
            "--hessian-every",
        ),
        (
            RegularizerConfig {
                sam_rho: 0.0,
                ..reg_config(RegularizerKind::Sam)
            },
            "--sam-rho",
        ),
        (
            RegularizerConfig {
                selective: Some(Selective::default()),
                ..reg_config(RegularizerKind::Sam)
            },
            "--hessian-selective",
        ),
        (
            RegularizerConfig {
                layers: "^nope".parse().unwrap(),
                ..reg_config(RegularizerKind::Hessian)
            },
            "^nope",
        ),
    ];
    for (cfg, needle) in bad {
        common::assert_refused(&model, &cfg, needle);
    }
    assert!("last:0".parse::<LayerSelection>().is_err());
    assert!("(".parse::<LayerSelection>().unwrap_err().to_string().contains("\"(\""));
    let _ = ParamKind::Trainable;
}

/// P(w) = ‖∇_S Σᵢ rᵢ·zᵢ‖²/n with r = B(p(w))u re-derived at every w: the
/// gradient HAT applies must be P's full gradient, the path through the
/// softmax included (the term a fixed-r gradient would miss).
#[test]
fn gauss_newton_penalty_gradient_matches_finite_differences() {
    let _serial = serial();
    tch::set_num_threads(1);
    let model = tiny_f64();
    let (x, _) = batch();
    let all = trainable(&model);
    for sel in [LayerSelection::All, LayerSelection::Last(1)] {
        let set = ParamSet::select(&model, &sel).unwrap();
        let u = rademacher(&mut ChaCha8Rng::seed_from_u64(5), 2, 36, Kind::Double, Device::Cpu).view([2, 12, 3]);
        let value = || {
            let logits = model.forward(&x, Mode::Train).unwrap();
            gauss_newton_penalty(&logits, &set, &u).unwrap().value.double_value(&[])
        };
        zero_grads(&all);
        let logits = model.forward(&x, Mode::Train).unwrap();
        let pen = gauss_newton_penalty(&logits, &set, &u).unwrap();
        // At fixed r the logit biases drop out (their gradient is undefined): flatten as zeros.
        let everything = ParamSet::select(&model, &LayerSelection::All).unwrap();
        let fixed_r = everything.flatten(&Tensor::run_backward(&[&pen.value], &all, true, false));
        pen.backward_with(&(logits.sum(Kind::Double) * 0.0), &all, 1.0).unwrap();
        let exact = grads(&all);
        let w0 = flat(&all).detach().copy();
        let eps = 1e-6;
        let fd: Vec<f64> = (0..w0.size()[0])
            .map(|i| {
                let e = w0.zeros_like();
                let _ = e.get(i).fill_(eps);
                set_flat(&all, &(&w0 + &e));
                let plus = value();
                set_flat(&all, &(&w0 - &e));
                let minus = value();
                (plus - minus) / (2.0 * eps)
            })
            .collect();
        set_flat(&all, &w0);
        let fd = Tensor::from_slice(&fd);
        assert!(rel(&exact, &fd) < 1e-6, "{sel:?}: rel err {}", rel(&exact, &fd));
        // The softmax path is not negligible here, so a gradient without it would fail the check.
        assert!(rel(&fixed_r, &fd) > 1e-3, "{sel:?}: {}", rel(&fixed_r, &fd));
    }
}

/// linear 6→5 → BatchNorm → tanh → linear 5→3, in float32.
fn tiny_bn() -> Model {
    let (graph, params) = seeded(5, || {
        let mut b = GraphBuilder::new();
        let h = b.linear("fc1", GraphBuilder::INPUT, 6, 5, Init::Default).unwrap();
        let h = b.batch_norm("bn", h, 5).unwrap();
        let h = b.op("", Op::Tanh, &[h]);
        let out = b.linear("fc2", h, 5, 3, Init::Default).unwrap();
        b.finish(out)
    });
    Model::Graph(GraphModel {
        graph,
        params,
        info: info(),
    })
}

/// HAT with the penalty on a sub-batch of a BatchNorm model: the step runs
/// (the sub-batch pass's running statistics go back only after the backward
/// passes, not in place between forward and backward, which libtorch refuses)
/// and leaves the statistics where the full batch's pass alone moves them.
#[test]
fn hat_on_a_sub_batch_leaves_batchnorm_statistics_to_the_full_batch() {
    let _serial = serial();
    let (x, y) = batch();
    let x = x.to_kind(Kind::Float);
    let stats = |m: &Model| -> Vec<Tensor> {
        m.named_tensors()
            .into_iter()
            .filter(|(n, _, _)| n.starts_with("bn.running") || n.ends_with("num_batches_tracked"))
            .map(|(_, t, _)| t.copy())
            .collect()
    };
    let reference = tiny_bn();
    let _ = tch::no_grad(|| reference.forward(&x, Mode::Train)).unwrap();
    for method in [HessianMethod::GaussNewton, HessianMethod::Hutchinson] {
        let model = tiny_bn();
        let cfg = RegularizerConfig {
            method,
            sub_batch: 4,
            ..reg_config(RegularizerKind::Hessian)
        };
        let mut reg = Regularizer::new(&model, &cfg, 0).unwrap();
        let out = reg.step(&model, &x, &y).unwrap();
        assert!(out.trace.unwrap() > 0.0, "{method:?}");
        for (got, want) in stats(&model).iter().zip(stats(&reference)) {
            assert!(got.equal(&want), "{method:?}: {got} vs {want}");
        }
        assert!(grads(&trainable(&model)).abs().sum(Kind::Double).double_value(&[]) > 0.0);
    }
}
