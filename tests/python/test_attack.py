"""hart.attack against `hart attack` on the module's ONNX export, and its
fp32 flips replayed on the module in PyTorch."""

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

import hart

EVAL = 200


def test_attack_equals_the_cli(trained_cnn, hart_bin, tmp_path):
    model = hart.load(trained_cnn)
    res = hart.attack(model, "fashion-mnist", limit=32, eval_limit=EVAL, max_flips=3, top_k=3, trials=2, seed=1,
                      out=tmp_path / "py", progress=False)
    exported = model.save(tmp_path / "cnn.onnx")
    cli = tmp_path / "cli"
    subprocess.run(
        [hart_bin, "attack", "--model", exported, "--limit", "32", "--eval-limit", str(EVAL), "--max-flips", "3",
         "--top-k", "3", "--trials", "2", "--seed", "1", "--out", cli],
        check=True, capture_output=True,
    )
    pd.testing.assert_frame_equal(res.flips, pd.read_csv(cli / "flips.csv"))
    assert res.summary == json.loads((cli / "summary.json").read_text())
    assert (tmp_path / "py" / "accuracy.png").exists()
    assert list(res.trials["method"]) == ["bfa", "bfa", "random", "random"]
    assert len(res.flips) > 0 and set(res.flips["method"]) <= {"bfa", "random"}
    bfa = res.trials[res.trials["method"] == "bfa"]
    assert res.mean_flips == bfa["flips"].mean()
    first = res.curves[(res.curves["method"] == "bfa") & (res.curves["trial"] == 0)]
    assert first["accuracy"].iloc[0] == res.clean_accuracy


def test_fp32_attack_flips_replayed_in_pytorch(trained_cnn, fashion_test):
    res = hart.attack(trained_cnn, "fashion-mnist", storage="fp32", limit=32, eval_limit=EVAL, max_flips=3,
                      top_k=3, trials=1, method="bfa", progress=False)
    x = torch.from_numpy(fashion_test[0][:EVAL]).float() / 255
    y = torch.from_numpy(fashion_test[1][:EVAL])
    state = {k: v.clone() for k, v in trained_cnn.state_dict().items()}
    rows = res.flips[(res.flips["method"] == "bfa") & (res.flips["trial"] == 0)].sort_values("iteration")
    assert len(rows) >= 1
    faulty = {k: v.clone() for k, v in state.items()}
    try:
        for r in rows.itertuples():
            flat = faulty[r.param].view(-1)
            assert flat[r.index].item() == np.float32(r.old), r
            words = flat.view(torch.int32)
            words[r.index] ^= (1 << r.bit) if r.bit < 31 else -(1 << 31)
            assert flat[r.index].item() == np.float32(r.new) or np.isnan(r.new), r
            trained_cnn.load_state_dict(faulty)
            with torch.no_grad():
                logits = trained_cnn(x)
            correct = int(((logits.argmax(1) == y) & ~logits.isnan().any(1)).sum())
            assert correct / EVAL == pytest.approx(r.accuracy, abs=1e-12), r
    finally:
        trained_cnn.load_state_dict(state)
    assert rows["accuracy"].iloc[-1] < res.clean_accuracy


@pytest.mark.parametrize(
    "kwargs, kind, text",
    [
        (dict(method="pgd"), ValueError, "pgd"),
        (dict(storage="int3"), ValueError, "--storage"),
        (dict(defense="wall"), ValueError, "wall"),
        (dict(limit=0), ValueError, "limit"),
        (dict(data=(np.zeros((4, 1, 28, 28), np.uint8), np.zeros(4, np.int64))), ValueError, "attack_data"),
        (dict(device="cuda:7"), ValueError, "cuda:7"),
    ],
)
def test_bad_attack_arguments(exported_cnn, kwargs, kind, text):
    kwargs = {"data": "fashion-mnist", "eval_limit": 20, "max_flips": 1, "trials": 1, "progress": False, **kwargs}
    data = kwargs.pop("data")
    with pytest.raises(kind) as info:
        hart.attack(exported_cnn, data, **kwargs)
    assert isinstance(info.value, hart.HartError) and text in str(info.value) and "\n" not in str(info.value)
