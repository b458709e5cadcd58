//! Grouped fault lists, integer storage and defences against a brute-force
//! reference written independently of the engine: quantize with `hart
//! quantize`'s function, flip the codes' bits, dequantize, apply the
//! defence to whole tensors, evaluate the full model.

mod common;

use std::io::Write;
use std::path::Path;

use common::{dataset, zoo_model};
use hart::compress::quantize::{quantize, Granularity};
use hart::data::Dataset;
use hart::faults::defense::groups;
use hart::faults::hash::model_hash;
use hart::faults::{prepare, Defense, EngineKind, Storage, SweepConfig};
use hart::model::{Model, ParamKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

/// (name, numel, width) of every float tensor; width 8 for int8-stored weights.
fn tensors(model: &Model, storage: Storage) -> Vec<(String, i64, u8)> {
    model
        .named_tensors()
        .into_iter()
        .filter(|(_, t, _)| t.kind() == Kind::Float)
        .map(|(n, t, k)| {
            let int = storage != Storage::Fp32 && k == ParamKind::Trainable && t.dim() >= 2;
            (
                n,
                t.numel() as i64,
                if int { storage.int_bits().unwrap() as u8 } else { 32 },
            )
        })
        .collect()
}

/// Groups of 1-4 distinct flips, biased to the top bits so that many matter.
fn grouped_list(model: &Model, storage: Storage, path: &Path, n: usize, seed: u64) -> Vec<Vec<(String, i64, u8)>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let ts = tensors(model, storage);
    let mut f = std::fs::File::create(path).unwrap();
    writeln!(f, "group,param,index,bit").unwrap();
    let mut out = vec![];
    for g in 0..n {
        let mut group: Vec<(String, i64, u8)> = vec![];
        while group.len() < rng.random_range(1..=4) {
            let (name, numel, width) = &ts[rng.random_range(0..ts.len())];
            let bit = if rng.random_bool(0.5) {
                width - 1 - rng.random_range(0..2)
            } else {
                rng.random_range(0..*width)
            };
            let flip = (name.clone(), rng.random_range(0..*numel), bit);
            if !group.contains(&flip) {
                writeln!(f, "g{g},{},{},{}", flip.0, flip.1, flip.2).unwrap();
                group.push(flip);
            }
        }
        out.push(group);
    }
    out
}

/// Raw 32-bit words of a float tensor, flat.
fn raw_words(t: &Tensor) -> Vec<u32> {
    Vec::<f32>::try_from(t.flatten(0, -1))
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

/// The stored words of one tensor (int8 codes in two's complement, or raw fp32 bits) and a decoder.
struct RefTensor {
    words: Vec<u32>,
    width: u8,
    scale: Option<Tensor>,
    shape: Vec<i64>,
}

impl RefTensor {
    fn new(t: &Tensor, width: u8) -> Self {
        if width == 32 {
            return RefTensor {
                words: raw_words(t),
                width,
                scale: None,
                shape: t.size(),
            };
        }
        let q = quantize(t, width as u32, Granularity::PerTensor).unwrap();
        let codes = Vec::<i32>::try_from(q.codes.flatten(0, -1)).unwrap();
        let mask = (1u32 << width) - 1;
        RefTensor {
            words: codes.iter().map(|&c| c as u32 & mask).collect(),
            width,
            scale: Some(q.scale),
            shape: t.size(),
        }
    }

    fn signed(&self, w: u32) -> i64 {
        if self.width == 32 {
            return w as i64;
        }
        let s = 32 - self.width as u32;
        (((w << s) as i32) >> s) as i64
    }

    /// The float tensor the words stand for (torch does the dequantization).
    fn decode(&self, words: &[u32]) -> Tensor {
        match &self.scale {
            None => Tensor::from_slice(&words.iter().map(|w| f32::from_bits(*w)).collect::<Vec<_>>())
                .view(self.shape.as_slice()),
            Some(scale) => {
                let codes: Vec<i32> = words.iter().map(|&w| self.signed(w) as i32).collect();
                Tensor::from_slice(&codes)
                    .view(self.shape.as_slice())
                    .to_kind(Kind::Float)
                    * scale
            }
        }
    }
}

/// Correct count of `model` with `group` applied and `defense` recovering, computed from scratch.
fn reference(
    model: &Model,
    data: &Dataset,
    storage: Storage,
    defense: Defense,
    seed: u64,
    group: &[(String, i64, u8)],
) -> i64 {
    let ts = tensors(model, storage);
    let live = model.named_tensors();
    let saved: Vec<Tensor> = live.iter().map(|(_, t, _)| t.detach().copy()).collect();
    // RADAR's key is the only thing taken from the engine: it is a secret, not a computation.
    let inj = hart::faults::inject::Injector::new(model, storage, Granularity::PerTensor, defense, seed).unwrap();
    for (ti, (name, _, width)) in ts.iter().enumerate() {
        let t = &live.iter().find(|(n, _, _)| n == name).unwrap().1;
        let r = RefTensor::new(&saved[live.iter().position(|(n, _, _)| n == name).unwrap()], *width);
        let clean = r.decode(&r.words);
        let mut words = r.words.clone();
        for (p, i, b) in group.iter().filter(|(p, _, _)| p == name) {
            let _ = p;
            words[*i as usize] ^= 1 << b;
        }
        let mut faulty = r.decode(&words);
        match defense {
            Defense::None => {}
            Defense::Range => {
                let bad = faulty
                    .lt_tensor(&clean.min())
                    .logical_or(&faulty.gt_tensor(&clean.max()))
                    .logical_or(&faulty.isnan());
                faulty = faulty.masked_fill(&bad, 0.0);
            }
            Defense::Radar { group: g } => {
                let n = words.len();
                let m = groups(n, g);
                let sig = |ws: &[u32], gi: usize| {
                    let s = (gi..n).step_by(m).fold(0i64, |a, i| {
                        a.wrapping_add(inj.armed.key(ti, i).wrapping_mul(r.signed(ws[i])))
                    });
                    (s >> (r.width - 2)) & 3
                };
                let mut mask = vec![false; n];
                for gi in 0..m {
                    if sig(&words, gi) != sig(&r.words, gi) {
                        for i in (gi..n).step_by(m) {
                            mask[i] = true;
                        }
                    }
                }
                let mask = Tensor::from_slice(&mask).view(r.shape.as_slice());
                faulty = faulty.masked_fill(&mask, 0.0);
            }
        }
        tch::no_grad(|| t.shallow_clone().copy_(&faulty));
    }
    let correct = hart::eval::evaluate(model, data, 7, tch::Device::Cpu).unwrap().correct;
    drop(inj);
    for ((_, t, _), s) in live.iter().zip(&saved) {
        tch::no_grad(|| t.shallow_clone().copy_(s));
    }
    correct
}

#[test]
fn grouped_lists_match_the_reference_for_every_storage_and_defense() {
    for arch in ["mlp", "lenet5"] {
        let model = zoo_model(arch, 1, 28);
        let data = dataset(&model, 24, 1, 28, 3);
        let before = model_hash(&model).unwrap();
        for storage in [Storage::Fp32, Storage::Int8, Storage::Int4] {
            for defense in [Defense::None, Defense::Range, Defense::Radar { group: 4 }] {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("faults.csv");
                // 32 groups: with 12, only 2-3 changed a prediction of the untrained MLP.
                let list = grouped_list(&model, storage, &path, 32, 5);
                let cfg = SweepConfig {
                    faults: Some(path),
                    storage,
                    defense,
                    seed: 9,
                    batch: 5,
                    ..SweepConfig::new()
                };
                let sw = prepare(&model, &data, &cfg).unwrap_or_else(|e| panic!("{e}"));
                let groups = sw.groups.clone().expect("grouped");
                let rows = hart::faults::groups::evaluate(&sw, &groups, &mut |_| {}).unwrap();
                drop(sw);
                assert_eq!(
                    model_hash(&model).unwrap(),
                    before,
                    "{arch} {storage} {defense}: weights not restored"
                );
                let mut changed = 0;
                for (row, group) in rows.iter().zip(&list) {
                    let want = reference(&model, &data, storage, defense, 9, group);
                    assert_eq!(
                        row.correct, want,
                        "{arch} {storage} {defense} group {}: {group:?}",
                        row.group
                    );
                    changed += (row.rad != 0.0 || row.detected_flips > 0) as usize;
                }
                assert_eq!(rows.len(), list.len());
                assert!(
                    changed > 0,
                    "{arch} {storage} {defense}: nothing changed or detected, the comparison proves nothing"
                );
            }
        }
    }
}

/// Single flips of int8 codes under `range` stay on the fast engine; under
/// RADAR they take the faulted engine. Both must equal the reference.
#[test]
fn single_flips_with_storage_and_defense_match_the_reference() {
    let model = zoo_model("lenet5", 1, 28);
    let data = dataset(&model, 24, 1, 28, 3);
    for defense in [Defense::None, Defense::Range, Defense::Radar { group: 8 }] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("faults.csv");
        let singles: Vec<Vec<(String, i64, u8)>> = grouped_list(&model, Storage::Int8, &path, 20, 8)
            .into_iter()
            .map(|g| vec![g[0].clone()])
            .collect();
        let mut f = std::fs::File::create(&path).unwrap();
        for g in &singles {
            writeln!(f, "{},{},{}", g[0].0, g[0].1, g[0].2).unwrap();
        }
        drop(f);
        for engine in [EngineKind::Auto, EngineKind::Reference] {
            let cfg = SweepConfig {
                faults: Some(path.clone()),
                storage: Storage::Int8,
                defense,
                seed: 9,
                engine,
                exact_rad: true,
                batch: 5,
                jobs: Some(1),
                ..SweepConfig::new()
            };
            let sw = prepare(&model, &data, &cfg).unwrap_or_else(|e| panic!("{e}"));
            assert!(sw.groups.is_none());
            let rows = sw.collect().unwrap();
            drop(sw);
            let mut changed = 0;
            for (row, g) in rows.iter().zip(&singles) {
                let want = reference(&model, &data, Storage::Int8, defense, 9, g);
                assert_eq!(row.correct, want, "{defense} {engine:?} {g:?}");
                changed += (row.rad != 0.0 || row.new == 0.0) as usize;
            }
            assert!(changed > 0, "{defense}: nothing changed");
        }
    }
}

#[test]
fn bad_grouped_lists_are_one_line_errors() {
    let model = zoo_model("mlp", 1, 28);
    let data = dataset(&model, 8, 1, 28, 3);
    let name = tensors(&model, Storage::Int8).into_iter().find(|t| t.2 == 8).unwrap().0;
    let cases = [
        (
            format!("group,param,index,bit\na,{name},0,8\n"),
            Storage::Int8,
            "outside",
        ),
        (
            format!("group,param,index,bit\na,{name},0,3\na,{name},0,3\n"),
            Storage::Int8,
            "twice",
        ),
        (
            format!("group,param,index,bit\na,{name},0,3\na,nosuch.weight,0,3\n"),
            Storage::Int8,
            "unknown parameter",
        ),
        (
            format!("group,param,bit\na,{name},3\n"),
            Storage::Fp32,
            "no \"index\" column",
        ),
        (
            format!("group,param,index,bit\na,{name},0\n"),
            Storage::Fp32,
            "expected param,index,bit",
        ),
    ];
    for (text, storage, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("faults.csv");
        std::fs::write(&path, &text).unwrap();
        let cfg = SweepConfig {
            faults: Some(path),
            storage,
            ..SweepConfig::new()
        };
        let err = prepare(&model, &data, &cfg).err().expect("must fail").to_string();
        assert!(err.contains(want) && !err.contains('\n'), "{text:?}: {err}");
    }
}

/// Slices over `INPUT_BYTES` keep no input images and engines read batches
/// from the dataset instead: the same rows either way.
#[test]
fn evaluation_without_cached_inputs_reads_the_same_images() {
    let model = zoo_model("mlp", 1, 28);
    let data = dataset(&model, 24, 1, 28, 3);
    for storage in [Storage::Fp32, Storage::Int8] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("faults.csv");
        grouped_list(&model, storage, &path, 32, 5);
        let cfg = SweepConfig {
            faults: Some(path),
            storage,
            seed: 9,
            batch: 5,
            ..SweepConfig::new()
        };
        let mut sw = prepare(&model, &data, &cfg).unwrap();
        let groups = sw.groups.clone().unwrap();
        let counts = |sw: &hart::faults::Sweep| -> Vec<i64> {
            let rows = hart::faults::groups::evaluate(sw, &groups, &mut |_| {}).unwrap();
            rows.iter().map(|r| r.correct).collect()
        };
        let cached = counts(&sw);
        assert!(sw.clean.inputs.is_some());
        assert!(
            cached.iter().any(|c| *c != sw.clean.correct_count),
            "{storage}: no group changed anything"
        );
        sw.clean.inputs = None;
        assert_eq!(counts(&sw), cached, "{storage}");
    }
}

/// RADAR's engine evaluates each recovered state once: the top two bits of
/// every element of a weight tensor (every flip detected, each group's
/// members sharing one zeroed state) and a few low bits (mostly undetected,
/// states of their own) must each equal the reference flip by flip.
#[test]
fn radar_sweeps_of_whole_groups_match_the_reference() {
    let model = zoo_model("lenet5", 1, 28);
    let data = dataset(&model, 24, 1, 28, 3);
    let defense = Defense::Radar { group: 4 };
    let (name, numel, _) = tensors(&model, Storage::Int8)
        .into_iter()
        .find(|t| t.2 == 8 && t.1 <= 200)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faults.csv");
    let mut flips = vec![];
    for i in 0..numel {
        for bit in [7u8, 6] {
            flips.push(vec![(name.clone(), i, bit)]);
        }
        if i % 7 == 0 {
            flips.push(vec![(name.clone(), i, 1)]);
        }
    }
    let mut f = std::fs::File::create(&path).unwrap();
    for g in &flips {
        writeln!(f, "{},{},{}", g[0].0, g[0].1, g[0].2).unwrap();
    }
    drop(f);
    let cfg = SweepConfig {
        faults: Some(path.clone()),
        storage: Storage::Int8,
        defense,
        seed: 3,
        exact_rad: true,
        batch: 8,
        jobs: Some(1),
        ..SweepConfig::new()
    };
    let sw = prepare(&model, &data, &cfg).unwrap_or_else(|e| panic!("{e}"));
    let rows = sw.collect().unwrap();
    drop(sw);
    assert_eq!(rows.len(), flips.len());
    let mut changed = 0;
    for (row, g) in rows.iter().zip(&flips) {
        let want = reference(&model, &data, Storage::Int8, defense, 3, g);
        assert_eq!(row.correct, want, "{g:?}");
        changed += (row.rad != 0.0) as usize;
    }
    assert!(changed > 0, "no flip changed the accuracy");
}
