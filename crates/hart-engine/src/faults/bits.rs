//! IEEE-754 binary32 bit positions, the bit classes a sweep selects, and
//! bit-exact reads and writes of single tensor elements.

use tch::{Kind, Tensor};

use crate::error::{HartError, Result};

/// A set of bit positions (bit `k` of the mask = IEEE position `k`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitSet(pub u32);

impl BitSet {
    pub const ALL: BitSet = BitSet(u32::MAX);

    /// `all`, `sign`, `exponent`, `exponent-msb`, `mantissa`, or a list such as `0,5,23-30`.
    pub fn parse(spec: &str) -> Result<BitSet> {
        let named = match spec.trim() {
            "all" => Some(u32::MAX),
            "sign" => Some(1 << 31),
            "exponent" => Some(0xFF << 23),
            "exponent-msb" => Some(1 << 30),
            "mantissa" => Some((1 << 23) - 1),
            _ => None,
        };
        if let Some(m) = named {
            return Ok(BitSet(m));
        }
        let bad = |part: &str| {
            HartError::Invalid(format!(
                "--bits {spec:?}: bad entry {part:?} (expected all, sign, exponent, exponent-msb, mantissa or positions 0-31 such as 0,5,23-30)"
            ))
        };
        let mut mask = 0u32;
        for part in spec.split(',').map(str::trim) {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let lo = parse_bit(lo).ok_or_else(|| bad(part))?;
            let hi = parse_bit(hi).ok_or_else(|| bad(part))?;
            if lo > hi {
                return Err(bad(part));
            }
            for b in lo..=hi {
                mask |= 1 << b;
            }
        }
        Ok(BitSet(mask))
    }

    /// Positions in ascending order: the order flips of one element are enumerated in.
    pub fn positions(&self) -> Vec<u8> {
        (0..32u8).filter(|b| self.0 & (1 << b) != 0).collect()
    }

    pub fn len(&self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }
}

/// A bit position 0–31, as written in fault lists and `--bits`.
pub fn parse_bit(s: &str) -> Option<u8> {
    s.trim().parse::<u8>().ok().filter(|b| *b < 32)
}

/// The value with one bit flipped.
pub fn flip(x: f32, bit: u8) -> f32 {
    f32::from_bits(x.to_bits() ^ (1u32 << bit))
}

/// Which part of the float a position belongs to, for reports.
pub fn field(bit: u8) -> &'static str {
    match bit {
        31 => "sign",
        23..=30 => "exponent",
        _ => "mantissa",
    }
}

/// Elements `start..start+len` of a float32 tensor, bit for bit (a memcpy, so
/// no NaN payload or signed zero is normalised on the way).
pub fn read_elements(t: &Tensor, start: i64, len: i64) -> Result<Vec<f32>> {
    let flat = t
        .detach()
        .f_flatten(0, -1)?
        .f_narrow(0, start, len)?
        .f_to_device(tch::Device::Cpu)?;
    Ok(Vec::<f32>::try_from(&flat.contiguous())?)
}

/// Elements `indices` of `t` (flat), copied as they are stored.
pub fn gather_elements(t: &Tensor, indices: &[i64]) -> Result<Vec<f32>> {
    let flat = t
        .detach()
        .f_flatten(0, -1)?
        .f_index_select(0, &Tensor::from_slice(indices).f_to_device(t.device())?)?
        .f_to_device(tch::Device::Cpu)?;
    Ok(Vec::<f32>::try_from(&flat)?)
}

/// Overwrites one element in place through a view of the tensor's own
/// storage, so every graph node and caller sharing the tensor sees the flip.
/// The value travels as raw bytes (`from_slice` + `copy_`): a float conversion
/// could quieten a signalling NaN and break bit-exact restoration.
pub fn write_element(t: &Tensor, index: i64, value: f32) -> Result<()> {
    if t.kind() != Kind::Float {
        return Err(HartError::Invalid(format!(
            "cannot flip bits of a {:?} tensor",
            t.kind()
        )));
    }
    let src = Tensor::from_slice(&[value]).f_to_device(t.device())?;
    tch::no_grad(|| -> Result<()> {
        let mut dst = t.f_view([-1])?.f_narrow(0, index, 1)?;
        dst.f_copy_(&src)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_lists() {
        assert_eq!(BitSet::parse("sign").unwrap().positions(), vec![31]);
        assert_eq!(
            BitSet::parse("exponent").unwrap().positions(),
            (23..=30).collect::<Vec<_>>()
        );
        assert_eq!(BitSet::parse("mantissa").unwrap().len(), 23);
        assert_eq!(BitSet::parse("0, 5,30-31").unwrap().positions(), vec![0, 5, 30, 31]);
        for bad in ["32", "-1", "5-3", "x", ""] {
            assert!(BitSet::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn flip_is_an_involution_on_all_bits() {
        for x in [0.0f32, -0.0, 1.0, -3.25e-7, f32::MIN_POSITIVE, 65504.0] {
            for b in 0..32 {
                let y = flip(x, b);
                assert_ne!(x.to_bits(), y.to_bits());
                assert_eq!(flip(y, b).to_bits(), x.to_bits());
            }
        }
        assert_eq!(flip(1.0, 31), -1.0);
        assert!(
            flip(1.0, 30).is_infinite(),
            "1.0 has exponent 127; setting bit 30 gives 255"
        );
    }
}
