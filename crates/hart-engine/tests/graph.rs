//! The layer graph's structural queries and partial execution.

mod common;

use common::seeded;
use hart::model::graph::Mode;
use hart::model::{zoo, GraphModel, ModelInfo};
use tch::{Kind, Tensor};

fn info(arch: &str, channels: i64, size: i64) -> ModelInfo {
    ModelInfo {
        arch: arch.into(),
        num_classes: 10,
        in_channels: channels,
        input_size: size,
        normalize: hart::model::Normalization::for_dataset(if channels == 1 { "mnist" } else { "cifar10" }),
        dataset: None,
    }
}

/// A zoo model and a batch of random inputs, both drawn from `seed`.
fn model_and_input(seed: i64, arch: &str, c: i64, s: i64, batch: i64) -> (GraphModel, Tensor) {
    seeded(seed, || {
        let m = zoo::build(&info(arch, c, s)).unwrap();
        (m, Tensor::rand([batch, c, s, s], (Kind::Float, tch::Device::Cpu)))
    })
}

#[test]
fn every_parameter_belongs_to_a_named_layer() {
    for (arch, c, s) in [
        ("lenet5", 1, 28),
        ("basenet", 1, 28),
        ("resnet18-cifar", 3, 32),
        ("deit-tiny", 3, 32),
    ] {
        let m = zoo::build(&info(arch, c, s)).unwrap();
        for (name, _, _) in m.params.iter() {
            let layer = m
                .graph
                .layer_of(name)
                .unwrap_or_else(|| panic!("{arch}: {name} has no layer"));
            // torchvision/timm names: the parameter lives under its module's path.
            let module = name.rsplit_once('.').map_or(name, |(m, _)| m);
            assert_eq!(layer, module, "{arch}: {name}");
        }
    }
}

#[test]
fn running_from_a_cut_point_matches_the_full_forward() {
    for (k, (arch, c, s)) in [("lenet5", 1, 28), ("resnet18-cifar", 3, 32), ("deit-tiny", 3, 32)]
        .into_iter()
        .enumerate()
    {
        let (m, x) = model_and_input(3 + k as i64, arch, c, s, 3);
        let n = m.graph.nodes.len();
        let mut env: Vec<Option<Tensor>> = (0..n).map(|_| None).collect();
        let full = m.graph.forward_from(&m.params, &x, 0, &mut env, Mode::Eval).unwrap();
        for cut in [1, n / 3, n / 2, n - 1] {
            // Keep the cached values before the cut, drop everything after it.
            let mut partial: Vec<Option<Tensor>> = env
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    if i < cut {
                        v.as_ref().map(|t| t.shallow_clone())
                    } else {
                        None
                    }
                })
                .collect();
            let y = m
                .graph
                .forward_from(&m.params, &x, cut, &mut partial, Mode::Eval)
                .unwrap();
            assert!(y.equal(&full), "{arch}: cut at node {cut} changes the output");
        }
    }
}

/// Freeing values after their last reader changes no result, keeps exactly
/// what was asked for, and frees the rest (the whole point: memory).
#[test]
fn a_freeing_forward_keeps_only_what_is_asked_and_matches_the_full_one() {
    for (k, (arch, c, s)) in [("lenet5", 1, 28), ("resnet18-cifar", 3, 32), ("deit-tiny", 3, 32)]
        .into_iter()
        .enumerate()
    {
        let (m, x) = model_and_input(5 + k as i64, arch, c, s, 2);
        let n = m.graph.nodes.len();
        let mut full: Vec<Option<Tensor>> = (0..n).map(|_| None).collect();
        let y = m.graph.forward_from(&m.params, &x, 0, &mut full, Mode::Eval).unwrap();
        assert!(
            m.graph.forward(&m.params, &x, Mode::Eval).unwrap().equal(&y),
            "{arch}: forward"
        );
        // Keep a middle value and the output; run the first half freeing, then the rest from it.
        let mid = n / 2;
        let later_reads = |v: usize| m.graph.nodes[mid + 1..].iter().any(|node| node.inputs.contains(&v));
        let keep = |v: usize| v == m.graph.output || (v <= mid && later_reads(v));
        let mut env: Vec<Option<Tensor>> = (0..n).map(|_| None).collect();
        let first: Vec<usize> = (0..=mid).collect();
        m.graph
            .forward_nodes_freeing(&m.params, &x, &first, &mut env, Mode::Eval, keep)
            .unwrap();
        for (v, value) in env.iter().enumerate() {
            assert_eq!(
                value.is_some(),
                v <= mid && keep(v),
                "{arch}: value {v} after the first half"
            );
            if let Some(t) = value {
                assert!(t.equal(full[v].as_ref().unwrap()), "{arch}: value {v} differs");
            }
        }
        let rest: Vec<usize> = (mid + 1..n).collect();
        m.graph
            .forward_nodes_freeing(&m.params, &x, &rest, &mut env, Mode::Eval, |v| v == m.graph.output)
            .unwrap();
        let kept: Vec<usize> = (0..n).filter(|&v| env[v].is_some()).collect();
        assert_eq!(kept, vec![m.graph.output], "{arch}: only the output survives");
        assert!(
            env[m.graph.output].as_ref().unwrap().equal(&y),
            "{arch}: output differs"
        );
    }
}

#[test]
fn double_backward_flows_through_every_zoo_model() {
    // Hessian-vector products differentiate the gradient again; fused kernels
    // without double backward would fail here.
    for (arch, c, s) in [
        ("mlp", 1, 28),
        ("lenet5", 1, 28),
        ("resnet18-cifar", 3, 32),
        ("deit-tiny", 3, 32),
    ] {
        let (m, x) = model_and_input(1, arch, c, s, 2);
        let y = Tensor::from_slice(&[1i64, 7]);
        let params: Vec<Tensor> = m.params.trainable().map(|(_, t)| t.shallow_clone()).collect();
        let loss = m.forward(&x, Mode::Train).unwrap().cross_entropy_for_logits(&y);
        let grads = Tensor::run_backward(&[&loss], &params, true, true);
        let v: Vec<Tensor> = grads.iter().map(|g| g.ones_like()).collect();
        let gv: Tensor = grads.iter().zip(&v).map(|(g, v)| (g * v).sum(Kind::Float)).sum();
        let hv = Tensor::run_backward(&[&gv], &params, false, false);
        let norm: f64 = hv.iter().map(|h| h.norm().double_value(&[])).sum();
        assert!(
            norm.is_finite() && norm > 0.0,
            "{arch}: Hessian-vector product is {norm}"
        );
    }
}
