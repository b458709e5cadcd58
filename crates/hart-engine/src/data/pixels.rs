//! A data set's pixels as they were stored: bytes (IDX, CIFAR, images,
//! uint8 tensor files) or float32 values already in [0, 1] (float32 tensor
//! files), so neither is converted to the other and loses precision.

use tch::{Kind, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub enum Pixels {
    /// 0..=255, scaled by 1/255 on the way to a tensor (torchvision's ToTensor).
    U8(Vec<u8>),
    /// In [0, 1] and finite (checked at load), used as they are.
    F32(Vec<f32>),
}

impl From<Vec<u8>> for Pixels {
    fn from(v: Vec<u8>) -> Self {
        Pixels::U8(v)
    }
}

impl From<Vec<f32>> for Pixels {
    fn from(v: Vec<f32>) -> Self {
        Pixels::F32(v)
    }
}

impl FromIterator<u8> for Pixels {
    fn from_iter<I: IntoIterator<Item = u8>>(iter: I) -> Self {
        Pixels::U8(iter.into_iter().collect())
    }
}

impl PartialEq<[u8]> for Pixels {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_u8() == Some(other)
    }
}

impl PartialEq<Vec<u8>> for Pixels {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.as_u8() == Some(other.as_slice())
    }
}

impl Pixels {
    /// Number of pixel values (N·C·H·W).
    pub fn len(&self) -> usize {
        match self {
            Pixels::U8(v) => v.len(),
            Pixels::F32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_u8(&self) -> Option<&[u8]> {
        match self {
            Pixels::U8(v) => Some(v),
            Pixels::F32(_) => None,
        }
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            Pixels::F32(v) => Some(v),
            Pixels::U8(_) => None,
        }
    }

    /// Bytes that identify the values (for content hashes): a byte set's
    /// bytes as they are, so hashes of the formats HART read before float
    /// sets existed are unchanged; float values tagged so neither kind can
    /// hash like the other.
    pub fn hash_into(&self, h: &mut impl sha2::Digest) {
        match self {
            Pixels::U8(v) => h.update(v),
            Pixels::F32(v) => {
                h.update(b"float32:");
                for chunk in v.chunks(1 << 14) {
                    let bytes: Vec<u8> = chunk.iter().flat_map(|x| x.to_le_bytes()).collect();
                    h.update(&bytes);
                }
            }
        }
    }

    /// The same kind, no values.
    pub(crate) fn no_records(&self) -> Pixels {
        match self {
            Pixels::U8(_) => Pixels::U8(vec![]),
            Pixels::F32(_) => Pixels::F32(vec![]),
        }
    }

    /// Records `indices` (of `rec` values each), in that order.
    pub(crate) fn pick_records(&self, rec: usize, indices: &[usize]) -> Pixels {
        fn pick<T: Copy>(v: &[T], rec: usize, indices: &[usize]) -> Vec<T> {
            let mut out = Vec::with_capacity(indices.len() * rec);
            for &i in indices {
                out.extend_from_slice(&v[i * rec..(i + 1) * rec]);
            }
            out
        }
        match self {
            Pixels::U8(v) => Pixels::U8(pick(v, rec, indices)),
            Pixels::F32(v) => Pixels::F32(pick(v, rec, indices)),
        }
    }

    /// All values as a flat float32 tensor in [0, 1].
    pub(crate) fn tensor(&self) -> Tensor {
        self.range_tensor(0, self.len())
    }

    /// Values `start..end` as a flat float32 tensor in [0, 1].
    pub(crate) fn range_tensor(&self, start: usize, end: usize) -> Tensor {
        match self {
            // Divide rather than multiply by 1/255 so values match ToTensor bit for bit.
            Pixels::U8(v) => Tensor::from_slice(&v[start..end]).to_kind(Kind::Float) / 255.0,
            Pixels::F32(v) => Tensor::from_slice(&v[start..end]),
        }
    }

    pub(crate) fn truncate(&mut self, n: usize) {
        match self {
            Pixels::U8(v) => v.truncate(n),
            Pixels::F32(v) => v.truncate(n),
        }
    }

    pub(crate) fn split_off(&mut self, at: usize) -> Pixels {
        match self {
            Pixels::U8(v) => Pixels::U8(v.split_off(at)),
            Pixels::F32(v) => Pixels::F32(v.split_off(at)),
        }
    }
}
