//! Small networks for MNIST-like data.

use super::super::builder::{GraphBuilder, Init};
use super::super::graph::{Op, ValueId};
use super::super::info::ModelInfo;
use crate::error::{HartError, Result};

fn max_pool2(b: &mut GraphBuilder, scope: &str, x: ValueId) -> ValueId {
    b.op(
        scope,
        Op::MaxPool2d {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0; 4],
            dilation: [1, 1],
            ceil_mode: false,
        },
        &[x],
    )
}

fn flatten(b: &mut GraphBuilder, x: ValueId) -> ValueId {
    b.op("", Op::Flatten { axis: 1 }, &[x])
}

fn need_square(info: &ModelInfo, min: i64) -> Result<i64> {
    if info.input_size < min {
        return Err(HartError::Invalid(format!(
            "{} needs inputs of at least {min}×{min} pixels, got {}",
            info.arch, info.input_size
        )));
    }
    Ok(info.input_size)
}

/// Three fully connected layers, `in → 256 → 128 → classes`.
pub fn mlp(b: &mut GraphBuilder, x: ValueId, info: &ModelInfo) -> Result<ValueId> {
    let fin = info.in_channels * info.input_size * info.input_size;
    let x = flatten(b, x);
    let x = b.linear("fc1", x, fin, 256, Init::Default)?;
    let x = b.relu("fc1", x);
    let x = b.linear("fc2", x, 256, 128, Init::Default)?;
    let x = b.relu("fc2", x);
    b.linear("fc3", x, 128, info.num_classes, Init::Default)
}

/// BaseNet: the small MNIST network of the Terminal Brain Damage study
/// (Hong et al. 2019), whose exact layers are not published. HART's choice,
/// sized to cost about what LeNet-5 costs per image so exhaustive sweeps and
/// Hessian-aware training stay affordable on a laptop CPU:
/// conv3×3(8, pad 1) → ReLU → maxpool2 → conv3×3(16, pad 1) → ReLU → maxpool2
/// → fc(64) → ReLU → fc(classes); 52k parameters on 28×28 inputs.
pub fn basenet(b: &mut GraphBuilder, x: ValueId, info: &ModelInfo) -> Result<ValueId> {
    let s = need_square(info, 4)?;
    let x = b.conv("conv1", x, info.in_channels, 8, 3, 1, 1, true, Init::Default)?;
    let x = b.relu("conv1", x);
    let x = max_pool2(b, "conv1", x);
    let x = b.conv("conv2", x, 8, 16, 3, 1, 1, true, Init::Default)?;
    let x = b.relu("conv2", x);
    let x = max_pool2(b, "conv2", x);
    let x = flatten(b, x);
    let side = s / 4;
    let x = b.linear("fc1", x, 16 * side * side, 64, Init::Default)?;
    let x = b.relu("fc1", x);
    b.linear("fc2", x, 64, info.num_classes, Init::Default)
}

/// LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling. On 28×28 inputs
/// the first convolution pads by 2 so the feature map sizes match the
/// original 32×32 design (28 → 14 → 10 → 5).
pub fn lenet5(b: &mut GraphBuilder, x: ValueId, info: &ModelInfo) -> Result<ValueId> {
    let s = need_square(info, 28)?;
    let pad = if s < 32 { 2 } else { 0 };
    let x = b.conv("conv1", x, info.in_channels, 6, 5, 1, pad, true, Init::Default)?;
    let x = b.relu("conv1", x);
    let x = max_pool2(b, "conv1", x);
    let x = b.conv("conv2", x, 6, 16, 5, 1, 0, true, Init::Default)?;
    let x = b.relu("conv2", x);
    let x = max_pool2(b, "conv2", x);
    let side = ((s + 2 * pad - 4) / 2 - 4) / 2;
    let x = flatten(b, x);
    let x = b.linear("fc1", x, 16 * side * side, 120, Init::Default)?;
    let x = b.relu("fc1", x);
    let x = b.linear("fc2", x, 120, 84, Init::Default)?;
    let x = b.relu("fc2", x);
    b.linear("fc3", x, 84, info.num_classes, Init::Default)
}
