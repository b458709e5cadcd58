//! DeiT-Tiny (Touvron et al. 2021) with timm's parameter names. Attention is
//! spelt out as matmul → softmax → matmul: fused attention kernels have no
//! double backward, which Hessian-vector products need.

use tch::{Kind, Tensor};

use super::super::builder::{trunc_normal_02, GraphBuilder, Init};
use super::super::graph::{Op, ValueId};
use super::super::info::ModelInfo;
use crate::error::{HartError, Result};

const DIM: i64 = 192;
const DEPTH: usize = 12;
const HEADS: i64 = 3;
const MLP: i64 = 768;
const EPS: f64 = 1e-6;

/// Patch 16 as in timm for ImageNet-size inputs; 4 for small images so a
/// 28/32-pixel input still yields a useful token grid.
pub fn patch_size(input_size: i64) -> i64 {
    if input_size >= 64 {
        16
    } else {
        4
    }
}

fn gather(b: &mut GraphBuilder, scope: &str, x: ValueId, axis: i64, index: i64) -> ValueId {
    let idx = b.constant(scope, Tensor::from(index));
    b.op(scope, Op::Gather { axis }, &[x, idx])
}

fn attention(b: &mut GraphBuilder, p: &str, x: ValueId) -> Result<ValueId> {
    let head_dim = DIM / HEADS;
    let qkv = b.linear(&format!("{p}.qkv"), x, DIM, 3 * DIM, Init::TruncNormal02)?;
    let shape = b.shape_const(p, &[0, -1, 3, HEADS, head_dim]);
    let qkv = b.op(p, Op::Reshape, &[qkv, shape]);
    let qkv = b.op(
        p,
        Op::Transpose {
            perm: vec![2, 0, 3, 1, 4],
        },
        &[qkv],
    );
    let q = gather(b, p, qkv, 0, 0);
    let k = gather(b, p, qkv, 0, 1);
    let v = gather(b, p, qkv, 0, 2);
    let scale = b.constant(p, Tensor::from((head_dim as f64).powf(-0.5)).to_kind(Kind::Float));
    let q = b.op(p, Op::Mul, &[q, scale]);
    let kt = b.op(p, Op::Transpose { perm: vec![0, 1, 3, 2] }, &[k]);
    let scores = b.op(p, Op::MatMul, &[q, kt]);
    let attn = b.op(p, Op::Softmax { axis: -1 }, &[scores]);
    let y = b.op(p, Op::MatMul, &[attn, v]);
    let y = b.op(p, Op::Transpose { perm: vec![0, 2, 1, 3] }, &[y]);
    let shape = b.shape_const(p, &[0, -1, DIM]);
    let y = b.op(p, Op::Reshape, &[y, shape]);
    b.linear(&format!("{p}.proj"), y, DIM, DIM, Init::TruncNormal02)
}

fn block(b: &mut GraphBuilder, p: &str, x: ValueId) -> Result<ValueId> {
    let h = b.layer_norm(&format!("{p}.norm1"), x, DIM, EPS)?;
    let h = attention(b, &format!("{p}.attn"), h)?;
    let x = b.op(p, Op::Add, &[x, h]);
    let h = b.layer_norm(&format!("{p}.norm2"), x, DIM, EPS)?;
    let h = b.linear(&format!("{p}.mlp.fc1"), h, DIM, MLP, Init::TruncNormal02)?;
    let h = b.op(&format!("{p}.mlp"), Op::Gelu { tanh: false }, &[h]);
    let h = b.linear(&format!("{p}.mlp.fc2"), h, MLP, DIM, Init::TruncNormal02)?;
    Ok(b.op(p, Op::Add, &[x, h]))
}

pub fn deit_tiny(b: &mut GraphBuilder, x: ValueId, info: &ModelInfo) -> Result<ValueId> {
    let patch = patch_size(info.input_size);
    if info.input_size % patch != 0 {
        return Err(HartError::Invalid(format!(
            "deit-tiny needs an input size divisible by its patch size {patch}, got {}",
            info.input_size
        )));
    }
    let tokens = (info.input_size / patch).pow(2);
    let x = b.conv(
        "patch_embed.proj",
        x,
        info.in_channels,
        DIM,
        patch,
        patch,
        0,
        true,
        Init::TruncNormal02,
    )?;
    let shape = b.shape_const("patch_embed", &[0, DIM, -1]);
    let x = b.op("patch_embed", Op::Reshape, &[x, shape]);
    let x = b.op("patch_embed", Op::Transpose { perm: vec![0, 2, 1] }, &[x]);
    // The class token is broadcast over the batch, whose size is only known at run time.
    let cls = b.tensor_param("cls_token", trunc_normal_02(&[1, 1, DIM]))?;
    let batch = b.op("cls_token", Op::Shape { start: 0, end: Some(1) }, &[x]);
    let rest = b.shape_const("cls_token", &[1, DIM]);
    let target = b.op("cls_token", Op::Concat { axis: 0 }, &[batch, rest]);
    let cls = b.op("cls_token", Op::Expand, &[cls, target]);
    let x = b.op("", Op::Concat { axis: 1 }, &[cls, x]);
    let pos = b.tensor_param("pos_embed", trunc_normal_02(&[1, tokens + 1, DIM]))?;
    let mut x = b.op("pos_embed", Op::Add, &[x, pos]);
    for i in 0..DEPTH {
        x = block(b, &format!("blocks.{i}"), x)?;
    }
    let x = b.layer_norm("norm", x, DIM, EPS)?;
    let x = gather(b, "head", x, 1, 0);
    b.linear("head", x, DIM, info.num_classes, Init::TruncNormal02)
}
