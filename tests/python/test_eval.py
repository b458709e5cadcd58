"""hart.evaluate: the eager module's accuracy and loss equal PyTorch's on the
same images, and the dict equals `hart eval --json` on its export."""

import json
import subprocess

import pytest
import torch

import hart

N = 500


def test_evaluate_equals_pytorch_and_the_cli(trained_cnn, fashion_test, hart_bin, tmp_path):
    r = hart.evaluate(trained_cnn, "fashion-mnist", limit=N)
    x = torch.from_numpy(fashion_test[0][:N]).float() / 255
    y = torch.from_numpy(fashion_test[1][:N])
    with torch.no_grad():
        logits = trained_cnn.eval()(x)
    assert r["total"] == N and r["correct"] == int((logits.argmax(1) == y).sum())
    assert r["accuracy"] == r["correct"] / N
    assert r["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)), rel=1e-5)

    exported = hart.load(trained_cnn).save(tmp_path / "cnn.onnx")
    cli = subprocess.run([hart_bin, "eval", "--model", exported, "--dataset", "fashion-mnist", "--limit", str(N),
                          "--json"], check=True, capture_output=True, text=True)
    assert json.loads(cli.stdout) == r
    assert hart.evaluate(trained_cnn, fashion_test, limit=N) == r, "(x, y) arrays: the named set's result"


def test_evaluate_bad_arguments(exported_cnn):
    with pytest.raises(ValueError, match="unknown NaN policy"):
        hart.evaluate(exported_cnn, "fashion-mnist", limit=10, nan_policy="drop")
    with pytest.raises(ValueError, match="limit"):
        hart.evaluate(exported_cnn, "fashion-mnist", limit=0)
