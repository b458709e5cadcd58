//! IDX files (MNIST, Fashion-MNIST, KMNIST, EMNIST), raw or gzipped.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::{numbered_classes, Dataset, Split};
use crate::error::{HartError, Result};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
/// MNIST-like sets have ten classes; a small `limit` must not shrink that.
const MIN_CLASSES: usize = 10;

/// Name fragments that mark the image file of a split; the matching label
/// file swaps "images" for "labels" (and "idx3" for "idx1").
fn image_keys(split: Split) -> &'static [&'static str] {
    match split {
        Split::Train => &["train-images"],
        Split::Test => &["t10k-images", "test-images"],
    }
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// Whether `dir` holds IDX files of either split.
pub(crate) fn detect(dir: &Path) -> bool {
    file_names(dir).iter().any(|n| {
        [Split::Train, Split::Test]
            .iter()
            .any(|&s| image_keys(s).iter().any(|k| n.contains(k)))
    })
}

/// `stem` or `stem.gz` in `names`, preferring the raw file (no inflating).
fn pick(names: &[String], stem: &str) -> Option<String> {
    let gz = format!("{stem}.gz");
    names
        .iter()
        .find(|n| *n == stem)
        .or_else(|| names.iter().find(|n| **n == gz))
        .cloned()
}

fn find_files(dir: &Path, split: Split) -> Result<(PathBuf, PathBuf)> {
    let names = file_names(dir);
    let mut stems: Vec<&str> = names
        .iter()
        .filter(|n| image_keys(split).iter().any(|k| n.contains(k)))
        .map(|n| n.strip_suffix(".gz").unwrap_or(n))
        .collect();
    stems.sort_unstable();
    stems.dedup();
    let stem = match stems.as_slice() {
        [] => {
            return Err(HartError::data(
                dir,
                format!(
                    "no {split} IDX image file (a name containing {})",
                    image_keys(split).join(" or ")
                ),
            ))
        }
        [one] => *one,
        many => {
            return Err(HartError::data(
                dir,
                format!(
                    "several {split} IDX image files ({}); use a directory per dataset",
                    many.join(", ")
                ),
            ))
        }
    };
    let images = pick(&names, stem).ok_or_else(|| HartError::data(dir.join(stem), "image file vanished"))?;
    let label_stem = stem.replace("images", "labels").replace("idx3", "idx1");
    let labels = pick(&names, &label_stem).ok_or_else(|| {
        HartError::data(
            dir.join(&label_stem),
            format!("label file not found (needed for {images})"),
        )
    })?;
    Ok((dir.join(images), dir.join(labels)))
}

/// A reader over the file's contents, inflating it if it starts with the gzip
/// magic; also reports whether it was compressed.
fn open(path: &Path) -> Result<(Box<dyn Read>, bool)> {
    let file = File::open(path).map_err(|e| HartError::io(path, e))?;
    let mut reader = BufReader::new(file);
    let head = reader.fill_buf().map_err(|e| HartError::io(path, e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok((Box::new(MultiGzDecoder::new(reader)), true))
    } else {
        Ok((Box::new(reader), false))
    }
}

/// Read up to `n` bytes; fewer means the file ended early.
fn read_up_to(r: &mut dyn Read, n: usize, path: &Path) -> Result<Vec<u8>> {
    // `n` comes from an untrusted header: grow rather than trust it up front.
    let mut buf = Vec::with_capacity(n.min(1 << 26));
    r.take(n as u64)
        .read_to_end(&mut buf)
        .map_err(|e| HartError::data(path, format!("cannot read: {e}")))?;
    Ok(buf)
}

/// Parse a big-endian IDX header of `dims` sizes after checking the magic.
fn header(r: &mut dyn Read, path: &Path, magic: u32, what: &str, dims: usize) -> Result<Vec<usize>> {
    let len = 4 * (dims + 1);
    let buf = read_up_to(r, len, path)?;
    if buf.len() < len {
        return Err(HartError::data(
            path,
            format!("truncated: shorter than the {len}-byte IDX {what} header"),
        ));
    }
    let words: Vec<u32> = buf
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if words[0] != magic {
        return Err(HartError::data(
            path,
            format!(
                "bad magic 0x{:08x}, expected 0x{magic:08x} (IDX unsigned-byte {what})",
                words[0]
            ),
        ));
    }
    Ok(words[1..].iter().map(|&w| w as usize).collect())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

pub(crate) fn load(dir: &Path, split: Split, limit: Option<usize>) -> Result<Dataset> {
    let (img_path, lbl_path) = find_files(dir, split)?;

    // Labels are small, so read them all: the count and num_classes then
    // reflect the whole file even when `limit` keeps only a prefix.
    let (mut lr, _) = open(&lbl_path)?;
    let count = header(&mut lr, &lbl_path, LABELS_MAGIC, "labels", 1)?[0];
    let raw_labels = read_up_to(&mut lr, count, &lbl_path)?;
    if raw_labels.len() < count {
        return Err(HartError::data(
            &lbl_path,
            format!(
                "truncated: header says {count} labels but the file holds {}",
                raw_labels.len()
            ),
        ));
    }

    let (mut ir, gz) = open(&img_path)?;
    let dims = header(&mut ir, &img_path, IMAGES_MAGIC, "images", 3)?;
    let (n_img, h, w) = (dims[0], dims[1], dims[2]);
    if n_img != count {
        return Err(HartError::data(
            &img_path,
            format!(
                "image/label count mismatch: {n_img} images but {} holds {count} labels",
                file_name(&lbl_path)
            ),
        ));
    }
    if h == 0 || w == 0 {
        return Err(HartError::data(&img_path, format!("image size {h}x{w} is empty")));
    }
    let n = limit.map_or(count, |l| l.min(count));
    let pixels = h.saturating_mul(w);
    let whole = (count as u64).saturating_mul(pixels as u64).saturating_add(16);
    // A raw file's size is known without reading it, so truncation past the
    // limit is still caught; a gzip file is only checked as far as it is read.
    if !gz {
        let size = std::fs::metadata(&img_path)
            .map_err(|e| HartError::io(&img_path, e))?
            .len();
        if size < whole {
            return Err(truncated_images(&img_path, count, h, w, size - 16));
        }
    }
    let want = n.saturating_mul(pixels);
    let images = read_up_to(&mut ir, want, &img_path)?;
    if images.len() < want {
        return Err(truncated_images(&img_path, count, h, w, images.len() as u64));
    }

    let max_label = raw_labels.iter().copied().max().unwrap_or(0) as usize;
    let num_classes = (max_label + 1).max(MIN_CLASSES);
    Ok(Dataset {
        name: String::new(),
        images: images.into(),
        channels: 1,
        height: h,
        width: w,
        labels: raw_labels[..n].iter().map(|&l| l as i64).collect(),
        num_classes,
        class_names: numbered_classes(num_classes),
        source: "IDX files".into(),
    })
}

fn truncated_images(path: &Path, count: usize, h: usize, w: usize, got: u64) -> HartError {
    HartError::data(
        path,
        format!(
            "truncated: header says {count} images of {h}x{w} ({} bytes) but only {got} bytes of pixels follow",
            (count as u64).saturating_mul((h * w) as u64)
        ),
    )
}
