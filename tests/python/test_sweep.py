"""hart.sweep on an eager module against a brute-force PyTorch loop, and
against the CLI on the module's own ONNX export."""

import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

import hart

LIMIT = 300


def flip(t, index, bit):
    """t with bit `bit` of element `index` of its float32 words flipped."""
    flat = t.detach().clone().flatten()
    words = flat.view(torch.int32)
    words[index] ^= (1 << bit) if bit < 31 else -(1 << 31)
    return flat.view(t.shape)


def correct(model, x, y):
    """HART's rule: a row is right when its argmax is the label and it holds no NaN."""
    with torch.no_grad():
        logits = model(x)
    return int(((logits.argmax(1) == y) & ~logits.isnan().any(1)).sum())


def random_faults(model, n, seed):
    """n flips over every float tensor of the state dict (buffers too), mostly exponent bits."""
    rng = np.random.default_rng(seed)
    tensors = [(k, v) for k, v in model.state_dict().items() if v.dtype == torch.float32]
    rows = []
    for _ in range(n):
        name, t = tensors[rng.integers(len(tensors))]
        rows.append((name, int(rng.integers(t.numel())), int(rng.choice([30, 30, 29, 28, 23, 22, 31, 0]))))
    return rows


def test_eager_module_verdicts_equal_brute_force(trained_cnn, fashion_test):
    faults = random_faults(trained_cnn, 48, seed=1)
    res = hart.sweep(trained_cnn, "fashion-mnist", limit=LIMIT, faults=faults, exact_rad=True, progress=False)
    assert isinstance(res.flips, pd.DataFrame)
    assert list(res.flips.columns) == [
        "param", "index", "bit", "old", "new", "correct", "total", "rad", "exact", "samples", "bound", "sure",
    ]
    assert len(res.flips) == len(faults)

    x = torch.from_numpy(fashion_test[0][:LIMIT]).float() / 255
    y = torch.from_numpy(fashion_test[1][:LIMIT])
    clean = correct(trained_cnn, x, y)
    assert res.summary["clean_correct"] == clean
    assert clean / LIMIT > 0.5, "the fixture model should have learned something"
    state = {k: v.clone() for k, v in trained_cnn.state_dict().items()}
    erratic = 0
    try:
        for row in res.flips.itertuples():
            faulty = dict(state)
            faulty[row.param] = flip(state[row.param], row.index, row.bit)
            trained_cnn.load_state_dict(faulty)
            got = correct(trained_cnn, x, y)
            rad = (clean - got) / clean
            assert row.exact and row.total == LIMIT
            assert (row.rad > 0.1) == (rad > 0.1), (row, got)
            assert row.correct == got, (row, got)
            erratic += rad > 0.1
    finally:
        trained_cnn.load_state_dict(state)
    assert 0 < erratic < len(faults), "the sample should hold erratic and harmless flips"
    assert res.summary["erratic_bits"] == erratic


def test_eager_module_equals_its_onnx_export_and_the_cli(trained_cnn, hart_bin, tmp_path):
    model = hart.load(trained_cnn)
    opts = dict(limit=100, bits=[30, 22], params="fc.weight|head.*|bn.*")
    eager = hart.sweep(model, "fashion-mnist", progress=False, **opts)
    assert model.exporter == "onnx", repr(model)
    exported = model.save(tmp_path / "cnn.onnx")
    from_file = hart.sweep(str(exported), "fashion-mnist", out=tmp_path / "py", progress=False, **opts)
    pd.testing.assert_frame_equal(eager.flips, from_file.flips)

    cli = tmp_path / "cli"
    subprocess.run(
        [hart_bin, "sweep", "--model", exported, "--dataset", "fashion-mnist", "--limit", "100",
         "--bits", "30,22", "--params", "fc.weight|head.*|bn.*", "--out", cli],
        check=True, capture_output=True,
    )
    pd.testing.assert_frame_equal(from_file.flips, pd.read_parquet(cli / "flips.parquet"))
    import json

    cli_summary = json.loads((cli / "summary.json").read_text())
    assert from_file.summary == cli_summary
    per_layer = pd.DataFrame(cli_summary["per_layer"])
    assert (from_file.per_layer[per_layer.columns] == per_layer).all().all()
    assert from_file.per_bit["flips"].sum() == len(from_file.flips)

    again = tmp_path / "again"
    from_file.to_parquet(again)
    pd.testing.assert_frame_equal(pd.read_parquet(again / "flips.parquet"), from_file.flips)


def test_arrays_give_the_named_data_sets_result(trained_cnn, fashion_test):
    x, y = fashion_test
    opts = dict(bits=30, params="head.weight", progress=False)
    named = hart.sweep(trained_cnn, "fashion-mnist", limit=120, **opts)
    as_uint8 = hart.sweep(trained_cnn, (x[:120], y[:120]), **opts)
    as_float = hart.sweep(trained_cnn, (torch.from_numpy(x).float() / 255, torch.from_numpy(y)), limit=120, **opts)
    pd.testing.assert_frame_equal(named.flips, as_uint8.flips)
    pd.testing.assert_frame_equal(named.flips, as_float.flips)


@pytest.mark.parametrize(
    "kwargs, kind, text",
    [
        (dict(data="no-such-set"), ValueError, "unknown dataset 'no-such-set'"),
        (dict(bits="high"), ValueError, '--bits "high"'),
        (dict(threshold=1.5), ValueError, "--threshold 1.5 must be in [0, 1)"),
        (dict(storage="int3"), ValueError, "--storage"),
        (dict(verdict="sequential", exact_rad=True), ValueError, "exclude each other"),
        (dict(params="nothing-matches"), ValueError, "nothing-matches"),
        (dict(faults="/no/such/faults.csv"), FileNotFoundError, "/no/such/faults.csv"),
        (dict(data=(np.full((4, 1, 28, 28), 1.5, np.float32), np.zeros(4, np.int64))), ValueError, "[0, 1]"),
        (dict(data=(np.zeros((4, 1, 28, 28), np.uint8), np.zeros(3, np.int64))), ValueError, "expected 4 labels"),
        (dict(data=(np.zeros((4, 3, 32, 32), np.uint8), np.zeros(4, np.int64))), ValueError, "cannot take the inputs"),
    ],
)
def test_bad_arguments_raise_the_right_exceptions(trained_cnn, kwargs, kind, text):
    kwargs = {"data": "fashion-mnist", "limit": 20, "progress": False, **kwargs}
    data = kwargs.pop("data")
    with pytest.raises(kind) as info:
        hart.sweep(trained_cnn, data, **kwargs)
    assert isinstance(info.value, hart.HartError)
    assert text in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_model_file_is_file_not_found():
    with pytest.raises(FileNotFoundError, match="no such model file"):
        hart.sweep("/no/such/model.onnx", "fashion-mnist", limit=10)
    assert issubclass(hart.NotFoundError, hart.HartError)


def test_ranger_defense_equals_the_cli(trained_cnn, hart_bin, tmp_path):
    exported = hart.load(trained_cnn).save(tmp_path / "cnn.onnx")
    py = hart.sweep(str(exported), "fashion-mnist", limit=100, bits=30, params="head.weight", defense="ranger",
                    profile_limit=200, out=tmp_path / "py", progress=False)
    cli = tmp_path / "cli"
    subprocess.run(
        [hart_bin, "sweep", "--model", exported, "--dataset", "fashion-mnist", "--limit", "100", "--bits", "30",
         "--params", "head.weight", "--defense", "ranger", "--profile-limit", "200", "--out", cli],
        check=True, capture_output=True,
    )
    pd.testing.assert_frame_equal(py.flips, pd.read_parquet(cli / "flips.parquet"))
    assert (tmp_path / "py" / "ranger.json").read_text() == (cli / "ranger.json").read_text()
    assert py.summary["config"]["ranger"]["activations"] > 0
    with pytest.raises(ValueError, match="profile_data"):
        hart.sweep(trained_cnn, (np.zeros((4, 1, 28, 28), np.uint8), np.zeros(4, np.int64)), defense="ranger")


class CumulativeHead(torch.nn.Module):
    """An MLP whose logits pass through a cumulative sum: an op HART's ONNX import lacks."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(784, 10)

    def forward(self, x):
        return torch.cumsum(self.fc(torch.flatten(x, 1)), dim=1)


def test_a_module_hart_cannot_import_falls_back_to_torchscript(fashion_test):
    torch.manual_seed(0)
    module = CumulativeHead().eval()
    model = hart.load(module)
    res = hart.sweep(model, "fashion-mnist", limit=100, bits=30, params="fc.bias", exact_rad=True, progress=False)
    assert model.exporter == "torchscript", repr(model)
    assert "torch.jit.trace" in repr(model) and "cannot import" in repr(model), repr(model)
    x = torch.from_numpy(fashion_test[0][:100]).float() / 255
    y = torch.from_numpy(fashion_test[1][:100])
    assert res.summary["clean_correct"] == correct(module, x, y)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    try:
        for row in res.flips.itertuples():
            module.load_state_dict({**state, row.param: flip(state[row.param], row.index, row.bit)})
            assert row.correct == correct(module, x, y), row
    finally:
        module.load_state_dict(state)
