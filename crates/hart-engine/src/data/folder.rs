//! ImageNet-style class folders, following torchvision's ImageFolder for the
//! class order and the Resize(size*256/224) + CenterCrop(size) eval transform.

use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};

use super::{Dataset, Split};
use crate::error::{HartError, Result};

const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| HartError::io(dir, e))? {
        out.push(entry.map_err(|e| HartError::io(dir, e))?.path());
    }
    out.sort();
    Ok(out)
}

pub(crate) fn has_subdirs(dir: &Path) -> Result<bool> {
    Ok(sorted_entries(dir)?.iter().any(|p| p.is_dir()))
}

/// The directory holding the class folders: `train/` or `val/`|`test/` when
/// the root is split that way, else the root itself.
fn split_dir(root: &Path, split: Split) -> Result<PathBuf> {
    let splits = ["train", "val", "test"];
    if !splits.iter().any(|s| root.join(s).is_dir()) {
        return Ok(root.to_path_buf());
    }
    let wanted: &[&str] = match split {
        Split::Train => &["train"],
        Split::Test => &["val", "test"],
    };
    wanted.iter().map(|s| root.join(s)).find(|d| d.is_dir()).ok_or_else(|| {
        HartError::data(
            root.join(wanted[0]),
            format!("{split} split folder not found (the root has other split folders)"),
        )
    })
}

fn is_image(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Image files under `dir`, recursively, in torchvision's order: directories
/// sorted by path, files sorted by name within each.
fn collect_images(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = sorted_entries(dir)?;
    out.extend(entries.iter().filter(|p| is_image(p)).cloned());
    for sub in entries.iter().filter(|p| p.is_dir()) {
        collect_images(sub, out)?;
    }
    Ok(())
}

pub(crate) fn load(root: &Path, split: Split, limit: Option<usize>, size: usize) -> Result<Dataset> {
    let dir = split_dir(root, split)?;
    let mut class_names = Vec::new();
    let mut files: Vec<(PathBuf, i64)> = Vec::new();
    for class_dir in sorted_entries(&dir)?.into_iter().filter(|p| p.is_dir()) {
        let label = class_names.len() as i64;
        let name = class_dir.file_name().unwrap_or_default();
        class_names.push(name.to_string_lossy().into_owned());
        if limit.is_some_and(|l| files.len() >= l) {
            continue; // still count the class so num_classes is right
        }
        let mut found = Vec::new();
        collect_images(&class_dir, &mut found)?;
        files.extend(found.into_iter().map(|p| (p, label)));
    }
    if class_names.is_empty() {
        return Err(HartError::data(&dir, "no class sub-folders found"));
    }
    if files.is_empty() {
        return Err(HartError::data(
            &dir,
            "no .jpg/.jpeg/.png images in any class sub-folder",
        ));
    }
    if let Some(l) = limit {
        files.truncate(l);
    }

    let rec = 3 * size * size;
    let mut images = Vec::new();
    images.try_reserve_exact(files.len().saturating_mul(rec)).map_err(|_| {
        HartError::Invalid(format!(
            "{}: {} images of 3x{size}x{size} do not fit in memory; pass a limit",
            dir.display(),
            files.len()
        ))
    })?;
    images.resize(files.len() * rec, 0);
    decode_all(&files, &mut images, size)?;

    Ok(Dataset {
        name: String::new(),
        images: images.into(),
        channels: 3,
        height: size,
        width: size,
        labels: files.iter().map(|(_, l)| *l).collect(),
        num_classes: class_names.len(),
        class_names,
        source: "an image folder".into(),
    })
}

/// Decode into `out` (one CHW record per file) on all cores; decoding
/// dominates loading time for JPEG folders.
fn decode_all(files: &[(PathBuf, i64)], out: &mut [u8], size: usize) -> Result<()> {
    let rec = 3 * size * size;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = files.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let workers: Vec<_> = files
            .chunks(per)
            .zip(out.chunks_mut(per * rec))
            .map(|(fs, buf)| {
                s.spawn(move || {
                    for ((path, _), dst) in fs.iter().zip(buf.chunks_mut(rec)) {
                        // A decoder that panics on a corrupt file is that file's error.
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode_one(path, size, dst)))
                            .unwrap_or_else(|_| {
                                Err(HartError::data(path, "the image decoder panicked (corrupt file?)"))
                            })?;
                    }
                    Ok(())
                })
            })
            .collect();
        // Join in order so the first failing file in dataset order is reported.
        workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|_| Err(HartError::Invalid("an image decoding thread panicked".into())))
        })
    })
}

/// Python's round() (half to even) of d/2, as torchvision's CenterCrop uses.
fn half_round_even(d: u32) -> u32 {
    let q = d / 2;
    if d % 2 == 1 && q % 2 == 1 {
        q + 1
    } else {
        q
    }
}

fn decode_one(path: &Path, size: usize, dst: &mut [u8]) -> Result<()> {
    let img = image::ImageReader::open(path)
        .map_err(|e| HartError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| HartError::io(path, e))?
        .decode()
        .map_err(|e| HartError::data(path, format!("cannot decode image: {e}")))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return Err(HartError::data(path, "image has zero width or height"));
    }
    let crop = size as u32;
    // torchvision Resize(int): shorter side to `short`, longer side truncated.
    let short = ((size * 256 + 112) / 224) as u32;
    let (nw, nh) = if w <= h {
        (short, (short as u64 * h as u64 / w as u64) as u32)
    } else {
        ((short as u64 * w as u64 / h as u64) as u32, short)
    };
    let resized = imageops::resize(&img, nw, nh, FilterType::Triangle);
    let left = half_round_even(nw - crop);
    let top = half_round_even(nh - crop);
    let plane = size * size;
    for y in 0..crop {
        for x in 0..crop {
            let p = resized.get_pixel(left + x, top + y);
            let i = (y * crop + x) as usize;
            for c in 0..3 {
                dst[c * plane + i] = p[c];
            }
        }
    }
    Ok(())
}
