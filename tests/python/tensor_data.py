"""Writes one-file tensor data sets (.npz, .safetensors) for HART's loader tests.

Usage: tensor_data.py OUT_DIR

Good files are written by NumPy's own writers (numpy.savez, which stores
members, numpy.savez_compressed, which deflates them, and
safetensors.numpy.save_file), with uint8 and float32 pixels, C and Fortran
order, little- and big-endian dtypes, several label dtypes. expected.json
holds, per good file and split, the shape, the pixels as float32 in [0, 1]
(uint8 / 255 in float32, as torchvision's ToTensor computes it) and the labels,
computed by NumPy, which the test compares with what HART reads.
Bad files hold one mistake each (named in bad.json with the words its error
must contain). mlp.onnx is a 784-256-10 MLP taking 1x28x28 images, exported
by PyTorch. Everything comes from fixed seeds.
"""

import io
import json
import struct
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

rng = np.random.default_rng(7)


def u8(*shape):
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def f32(*shape):
    x = rng.random(shape, dtype=np.float32)
    flat = x.reshape(-1)
    flat[0], flat[-1] = 0.0, 1.0  # both ends of [0, 1] are valid
    return x


def labels(n, classes, dtype=np.int64):
    return rng.integers(0, classes, size=n).astype(dtype)


def as_tensor(x):
    """What HART's batches must hold: float32 in [0, 1]."""
    if x.dtype == np.uint8:
        return (x.astype(np.float32) / np.float32(255)).astype(np.float32)
    return x.astype(np.float32)


def entry(x, y):
    return {
        "shape": list(x.shape),
        "x": [float(v) for v in as_tensor(x).reshape(-1)],
        "y": [int(v) for v in y],
    }


def main(out):
    out.mkdir(parents=True, exist_ok=True)
    expected = {}

    # numpy.savez: stored members; uint8 pixels, int64 and int32 labels, a test split.
    x, y = u8(7, 1, 5, 4), labels(7, 4)
    xt, yt = u8(3, 1, 5, 4), labels(3, 6, np.int32)
    np.savez(out / "u8_savez.npz", x=x, y=y, x_test=xt, y_test=yt)
    expected["u8_savez.npz"] = {"train": entry(x, y), "test": entry(xt, yt), "classes": int(max(y.max(), yt.max())) + 1}

    # numpy.savez_compressed: deflated members; float32 pixels, uint8 labels; no test split.
    x, y = f32(6, 3, 4, 4), labels(6, 3, np.uint8)
    np.savez_compressed(out / "f32_compressed.npz", x=x, y=y)
    expected["f32_compressed.npz"] = {"train": entry(x, y), "test": entry(x, y), "classes": int(y.max()) + 1}

    # Fortran order and big-endian dtypes, which HART must reorder and swap.
    x = np.asfortranarray(f32(4, 2, 3, 5)).astype(">f4", order="F")
    y = labels(4, 5).astype(">i8")
    xt = np.asfortranarray(u8(2, 2, 3, 5))
    yt = labels(2, 5, np.int16)
    assert x.flags.f_contiguous and xt.flags.f_contiguous
    np.savez(out / "fortran_big_endian.npz", x=x, y=y, x_test=xt, y_test=yt)
    expected["fortran_big_endian.npz"] = {
        "train": entry(x, y),
        "test": entry(xt, yt),
        "classes": int(max(y.max(), yt.max())) + 1,
    }

    # safetensors.numpy: uint8 train pixels, float32 test pixels.
    x, y = u8(5, 3, 2, 2), labels(5, 10)
    xt, yt = f32(2, 3, 2, 2), labels(2, 10)
    save_file({"x": x, "y": y, "x_test": xt, "y_test": yt}, str(out / "data.safetensors"))
    expected["data.safetensors"] = {
        "train": entry(x, y),
        "test": entry(xt, yt),
        "classes": int(max(y.max(), yt.max())) + 1,
    }

    # 28x28 grey images with labels 0..11: a 10-class model cannot take them.
    x, y = u8(12, 1, 28, 28), np.arange(12, dtype=np.int64)
    np.savez(out / "twelve_classes.npz", x=x, y=y)
    # The same images with labels 0..9, for a model that fits.
    np.savez(out / "ten_classes.npz", x=x[:10], y=y[:10])

    (out / "expected.json").write_text(json.dumps(expected))
    bad = write_bad(out)
    (out / "bad.json").write_text(json.dumps(bad))
    export_mlp(out / "mlp.onnx")


def write_bad(out):
    """One mistake per file: name -> words the one-line error must contain."""
    bad = {}

    def npz(name, words, **arrays):
        np.savez(out / name, **arrays)
        bad[name] = words

    x, y = u8(4, 1, 6, 6), labels(4, 3)
    npz("rank3.npz", ["x has shape (4, 28, 28)", "N×C×H×W", "x[:, None]"], x=u8(4, 28, 28), y=y)
    npz("channels_last.npz", ["x has shape (4, 8, 8, 3)", "channels-last", "numpy.moveaxis(x, -1, 1)"], x=u8(4, 8, 8, 3), y=y)
    npz("length_mismatch.npz", ["x holds 4 images", "(4, 1, 6, 6)", "y holds 3 labels"], x=x, y=y[:3])
    xt = f32(2, 1, 6, 6)
    xt[1, 0, 2, 3] = np.nan
    npz("nan_test.npz", ["x_test", "(2, 1, 6, 6)", "NaN at [1, 0, 2, 3]"], x=x, y=y, x_test=xt, y_test=labels(2, 3))
    xr = f32(4, 1, 6, 6)
    xr[2, 0, 5, 1] = 1.5
    npz("out_of_range.npz", ["x (shape (4, 1, 6, 6))", "1.5 at [2, 0, 5, 1]", "[0, 1]"], x=xr, y=y)
    npz("float64.npz", ["x (shape (4, 1, 6, 6))", "<f8 (float64)", "not supported", "uint8", "float32"], x=x.astype(np.float64), y=y)
    npz("float_labels.npz", ["y (shape (4,))", "float32", "integers"], x=x, y=y.astype(np.float32))
    yn = y.copy()
    yn[2] = -1
    npz("negative_label.npz", ["y (shape (4,))", "label -1 at [2]"], x=x, y=yn)
    npz("column_labels.npz", ["y has shape (4, 1)", "y.ravel()"], x=x, y=y[:, None])
    npz("extra_array.npz", ['unexpected array "z"', "x, y"], x=x, y=y, z=y)
    npz("test_without_labels.npz", ["x_test has no labels", "y_test"], x=x, y=y, x_test=x)
    npz("no_x.npz", ["y_test has no images"], y_test=y)
    npz("empty.npz", ["x has shape (0, 1, 6, 6)", "no images"], x=u8(0, 1, 6, 6), y=labels(0, 3))
    save_file({"x": x.astype(np.float16), "y": y}, str(out / "float16.safetensors"))
    bad["float16.safetensors"] = ["x (shape (4, 1, 6, 6))", "F16", "uint8"]

    good_y = io.BytesIO()
    np.save(good_y, y)
    good_x = io.BytesIO()
    np.save(good_x, x)

    def raw_npz(name, words, member, data, compress=zipfile.ZIP_STORED):
        with zipfile.ZipFile(out / name, "w", compression=compress) as z:
            z.writestr(member, data)
            other = "x.npy" if member == "y.npy" else "y.npy"
            z.writestr(other, (good_x if other == "x.npy" else good_y).getvalue())
        bad[name] = words

    good = good_x.getvalue()
    raw_npz("bad_magic.npz", ["x:", "not a .npy array"], "x.npy", b"\x93NUMPX" + good[6:])
    raw_npz("bad_version.npz", ["x:", "version 9.0"], "x.npy", good[:6] + b"\x09\x00" + good[8:])
    raw_npz("truncated_data.npz", ["x:", "truncated", "(4, 1, 6, 6)"], "x.npy", good[:-10], zipfile.ZIP_DEFLATED)
    header = b"{'descr': '<u1', 'fortran_order': False, 'shape': (4, 1, 6, 6) }"
    raw_npz("bad_header.npz", ["x:", "malformed .npy header"], "x.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header) + 1) + header[:-1] + b"]\n")
    structured = io.BytesIO()
    np.save(structured, np.zeros(4, dtype=[("a", "<i4"), ("b", "<f4")]))
    raw_npz("structured.npz", ["y:", "structured dtypes"], "y.npy", structured.getvalue())
    raw_npz("not_npy_member.npz", ['member "x.txt"', "not a .npy array"], "x.txt", b"hello")
    (out / "not_a_zip.npz").write_bytes(b"PK\x03\x04 this is not a zip file at all")
    bad["not_a_zip.npz"] = ["not a readable .npz (zip) file"]
    return bad


def export_mlp(path):
    import torch
    import torch.nn as nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, 1, 28, 28),),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
            dynamo=False,
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
