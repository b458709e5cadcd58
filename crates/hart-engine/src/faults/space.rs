//! The flip space: which (tensor, element, bit) triples a sweep covers, in a
//! fixed order. A flip's ordinal in that order is its identity: work units,
//! shards, the resume journal and the output table are all ranges of it.

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use regex::Regex;
use tch::{Kind, Tensor};

use super::bits::BitSet;
use crate::error::{HartError, Result};
use crate::model::{Model, ParamKind};

/// Which tensors a sweep covers by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every float32 tensor: weights, biases and float buffers such as
    /// BatchNorm running statistics (they sit in the same memory).
    All,
    /// Trainable parameters only.
    Params,
    /// Trainable 4-D tensors: convolution weights.
    Conv,
}

impl std::str::FromStr for Scope {
    type Err = HartError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "all" => Ok(Scope::All),
            "params" => Ok(Scope::Params),
            "conv" => Ok(Scope::Conv),
            _ => Err(HartError::Invalid(format!("unknown scope {s:?} (all, params or conv)"))),
        }
    }
}

/// `--sample-params`: a number of elements, or a share of the selected ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SampleSize {
    Count(u64),
    Share(f64),
}

impl std::str::FromStr for SampleSize {
    type Err = HartError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            HartError::Invalid(format!(
                "--sample-params {s:?}: a number of elements (e.g. 1000) or a share in (0, 1] (e.g. 0.5)"
            ))
        };
        if let Ok(k) = s.parse::<u64>() {
            return Ok(SampleSize::Count(k));
        }
        match s.parse::<f64>() {
            Ok(share) if share > 0.0 && share <= 1.0 => Ok(SampleSize::Share(share)),
            _ => Err(bad()),
        }
    }
}

impl SampleSize {
    /// Elements to draw out of `total`.
    pub fn of(self, total: u64) -> u64 {
        match self {
            SampleSize::Count(k) => k,
            SampleSize::Share(share) => ((share * total as f64).round() as u64).max(1),
        }
    }

    pub fn to_json(self) -> serde_json::Value {
        match self {
            SampleSize::Count(k) => serde_json::json!(k),
            SampleSize::Share(share) => serde_json::json!(share),
        }
    }
}

/// A float tensor the sweep may flip.
#[derive(Debug)]
pub struct Target {
    pub name: String,
    pub tensor: Tensor,
    pub numel: i64,
    pub kind: ParamKind,
}

/// One single-bit fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flip {
    /// Index into [`FlipSpace::targets`].
    pub target: usize,
    /// Flat (row-major) element index.
    pub index: i64,
    pub bit: u8,
}

/// A contiguous ordinal range whose flips all hit one tensor: the granule of
/// work, durability and sharding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    pub id: usize,
    pub start: u64,
    pub end: u64,
}

impl Unit {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

#[derive(Debug, Clone)]
enum Source {
    /// Every element of every target, each with every selected bit.
    Exhaustive { offsets: Vec<u64> },
    /// Chosen elements (sorted by target then index), each with every selected bit.
    Elements(Vec<(usize, i64)>),
    /// An explicit fault list, in file order.
    List(Vec<Flip>),
}

#[derive(Debug)]
pub struct FlipSpace {
    pub targets: Vec<Target>,
    pub bits: Vec<u8>,
    /// Storage format and defence when not plain fp32 without defence:
    /// what a flip does to the stored word and what the forward pass sees.
    pub inject: Option<std::sync::Arc<super::inject::Injector>>,
    source: Source,
    units: Vec<Unit>,
}

/// At most this many flips per work unit: small enough that a killed run
/// loses little, large enough that per-unit bookkeeping is noise.
pub const UNIT_FLIPS: u64 = 4096;

/// Flips per unit of a space of `total` flips: smaller spaces get smaller
/// units (down to 512) so that they still spread over the workers.
fn unit_cap(total: u64) -> u64 {
    (total / 16).clamp(512, UNIT_FLIPS)
}

/// The float tensors of `model` a sweep over `scope` and `params` may flip.
pub fn select_targets(model: &Model, scope: Scope, params: Option<&str>) -> Result<Vec<Target>> {
    let re = params
        .map(|p| Regex::new(&format!("^(?:{p})$")).map_err(|e| HartError::Invalid(format!("--params {p:?}: {e}"))))
        .transpose()?;
    let mut skipped_non_float = vec![];
    let mut targets = vec![];
    for (name, tensor, kind) in model.named_tensors() {
        if re.as_ref().is_some_and(|r| !r.is_match(&name)) {
            continue;
        }
        if tensor.kind() != Kind::Float {
            skipped_non_float.push(format!("{name} ({:?})", tensor.kind()));
            continue;
        }
        if scope != Scope::All && kind != ParamKind::Trainable {
            continue;
        }
        if scope == Scope::Conv && tensor.dim() != 4 {
            continue;
        }
        let numel = tensor.numel() as i64;
        targets.push(Target {
            name,
            tensor,
            numel,
            kind,
        });
    }
    if targets.is_empty() {
        let why = if skipped_non_float.is_empty() {
            String::new()
        } else {
            format!(" (matched only non-float tensors: {})", skipped_non_float.join(", "))
        };
        return Err(HartError::Invalid(format!(
            "no float32 tensor to flip{}{why}",
            params.map(|p| format!(" matches --params {p:?}")).unwrap_or_default()
        )));
    }
    Ok(targets)
}

impl FlipSpace {
    /// Every element of every target, each with every bit in `bits`.
    pub fn exhaustive(targets: Vec<Target>, bits: BitSet) -> Result<Self> {
        let nb = nonempty(bits)?;
        let mut offsets = vec![0u64];
        for t in &targets {
            offsets.push(offsets.last().unwrap() + t.numel as u64 * nb);
        }
        let cap = unit_cap(*offsets.last().unwrap_or(&0));
        let units = element_units(&targets, nb, cap, |t| (0..targets[t].numel).map(move |i| (t, i)));
        Ok(FlipSpace {
            targets,
            bits: bits.positions(),
            inject: None,
            source: Source::Exhaustive { offsets },
            units,
        })
    }

    /// `size` elements drawn uniformly without replacement over all target
    /// elements (deterministic for a seed), each with every bit in `bits`.
    pub fn sampled(targets: Vec<Target>, bits: BitSet, size: SampleSize, seed: u64) -> Result<Self> {
        let nb = nonempty(bits)?;
        let total: i64 = targets.iter().map(|t| t.numel).sum();
        let k = size.of(total as u64);
        if k == 0 || k > total as u64 {
            return Err(HartError::Invalid(format!(
                "--sample-params {k}: must be between 1 and the {total} selected elements"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut picks: Vec<usize> = sample(&mut rng, total as usize, k as usize).into_vec();
        picks.sort_unstable();
        let mut starts = vec![0i64];
        for t in &targets {
            starts.push(starts.last().unwrap() + t.numel);
        }
        let elements: Vec<(usize, i64)> = picks
            .into_iter()
            .map(|p| {
                let t = starts.partition_point(|&s| s <= p as i64) - 1;
                (t, p as i64 - starts[t])
            })
            .collect();
        let units = {
            let els = &elements;
            element_units(&targets, nb, unit_cap(k * nb), |t| {
                els.iter().copied().filter(move |e| e.0 == t)
            })
        };
        Ok(FlipSpace {
            targets,
            bits: bits.positions(),
            inject: None,
            source: Source::Elements(elements),
            units,
        })
    }

    /// Exactly the flips of a fault list, in its order.
    pub fn from_list(targets: Vec<Target>, flips: Vec<Flip>) -> Self {
        let mut units = vec![];
        let mut start = 0usize;
        let cap = unit_cap(flips.len() as u64);
        while start < flips.len() {
            let t = flips[start].target;
            let mut end = start + 1;
            while end < flips.len() && flips[end].target == t && ((end - start) as u64) < cap {
                end += 1;
            }
            units.push(Unit {
                id: units.len(),
                start: start as u64,
                end: end as u64,
            });
            start = end;
        }
        let mut bits: Vec<u8> = flips.iter().map(|f| f.bit).collect();
        bits.sort_unstable();
        bits.dedup();
        FlipSpace {
            targets,
            bits,
            inject: None,
            source: Source::List(flips),
            units,
        }
    }

    pub fn len(&self) -> u64 {
        match &self.source {
            Source::Exhaustive { offsets } => *offsets.last().unwrap(),
            Source::Elements(e) => e.len() as u64 * self.bits.len() as u64,
            Source::List(l) => l.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Flips in the exhaustive space over the same targets and bits: the
    /// population a sample estimates.
    pub fn population(&self) -> u64 {
        self.targets.iter().map(|t| t.numel as u64).sum::<u64>() * self.bits.len() as u64
    }

    pub fn units(&self) -> &[Unit] {
        &self.units
    }

    pub fn flip(&self, ordinal: u64) -> Flip {
        let nb = self.bits.len() as u64;
        match &self.source {
            Source::Exhaustive { offsets } => {
                let t = offsets.partition_point(|&o| o <= ordinal) - 1;
                let rel = ordinal - offsets[t];
                Flip {
                    target: t,
                    index: (rel / nb) as i64,
                    bit: self.bits[(rel % nb) as usize],
                }
            }
            Source::Elements(e) => {
                let (t, i) = e[(ordinal / nb) as usize];
                Flip {
                    target: t,
                    index: i,
                    bit: self.bits[(ordinal % nb) as usize],
                }
            }
            Source::List(l) => l[ordinal as usize],
        }
    }

    pub fn unit_flips(&self, unit: &Unit) -> Vec<Flip> {
        (unit.start..unit.end).map(|o| self.flip(o)).collect()
    }

    /// The same flips over `model`'s tensors of the same names (a worker's
    /// own copy of the model).
    pub fn rebind(&self, model: &Model) -> Result<FlipSpace> {
        let tensors: std::collections::HashMap<String, Tensor> =
            model.named_tensors().into_iter().map(|(n, t, _)| (n, t)).collect();
        let targets = self
            .targets
            .iter()
            .map(|t| {
                let tensor = tensors
                    .get(&t.name)
                    .ok_or_else(|| HartError::Model(format!("the model copy has no tensor {}", t.name)))?;
                Ok(Target {
                    name: t.name.clone(),
                    tensor: tensor.shallow_clone(),
                    numel: t.numel,
                    kind: t.kind,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FlipSpace {
            targets,
            bits: self.bits.clone(),
            inject: self.inject.clone(),
            source: self.source.clone(),
            units: self.units.clone(),
        })
    }

    pub fn target_index(&self, name: &str) -> Option<usize> {
        self.targets.iter().position(|t| t.name == name)
    }
}

fn nonempty(bits: BitSet) -> Result<u64> {
    if bits.is_empty() {
        return Err(HartError::Invalid("--bits selects no bit".into()));
    }
    Ok(bits.len() as u64)
}

/// Units of whole elements (all bits of an element stay together, so the
/// fast engine computes an element's bound once), one tensor per unit.
fn element_units<I: Iterator<Item = (usize, i64)>>(
    targets: &[Target],
    nb: u64,
    cap: u64,
    elements_of: impl Fn(usize) -> I,
) -> Vec<Unit> {
    let per_unit = (cap / nb).max(1);
    let mut units = vec![];
    let mut ordinal = 0u64;
    for t in 0..targets.len() {
        let n = elements_of(t).count() as u64;
        let mut done = 0;
        while done < n {
            let take = per_unit.min(n - done);
            units.push(Unit {
                id: units.len(),
                start: ordinal,
                end: ordinal + take * nb,
            });
            ordinal += take * nb;
            done += take;
        }
    }
    units
}
