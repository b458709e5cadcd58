use serde::{Deserialize, Serialize};

/// Per-channel input normalisation baked into a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Normalization {
    /// The usual training-set statistics of the built-in datasets.
    pub fn for_dataset(name: &str) -> Option<Self> {
        let (mean, std): (&[f64], &[f64]) = match name {
            "fashion-mnist" => (&[0.2860], &[0.3530]),
            "mnist" => (&[0.1307], &[0.3081]),
            "kmnist" => (&[0.1918], &[0.3483]),
            "cifar10" => (&[0.4914, 0.4822, 0.4465], &[0.2470, 0.2435, 0.2616]),
            "cifar100" => (&[0.5071, 0.4865, 0.4409], &[0.2673, 0.2564, 0.2762]),
            "imagenet" => (&[0.485, 0.456, 0.406], &[0.229, 0.224, 0.225]),
            _ => return None,
        };
        Some(Normalization {
            mean: mean.to_vec(),
            std: std.to_vec(),
        })
    }

    /// Parses `none`, a dataset name, or `MEAN,..:STD,..`.
    pub fn parse(s: &str) -> Result<Option<Self>, String> {
        if s == "none" {
            return Ok(None);
        }
        if let Some(n) = Self::for_dataset(s) {
            return Ok(Some(n));
        }
        let (m, sd) = s
            .split_once(':')
            .ok_or_else(|| format!("normalisation {s:?}: expected none, a dataset name or MEAN,..:STD,.."))?;
        let nums = |v: &str| -> Result<Vec<f64>, String> {
            v.split(',')
                .map(|x| {
                    x.trim()
                        .parse::<f64>()
                        .map_err(|_| format!("normalisation {s:?}: {x:?} is not a number"))
                })
                .collect()
        };
        let (mean, std) = (nums(m)?, nums(sd)?);
        if mean.len() != std.len() || std.iter().any(|&v| v <= 0.0 || !v.is_finite()) {
            return Err(format!("normalisation {s:?}: need as many positive stds as means"));
        }
        Ok(Some(Normalization { mean, std }))
    }
}

impl ModelInfo {
    /// A model of `arch` for `data`'s inputs and classes, normalised with the dataset's statistics.
    pub fn for_data(arch: &str, data: &crate::data::Dataset) -> Self {
        ModelInfo {
            arch: arch.to_string(),
            num_classes: data.num_classes as i64,
            in_channels: data.channels as i64,
            input_size: data.height as i64,
            normalize: Normalization::for_dataset(&data.name),
            dataset: Some(data.name.clone()),
        }
    }

    /// A model of `arch` for the embedded default dataset (Fashion-MNIST:
    /// 1×28×28 inputs, 10 classes), known without loading it.
    pub fn fashion_mnist(arch: &str) -> Self {
        ModelInfo {
            arch: arch.to_string(),
            num_classes: 10,
            in_channels: 1,
            input_size: 28,
            normalize: Normalization::for_dataset("fashion-mnist"),
            dataset: Some("fashion-mnist".into()),
        }
    }
}

/// What HART records about a model so it can be rebuilt from a file: stored
/// as JSON under the `hart` key of the safetensors metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub arch: String,
    pub num_classes: i64,
    pub in_channels: i64,
    pub input_size: i64,
    pub normalize: Option<Normalization>,
    /// Dataset the model was trained on, when HART trained it.
    #[serde(default)]
    pub dataset: Option<String>,
}
