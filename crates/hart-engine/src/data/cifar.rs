//! CIFAR-10 / CIFAR-100 "binary version" batches: fixed-size records of
//! label byte(s) followed by 3×32×32 channel-major pixels.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{numbered_classes, Dataset, Split};
use crate::error::{HartError, Result};

pub(crate) const CIFAR10_DIR: &str = "cifar-10-batches-bin";
pub(crate) const CIFAR100_DIR: &str = "cifar-100-binary";

const PIXELS: usize = 3 * 32 * 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Cifar10,
    Cifar100,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Cifar10 => "CIFAR-10",
            Kind::Cifar100 => "CIFAR-100",
        }
    }
    fn classes(self) -> usize {
        match self {
            Kind::Cifar10 => 10,
            Kind::Cifar100 => 100,
        }
    }
    /// Bytes before the pixels; CIFAR-100's fine label is the last of them.
    fn label_bytes(self) -> usize {
        match self {
            Kind::Cifar10 => 1,
            Kind::Cifar100 => 2,
        }
    }
    fn record(self) -> usize {
        self.label_bytes() + PIXELS
    }
    fn files(self, split: Split) -> Vec<String> {
        match (self, split) {
            (Kind::Cifar10, Split::Train) => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
            (Kind::Cifar10, Split::Test) => vec!["test_batch.bin".into()],
            (Kind::Cifar100, Split::Train) => vec!["train.bin".into()],
            (Kind::Cifar100, Split::Test) => vec!["test.bin".into()],
        }
    }
    fn names_file(self) -> &'static str {
        match self {
            Kind::Cifar10 => "batches.meta.txt",
            Kind::Cifar100 => "fine_label_names.txt",
        }
    }
}

/// The CIFAR flavour whose batch files sit directly in `dir`, if any.
pub(crate) fn detect(dir: &Path) -> Option<Kind> {
    let has = |f: &str| dir.join(f).is_file();
    if has("data_batch_1.bin") || has("test_batch.bin") {
        Some(Kind::Cifar10)
    } else if has("train.bin") || has("test.bin") {
        Some(Kind::Cifar100)
    } else {
        None
    }
}

/// Find a `kind` batch directory at or just below `root` (the archive's own
/// folder name, a short alias, or the root itself).
pub(crate) fn locate(root: &Path, kind: Kind) -> Option<PathBuf> {
    let (archive, aliases) = match kind {
        Kind::Cifar10 => (CIFAR10_DIR, ["cifar10", "cifar-10"]),
        Kind::Cifar100 => (CIFAR100_DIR, ["cifar100", "cifar-100"]),
    };
    let mut candidates = vec![root.join(archive)];
    for a in aliases {
        candidates.push(root.join(a));
        candidates.push(root.join(a).join(archive));
    }
    candidates.push(root.to_path_buf());
    candidates.into_iter().find(|d| detect(d) == Some(kind))
}

pub(crate) fn load(dir: &Path, kind: Kind, split: Split, limit: Option<usize>) -> Result<Dataset> {
    let rec = kind.record();
    // Check every file up front so a damaged set fails even when `limit`
    // means only the first file would be read.
    let mut files = Vec::new();
    for name in kind.files(split) {
        let path = dir.join(&name);
        let size = std::fs::metadata(&path).map_err(|e| HartError::io(&path, e))?.len() as usize;
        if !size.is_multiple_of(rec) {
            return Err(HartError::data(
                &path,
                format!(
                    "size {size} bytes is not a multiple of the {rec}-byte {} record",
                    kind.name()
                ),
            ));
        }
        files.push((path, size / rec));
    }
    let total: usize = files.iter().map(|(_, n)| n).sum();
    let n = limit.map_or(total, |l| l.min(total));

    let mut images = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    let mut buf = vec![0u8; rec];
    for (path, count) in &files {
        let take = (n - labels.len()).min(*count);
        if take == 0 {
            break;
        }
        let mut f = File::open(path).map_err(|e| HartError::io(path, e))?;
        for i in 0..take {
            f.read_exact(&mut buf).map_err(|e| HartError::io(path, e))?;
            let label = buf[kind.label_bytes() - 1] as usize;
            if label >= kind.classes() {
                return Err(HartError::data(
                    path,
                    format!(
                        "record {i} has label {label}, out of range for {} ({} classes)",
                        kind.name(),
                        kind.classes()
                    ),
                ));
            }
            labels.push(label as i64);
            images.extend_from_slice(&buf[kind.label_bytes()..]);
        }
    }

    Ok(Dataset {
        name: String::new(),
        images: images.into(),
        channels: 3,
        height: 32,
        width: 32,
        labels,
        num_classes: kind.classes(),
        class_names: class_names(dir, kind)?,
        source: "CIFAR binary batches".into(),
    })
}

fn class_names(dir: &Path, kind: Kind) -> Result<Vec<String>> {
    let path = dir.join(kind.names_file());
    if !path.is_file() {
        return Ok(numbered_classes(kind.classes()));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| HartError::io(&path, e))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() != kind.classes() {
        return Err(HartError::data(
            &path,
            format!(
                "lists {} class names, expected {} for {}",
                names.len(),
                kind.classes(),
                kind.name()
            ),
        ));
    }
    Ok(names)
}
