//! How weights sit in memory, and what a bit fault does to them: fp32 (the
//! IEEE-754 word, as the sweep has always flipped it) or the symmetric int8 /
//! int4 codes of `hart quantize` (two's complement, bit 0 = LSB), decoded
//! back to floats for the forward pass. Faults act on stored words; the
//! model only ever sees decoded values.

use std::collections::HashMap;

use tch::{Kind, Tensor};

use super::bits::read_elements;
use crate::compress::quantize::{quantize, Granularity};
use crate::error::{HartError, Result};
use crate::model::{Model, ParamKind};

/// The storage format of a model's weight tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    Fp32,
    Int8,
    Int4,
}

impl std::str::FromStr for Storage {
    type Err = HartError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fp32" => Ok(Storage::Fp32),
            "int8" => Ok(Storage::Int8),
            "int4" => Ok(Storage::Int4),
            _ => Err(HartError::Invalid(format!(
                "unknown storage {s:?} (fp32, int8 or int4)"
            ))),
        }
    }
}

impl std::fmt::Display for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Storage::Fp32 => "fp32",
            Storage::Int8 => "int8",
            Storage::Int4 => "int4",
        })
    }
}

impl Storage {
    /// Code width of the integer formats (None for fp32).
    pub fn int_bits(&self) -> Option<u32> {
        match self {
            Storage::Fp32 => None,
            Storage::Int8 => Some(8),
            Storage::Int4 => Some(4),
        }
    }
}

/// The one rule for which tensors an integer storage holds as codes: the
/// trainable float weights of rank ≥ 2 that `hart quantize` quantizes.
/// Everything else (biases, normalisation parameters, buffers) stays fp32.
pub fn stored_as_int(tensor: &Tensor, kind: ParamKind) -> bool {
    kind == ParamKind::Trainable && tensor.kind() == Kind::Float && tensor.dim() >= 2
}

/// One tensor's stored words: the raw fp32 bits, or the integer codes in the
/// low `width` bits (two's complement), with their scales.
#[derive(Debug, Clone)]
pub struct StoredTensor {
    pub name: String,
    /// Bits per word: 32, 8 or 4.
    pub width: u8,
    /// The clean words, one per element (flat, row-major).
    pub words: Vec<u32>,
    /// Integer formats: one scale per channel (or one per tensor).
    scales: Vec<f32>,
    /// Elements per scale (numel for a per-tensor scale).
    per_scale: usize,
}

impl StoredTensor {
    pub fn numel(&self) -> usize {
        self.words.len()
    }

    pub fn is_int(&self) -> bool {
        self.width < 32
    }

    /// The float a word stands for at element `index`.
    pub fn decode(&self, index: usize, word: u32) -> f32 {
        if !self.is_int() {
            return f32::from_bits(word);
        }
        // Sign-extend the low `width` bits; code × scale in f32 is what
        // torch's dequantize computes, so clean values match bit for bit.
        let shift = 32 - self.width as u32;
        let code = ((word << shift) as i32) >> shift;
        code as f32 * self.scales[index / self.per_scale]
    }

    /// The clean value of element `index`.
    pub fn value(&self, index: usize) -> f32 {
        self.decode(index, self.words[index])
    }

    /// The code (int formats) or raw word as a signed integer: what RADAR sums.
    pub fn signed(&self, word: u32) -> i64 {
        if self.is_int() {
            let shift = 32 - self.width as u32;
            (((word << shift) as i32) >> shift) as i64
        } else {
            word as i64
        }
    }

    /// Checks a bit position against this tensor's word width.
    pub fn check_bit(&self, bit: u8) -> Result<()> {
        if bit < self.width {
            Ok(())
        } else {
            Err(HartError::Invalid(format!(
                "bit {bit} is outside {}'s {}-bit {} words (0-{})",
                self.name,
                self.width,
                if self.is_int() { "integer" } else { "fp32" },
                self.width - 1
            )))
        }
    }
}

/// The word with bit `bit` flipped.
pub fn flip_word(word: u32, bit: u8) -> u32 {
    word ^ (1u32 << bit)
}

/// The word with bit `bit` forced to `value` (stuck-at), and whether that changed it.
pub fn set_word(word: u32, bit: u8, value: bool) -> (u32, bool) {
    let w = if value {
        word | (1u32 << bit)
    } else {
        word & !(1u32 << bit)
    };
    (w, w != word)
}

/// Every float tensor of a model as stored words.
#[derive(Debug, Clone)]
pub struct Stored {
    pub storage: Storage,
    pub granularity: Granularity,
    pub tensors: Vec<StoredTensor>,
    by_name: HashMap<String, usize>,
}

impl Stored {
    /// Encodes `model`'s float tensors. With an integer storage the
    /// int-stored tensors are quantized *in place* (the model then computes
    /// with the decoded codes, which is what a quantized deployment runs);
    /// fp32 leaves the model untouched.
    pub fn encode(model: &Model, storage: Storage, granularity: Granularity) -> Result<Stored> {
        let mut tensors = vec![];
        for (name, t, kind) in model.named_tensors() {
            if t.kind() != Kind::Float {
                continue;
            }
            let numel = t.numel();
            let st = match storage.int_bits() {
                Some(bits) if stored_as_int(&t, kind) => {
                    let q = quantize(&t, bits, granularity)
                        .map_err(|e| HartError::Invalid(format!("quantizing {name}: {e}")))?;
                    let codes = Vec::<i32>::try_from(q.codes.f_flatten(0, -1)?.f_to_device(tch::Device::Cpu)?)?;
                    let scales = Vec::<f32>::try_from(q.scale.f_flatten(0, -1)?.f_to_device(tch::Device::Cpu)?)?;
                    let mask = (1u32 << bits) - 1;
                    let st = StoredTensor {
                        name: name.clone(),
                        width: bits as u8,
                        words: codes.iter().map(|&c| c as u32 & mask).collect(),
                        per_scale: numel / scales.len().max(1),
                        scales,
                    };
                    tch::no_grad(|| t.shallow_clone().f_copy_(&q.dequantize()))?;
                    st
                }
                _ => StoredTensor {
                    name: name.clone(),
                    width: 32,
                    words: read_elements(&t, 0, numel as i64)?
                        .iter()
                        .map(|x| x.to_bits())
                        .collect(),
                    scales: vec![],
                    per_scale: numel.max(1),
                },
            };
            tensors.push(st);
        }
        let by_name = tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        Ok(Stored {
            storage,
            granularity,
            tensors,
            by_name,
        })
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub fn get(&self, name: &str) -> Result<&StoredTensor> {
        self.index(name)
            .map(|i| &self.tensors[i])
            .ok_or_else(|| HartError::Invalid(format!("{name} is not a stored float tensor")))
    }

    /// The clean and flipped value of one single-bit flip.
    pub fn flip_values(&self, name: &str, index: i64, bit: u8) -> Result<(f32, f32)> {
        let t = self.get(name)?;
        t.check_bit(bit)?;
        let i = index as usize;
        Ok((t.value(i), t.decode(i, flip_word(t.words[i], bit))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int8(words: Vec<u32>, scale: f32) -> StoredTensor {
        StoredTensor {
            name: "w".into(),
            width: 8,
            per_scale: words.len(),
            words,
            scales: vec![scale],
        }
    }

    #[test]
    fn codes_are_twos_complement() {
        let t = int8(vec![0x7F, 0x81, 0x00], 0.5);
        assert_eq!(t.value(0), 63.5);
        assert_eq!(t.value(1), -63.5);
        // Bit 7 of +0 gives −128, the code symmetric quantization never uses.
        assert_eq!(t.decode(2, flip_word(0, 7)), -64.0);
        assert_eq!(t.decode(0, flip_word(0x7F, 0)), 63.0);
        assert!(t.check_bit(7).is_ok() && t.check_bit(8).is_err());
    }

    #[test]
    fn stuck_at_reports_change() {
        assert_eq!(set_word(0b100, 2, true), (0b100, false));
        assert_eq!(set_word(0b100, 2, false), (0, true));
        assert_eq!(set_word(0, 0, true), (1, true));
    }

    #[test]
    fn parse_storage() {
        assert_eq!("int4".parse::<Storage>().unwrap(), Storage::Int4);
        assert!("int16".parse::<Storage>().is_err());
    }
}
