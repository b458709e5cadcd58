"""hart.quantize, hart.prune and hart.landscape against the CLI on the
module's ONNX export, and against quantization / pruning done in PyTorch."""

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import hart

N = 300


def evaluate(module, state, fashion_test):
    """(correct, mean cross-entropy) of `module` with `state` on the first N test images."""
    x = torch.from_numpy(fashion_test[0][:N]).float() / 255
    y = torch.from_numpy(fashion_test[1][:N])
    saved = {k: v.clone() for k, v in module.state_dict().items()}
    try:
        module.load_state_dict(state)
        with torch.no_grad():
            logits = module(x)
    finally:
        module.load_state_dict(saved)
    return int((logits.argmax(1) == y).sum()), F.cross_entropy(logits, y).item()


def weights(module):
    return [k for k, p in module.named_parameters() if p.dim() >= 2]


def test_quantize_equals_pytorch_and_the_cli(trained_cnn, fashion_test, hart_bin, tmp_path):
    exported = str(hart.load(trained_cnn).save(tmp_path / "cnn.onnx"))
    table = hart.quantize(exported, "fashion-mnist", limit=N, bits=[8, 4, 2], out=tmp_path / "py", progress=False)
    assert list(table["bits"]) == [8, 4, 2] and set(table["model"]) == {"cnn"}
    state = trained_cnn.state_dict()
    for row in table.itertuples():
        n = 2 ** (row.bits - 1) - 1
        q = dict(state)
        for k in weights(trained_cnn):
            scale = state[k].abs().max() / n
            q[k] = (state[k] / scale).round().clamp(-n, n) * scale
        correct, loss = evaluate(trained_cnn, q, fashion_test)
        assert row.accuracy == correct / N, row
        assert row.loss == pytest.approx(loss, rel=1e-5), row
    assert table["accuracy"].iloc[-1] < table["float_accuracy"].iloc[0]

    subprocess.run([hart_bin, "quantize", "--model", exported, "--limit", str(N), "--bits", "8,4,2", "--out",
                    tmp_path / "cli"], check=True, capture_output=True)
    cli = json.loads((tmp_path / "cli" / "quantize.json").read_text())
    assert json.loads((tmp_path / "py" / "quantize.json").read_text()) == cli
    per_channel = hart.quantize(trained_cnn, "fashion-mnist", limit=N, bits=4, per_channel=True, progress=False)
    assert list(per_channel["granularity"]) == ["per-channel"] and per_channel["model"][0] == "SmallCnn"


def test_prune_equals_pytorch_and_the_cli(trained_cnn, fashion_test, hart_bin, tmp_path):
    table = hart.prune(trained_cnn, "fashion-mnist", limit=N, sparsity=[0.5, 0.9], progress=False)
    assert list(table["sparsity"]) == [0.0, 0.5, 0.9]
    state = trained_cnn.state_dict()
    names = weights(trained_cnn)
    mags = torch.cat([state[k].abs().flatten() for k in names])
    for row in table.itertuples():
        k = round(row.sparsity * len(mags))
        keep = torch.ones(len(mags))
        keep[torch.argsort(mags, stable=True)[:k]] = 0
        pruned, start = dict(state), 0
        for name in names:
            size = state[name].numel()
            pruned[name] = state[name] * keep[start : start + size].view(state[name].shape)
            start += size
        correct, _ = evaluate(trained_cnn, pruned, fashion_test)
        assert row.accuracy == correct / N, row
        assert row.weights == len(mags) and row.zeros == int(sum((pruned[n] == 0).sum() for n in names))

    exported = str(hart.load(trained_cnn).save(tmp_path / "cnn.onnx"))
    py = hart.prune([exported, exported], "fashion-mnist", limit=N, sparsity="0.7", scope="layer", progress=False)
    assert list(py["model"].unique()) == ["cnn#1", "cnn#2"]
    subprocess.run([hart_bin, "prune", "--model", exported, "--model", exported, "--limit", str(N), "--sparsity", "0.7",
                    "--scope", "layer", "--out", tmp_path / "cli"], check=True, capture_output=True)
    cli = pd.DataFrame(json.loads((tmp_path / "cli" / "prune.json").read_text()))
    pd.testing.assert_frame_equal(py, cli[py.columns])


def test_landscape_equals_the_cli_and_its_centre_is_the_model(trained_cnn, fashion_test, hart_bin, tmp_path):
    exported = str(hart.load(trained_cnn).save(tmp_path / "cnn.onnx"))
    res = hart.landscape(exported, "fashion-mnist", limit=N, steps=5, seed=2, out=tmp_path / "py", progress=False)
    subprocess.run([hart_bin, "landscape", "--model", exported, "--limit", str(N), "--steps", "5", "--seed", "2",
                    "--out", tmp_path / "cli"], check=True, capture_output=True)
    assert (tmp_path / "py" / "cnn.csv").read_text() == (tmp_path / "cli" / "cnn.csv").read_text()
    cli = json.loads((tmp_path / "cli" / "landscape.json").read_text())
    assert res.summary["grid"] == cli["grid"] and res.summary["images"] == cli["images"] == N
    mine, theirs = res.summary["models"][0], cli["models"][0]
    for key in ("tensors", "clean_loss", "clean_accuracy", "min_loss"):
        assert mine[key] == theirs[key], key
    assert list(res.points["x"]) == [-1.0, -0.5, 0.0, 0.5, 1.0] and res.points["y"].isna().all()
    centre = res.points[res.points["x"] == 0.0].iloc[0]
    correct, loss = evaluate(trained_cnn, trained_cnn.state_dict(), fashion_test)
    assert centre["accuracy"] == correct / N
    assert centre["loss"] == pytest.approx(loss, rel=1e-5)
    flat = hart.landscape(trained_cnn, "fashion-mnist", limit=50, dims=2, steps=3, range=(-0.5, 0.5),
                          progress=False)
    assert len(flat.points) == 9 and not flat.points["y"].isna().any()


@pytest.mark.parametrize(
    "fn, kwargs, text",
    [
        ("quantize", dict(bits=1), "--bits 1"),
        ("quantize", dict(bits="8,8"), "twice"),
        ("quantize", dict(save=True), "out="),
        ("prune", dict(sparsity=1.5), "1.5"),
        ("prune", dict(scope="row"), "row"),
        ("landscape", dict(dims=3), "--dims 3"),
        ("landscape", dict(range="1:-1"), "--range"),
        ("landscape", dict(layer="nope"), "nope"),
        ("quantize", dict(models=[]), "empty"),
    ],
)
def test_bad_compression_arguments(exported_cnn, fn, kwargs, text):
    models = kwargs.pop("models", exported_cnn)
    with pytest.raises(ValueError) as info:
        getattr(hart, fn)(models, "fashion-mnist", limit=20, progress=False, **kwargs)
    assert isinstance(info.value, hart.HartError) and text in str(info.value) and "\n" not in str(info.value)
