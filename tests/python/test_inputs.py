"""What hart's functions check of their inputs before measuring: the
engine's model/data check (one line, a ValueError), float pixels taken as
they are (equal to the CLI on the same pixels in a float32 .npz), the device
option, a torch Dataset's size guard, the torch version the package needs."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import hart
import hart._data


def centre_loss(model, data):
    """The loss HART measures at the trained weights (the landscape's centre)."""
    res = hart.landscape(model, data, steps=3, progress=False)
    return res.points[res.points["x"] == 0.0]["loss"].iloc[0]


def test_float_pixels_are_fed_as_they_are(trained_cnn, fashion_test):
    x, y = off_grid(fashion_test, 200)
    with torch.no_grad():
        want = F.cross_entropy(trained_cnn(torch.from_numpy(x)), torch.from_numpy(y)).item()
        rounded = F.cross_entropy(trained_cnn(torch.from_numpy(np.rint(x * 255) / 255).float()), torch.from_numpy(y)).item()
    got = centre_loss(trained_cnn, (x, y))
    assert got == pytest.approx(want, rel=1e-6)
    assert abs(want - rounded) > 1e-5, "the noise should matter at this precision"
    assert got != pytest.approx(rounded, rel=1e-6)
    assert centre_loss(trained_cnn, (torch.from_numpy(x).double(), torch.from_numpy(y))) == got


@pytest.mark.parametrize(
    "data, text",
    [
        ((np.zeros((4, 3, 32, 32), np.uint8), np.zeros(4, np.int64)), "takes 1×28×28 inputs, but arrays gives 3×32×32"),
        ((np.zeros((4, 1, 28, 28), np.uint8), np.array([0, 1, 2, 12])), "the labels of arrays reach 12"),
    ],
)
def test_a_model_file_that_does_not_fit_the_data_is_one_value_error(exported_cnn, tmp_path, data, text):
    exported = str(exported_cnn.save(tmp_path / "cnn.onnx"))
    calls = [
        lambda: hart.sweep(exported, data, bits=30, progress=False),
        lambda: hart.hessian(exported, data, max_probes=2, progress=False),
        lambda: hart.campaign(exported, data, fault="bitflip", levels=[1e-3], trials=1, progress=False),
        lambda: hart.quantize(exported, data, bits=8, progress=False),
        lambda: hart.attack(exported, data, attack_data=data, limit=2, max_flips=1, trials=1, progress=False),
    ]
    for call in calls:
        with pytest.raises(hart.InvalidArgumentError) as info:
            call()
        assert isinstance(info.value, ValueError) and text in str(info.value), str(info.value)
        assert "\n" not in str(info.value)


def test_a_module_that_cannot_take_the_data_fails_before_any_export(trained_cnn):
    data = (np.zeros((2, 3, 32, 32), np.uint8), np.zeros(2, np.int64))
    model = hart.load(trained_cnn)
    with pytest.raises(hart.InvalidArgumentError, match=r"the model \(SmallCnn\) cannot take the inputs arrays gives "
                       r"3×32×32 \(read as tensors passed from Python\): RuntimeError: .*channels"):
        hart.sweep(model, data, bits=30, progress=False)
    assert model.exporter is None


def test_load_checks_a_model_against_its_example_input(trained_cnn, exported_cnn, tmp_path):
    exported = str(exported_cnn.save(tmp_path / "cnn.onnx"))
    with pytest.raises(hart.InvalidArgumentError) as info:
        hart.load(exported, example_input=torch.zeros(2, 3, 32, 32))
    assert "takes 1×28×28 inputs, but example_input gives 3×32×32" in str(info.value), str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(hart.InvalidArgumentError, match=r"the model \(SmallCnn\) cannot take the inputs example_input "
                       r"gives 3×32×32 \(read as tensors passed from Python\): RuntimeError"):
        hart.load(trained_cnn, example_input=torch.zeros(2, 3, 32, 32))
    fits = hart.load(trained_cnn, example_input=torch.zeros(2, 1, 28, 28))
    assert fits.exporter == "onnx", "exported and checked at load"
    # Exported for 1×28×28, it meets 3×32×32 data: the engine's line naming both shapes.
    with pytest.raises(hart.InvalidArgumentError, match=r"takes 1×28×28 inputs, but arrays gives 3×32×32"):
        hart.sweep(fits, (np.zeros((2, 3, 32, 32), np.uint8), np.zeros(2, np.int64)), bits=30, progress=False)


def off_grid(fashion_test, n):
    """n test images as float32 in [0, 1] off the 1/255 grid (rounding them
    to bytes would move every pixel by up to half a level)."""
    rng = np.random.default_rng(0)
    x8, y = fashion_test[0][:n], fashion_test[1][:n]
    noise = rng.uniform(-0.5, 0.5, x8.shape).astype(np.float32) / 255
    return np.clip(x8.astype(np.float32) / 255 + noise, 0, 1).astype(np.float32), y


def test_float_pixels_equal_the_cli_on_a_float32_npz(exported_cnn, fashion_test, hart_bin, tmp_path):
    x, y = off_grid(fashion_test, 200)
    np.savez(tmp_path / "floats.npz", x=x, y=y)
    exported = str(exported_cnn.save(tmp_path / "cnn.onnx"))
    opts = ["--bits", "30", "--params", "head.weight"]
    subprocess.run([hart_bin, "sweep", "--model", exported, "--dataset", tmp_path / "floats.npz", *opts, "--out",
                    tmp_path / "cli"], check=True, capture_output=True)
    res = hart.sweep(exported, (x, y), bits=30, params="head.weight", progress=False)
    cli = pd.read_parquet(tmp_path / "cli" / "flips.parquet")
    pd.testing.assert_frame_equal(res.flips, cli)
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert res.clean_accuracy == summary["clean_accuracy"] and res.summary["erratic_bits"] == summary["erratic_bits"]
    subprocess.run([hart_bin, "quantize", "--model", exported, "--dataset", tmp_path / "floats.npz", "--bits", "8,4",
                    "--out", tmp_path / "q"], check=True, capture_output=True)
    table = hart.quantize(exported, (x, y), bits=[8, 4], progress=False)
    pd.testing.assert_frame_equal(table, pd.DataFrame(json.loads((tmp_path / "q" / "quantize.json").read_text())))


def test_importing_beside_another_torch_is_one_line_naming_the_version():
    code = "import torch; torch.__version__ = '2.10.0+cpu'; import hart"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode != 0
    last = p.stderr.strip().splitlines()[-1]
    assert last == (
        "ImportError: hart needs torch 2.11.0 (it links that version's libtorch); this environment has torch 2.10.0"
    ), p.stderr
    assert hart.__version__ and isinstance(hart.__version__, str)


@pytest.mark.parametrize("fn", ["sweep", "hessian", "campaign", "attack", "quantize", "prune", "landscape", "fine_tune"])
def test_device_is_checked_as_the_clis(exported_cnn, fn):
    extra = dict(fault="bitflip", levels=[1e-3]) if fn == "campaign" else {}
    with pytest.raises(ValueError, match='unknown device "tpu"'):
        getattr(hart, fn)(exported_cnn, "fashion-mnist", limit=8, device="tpu", progress=False, **extra)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"--device cuda: CUDA is not available here \(0 GPU\(s\) visible\)"):
            getattr(hart, fn)(exported_cnn, "fashion-mnist", limit=8, device="cuda", progress=False, **extra)


class Images(torch.utils.data.Dataset):
    """n float images of 1×28×28 in [0, 1], labels i mod 10."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.full((1, 28, 28), (i % 7) / 7), i % 10


def test_a_torch_dataset_is_read_once_under_its_size_guard(trained_cnn, monkeypatch):
    d = hart._data.as_data(Images(30))
    assert d.shape == (30, 1, 28, 28) and d.num_classes == 10
    monkeypatch.setattr(hart._data, "MAX_DATASET_BYTES", 20 * 28 * 28 * 4)
    with pytest.raises(hart.InvalidArgumentError, match="first 21 images exceed .* pass limit="):
        hart.sweep(trained_cnn, Images(30), bits=30, progress=False)
    assert hart._data.as_data(Images(30), limit=20).shape[0] == 20
    with pytest.raises(ValueError, match="empty"):
        hart._data.as_data(Images(0))
