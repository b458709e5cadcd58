//! Quantization and pruning on real model tensors: level counts, exact
//! round trips, exact sparsity, and weights restored after a sweep.

mod common;

use common::lenet5;
use hart::compress::prune::{measure, prune_count, prune_in_place, Scope};
use hart::compress::quantize::{max_code, parse_bits, quantize, quantize_in_place, Granularity};
use hart::compress::{select, sweep, Selection, Snapshot};
use hart::data::Dataset;
use hart::model::Model;
use tch::{Device, Kind, Tensor};

fn all_tensors(m: &Model) -> Vec<(String, Tensor)> {
    m.named_tensors()
        .into_iter()
        .map(|(n, t, _)| (n, t.detach().copy()))
        .collect()
}

fn distinct(t: &Tensor) -> usize {
    let v: Vec<f32> = Vec::try_from(t.flatten(0, -1)).unwrap();
    let mut bits: Vec<u32> = v.iter().map(|x| if *x == 0.0 { 0 } else { x.to_bits() }).collect();
    bits.sort_unstable();
    bits.dedup();
    bits.len()
}

#[test]
fn quantized_tensors_take_at_most_2b_levels_and_round_trip_exactly() {
    for granularity in [Granularity::PerTensor, Granularity::PerChannel] {
        for bits in [2u32, 3, 4, 8] {
            let m = lenet5(1);
            let targets = select(&m, &Selection::default()).unwrap();
            let before: Vec<Tensor> = targets.iter().map(|(_, t)| t.detach().copy()).collect();
            quantize_in_place(&targets, bits, granularity).unwrap();
            for ((name, live), orig) in targets.iter().zip(&before) {
                let q = quantize(orig, bits, granularity).unwrap();
                let what = format!("{name} {granularity} {bits} bits");
                // The model holds exactly codes × scale ...
                assert!(
                    q.dequantize().equal(&live.detach()),
                    "{what}: weights are not codes × scale"
                );
                let n = max_code(bits);
                let codes_max = q.codes.abs().max().int64_value(&[]);
                assert!(codes_max <= n, "{what}: code {codes_max} outside ±{n}");
                // ... the integer codes are recovered from the stored weights and scale ...
                let divisor = q.scale.where_scalarother(&q.scale.gt(0.0), 1.0);
                let recovered = (live.detach() / divisor).round().to_kind(Kind::Int);
                assert!(recovered.equal(&q.codes), "{what}: codes do not round-trip");
                // ... rounding is to the nearest level ...
                let err = (live.detach() - orig).abs() - &q.scale * 0.5;
                assert!(err.max().double_value(&[]) <= 1e-6, "{what}: not rounded to nearest");
                // ... and each scale group uses at most 2^b − 1 levels.
                let groups = match granularity {
                    Granularity::PerTensor => vec![live.detach()],
                    Granularity::PerChannel => live.detach().unbind(0),
                };
                for g in groups {
                    assert!(distinct(&g) < 1 << bits, "{what}: {} levels", distinct(&g));
                }
            }
        }
    }
}

#[test]
fn quantized_model_saves_and_loads_bit_exactly() {
    let m = lenet5(2);
    quantize_in_place(&select(&m, &Selection::default()).unwrap(), 4, Granularity::PerChannel).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.safetensors");
    m.save(&path).unwrap();
    let back = hart::model::load(&path, &Default::default()).unwrap();
    for ((n, a), (_, b)) in all_tensors(&m).iter().zip(all_tensors(&back)) {
        assert!(a.equal(&b), "{n} changed across save/load");
    }
}

#[test]
fn biases_stay_float_unless_asked() {
    let m = lenet5(3);
    let before = all_tensors(&m);
    quantize_in_place(&select(&m, &Selection::default()).unwrap(), 2, Granularity::PerTensor).unwrap();
    for ((n, a), (_, b)) in before.iter().zip(all_tensors(&m)) {
        assert_eq!(
            a.equal(&b),
            a.dim() < 2,
            "{n}: rank {} tensor changed = {}",
            a.dim(),
            !a.equal(&b)
        );
    }
    let with_bias = Selection {
        include_bias_bn: true,
        layer: None,
    };
    let m = lenet5(3);
    quantize_in_place(&select(&m, &with_bias).unwrap(), 2, Granularity::PerTensor).unwrap();
    let bias = m
        .named_tensors()
        .into_iter()
        .find(|(n, _, _)| n == "fc1.bias")
        .unwrap()
        .1;
    assert!(distinct(&bias) <= 3, "fc1.bias was not quantized when asked");
}

#[test]
fn pruning_hits_the_requested_sparsity_exactly() {
    for scope in [Scope::Global, Scope::Layer] {
        for s in [0.0, 0.3, 0.5, 0.9, 1.0] {
            let m = lenet5(4);
            let targets = select(&m, &Selection::default()).unwrap();
            let before: Vec<Tensor> = targets.iter().map(|(_, t)| t.detach().copy()).collect();
            let p = prune_in_place(&targets, s, scope).unwrap();
            let n: i64 = targets.iter().map(|(_, t)| t.numel() as i64).sum();
            let expected = match scope {
                Scope::Global => prune_count(s, n),
                Scope::Layer => targets.iter().map(|(_, t)| prune_count(s, t.numel() as i64)).sum(),
            };
            assert_eq!(p.zeros, expected, "{scope} {s}");
            assert_eq!(p.sparsity, expected as f64 / n as f64);
            assert_eq!(measure(&targets), p);
            // Only zeros were written, and the smallest magnitudes went first.
            let mut max_pruned = 0f64;
            let mut min_kept = f64::INFINITY;
            for ((_, live), orig) in targets.iter().zip(&before) {
                let pruned = live.eq(0.0);
                assert!(live.detach().equal(&orig.where_scalarother(&pruned.logical_not(), 0.0)));
                if scope == Scope::Layer {
                    assert_eq!(
                        pruned.sum(Kind::Int64).int64_value(&[]),
                        prune_count(s, live.numel() as i64)
                    );
                }
                let mags = orig.abs();
                if pruned.any().int64_value(&[]) != 0 {
                    max_pruned = max_pruned.max(mags.masked_select(&pruned).max().double_value(&[]));
                }
                if pruned.logical_not().any().int64_value(&[]) != 0 {
                    min_kept = min_kept.min(mags.masked_select(&pruned.logical_not()).min().double_value(&[]));
                }
            }
            if scope == Scope::Global {
                assert!(max_pruned <= min_kept, "{s}: pruned |w| {max_pruned} > kept {min_kept}");
            }
        }
    }
}

#[test]
fn pruning_is_exact_when_magnitudes_tie() {
    let t = Tensor::ones([10, 10], (Kind::Float, Device::Cpu));
    let targets = vec![("w".to_string(), t.shallow_clone())];
    let p = prune_in_place(&targets, 0.37, Scope::Global).unwrap();
    assert_eq!(p.zeros, 37);
}

#[test]
fn sweeps_leave_the_model_bit_exactly_as_it_was() {
    let m = lenet5(5);
    let before = all_tensors(&m);
    let targets = select(&m, &Selection::default()).unwrap();
    let data = tiny_data();
    let mut seen = Vec::new();
    sweep(
        &m,
        &targets,
        &[8u32, 2],
        &data,
        16,
        Device::Cpu,
        |t, b| quantize_in_place(t, b, Granularity::PerTensor),
        |b, (), r| {
            seen.push((b, r.loss));
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(seen.len(), 2);
    assert_ne!(seen[0].1, seen[1].1, "2-bit and 8-bit models gave the same loss");
    for ((n, a), (_, b)) in before.iter().zip(all_tensors(&m)) {
        assert!(a.equal(&b), "{n} not restored");
    }
    // A snapshot dropped early (an error mid-sweep) also restores.
    {
        let _guard = Snapshot::take(&targets);
        prune_in_place(&targets, 0.9, Scope::Global).unwrap();
    }
    for ((n, a), (_, b)) in before.iter().zip(all_tensors(&m)) {
        assert!(a.equal(&b), "{n} not restored on drop");
    }
}

#[test]
fn bad_settings_are_one_line_errors_naming_the_value() {
    for (s, needle) in [("8,1", "1"), ("8,x", "x"), ("4,4", "4"), ("17", "17")] {
        let e = parse_bits(s).unwrap_err().to_string();
        assert!(e.contains(needle) && !e.contains('\n'), "{s}: {e}");
    }
    for s in ["1.5", "-0.1", "NaN", "0.5,,0.7"] {
        let e = hart::compress::prune::parse_sparsities(s).unwrap_err().to_string();
        assert!(e.contains("--sparsity"), "{s}: {e}");
    }
    let m = lenet5(6);
    let e = select(
        &m,
        &Selection {
            include_bias_bn: false,
            layer: Some("conv9".into()),
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("conv9") && e.contains("conv1") && e.contains("fc3"), "{e}");
}

/// 32 deterministic pseudo-random 28×28 images: enough to tell 2-bit from 8-bit.
pub fn tiny_data() -> Dataset {
    let n = 32;
    Dataset {
        name: "synthetic".into(),
        images: (0..n * 784)
            .map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect(),
        channels: 1,
        height: 28,
        width: 28,
        labels: (0..n as i64).map(|i| i % 10).collect(),
        num_classes: 10,
        class_names: (0..10).map(|i| i.to_string()).collect(),
        source: "synthetic".into(),
    }
}
