//! Where a model meets a data set: one check, before any measurement or
//! training writes anything, that the model takes the data's records and
//! predicts a class for each of its labels. Without it a mismatch surfaces
//! deep in a forward pass as a libtorch message about matrix shapes.

use super::{Mode, Model};
use crate::data::Dataset;
use crate::error::{HartError, Result};

/// Runs `model` on `data`'s first record and checks the output's classes
/// against the data's labels; the error says what the model takes, what the
/// data gives and how the data was read.
pub fn check_input(model: &Model, data: &Dataset) -> Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let info = model.info();
    let gives = format!("{} gives {} (read as {})", data.name, data.record_shape(), data.source);
    let takes = declared_input(model);
    let (x, _) = data.batch_range(0, 1);
    let out = tch::no_grad(|| model.forward(&x.f_to_device(model.device())?, Mode::Eval));
    let logits = match out {
        Ok(l) => l,
        Err(e) => {
            return Err(HartError::Invalid(match takes {
                Some(t) if t != data.record_shape() => {
                    format!("the model ({}) takes {t} inputs, but {gives}", info.arch)
                }
                _ => format!("the model ({}) cannot take the inputs {gives}: {e}", info.arch),
            }))
        }
    };
    let s = logits.size();
    if s.len() != 2 || s[0] != 1 {
        return Err(HartError::Invalid(format!(
            "the model ({}) gives output of shape {s:?} for one input, expected [1, classes]; the input {gives}",
            info.arch
        )));
    }
    let classes = s[1];
    let top = data.labels.iter().copied().max().unwrap_or(0);
    if top >= classes {
        return Err(HartError::Invalid(format!(
            "the labels of {} reach {top} (read as {}), outside the model's {classes} classes (0..{})",
            data.name,
            data.source,
            classes - 1
        )));
    }
    if data.num_classes as i64 > classes {
        return Err(HartError::Invalid(format!(
            "{} has {} classes (read as {}), the model ({}) predicts {classes}",
            data.name, data.num_classes, data.source, info.arch
        )));
    }
    Ok(())
}

/// The C×H×W a model declares, when its file or architecture says:
/// a zoo model's recorded input, an ONNX graph's static input dims.
/// TorchScript records none (its info is taken from the data).
fn declared_input(model: &Model) -> Option<String> {
    let info = model.info();
    if model.graph().is_none() || info.in_channels <= 0 || info.input_size <= 0 {
        return None;
    }
    Some(format!("{}×{}×{}", info.in_channels, info.input_size, info.input_size))
}
