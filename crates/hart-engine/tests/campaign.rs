//! Campaign trials against a brute-force reference on the same faults (copy
//! the weights, write each faulty value, evaluate every image, restore), on
//! graph models whose clean values let a trial start mid-network; level 0
//! against the clean accuracy; fault counts against rate × stored bits.

mod common;

use hart::campaign::draw::trial_rng;
use hart::campaign::{prepare, Campaign, CampaignConfig, FaultModel};
use hart::data::Dataset;
use hart::faults::bits::{read_elements, write_element};
use hart::faults::hash::model_hash;
use hart::faults::inject::{BitFault, BitOp};
use hart::faults::{Defense, Scope, Storage};
use hart::model::{Mode, Model, ModelInfo};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

fn model(arch: &str) -> Model {
    let info = ModelInfo::fashion_mnist(arch);
    common::seeded_zoo(&info, 3)
}

/// Random images labelled with the model's own predictions (some relabelled),
/// so faults have correct samples to lose.
fn dataset(model: &Model, n: usize) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let images: Vec<u8> = (0..n * 28 * 28).map(|_| rng.random()).collect();
    let x = Tensor::from_slice(&images)
        .view([n as i64, 1, 28, 28])
        .to_kind(Kind::Float)
        / 255.0;
    let logits = tch::no_grad(|| model.forward(&x, Mode::Eval)).unwrap();
    let pred = Vec::<i64>::try_from(logits.argmax(1, false)).unwrap();
    let labels = pred
        .iter()
        .map(|&p| {
            if rng.random_bool(0.1) {
                rng.random_range(0..10)
            } else {
                p
            }
        })
        .collect();
    Dataset {
        name: "synthetic".into(),
        images: images.into(),
        channels: 1,
        height: 28,
        width: 28,
        labels,
        num_classes: 10,
        class_names: (0..10).map(|i| i.to_string()).collect(),
        source: "synthetic".into(),
    }
}

/// The definition: full evaluation with the trial's faulty values written
/// one element at a time (decoded from the stored words the faults leave),
/// weights copied back after. With a defence, its recovery (tested in
/// faults_groups.rs) goes through the injector's own element-wise path.
fn brute_force(c: &Campaign, level: f64, trial: u64) -> i64 {
    let evaluate = || {
        hart::eval::evaluate(c.model, c.data, c.cfg.batch, c.model.device())
            .unwrap()
            .correct
    };
    if c.cfg.fault.is_bit() && c.cfg.defense != Defense::None {
        let op = match c.cfg.fault {
            FaultModel::StuckAt0 => BitOp::Stuck(false),
            FaultModel::StuckAt1 => BitOp::Stuck(true),
            _ => BitOp::Flip,
        };
        let faults: Vec<BitFault> = c
            .draw(level, trial)
            .iter()
            .map(|f| BitFault {
                tensor: c.stored_of[f.target],
                index: f.index as usize,
                bit: f.bit,
                op,
            })
            .collect();
        return c.inject.with_faults(c.model, &faults, |_| Ok(evaluate())).unwrap();
    }
    let tensors: Vec<Tensor> = c.targets.iter().map(|t| t.tensor.shallow_clone()).collect();
    let saved: Vec<Tensor> = tensors.iter().map(|t| t.detach().copy()).collect();
    if c.cfg.fault.is_bit() {
        let mut words = std::collections::HashMap::new();
        for f in c.draw(level, trial) {
            let st = &c.inject.stored.tensors[c.stored_of[f.target]];
            let w = words.entry((f.target, f.index)).or_insert(st.words[f.index as usize]);
            *w = c.cfg.fault.apply(*w, f.bit);
            write_element(&tensors[f.target], f.index, st.decode(f.index as usize, *w)).unwrap();
        }
    } else {
        let (patch, _) = c.patch(level, trial).unwrap();
        for ch in &patch.changes {
            if let hart::campaign::patch::Change::Whole { target, new, .. } = ch {
                tch::no_grad(|| tensors[*target].shallow_clone().copy_(new));
            }
        }
    }
    let correct = evaluate();
    tch::no_grad(|| {
        for (t, s) in tensors.iter().zip(&saved) {
            t.shallow_clone().copy_(s);
        }
    });
    correct
}

#[test]
fn trials_equal_brute_force_and_restore_the_weights() {
    use FaultModel::*;
    let radar = Defense::Radar { group: 8 };
    let settings = [
        (Bitflip, Storage::Fp32, Defense::None, vec![1e-5, 3e-4]),
        (StuckAt1, Storage::Fp32, Defense::None, vec![3e-4]),
        (StuckAt0, Storage::Fp32, Defense::None, vec![3e-4]),
        (Bitflip, Storage::Int8, Defense::None, vec![1e-3]),
        (StuckAt1, Storage::Int4, Defense::None, vec![3e-3]),
        (Bitflip, Storage::Fp32, Defense::Range, vec![3e-4]),
        (Bitflip, Storage::Int8, radar, vec![1e-3]),
        (Gaussian, Storage::Fp32, Defense::None, vec![0.05, 0.5]),
        (Gaussian, Storage::Int8, Defense::None, vec![0.5]),
    ];
    for arch in ["mlp", "lenet5"] {
        let m = model(arch);
        let data = dataset(&m, 60);
        let before = model_hash(&m).unwrap();
        for (fault, storage, defense, levels) in &settings {
            let what = format!("{arch} {fault:?} {storage} {defense}");
            let cfg = CampaignConfig {
                trials: 4,
                batch: 25,
                storage: *storage,
                defense: *defense,
                ..CampaignConfig::new(*fault, levels.clone())
            };
            let c = prepare(&m, &data, &cfg).unwrap();
            let eval = c.evaluator();
            let mut differs = false;
            for &level in levels {
                for trial in 0..cfg.trials {
                    let t = c.trial(&eval, level, trial).unwrap();
                    assert_eq!(t.correct, brute_force(&c, level, trial), "{what} {level} #{trial}");
                    differs |= t.correct != c.clean.correct_count;
                }
            }
            assert!(
                differs,
                "{what}: no trial changed the accuracy, the comparison proves little"
            );
            drop(c);
            assert_eq!(model_hash(&m).unwrap(), before, "{what}: weights not restored");
        }
    }
}

#[test]
fn level_zero_is_the_clean_accuracy() {
    let m = model("lenet5");
    let data = dataset(&m, 50);
    let clean = hart::eval::evaluate(&m, &data, 50, tch::Device::Cpu).unwrap().correct;
    for fault in [FaultModel::Bitflip, FaultModel::StuckAt0, FaultModel::Gaussian] {
        let c = prepare(&m, &data, &CampaignConfig::new(fault, vec![0.0])).unwrap();
        let eval = c.evaluator();
        for trial in 0..3 {
            let t = c.trial(&eval, 0.0, trial).unwrap();
            assert_eq!((t.correct, t.faults, t.rad), (clean, 0, 0.0), "{fault:?}");
        }
    }
}

/// Mean drawn faults against rate × stored bits (binomial: the mean of T
/// trials lies within 5 standard errors), and stuck-at changes against the
/// stored words.
#[test]
fn fault_counts_match_the_rate() {
    let m = model("lenet5");
    let data = dataset(&m, 10);
    let cfg = CampaignConfig {
        scope: Scope::Params,
        ..CampaignConfig::new(FaultModel::StuckAt1, vec![1e-4])
    };
    let c = prepare(&m, &data, &cfg).unwrap();
    let bits = c.bits.total() as f64;
    assert_eq!(
        bits,
        32.0 * m.trainable().iter().map(|(_, t)| t.numel() as f64).sum::<f64>()
    );
    let (rate, trials) = (1e-4, 400u64);
    let counts: Vec<f64> = (0..trials).map(|k| c.draw(rate, k).len() as f64).collect();
    let mean = counts.iter().sum::<f64>() / trials as f64;
    let se = (bits * rate * (1.0 - rate) / trials as f64).sqrt();
    assert!((mean - rate * bits).abs() < 5.0 * se, "mean {mean} vs {}", rate * bits);
    let tensors: Vec<Tensor> = c.targets.iter().map(|t| t.tensor.shallow_clone()).collect();
    for k in 0..5 {
        let faults = c.draw(rate, k);
        let zeros = faults
            .iter()
            .filter(|f| read_elements(&tensors[f.target], f.index, 1).unwrap()[0].to_bits() & (1 << f.bit) == 0)
            .count();
        let (patch, n) = c.patch(rate, k).unwrap();
        assert_eq!((patch.effective.len(), n as usize), (zeros, faults.len()));
    }
    // A different seed draws different faults.
    let other = trial_rng(1, rate, 0, 0).random::<u64>();
    assert_ne!(other, trial_rng(0, rate, 0, 0).random::<u64>());
}
