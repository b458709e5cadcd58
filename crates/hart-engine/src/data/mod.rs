//! Dataset loading: IDX (MNIST family), CIFAR binary batches,
//! ImageNet-style class folders and one-file tensor sets (.npz,
//! .safetensors), all decoded into one in-memory NCHW buffer so batches can
//! be cut without touching the disk again.

mod cifar;
mod folder;
mod idx;
mod npy;
mod pixels;
mod tensor_set;

pub use pixels::Pixels;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use tch::Tensor;

use crate::error::{HartError, Result};

/// Debian's `dataset-fashion-mnist` package installs the gzipped IDX files here.
pub const FASHION_MNIST_DEFAULT: &str = "/usr/share/datasets/fashion-mnist";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Test,
}

impl FromStr for Split {
    type Err = HartError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "train" => Ok(Split::Train),
            // ImageNet calls its held-out split "val"; accepting it saves a surprise.
            "test" | "val" => Ok(Split::Test),
            _ => Err(HartError::Invalid(format!(
                "unknown split '{s}' (expected train or test)"
            ))),
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
        })
    }
}

#[derive(Debug, Clone)]
pub struct DataSpec {
    /// A dataset name (fashion-mnist, mnist, kmnist, cifar10, cifar100,
    /// imagenet), a directory whose format is detected from its contents, or
    /// a `.npz`/`.safetensors` tensor file.
    pub dataset: String,
    pub split: Split,
    /// Keep only the first N records in file order.
    pub limit: Option<usize>,
    /// Root holding the named datasets; falls back to `$HART_DATA`.
    pub data_dir: Option<PathBuf>,
    /// Crop size for image folders (after resizing the shorter side to size*256/224).
    pub image_size: usize,
}

impl DataSpec {
    pub fn new(dataset: impl Into<String>, split: Split) -> Self {
        DataSpec {
            dataset: dataset.into(),
            split,
            limit: None,
            data_dir: None,
            image_size: 224,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    /// N*C*H*W pixels in NCHW order.
    pub images: Pixels,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub labels: Vec<i64>,
    pub num_classes: usize,
    pub class_names: Vec<String>,
    /// How the records were read ("an image folder", ".npz arrays x (…) uint8, y (…) int64"),
    /// for errors that must say where a shape came from.
    pub source: String,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn record_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// float32 NCHW in [0,1] (uint8 pixels x/255, as torchvision's ToTensor;
    /// float32 ones as stored) and int64 labels for the given record indices.
    /// Panics on an index out of range.
    pub fn batch(&self, indices: &[usize]) -> (Tensor, Tensor) {
        let pixels = self.images.pick_records(self.record_len(), indices);
        let labels: Vec<i64> = indices.iter().map(|&i| self.labels[i]).collect();
        self.to_tensors(pixels.tensor(), &labels)
    }

    /// Records `start..end`; panics if the range is out of bounds.
    pub fn batch_range(&self, start: usize, end: usize) -> (Tensor, Tensor) {
        let rec = self.record_len();
        self.to_tensors(
            self.images.range_tensor(start * rec, end * rec),
            &self.labels[start..end],
        )
    }

    fn to_tensors(&self, pixels: Tensor, labels: &[i64]) -> (Tensor, Tensor) {
        let n = labels.len() as i64;
        let shape = [n, self.channels as i64, self.height as i64, self.width as i64];
        (pixels.view(shape), Tensor::from_slice(labels))
    }

    /// The records at `indices`, in that order, as a dataset of their own.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        Dataset {
            images: self.images.pick_records(self.record_len(), indices),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            ..self.clone_empty()
        }
    }

    /// This dataset's description without its records.
    fn clone_empty(&self) -> Dataset {
        Dataset {
            name: self.name.clone(),
            images: self.images.no_records(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            labels: vec![],
            num_classes: self.num_classes,
            class_names: self.class_names.clone(),
            source: self.source.clone(),
        }
    }

    /// The shape of one record, as errors print it: `3×224×224`.
    pub fn record_shape(&self) -> String {
        format!("{}×{}×{}", self.channels, self.height, self.width)
    }

    /// Removes the last `n` records (all of them if fewer) and returns them as
    /// a dataset of their own: a validation slice held out from a training split.
    pub fn split_off(&mut self, n: usize) -> Dataset {
        let keep = self.len().saturating_sub(n);
        let rec = self.record_len();
        Dataset {
            images: self.images.split_off(keep * rec),
            labels: self.labels.split_off(keep),
            ..self.clone_empty()
        }
    }

    pub fn truncate(&mut self, n: usize) {
        let rec = self.record_len();
        self.images.truncate(n * rec);
        self.labels.truncate(n);
    }
}

/// Numeric class names for formats that carry none.
pub(crate) fn numbered_classes(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

/// Which loader a directory needs.
enum Format {
    Idx(PathBuf),
    Cifar(PathBuf, cifar::Kind),
    Folder(PathBuf),
    Tensors(PathBuf),
}

pub fn load(spec: &DataSpec) -> Result<Dataset> {
    if spec.limit == Some(0) {
        return Err(HartError::Invalid("limit must be at least 1 (got 0)".into()));
    }
    if spec.image_size == 0 {
        return Err(HartError::Invalid("image size must be at least 1 (got 0)".into()));
    }
    let format = resolve(spec)?;
    tracing::debug!(dataset = %spec.dataset, split = %spec.split, "loading dataset");
    let mut ds = match format {
        Format::Idx(dir) => idx::load(&dir, spec.split, spec.limit)?,
        Format::Cifar(dir, kind) => cifar::load(&dir, kind, spec.split, spec.limit)?,
        Format::Folder(dir) => folder::load(&dir, spec.split, spec.limit, spec.image_size)?,
        Format::Tensors(file) => tensor_set::load(&file, spec.split, spec.limit)?,
    };
    ds.name = canonical_name(&spec.dataset);
    Ok(ds)
}

/// One name per named dataset whatever alias the user typed, so per-dataset
/// settings (normalisation) key on it; paths stay as given.
fn canonical_name(dataset: &str) -> String {
    match dataset.to_ascii_lowercase().as_str() {
        "fashion-mnist" | "fashion_mnist" | "fashionmnist" => "fashion-mnist".into(),
        "cifar10" | "cifar-10" => "cifar10".into(),
        "cifar100" | "cifar-100" => "cifar100".into(),
        n @ ("mnist" | "kmnist" | "imagenet") => n.into(),
        _ => dataset.into(),
    }
}

fn resolve(spec: &DataSpec) -> Result<Format> {
    let root = || data_root(spec);
    let name = spec.dataset.to_ascii_lowercase();
    match name.as_str() {
        "fashion-mnist" | "fashion_mnist" | "fashionmnist" => {
            // An explicit root wins; otherwise use the system-wide copy.
            let local = spec
                .data_dir
                .clone()
                .or_else(env_root)
                .map(|r| r.join("fashion-mnist"))
                .filter(|p| p.is_dir());
            let dir = local.unwrap_or_else(|| PathBuf::from(FASHION_MNIST_DEFAULT));
            Ok(Format::Idx(existing_dir(&dir, &spec.dataset)?))
        }
        "mnist" => Ok(Format::Idx(named_dir(&root()?, &["mnist", "MNIST"], &name)?)),
        "kmnist" => Ok(Format::Idx(named_dir(&root()?, &["kmnist", "KMNIST"], &name)?)),
        "cifar10" | "cifar-10" => named_cifar(&root()?, cifar::Kind::Cifar10, cifar::CIFAR10_DIR),
        "cifar100" | "cifar-100" => named_cifar(&root()?, cifar::Kind::Cifar100, cifar::CIFAR100_DIR),
        "imagenet" => Ok(Format::Folder(named_dir(&root()?, &["imagenet"], &name)?)),
        _ => {
            let path = Path::new(&spec.dataset);
            if !path.exists() {
                return Err(HartError::Invalid(format!(
                    "unknown dataset '{}': expected fashion-mnist, mnist, kmnist, cifar10, \
                     cifar100, imagenet, an existing directory or a .npz/.safetensors file",
                    spec.dataset
                )));
            }
            if tensor_set::is_tensor_file(path) {
                return Ok(Format::Tensors(path.to_path_buf()));
            }
            detect(&existing_dir(path, &spec.dataset)?)
        }
    }
}

fn env_root() -> Option<PathBuf> {
    std::env::var_os("HART_DATA")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn data_root(spec: &DataSpec) -> Result<PathBuf> {
    spec.data_dir.clone().or_else(env_root).ok_or_else(|| {
        HartError::Invalid(format!(
            "dataset '{}' needs a data root: pass --data-dir or set HART_DATA",
            spec.dataset
        ))
    })
}

fn existing_dir(dir: &Path, dataset: &str) -> Result<PathBuf> {
    if dir.is_dir() {
        Ok(dir.to_path_buf())
    } else if dir.exists() {
        Err(HartError::data(
            dir,
            format!("dataset '{dataset}' must be a directory or a .npz/.safetensors file"),
        ))
    } else {
        Err(HartError::data(
            dir,
            format!("directory for dataset '{dataset}' not found"),
        ))
    }
}

/// The first of `candidates` under `root` that exists.
fn named_dir(root: &Path, candidates: &[&str], dataset: &str) -> Result<PathBuf> {
    candidates
        .iter()
        .map(|c| root.join(c))
        .find(|d| d.is_dir())
        .ok_or_else(|| {
            HartError::data(
                root.join(candidates[0]),
                format!("directory for dataset '{dataset}' not found under the data root"),
            )
        })
}

fn named_cifar(root: &Path, kind: cifar::Kind, archive: &str) -> Result<Format> {
    match cifar::locate(root, kind) {
        Some(dir) => Ok(Format::Cifar(dir, kind)),
        None => Err(HartError::data(
            root.join(archive),
            format!("{} batch files not found here or under the data root", kind.name()),
        )),
    }
}

/// Pick the loader for an arbitrary directory from the files it holds.
fn detect(dir: &Path) -> Result<Format> {
    if idx::detect(dir) {
        return Ok(Format::Idx(dir.to_path_buf()));
    }
    for d in [
        dir.to_path_buf(),
        dir.join(cifar::CIFAR10_DIR),
        dir.join(cifar::CIFAR100_DIR),
    ] {
        if let Some(kind) = cifar::detect(&d) {
            return Ok(Format::Cifar(d, kind));
        }
    }
    if folder::has_subdirs(dir)? {
        return Ok(Format::Folder(dir.to_path_buf()));
    }
    Err(HartError::data(
        dir,
        "cannot tell the dataset format: no IDX files, CIFAR .bin batches or class sub-folders",
    ))
}
