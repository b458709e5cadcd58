"""hart.fine_tune / hart.train on eager modules: the trained tensors equal
those `hart train --model` writes for the module's ONNX export, and the
returned module, evaluated in PyTorch, scores what HART reports."""

import json
import math
import subprocess

import numpy as np
import pytest
import torch

import hart
from hart._train import read_tensors

LIMIT = 256
EVAL = 300


def pytorch_correct(module, fashion_test, n=EVAL):
    x = torch.from_numpy(fashion_test[0][:n]).float() / 255
    y = torch.from_numpy(fashion_test[1][:n])
    module.eval()
    with torch.no_grad():
        logits = module(x)
    return int(((logits.argmax(1) == y) & ~logits.isnan().any(1)).sum())


def without_times(log):
    log = json.loads(json.dumps(log))
    log.pop("model", None)
    log.pop("arch")
    for e in log["epochs"]:
        e.pop("seconds")
    return log


def test_fine_tune_equals_the_cli_and_its_module_scores_what_hart_reports(trained_cnn, hart_bin, tmp_path, fashion_test):
    model = hart.load(trained_cnn)
    before = {k: v.clone() for k, v in trained_cnn.state_dict().items()}
    opts = dict(limit=LIMIT, epochs=2, batch_size=32, lr=0.02, eval_limit=EVAL, seed=4)
    tuned = hart.fine_tune(model, "fashion-mnist", out=tmp_path / "py.onnx", progress=False, **opts)
    assert tuned is not trained_cnn
    for k, v in trained_cnn.state_dict().items():
        assert torch.equal(v, before[k]), f"the input module changed: {k}"

    exported = model.save(tmp_path / "cnn.onnx")
    cli = tmp_path / "cli.onnx"
    subprocess.run(
        [hart_bin, "train", "--model", exported, "--dataset", "fashion-mnist", "--limit", str(LIMIT), "--epochs", "2",
         "--batch-size", "32", "--lr", "0.02", "--eval-limit", str(EVAL), "--seed", "4", "--out", cli],
        check=True, capture_output=True,
    )
    cli_tensors = read_tensors(str(cli))
    py_tensors = read_tensors(str(tmp_path / "py.onnx"))
    assert cli_tensors.keys() == py_tensors.keys()
    state = tuned.state_dict()
    for name, value in cli_tensors.items():
        assert np.array_equal(py_tensors[name], value), name
        assert np.array_equal(state[name].numpy(), value), name
    assert "bn.running_mean" in cli_tensors
    assert not torch.equal(state["bn.running_mean"], before["bn.running_mean"])
    assert int(state["bn.num_batches_tracked"]) == int(before["bn.num_batches_tracked"]) + 2 * math.ceil(LIMIT / 32)
    cli_log = json.loads(cli.with_suffix(".train.json").read_text())
    assert without_times(tuned.hart_log.log) == without_times(cli_log)

    log = tuned.hart_log
    assert log.log["arch"] == "SmallCnn"
    assert log.test["total"] == EVAL and list(log.epochs["epoch"]) == [1, 2]
    assert pytorch_correct(tuned, fashion_test) == log.test["correct"]
    assert log.test_accuracy == log.test["correct"] / EVAL


@pytest.mark.parametrize(
    "recipe",
    [
        dict(regularizer="noise", noise_std=0.05),
        dict(regularizer="hessian", hessian_lambda=0.05, hessian_batch=16),
    ],
)
def test_noise_and_hat_fine_tuning_give_modules_that_score_what_hart_reports(trained_cnn, fashion_test, recipe):
    tuned = hart.fine_tune(trained_cnn, "fashion-mnist", limit=128, epochs=1, batch_size=32, eval_limit=EVAL,
                           progress=False, **recipe)
    log = tuned.hart_log
    assert log.log["regularizer"]["kind"] == recipe["regularizer"]
    if recipe["regularizer"] == "hessian":
        assert log.epochs["penalty_evaluated"][0] == 4 and log.epochs["trace_estimate"][0] > 0
    changed = [k for k, v in trained_cnn.state_dict().items() if not torch.equal(v, tuned.state_dict()[k])]
    assert "fc.weight" in changed and "bn.running_var" in changed
    assert pytorch_correct(tuned, fashion_test) == log.test["correct"]


def test_train_reinitialises_and_freeze_holds_tensors(trained_cnn, fashion_test):
    fresh = hart.train(trained_cnn, "fashion-mnist", limit=64, epochs=1, eval_limit=100, progress=False)
    assert fresh.hart_log.log["reinit"] is True
    assert "conv.weight" in fresh.hart_log.log["reinitialised"]
    # One epoch of 64 images from a fresh start is far from the trained weights.
    gap = (fresh.fc.weight - trained_cnn.fc.weight).abs().max()
    assert gap > 0.01, gap
    assert pytorch_correct(fresh, fashion_test, 100) == fresh.hart_log.test["correct"]

    part = hart.fine_tune(trained_cnn, "fashion-mnist", limit=64, epochs=1, freeze="conv.*|bn.*", eval_limit=0,
                          progress=False)
    assert part.hart_log.test is None and part.hart_log.log["frozen"] == ["conv.weight", "conv.bias", "bn.weight",
                                                                            "bn.bias", "conv2.weight", "conv2.bias"]
    assert torch.equal(part.conv.weight, trained_cnn.conv.weight)
    assert not torch.equal(part.head.weight, trained_cnn.head.weight)


class CumulativeHead(torch.nn.Module):
    """cumsum: an op HART's ONNX import lacks, so the module goes by TorchScript."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(784, 10)

    def forward(self, x):
        return torch.cumsum(self.fc(torch.flatten(x, 1)), dim=1)


def test_a_torchscript_module_fine_tunes_in_place(fashion_test):
    torch.manual_seed(0)
    module = CumulativeHead()
    x, y = fashion_test
    start = module.fc.weight.detach().clone()
    tuned = hart.fine_tune(module, (x[:200], y[:200]), epochs=1, eval_data=(x[:EVAL], y[:EVAL]), inplace=True,
                           progress=False)
    assert tuned is module
    assert not torch.equal(module.fc.weight, start)
    assert pytorch_correct(module, fashion_test) == tuned.hart_log.test["correct"]
    with pytest.raises(hart.HartError, match="TorchScript|ONNX"):
        hart.train(module, (x[:64], y[:64]), epochs=1, progress=False)


def test_a_model_file_fine_tunes_to_a_model_file(trained_cnn, tmp_path):
    path = hart.load(trained_cnn).save(tmp_path / "cnn.onnx")
    trained = hart.fine_tune(str(path), "fashion-mnist", limit=64, epochs=1, eval_limit=50,
                             out=tmp_path / "t.safetensors", progress=False)
    assert isinstance(trained, hart.Model) and trained.path == str(tmp_path / "t.safetensors")
    assert (tmp_path / "t.train.json").exists()
    # The engine reads its own safetensors output back: same accuracy on the same images.
    res = hart.sweep(trained, "fashion-mnist", limit=50, bits=30, params="head.bias", progress=False)
    assert res.summary["clean_correct"] == trained.hart_log.test["correct"]


@pytest.mark.parametrize(
    "kwargs, kind, text",
    [
        (dict(regularizer="magic"), ValueError, "magic"),
        (dict(lr=-1.0), ValueError, "--lr"),
        (dict(epochs=0), ValueError, "--epochs"),
        (dict(optimizer="lbfgs"), ValueError, "lbfgs"),
        (dict(hessian_layers="nothing-matches"), ValueError, "nothing-matches"),
        (dict(freeze=".*"), ValueError, "nothing would train"),
        (dict(out="model.txt"), ValueError, "model.txt"),
        (dict(device="tpu"), ValueError, "unknown device"),
        (dict(learning_rate=0.1), ValueError, "learning_rate"),
        (dict(eval_limit=-1), ValueError, "eval_limit"),
    ],
)
def test_bad_training_arguments_raise_the_right_exceptions(exported_cnn, tmp_path, kwargs, kind, text):
    if "out" in kwargs:
        kwargs["out"] = tmp_path / kwargs["out"]
    with pytest.raises(kind) as info:
        hart.fine_tune(exported_cnn, "fashion-mnist", limit=16, epochs=kwargs.pop("epochs", 1), progress=False, **kwargs)
    assert isinstance(info.value, hart.HartError)
    assert text in str(info.value)
    assert "\n" not in str(info.value)


class DropoutMlp(torch.nn.Module):
    def __init__(self, p):
        super().__init__()
        self.fc = torch.nn.Linear(784, 64)
        self.drop = torch.nn.Dropout(p) if p is not None else torch.nn.Identity()
        self.head = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.drop(torch.relu(self.fc(torch.flatten(x, 1)))))


def test_a_modules_dropout_is_kept_for_training_and_off_elsewhere(fashion_test, tmp_path):
    import onnx
    from onnx import numpy_helper

    torch.manual_seed(0)
    modules = {p: DropoutMlp(p) for p in (0.5, 0.0, None)}
    for m in modules.values():
        m.load_state_dict(modules[0.5].state_dict())
    model = hart.load(modules[0.5])
    path = model.save(tmp_path / "drop.onnx")
    assert "1 nn.Dropout kept, active in training only" in repr(model)
    assert modules[0.5].training and modules[0.5].drop.training, "load changed the module's mode"
    graph = onnx.load(str(path)).graph
    drop = next(n for n in graph.node if n.op_type == "Dropout")
    consts = {o: n for n in graph.node for o in n.output if n.op_type == "Constant"}
    ratio = numpy_helper.to_array(consts[drop.input[1]].attribute[0].t) if drop.input[1] in consts else \
        numpy_helper.to_array(next(i for i in graph.initializer if i.name == drop.input[1]))
    assert float(ratio) == pytest.approx(0.5)

    x, y = fashion_test
    opts = dict(epochs=1, batch_size=32, lr=0.01, eval_data=(x[:EVAL], y[:EVAL]), seed=3, progress=False)
    tuned = {p: hart.fine_tune(m, (x[:256], y[:256]), **opts) for p, m in modules.items()}
    # Ratio 0 draws nothing: training equals that of the module without dropout, bit for bit.
    for k, v in tuned[None].state_dict().items():
        assert torch.equal(tuned[0.0].state_dict()[k], v), k
    # Ratio 0.5 drops half the hidden units in every step: other weights.
    gap = (tuned[0.5].head.weight - tuned[None].head.weight).abs().max()
    assert gap > 1e-3, gap
    # HART's evaluation of the dropout model is in eval mode, as PyTorch's.
    for p, t in tuned.items():
        assert pytorch_correct(t, fashion_test) == t.hart_log.test["correct"], p
