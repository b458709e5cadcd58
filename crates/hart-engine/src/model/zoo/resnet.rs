//! ResNets with torchvision's module names (`layer2.0.downsample.0.weight`).

use super::super::builder::{GraphBuilder, Init};
use super::super::graph::{Op, ValueId};
use super::super::info::ModelInfo;
use crate::error::Result;

#[derive(Debug, Clone, Copy)]
pub enum Variant {
    /// ResNet-18 for 32×32 inputs: 3×3 stride-1 stem, no max-pool.
    Cifar18,
    ImageNet18,
    ImageNet50,
}

#[allow(clippy::too_many_arguments)]
fn conv_bn(
    b: &mut GraphBuilder,
    conv: &str,
    bn: &str,
    x: ValueId,
    cin: i64,
    cout: i64,
    k: i64,
    stride: i64,
) -> Result<ValueId> {
    let x = b.conv(conv, x, cin, cout, k, stride, k / 2, false, Init::KaimingFanOut)?;
    b.batch_norm(bn, x, cout)
}

/// torchvision `BasicBlock` (expansion 1).
fn basic_block(
    b: &mut GraphBuilder,
    p: &str,
    x: ValueId,
    cin: i64,
    planes: i64,
    stride: i64,
) -> Result<(ValueId, i64)> {
    let y = conv_bn(b, &format!("{p}.conv1"), &format!("{p}.bn1"), x, cin, planes, 3, stride)?;
    let y = b.relu(p, y);
    let y = conv_bn(b, &format!("{p}.conv2"), &format!("{p}.bn2"), y, planes, planes, 3, 1)?;
    let shortcut = shortcut(b, p, x, cin, planes, stride)?;
    let y = b.op(p, Op::Add, &[y, shortcut]);
    Ok((b.relu(p, y), planes))
}

/// torchvision `Bottleneck` (v1.5: stride on the 3×3 conv, expansion 4).
fn bottleneck(b: &mut GraphBuilder, p: &str, x: ValueId, cin: i64, planes: i64, stride: i64) -> Result<(ValueId, i64)> {
    let cout = planes * 4;
    let y = conv_bn(b, &format!("{p}.conv1"), &format!("{p}.bn1"), x, cin, planes, 1, 1)?;
    let y = b.relu(p, y);
    let y = conv_bn(
        b,
        &format!("{p}.conv2"),
        &format!("{p}.bn2"),
        y,
        planes,
        planes,
        3,
        stride,
    )?;
    let y = b.relu(p, y);
    let y = conv_bn(b, &format!("{p}.conv3"), &format!("{p}.bn3"), y, planes, cout, 1, 1)?;
    let shortcut = shortcut(b, p, x, cin, cout, stride)?;
    let y = b.op(p, Op::Add, &[y, shortcut]);
    Ok((b.relu(p, y), cout))
}

fn shortcut(b: &mut GraphBuilder, p: &str, x: ValueId, cin: i64, cout: i64, stride: i64) -> Result<ValueId> {
    if stride == 1 && cin == cout {
        return Ok(x);
    }
    let y = b.conv(
        &format!("{p}.downsample.0"),
        x,
        cin,
        cout,
        1,
        stride,
        0,
        false,
        Init::KaimingFanOut,
    )?;
    b.batch_norm(&format!("{p}.downsample.1"), y, cout)
}

pub fn resnet(b: &mut GraphBuilder, x: ValueId, info: &ModelInfo, variant: Variant) -> Result<ValueId> {
    let (x, blocks, deep) = match variant {
        Variant::Cifar18 => {
            let x = conv_bn(b, "conv1", "bn1", x, info.in_channels, 64, 3, 1)?;
            (b.relu("stem", x), [2, 2, 2, 2], false)
        }
        Variant::ImageNet18 | Variant::ImageNet50 => {
            let x = b.conv("conv1", x, info.in_channels, 64, 7, 2, 3, false, Init::KaimingFanOut)?;
            let x = b.batch_norm("bn1", x, 64)?;
            let x = b.relu("stem", x);
            let pool = Op::MaxPool2d {
                kernel: [3, 3],
                stride: [2, 2],
                padding: [1; 4],
                dilation: [1, 1],
                ceil_mode: false,
            };
            let x = b.push("maxpool", pool, &[x]);
            match variant {
                Variant::ImageNet50 => (x, [3, 4, 6, 3], true),
                _ => (x, [2, 2, 2, 2], false),
            }
        }
    };
    let mut x = x;
    let mut cin = 64;
    for (stage, &n) in blocks.iter().enumerate() {
        let planes = 64 << stage;
        for i in 0..n {
            let stride = if i == 0 && stage > 0 { 2 } else { 1 };
            let p = format!("layer{}.{i}", stage + 1);
            (x, cin) = if deep {
                bottleneck(b, &p, x, cin, planes, stride)?
            } else {
                basic_block(b, &p, x, cin, planes, stride)?
            };
        }
    }
    let x = b.push("avgpool", Op::GlobalAvgPool, &[x]);
    let x = b.op("", Op::Flatten { axis: 1 }, &[x]);
    b.linear("fc", x, cin, info.num_classes, Init::Default)
}
