//! Dataset loaders against generated fixtures (every format and failure
//! mode) plus a slice of the real Fashion-MNIST.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use hart::data::{load, DataSpec, Dataset, Split};
use tch::Kind;
use tempfile::TempDir;

fn spec(dataset: impl AsRef<Path>, split: Split) -> DataSpec {
    DataSpec::new(dataset.as_ref().to_str().unwrap(), split)
}

fn load_err(spec: &DataSpec) -> String {
    match load(spec) {
        Ok(ds) => panic!("expected an error, loaded {} records", ds.len()),
        Err(e) => e.to_string(),
    }
}

fn assert_msg(msg: &str, parts: &[&str]) {
    assert!(!msg.contains('\n'), "multi-line message: {msg}");
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} lacks {p:?}");
    }
}

/// Deterministic pseudo-random bytes so fixtures have distinct pixels.
fn bytes(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn write(path: &Path, data: &[u8], gz: bool) {
    let data = if gz {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    } else {
        data.to_vec()
    };
    std::fs::write(path, data).unwrap();
}

fn idx_images(n: u32, h: u32, w: u32, pixels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for word in [0x803, n, h, w] {
        v.extend_from_slice(&word.to_be_bytes());
    }
    v.extend_from_slice(pixels);
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for word in [0x801, labels.len() as u32] {
        v.extend_from_slice(&word.to_be_bytes());
    }
    v.extend_from_slice(labels);
    v
}

struct IdxFixture {
    dir: TempDir,
    pixels: Vec<u8>,
    labels: Vec<u8>,
}

/// `n` images of 4x3 under `images_name`/`labels_name` (".gz" added when gz).
fn idx_fixture(images_name: &str, labels_name: &str, labels: &[u8], gz: bool) -> IdxFixture {
    let dir = TempDir::new().unwrap();
    let n = labels.len();
    let pixels = bytes(n * 12, n as u32);
    let ext = if gz { ".gz" } else { "" };
    let img = idx_images(n as u32, 4, 3, &pixels);
    write(&dir.path().join(format!("{images_name}{ext}")), &img, gz);
    write(&dir.path().join(format!("{labels_name}{ext}")), &idx_labels(labels), gz);
    IdxFixture {
        dir,
        pixels,
        labels: labels.to_vec(),
    }
}

fn check_idx(ds: &Dataset, f: &IdxFixture) {
    assert_eq!((ds.channels, ds.height, ds.width), (1, 4, 3));
    assert_eq!(ds.len(), f.labels.len());
    assert_eq!(ds.images, f.pixels);
    let labels: Vec<i64> = f.labels.iter().map(|&l| l as i64).collect();
    assert_eq!(ds.labels, labels);
}

#[test]
fn idx_raw_round_trips() {
    let f = idx_fixture(
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        &[3, 1, 4, 1, 5, 9, 2, 6],
        false,
    );
    let ds = load(&spec(f.dir.path(), Split::Train)).unwrap();
    check_idx(&ds, &f);
    assert_eq!(ds.num_classes, 10);
    assert_eq!(ds.class_names, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    // No test files in this directory.
    let msg = load_err(&spec(f.dir.path(), Split::Test));
    assert_msg(&msg, &[&f.dir.path().display().to_string(), "t10k-images"]);
}

#[test]
fn idx_gzip_round_trips_and_counts_classes() {
    let f = idx_fixture("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", &[0, 12, 7], true);
    let ds = load(&spec(f.dir.path(), Split::Test)).unwrap();
    check_idx(&ds, &f);
    assert_eq!(ds.num_classes, 13);
}

#[test]
fn idx_emnist_names_and_named_dataset_root() {
    let root = TempDir::new().unwrap();
    let f = idx_fixture(
        "emnist-letters-test-images-idx3-ubyte",
        "emnist-letters-test-labels-idx1-ubyte",
        &[1, 26, 5],
        true,
    );
    std::fs::rename(f.dir.path(), root.path().join("kmnist")).unwrap();
    let mut s = DataSpec::new("kmnist", Split::Test);
    s.data_dir = Some(root.path().to_path_buf());
    let ds = load(&s).unwrap();
    assert_eq!(ds.images, f.pixels);
    assert_eq!(ds.labels, vec![1, 26, 5]);
    assert_eq!(ds.num_classes, 27);
    assert_eq!(ds.name, "kmnist");

    // Named dataset whose directory is missing under the root.
    let mut s = DataSpec::new("mnist", Split::Test);
    s.data_dir = Some(root.path().to_path_buf());
    assert_msg(&load_err(&s), &["mnist", "not found"]);
}

#[test]
fn named_dataset_needs_a_root() {
    // Changing the environment would race the other tests, so only check
    // the missing-root message where HART_DATA is unset anyway.
    if std::env::var_os("HART_DATA").is_none() {
        let msg = load_err(&DataSpec::new("cifar10", Split::Train));
        assert_msg(&msg, &["--data-dir", "HART_DATA"]);
    }
    let msg = load_err(&DataSpec::new("no-such-dataset-xyz", Split::Train));
    assert_msg(&msg, &["no-such-dataset-xyz", "unknown dataset"]);
}

#[test]
fn idx_limit_reads_a_prefix_and_zero_is_rejected() {
    let f = idx_fixture(
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        &[3, 1, 4, 1, 5],
        true,
    );
    let mut s = spec(f.dir.path(), Split::Train);
    s.limit = Some(2);
    let ds = load(&s).unwrap();
    assert_eq!(ds.labels, vec![3, 1]);
    assert_eq!(ds.images, f.pixels[..24]);
    s.limit = Some(100);
    assert_eq!(load(&s).unwrap().len(), 5);
    s.limit = Some(0);
    assert_msg(&load_err(&s), &["limit"]);
}

#[test]
fn idx_bad_magic() {
    let f = idx_fixture("train-images-idx3-ubyte", "train-labels-idx1-ubyte", &[1, 2], false);
    let img = f.dir.path().join("train-images-idx3-ubyte");
    let mut data = std::fs::read(&img).unwrap();
    data[3] = 0x01;
    write(&img, &data, false);
    let msg = load_err(&spec(f.dir.path(), Split::Train));
    assert_msg(&msg, &["train-images-idx3-ubyte", "bad magic 0x00000801"]);

    // Labels swapped for images in the label slot.
    let f = idx_fixture("train-images-idx3-ubyte", "train-labels-idx1-ubyte", &[1, 2], true);
    let lbl = f.dir.path().join("train-labels-idx1-ubyte.gz");
    write(&lbl, &idx_images(2, 1, 1, &[0, 0]), true);
    let msg = load_err(&spec(f.dir.path(), Split::Train));
    assert_msg(&msg, &["train-labels-idx1-ubyte.gz", "bad magic 0x00000803"]);
}

#[test]
fn idx_truncated_raw_and_gzip() {
    for gz in [false, true] {
        let f = idx_fixture("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", &[1, 2, 3], gz);
        let name = if gz {
            "t10k-images-idx3-ubyte.gz"
        } else {
            "t10k-images-idx3-ubyte"
        };
        let img = idx_images(3, 4, 3, &f.pixels[..30]);
        write(&f.dir.path().join(name), &img, gz);
        let msg = load_err(&spec(f.dir.path(), Split::Test));
        assert_msg(&msg, &[name, "truncated", "36 bytes"]);

        // Labels file cut short too.
        let lname = if gz {
            "t10k-labels-idx1-ubyte.gz"
        } else {
            "t10k-labels-idx1-ubyte"
        };
        write(&f.dir.path().join(lname), &idx_labels(&[1, 2, 3])[..9], gz);
        let msg = load_err(&spec(f.dir.path(), Split::Test));
        assert_msg(&msg, &[lname, "truncated", "3 labels"]);

        // Header itself cut short.
        write(&f.dir.path().join(lname), &idx_labels(&[1])[..5], gz);
        let msg = load_err(&spec(f.dir.path(), Split::Test));
        assert_msg(&msg, &[lname, "truncated", "header"]);
    }
}

#[test]
fn idx_count_mismatch_and_missing_labels() {
    let f = idx_fixture("train-images-idx3-ubyte", "train-labels-idx1-ubyte", &[1, 2, 3], false);
    let lbl = f.dir.path().join("train-labels-idx1-ubyte");
    write(&lbl, &idx_labels(&[1, 2]), false);
    let msg = load_err(&spec(f.dir.path(), Split::Train));
    assert_msg(
        &msg,
        &[
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "mismatch",
            "3 images",
            "2 labels",
        ],
    );

    std::fs::remove_file(&lbl).unwrap();
    let msg = load_err(&spec(f.dir.path(), Split::Train));
    assert_msg(&msg, &["train-labels-idx1-ubyte", "not found"]);
}

// ---------------------------------------------------------------- CIFAR

/// Records with `label_bytes` label bytes per record; returns (pixels, labels).
fn cifar_file(path: &Path, labels: &[&[u8]], seed: u32) -> Vec<u8> {
    let mut data = Vec::new();
    let mut pixels = Vec::new();
    for (i, l) in labels.iter().enumerate() {
        let px = bytes(3072, seed * 100 + i as u32);
        data.extend_from_slice(l);
        data.extend_from_slice(&px);
        pixels.extend_from_slice(&px);
    }
    std::fs::write(path, data).unwrap();
    pixels
}

fn cifar10_fixture() -> (TempDir, Vec<u8>, Vec<u8>) {
    let root = TempDir::new().unwrap();
    let dir = root.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&dir).unwrap();
    let mut train = Vec::new();
    for b in 1..=5u8 {
        let name = format!("data_batch_{b}.bin");
        train.extend(cifar_file(&dir.join(name), &[&[b], &[9 - b]], b as u32));
    }
    let test = cifar_file(&dir.join("test_batch.bin"), &[&[7], &[0], &[3]], 9);
    let names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
    std::fs::write(dir.join("batches.meta.txt"), names).unwrap();
    (root, train, test)
}

#[test]
fn cifar10_round_trips() {
    let (root, train, test) = cifar10_fixture();
    let mut s = DataSpec::new("cifar10", Split::Train);
    s.data_dir = Some(root.path().to_path_buf());
    let ds = load(&s).unwrap();
    assert_eq!((ds.len(), ds.channels, ds.height, ds.width), (10, 3, 32, 32));
    assert_eq!(ds.images, train);
    assert_eq!(ds.labels, vec![1, 8, 2, 7, 3, 6, 4, 5, 5, 4]);
    assert_eq!(ds.num_classes, 10);
    assert_eq!(ds.class_names[9], "truck");

    // Limit spanning a batch boundary.
    s.limit = Some(3);
    let ds = load(&s).unwrap();
    assert_eq!(ds.labels, vec![1, 8, 2]);
    assert_eq!(ds.images, train[..3 * 3072]);

    // Auto-detected from a path, both the root and the batch dir itself.
    for p in [root.path().to_path_buf(), root.path().join("cifar-10-batches-bin")] {
        let ds = load(&spec(&p, Split::Test)).unwrap();
        assert_eq!(ds.labels, vec![7, 0, 3]);
        assert_eq!(ds.images, test);
    }
}

#[test]
fn cifar10_malformed() {
    let (root, _, _) = cifar10_fixture();
    let dir = root.path().join("cifar-10-batches-bin");
    let s = spec(&dir, Split::Train);

    std::fs::write(dir.join("batches.meta.txt"), "a\nb\n").unwrap();
    assert_msg(&load_err(&s), &["batches.meta.txt", "2 class names"]);
    std::fs::remove_file(dir.join("batches.meta.txt")).unwrap();
    assert_eq!(load(&s).unwrap().class_names[3], "3");

    cifar_file(&dir.join("data_batch_4.bin"), &[&[2], &[10]], 4);
    assert_msg(&load_err(&s), &["data_batch_4.bin", "label 10", "out of range"]);

    std::fs::write(dir.join("data_batch_2.bin"), vec![0u8; 3073 * 2 + 5]).unwrap();
    assert_msg(&load_err(&s), &["data_batch_2.bin", "not a multiple", "3073"]);

    cifar_file(&dir.join("data_batch_2.bin"), &[&[0]], 2);
    std::fs::remove_file(dir.join("data_batch_3.bin")).unwrap();
    assert_msg(&load_err(&s), &["data_batch_3.bin"]);
}

#[test]
fn cifar100_uses_fine_labels() {
    let root = TempDir::new().unwrap();
    let dir = root.path().join("cifar-100-binary");
    std::fs::create_dir(&dir).unwrap();
    let train = cifar_file(&dir.join("train.bin"), &[&[1, 99], &[19, 0], &[3, 42]], 1);
    cifar_file(&dir.join("test.bin"), &[&[0, 5]], 2);
    let mut s = DataSpec::new("cifar100", Split::Train);
    s.data_dir = Some(root.path().to_path_buf());
    let ds = load(&s).unwrap();
    assert_eq!(ds.labels, vec![99, 0, 42]);
    assert_eq!(ds.images, train);
    assert_eq!(ds.num_classes, 100);
    assert_eq!(load(&spec(&dir, Split::Test)).unwrap().labels, vec![5]);

    cifar_file(&dir.join("test.bin"), &[&[0, 100]], 2);
    assert_msg(&load_err(&spec(&dir, Split::Test)), &["test.bin", "label 100"]);
    std::fs::write(dir.join("test.bin"), vec![0u8; 3073]).unwrap();
    assert_msg(&load_err(&spec(&dir, Split::Test)), &["test.bin", "3074-byte"]);
}

// ---------------------------------------------------------- image folders

fn save_png(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
    image::RgbImage::from_pixel(w, h, image::Rgb(rgb)).save(path).unwrap();
}

fn save_jpeg(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb(rgb));
    let mut out = std::fs::File::create(path).unwrap();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 100)
        .encode_image(&img)
        .unwrap();
}

/// root/{train,val}/{cat,dog,empty}, uniform-colour images of assorted sizes.
fn folder_fixture() -> TempDir {
    let root = TempDir::new().unwrap();
    for split in ["train", "val"] {
        for class in ["dog", "cat", "empty"] {
            std::fs::create_dir_all(root.path().join(split).join(class)).unwrap();
        }
    }
    let t = root.path().join("train");
    save_png(&t.join("cat/b.png"), 20, 13, [200, 10, 30]);
    save_jpeg(&t.join("cat/a.JPG"), 17, 31, [40, 128, 250]);
    std::fs::write(t.join("cat/notes.txt"), "not an image").unwrap();
    std::fs::create_dir(t.join("dog/sub")).unwrap();
    save_png(&t.join("dog/sub/c.PNG"), 9, 9, [0, 255, 0]);
    save_jpeg(&t.join("dog/d.jpeg"), 64, 48, [128, 128, 128]);
    save_png(&root.path().join("val/dog/x.png"), 12, 12, [1, 2, 3]);
    root
}

fn pixel(ds: &Dataset, i: usize, c: usize, y: usize, x: usize) -> u8 {
    let (h, w) = (ds.height, ds.width);
    ds.images.as_u8().expect("image pixels are bytes")[((i * ds.channels + c) * h + y) * w + x]
}

#[test]
fn image_folder_resize_crop_and_classes() {
    let root = folder_fixture();
    let mut s = spec(root.path(), Split::Train);
    s.image_size = 8;
    let ds = load(&s).unwrap();
    assert_eq!(ds.class_names, vec!["cat", "dog", "empty"]);
    assert_eq!(ds.num_classes, 3);
    // cat: a.JPG then b.png; dog: d.jpeg (top level) then sub/c.PNG.
    assert_eq!(ds.labels, vec![0, 0, 1, 1]);
    assert_eq!((ds.len(), ds.channels, ds.height, ds.width), (4, 3, 8, 8));
    let colours: [[u8; 3]; 4] = [[40, 128, 250], [200, 10, 30], [128, 128, 128], [0, 255, 0]];
    for (i, rgb) in colours.iter().enumerate() {
        for c in 0..3 {
            for (y, x) in [(0, 0), (3, 4), (7, 7)] {
                let got = pixel(&ds, i, c, y, x) as i32;
                // JPEG at quality 100 is within a couple of levels.
                assert!((got - rgb[c] as i32).abs() <= 3, "image {i} c{c}: {got} vs {rgb:?}");
            }
        }
    }
    let (x, y) = ds.batch_range(0, 4);
    assert_eq!(x.size(), vec![4, 3, 8, 8]);
    assert_eq!(Vec::<i64>::try_from(&y).unwrap(), vec![0, 0, 1, 1]);

    // "val" serves the test split; the default size is 224.
    let ds = load(&spec(root.path(), Split::Test)).unwrap();
    assert_eq!((ds.len(), ds.height, ds.width), (1, 224, 224));
    assert_eq!(ds.labels, vec![1]);
    assert_eq!(pixel(&ds, 0, 2, 100, 100), 3);
}

#[test]
fn image_folder_crop_offsets_match_torchvision() {
    // Width 9 is already the resize target for size 8 (round(8*256/224)=9),
    // so only the crop acts: top = round(4/2) = 2, left = round(1/2) = 0.
    let root = TempDir::new().unwrap();
    std::fs::create_dir(root.path().join("only")).unwrap();
    let px = bytes(9 * 12 * 3, 5);
    let img = image::RgbImage::from_raw(9, 12, px.clone()).unwrap();
    img.save(root.path().join("only/p.png")).unwrap();
    let mut s = spec(root.path(), Split::Train);
    s.image_size = 8;
    let ds = load(&s).unwrap();
    for y in 0..8 {
        for x in 0..8 {
            for c in 0..3 {
                let want = px[((y + 2) * 9 + x) * 3 + c];
                assert_eq!(pixel(&ds, 0, c, y, x), want, "({c},{y},{x})");
            }
        }
    }
}

#[test]
fn image_folder_limit_and_errors() {
    let root = folder_fixture();
    let bad = root.path().join("train/dog/zz.png");
    std::fs::write(&bad, b"definitely not a png").unwrap();
    let mut s = spec(root.path().join("train"), Split::Train);
    s.image_size = 4;
    // The broken file is fourth in order, so a limit of 3 never decodes it.
    s.limit = Some(3);
    let ds = load(&s).unwrap();
    assert_eq!(ds.labels, vec![0, 0, 1]);
    assert_eq!(ds.num_classes, 3);
    s.limit = None;
    assert_msg(&load_err(&s), &["zz.png", "decode"]);

    // Split layout without the requested split.
    std::fs::remove_dir_all(root.path().join("val")).unwrap();
    let msg = load_err(&spec(root.path(), Split::Test));
    assert_msg(&msg, &["val", "not found"]);

    // Named imagenet root whose split has no class folders.
    let data = TempDir::new().unwrap();
    std::fs::create_dir_all(data.path().join("imagenet/train")).unwrap();
    std::fs::create_dir_all(data.path().join("imagenet/val")).unwrap();
    std::fs::write(data.path().join("imagenet/val/stray.png"), b"x").unwrap();
    let mut s = DataSpec::new("imagenet", Split::Test);
    s.data_dir = Some(data.path().to_path_buf());
    assert_msg(&load_err(&s), &["imagenet/val", "no class sub-folders"]);

    // Class folders with no images at all.
    std::fs::create_dir(data.path().join("imagenet/train/a")).unwrap();
    s.split = Split::Train;
    assert_msg(&load_err(&s), &["imagenet/train", "no .jpg"]);

    // A directory with nothing recognisable.
    let empty = TempDir::new().unwrap();
    std::fs::write(empty.path().join("readme"), b"x").unwrap();
    let msg = load_err(&spec(empty.path(), Split::Train));
    assert_msg(&msg, &[&empty.path().display().to_string(), "cannot tell"]);
}

// ------------------------------------------------------------ Dataset API

#[test]
fn batch_gives_scaled_float_nchw() {
    let f = idx_fixture(
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        &[3, 1, 4, 1],
        false,
    );
    let mut ds = load(&spec(f.dir.path(), Split::Train)).unwrap();
    let (x, y) = ds.batch(&[2, 0]);
    assert_eq!(x.size(), vec![2, 1, 4, 3]);
    assert_eq!(x.kind(), Kind::Float);
    assert_eq!(y.kind(), Kind::Int64);
    assert_eq!(Vec::<i64>::try_from(&y).unwrap(), vec![4, 3]);
    let got = Vec::<f32>::try_from(&x.flatten(0, -1)).unwrap();
    let want: Vec<f32> = f.pixels[24..36]
        .iter()
        .chain(&f.pixels[..12])
        .map(|&p| p as f32 / 255.0)
        .collect();
    assert_eq!(got, want);
    assert!(got.iter().all(|v| (0.0..=1.0).contains(v)));

    let (x, y) = ds.batch_range(1, 3);
    assert_eq!(x.size(), vec![2, 1, 4, 3]);
    assert_eq!(Vec::<i64>::try_from(&y).unwrap(), vec![1, 4]);
    let got = Vec::<f32>::try_from(&x.flatten(0, -1)).unwrap();
    assert_eq!(got[0], f.pixels[12] as f32 / 255.0);

    ds.truncate(2);
    assert_eq!((ds.len(), ds.images.len()), (2, 24));
    assert!(!ds.is_empty());
}

#[test]
fn split_parses() {
    assert_eq!("train".parse::<Split>().unwrap(), Split::Train);
    assert_eq!("test".parse::<Split>().unwrap(), Split::Test);
    assert!("bogus".parse::<Split>().unwrap_err().to_string().contains("bogus"));
}

// ------------------------------------------------------- real Fashion-MNIST

const FASHION: &str = "/usr/share/datasets/fashion-mnist";

#[test]
fn real_fashion_mnist_slice() {
    // scripts/setup.sh installs Debian's dataset-fashion-mnist; its absence is a set-up failure.
    assert!(
        PathBuf::from(FASHION).is_dir(),
        "{FASHION} missing: run scripts/setup.sh"
    );
    let mut s = DataSpec::new("fashion-mnist", Split::Test);
    s.limit = Some(100);
    let ds = load(&s).unwrap();
    assert_eq!((ds.len(), ds.channels, ds.height, ds.width), (100, 1, 28, 28));
    assert_eq!(ds.num_classes, 10);
    assert!(ds.labels.iter().all(|l| (0..10).contains(l)));
    assert_eq!(ds.labels[0], 9, "first test image is an ankle boot");
    let (x, _) = ds.batch_range(0, 100);
    assert_eq!(x.size(), vec![100, 1, 28, 28]);

    // Same files through the path route.
    let mut s = spec(FASHION, Split::Train);
    s.limit = Some(1);
    let ds = load(&s).unwrap();
    assert_eq!(ds.labels, vec![9]);
}
