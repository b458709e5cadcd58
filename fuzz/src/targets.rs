//! Every parser HART exposes to files from elsewhere, each with valid seed
//! files. Adding a target is one entry in [`all`]: its files and the call
//! that reads them.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use hart::data::{DataSpec, Split};
use hart::experiment::ExperimentConfig;
use hart::faults::{faultlist, journal, space, sweep, Format, Scope, SweepConfig};
use hart::model::{load, onnx, safetensors_io, zoo, LoadOptions, Model, ModelInfo, ScriptModel};
use hart::Result;
use tch::Tensor;

type Parse = Box<dyn Fn(&Path) -> Result<()>>;

pub struct Target {
    pub name: &'static str,
    /// The files the parser reads (relative paths) with valid contents; one is mutated per input.
    pub files: Vec<(String, Vec<u8>)>,
    /// Line-based text (mutated by lines and tokens as well as bytes).
    pub text: bool,
    /// Applied to each file's (mutated) contents before writing: gzip for the `.gz` loaders.
    pub encode: fn(Vec<u8>) -> Vec<u8>,
    pub parse: Parse,
}

fn plain(v: Vec<u8>) -> Vec<u8> {
    v
}

fn gzip(v: Vec<u8>) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
    e.write_all(&v).expect("writing to memory");
    e.finish().expect("writing to memory")
}

fn load_data(dir: &Path) -> Result<()> {
    let mut spec = DataSpec::new(dir.display().to_string(), Split::Test);
    spec.image_size = 8;
    hart::data::load(&spec).map(|_| ())
}

fn idx_files(suffix: &str) -> Vec<(String, Vec<u8>)> {
    let (n, side) = (12u32, 6u32);
    let mut images = [0x803u32, n, side, side]
        .iter()
        .flat_map(|w| w.to_be_bytes())
        .collect::<Vec<u8>>();
    images.extend((0..n * side * side).map(|i| (i * 7 % 256) as u8));
    let mut labels = [0x801u32, n].iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>();
    labels.extend((0..n).map(|i| (i % 10) as u8));
    vec![
        (format!("t10k-images-idx3-ubyte{suffix}"), images),
        (format!("t10k-labels-idx1-ubyte{suffix}"), labels),
    ]
}

fn cifar_files() -> Vec<(String, Vec<u8>)> {
    let batch = (0..3u8)
        .flat_map(|r| std::iter::once(r).chain((0..3072).map(move |i| (i as u8).wrapping_mul(r + 1))))
        .collect();
    let names = (0..10).map(|i| format!("class{i}\n")).collect::<String>().into_bytes();
    vec![("test_batch.bin".into(), batch), ("batches.meta.txt".into(), names)]
}

fn image_files() -> Vec<(String, Vec<u8>)> {
    let encode = |fmt: image::ImageFormat, w: u32, h: u32| {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 20) as u8, (y * 30) as u8, 128]));
        let mut out = std::io::Cursor::new(vec![]);
        img.write_to(&mut out, fmt).expect("encoding to memory");
        out.into_inner()
    };
    vec![
        ("test/cat/a.png".into(), encode(image::ImageFormat::Png, 10, 7)),
        ("test/dog/b.jpg".into(), encode(image::ImageFormat::Jpeg, 9, 12)),
        ("test/dog/c.png".into(), encode(image::ImageFormat::Png, 8, 8)),
    ]
}

fn load_tensor_file(path: &Path) -> Result<()> {
    for split in [Split::Train, Split::Test] {
        let mut spec = DataSpec::new(path.display().to_string(), split);
        spec.limit = Some(3);
        hart::data::load(&spec)?;
    }
    Ok(())
}

/// One `.npy` array as NumPy writes it (version 1.0, header padded to 64 bytes).
fn npy(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let dims = if shape.len() == 1 {
        format!("{},", dims[0])
    } else {
        dims.join(", ")
    };
    let fortran = if fortran { "True" } else { "False" };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': ({dims}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

/// The arrays of a small tensor data set: uint8 x, int64 y, a Fortran-ordered
/// float32 x_test and int32 y_test.
fn tensor_arrays() -> Vec<(&'static str, Vec<u8>)> {
    let x: Vec<u8> = (0..6 * 16).map(|i| (i * 11 % 256) as u8).collect();
    let y: Vec<u8> = (0..6i64).flat_map(|i| (i % 3).to_le_bytes()).collect();
    let xt: Vec<u8> = (0..2 * 16).flat_map(|i| (i as f32 / 32.0).to_le_bytes()).collect();
    let yt: Vec<u8> = (0..2i32).flat_map(|i| i.to_le_bytes()).collect();
    vec![
        ("x", npy("|u1", false, &[6, 1, 4, 4], &x)),
        ("y", npy("<i8", false, &[6], &y)),
        ("x_test", npy("<f4", true, &[2, 1, 4, 4], &xt)),
        ("y_test", npy("<i4", false, &[2], &yt)),
    ]
}

fn npz_file(method: zip::CompressionMethod) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(vec![]));
    for (name, bytes) in tensor_arrays() {
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        z.start_file(format!("{name}.npy"), opts).expect("writing to memory");
        z.write_all(&bytes).expect("writing to memory");
    }
    z.finish().expect("writing to memory").into_inner()
}

fn tensor_safetensors_file() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("d.safetensors");
    let x = tch::Tensor::from_slice(&(0..6 * 16).map(|i| (i * 11 % 256) as u8).collect::<Vec<u8>>()).view([6, 1, 4, 4]);
    let y = tch::Tensor::from_slice(&[0i64, 1, 2, 0, 1, 2]);
    let xt = tch::Tensor::from_slice(&(0..32).map(|i| i as f32 / 32.0).collect::<Vec<f32>>()).view([2, 1, 4, 4]);
    let yt = tch::Tensor::from_slice(&[0i64, 1]);
    let tensors = vec![
        ("x".into(), x),
        ("y".into(), y),
        ("x_test".into(), xt),
        ("y_test".into(), yt),
    ];
    safetensors_io::write(&path, &tensors, HashMap::new()).expect("writing the seed");
    std::fs::read(&path).expect("reading the seed back")
}

fn seed(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("seed {}: {e}", path.display()))
}

fn info() -> ModelInfo {
    ModelInfo {
        arch: "mlp".into(),
        num_classes: 10,
        in_channels: 1,
        input_size: 4,
        normalize: None,
        dataset: None,
    }
}

fn mlp() -> Model {
    tch::manual_seed(0);
    Model::Graph(zoo::build(&info()).expect("zoo mlp"))
}

fn safetensors_file() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("m.safetensors");
    let tensors: Vec<_> = mlp().named_tensors().into_iter().map(|(n, t, _)| (n, t)).collect();
    safetensors_io::write(&path, &tensors, HashMap::new()).expect("writing the seed");
    std::fs::read(&path).expect("reading the seed back")
}

/// A finished sweep's directory (manifest and parts), as `hart sweep` left it.
fn sweep_files() -> Vec<(String, Vec<u8>)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = mlp();
    let data = hart::data::Dataset {
        name: "synthetic".into(),
        images: (0..8 * 16).map(|i| (i * 13 % 256) as u8).collect(),
        channels: 1,
        height: 4,
        width: 4,
        labels: (0..8).map(|i| i % 10).collect(),
        num_classes: 10,
        class_names: (0..10).map(|i| i.to_string()).collect(),
        source: "synthetic".into(),
    };
    let cfg = SweepConfig {
        params: Some("fc3.bias".into()),
        bits: hart::faults::BitSet::parse("30,31").expect("bits"),
        ..SweepConfig::new()
    };
    let sw = hart::faults::prepare(&model, &data, &cfg).expect("seed sweep");
    sw.run(dir.path(), &mut |_| {}).expect("seed sweep");
    let mut files = vec![];
    for e in walk(dir.path()) {
        let rel = e.strip_prefix(dir.path()).expect("inside").display().to_string();
        files.push((rel, std::fs::read(&e).expect("reading the seed")));
    }
    files
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).expect("listing").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn floats(t: &Tensor) -> Result<Vec<u32>> {
    let t = t.f_to_kind(tch::Kind::Float)?.f_contiguous()?;
    let mut v = vec![0f32; t.numel()];
    t.f_copy_data(&mut v, t.numel())?;
    Ok(v.into_iter().map(f32::to_bits).collect())
}

/// What `hart train --model m.onnx --out t.onnx` does with a file: check
/// that it can hold the model's tensors, splice new values in, read the
/// result back. A file that imported must import again after the splice
/// with exactly the values written; anything else is HART's failure, so it
/// panics rather than returning an error.
fn onnx_write_back(dir: &Path) -> Result<()> {
    let src = dir.join("m.onnx");
    // The wire-level walk first, on every input, whether or not it imports.
    if let Ok(bytes) = std::fs::read(&src) {
        let _ = onnx::initializer_spans(&bytes);
    }
    let model = onnx::import(&src)?;
    let names: Vec<String> = model.params.iter().map(|(n, _, _)| n.to_string()).collect();
    onnx::check_writable(&src, &names)?;
    let mut trained = Vec::new();
    for (name, t, _) in model.params.iter() {
        trained.push((name.to_string(), t.f_neg()?));
    }
    let out = dir.join("t.onnx");
    onnx::write_back(&src, &out, &trained)?;
    let back = onnx::import(&out).unwrap_or_else(|e| panic!("the written-back file does not import: {e}"));
    for (name, t) in &trained {
        let read = back
            .params
            .get(name)
            .unwrap_or_else(|e| panic!("{name} is gone after the write-back: {e}"));
        assert!(
            floats(read)? == floats(t)?,
            "{name} reads back other values than were written"
        );
    }
    Ok(())
}

pub fn all() -> Vec<Target> {
    let data = |name, files, encode| Target {
        name,
        files,
        text: false,
        encode,
        parse: Box::new(load_data),
    };
    let model = mlp();
    let targets = space::select_targets(&model, Scope::All, None).expect("targets");
    let faults = b"param,index,bit\nfc1.weight,0,30\nfc3.bias,9,31\nfc2.weight,100,0\n".to_vec();
    vec![
        data("idx", idx_files(""), plain),
        data("idx-gz", idx_files(".gz"), gzip),
        data(
            "idx-gz-stream",
            idx_files(".gz").into_iter().map(|(n, v)| (n, gzip(v))).collect(),
            plain,
        ),
        data("cifar", cifar_files(), plain),
        data("image-folder", image_files(), plain),
        Target {
            name: "npz",
            files: vec![
                ("stored.npz".into(), npz_file(zip::CompressionMethod::Stored)),
                ("deflated.npz".into(), npz_file(zip::CompressionMethod::Deflated)),
            ],
            text: false,
            encode: plain,
            parse: Box::new(|d| load_tensor_file(&d.join("stored.npz")).and(load_tensor_file(&d.join("deflated.npz")))),
        },
        Target {
            name: "tensor-safetensors",
            files: vec![("d.safetensors".into(), tensor_safetensors_file())],
            text: false,
            encode: plain,
            parse: Box::new(|d| load_tensor_file(&d.join("d.safetensors"))),
        },
        Target {
            name: "onnx",
            files: vec![("m.onnx".into(), seed("mlp.onnx"))],
            text: false,
            encode: plain,
            parse: Box::new(|d| onnx::import(&d.join("m.onnx")).map(|_| ())),
        },
        Target {
            name: "onnx-write",
            files: vec![("m.onnx".into(), seed("mlp.onnx"))],
            text: false,
            encode: plain,
            parse: Box::new(onnx_write_back),
        },
        Target {
            name: "onnx-external",
            files: vec![
                ("mlp_external.onnx".into(), seed("mlp_external.onnx")),
                ("mlp_external.data".into(), seed("mlp_external.data")),
            ],
            text: false,
            encode: plain,
            parse: Box::new(|d| onnx::import(&d.join("mlp_external.onnx")).map(|_| ())),
        },
        Target {
            name: "safetensors",
            files: vec![("m.safetensors".into(), safetensors_file())],
            text: false,
            encode: plain,
            parse: Box::new(|d| {
                let path = d.join("m.safetensors");
                safetensors_io::read(&path)?;
                let opts = LoadOptions {
                    arch: Some("mlp".into()),
                    hint: Some(info()),
                    normalize: Some(None),
                };
                load(&path, &opts).map(|_| ())
            }),
        },
        Target {
            name: "torchscript",
            files: vec![("m.pt".into(), seed("mlp.pt"))],
            text: false,
            encode: plain,
            parse: Box::new(|d| ScriptModel::load(&d.join("m.pt"), info()).map(|_| ())),
        },
        Target {
            name: "faultlist",
            files: vec![("faults.csv".into(), faults)],
            text: true,
            encode: plain,
            parse: Box::new(move |d| faultlist::read(&d.join("faults.csv"), &model, &targets, None).map(|_| ())),
        },
        Target {
            name: "experiment-toml",
            files: vec![(
                "e.toml".into(),
                include_bytes!("../../configs/demo-quick.toml").to_vec(),
            )],
            text: true,
            encode: plain,
            parse: Box::new(|d| ExperimentConfig::from_file(&d.join("e.toml")).map(|_| ())),
        },
        Target {
            name: "sweep-journal",
            files: sweep_files(),
            text: true,
            encode: plain,
            parse: Box::new(|d| {
                // What a resumed sweep reads: the manifest, the finished parts, then the tables.
                let m = journal::read_manifest(d)?;
                journal::Journal::open(d, &m)?;
                sweep::finish(d, Format::Csv).map(|_| ())
            }),
        },
    ]
}
