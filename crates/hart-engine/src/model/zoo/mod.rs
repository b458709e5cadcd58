//! Built-in architectures. Parameter names follow torchvision (ResNets) and
//! timm (DeiT), so their `state_dict`s saved as safetensors load directly.

mod deit;
mod resnet;
mod small;

use super::builder::GraphBuilder;
use super::graph::{Op, ValueId};
use super::info::ModelInfo;
use super::GraphModel;
use crate::error::{HartError, Result};

/// Architectures `--arch` accepts.
pub const ARCHS: &[&str] = &[
    "mlp",
    "basenet",
    "lenet5",
    "resnet18-cifar",
    "resnet18",
    "resnet50",
    "deit-tiny",
];

/// Builds a randomly initialised model (seed it with `tch::manual_seed`).
pub fn build(info: &ModelInfo) -> Result<GraphModel> {
    let mut b = GraphBuilder::new();
    let x = match &info.normalize {
        Some(n) => b.push(
            "normalize",
            Op::Normalize {
                mean: n.mean.clone(),
                std: n.std.clone(),
            },
            &[GraphBuilder::INPUT],
        ),
        None => GraphBuilder::INPUT,
    };
    if let Some(n) = &info.normalize {
        if n.mean.len() as i64 != info.in_channels {
            return Err(HartError::Invalid(format!(
                "normalisation has {} channels, model takes {}",
                n.mean.len(),
                info.in_channels
            )));
        }
    }
    let out: ValueId = match info.arch.as_str() {
        "mlp" => small::mlp(&mut b, x, info)?,
        "basenet" => small::basenet(&mut b, x, info)?,
        "lenet5" => small::lenet5(&mut b, x, info)?,
        "resnet18-cifar" => resnet::resnet(&mut b, x, info, resnet::Variant::Cifar18)?,
        "resnet18" => resnet::resnet(&mut b, x, info, resnet::Variant::ImageNet18)?,
        "resnet50" => resnet::resnet(&mut b, x, info, resnet::Variant::ImageNet50)?,
        "deit-tiny" => deit::deit_tiny(&mut b, x, info)?,
        other => {
            return Err(HartError::Invalid(format!(
                "unknown architecture {other:?} (known: {})",
                ARCHS.join(", ")
            )))
        }
    };
    let (graph, params) = b.finish(out);
    Ok(GraphModel {
        graph,
        params,
        info: info.clone(),
    })
}
