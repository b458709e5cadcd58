"""Fixtures and references for crates/hart-cli/tests/experiment_models.rs:
an experiment on a user's own ONNX and TorchScript models.

Usage:
  experiment_models.py export OUT_DIR
      writes OUT_DIR/data.npz (x, y, x_test, y_test: 1x12x12 uint8 images
      of 4 classes, each class a brighter quadrant under noise), wide.npz
      (the same at 1x16x16, which neither model takes), cnn.onnx (conv,
      BatchNorm, pooling, linear; torch.onnx.export, optimize=False so
      PyTorch's tensor names survive), cnn-v2.onnx (the same graph with one
      bias changed, written by onnx) and mlp.pt (a torch.jit.script MLP), both models
      trained a few steps by PyTorch first so that they start from weights
      worth fine-tuning.
  experiment_models.py check DATA.npz TRAINED SOURCE [TRAINED SOURCE ...]
      prints a JSON list, per pair: the accuracy of the trained model on the
      test split by PyTorch (an .onnx's initializers or a .safetensors'
      tensors loaded into the PyTorch module by name, a TorchScript .pt run
      as it is), for an .onnx also by onnx's reference evaluator running the
      file's own graph ("graph_accuracy"), and the distance of its weights
      from SOURCE's, ||w_trained - w_source|| / ||w_source|| over every float
      tensor.
Everything comes from fixed seeds.
"""

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CLASSES = 4


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 6 * 6, CLASSES)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(F.relu(self.bn(self.conv(x)))), 1))


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(144, 32)
        self.l2 = nn.Linear(32, CLASSES)

    def forward(self, x):
        return self.l2(F.relu(self.l1(torch.flatten(x, 1))))


def images(rng, n, size):
    y = rng.integers(0, CLASSES, size=n)
    x = rng.integers(0, 200, size=(n, 1, size, size))
    h = size // 2
    for i, c in enumerate(y):
        r, k = divmod(int(c), 2)
        x[i, 0, r * h : (r + 1) * h, k * h : (k + 1) * h] += 40
    return x.astype(np.uint8), y.astype(np.int64)


def pretrain(m, x, y, steps=20):
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    m.train()
    for s in range(steps):
        i = slice((s * 32) % len(x), (s * 32) % len(x) + 32)
        opt.zero_grad()
        F.cross_entropy(m(x[i]), y[i]).backward()
        opt.step()
    m.eval()


def export_onnx(m, x, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            m,
            (x[:2],),
            str(path),
            dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=1024)}},
            input_names=["input"],
            output_names=["logits"],
            external_data=False,
            optimize=False,
            verbose=False,
        )


def changed(path, out):
    """The same graph with fc.bias[0] moved: what re-exporting after more training gives."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    for i, init in enumerate(proto.graph.initializer):
        if init.name == "fc.bias":
            b = numpy_helper.to_array(init).copy()
            b[0] += 0.05
            proto.graph.initializer[i].CopyFrom(numpy_helper.from_array(b, "fc.bias"))
    onnx.save(proto, str(out))


def export(out):
    rng = np.random.default_rng(3)
    x, y = images(rng, 400, 12)
    x_test, y_test = images(rng, 100, 12)
    np.savez(out / "data.npz", x=x, y=y, x_test=x_test, y_test=y_test)
    wx, wy = images(rng, 40, 16)
    np.savez(out / "wide.npz", x=wx, y=wy, x_test=wx, y_test=wy)
    xt, yt = torch.from_numpy(x).float() / 255, torch.from_numpy(y)
    torch.manual_seed(0)
    cnn = Cnn()
    pretrain(cnn, xt, yt)
    export_onnx(cnn, xt, out / "cnn.onnx")
    changed(out / "cnn.onnx", out / "cnn-v2.onnx")
    mlp = Mlp()
    pretrain(mlp, xt, yt)
    torch.jit.save(torch.jit.script(mlp), str(out / "mlp.pt"))


def weights(path):
    """The float tensors of a model file by name, and a module running it."""
    if path.suffix in (".onnx", ".safetensors"):
        if path.suffix == ".onnx":
            import onnx
            from onnx import numpy_helper

            proto = onnx.load(str(path))
            inits = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in proto.graph.initializer}
        else:
            from safetensors.torch import load_file

            inits = load_file(str(path))
        m = Cnn()
        m.load_state_dict({k: inits[k] for k in m.state_dict() if k in inits}, strict=False)
        missing = [k for k in m.state_dict() if k not in inits and not k.endswith("num_batches_tracked")]
        if missing:
            sys.exit(f"initializers missing from {path}: {missing}")
        tensors = {k: v for k, v in inits.items() if v.is_floating_point()}
    else:
        m = torch.jit.load(str(path))
        tensors = {k: v.detach() for k, v in list(m.named_parameters()) + list(m.named_buffers())}
    m.eval()
    return tensors, m


def graph_accuracy(path, d):
    """The written ONNX file run as a graph, by onnx's own evaluator: the file, not only its weights, is right."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    proto = onnx.load(str(path))
    x = d["x_test"].astype(np.float32) / 255
    logits = ReferenceEvaluator(proto).run(None, {proto.graph.input[0].name: x})[0]
    return float((logits.argmax(1) == d["y_test"]).mean())


def check(data, pairs):
    d = np.load(data)
    x = torch.from_numpy(d["x_test"]).float() / 255
    rows = []
    for trained, source in pairs:
        t, model = weights(Path(trained))
        s, _ = weights(Path(source))
        if sorted(t) != sorted(s):
            sys.exit(f"tensor names differ: {sorted(t)} vs {sorted(s)}")
        diff = sum(float((t[k] - s[k]).pow(2).sum()) for k in s) ** 0.5
        norm = sum(float(s[k].pow(2).sum()) for k in s) ** 0.5
        with torch.no_grad():
            pred = model(x).argmax(1).numpy()
        row = {"accuracy": float((pred == d["y_test"]).mean()), "distance": diff / norm}
        if Path(trained).suffix == ".onnx":
            row["graph_accuracy"] = graph_accuracy(Path(trained), d)
        rows.append(row)
    print(json.dumps(rows))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "export":
        out = Path(sys.argv[2])
        out.mkdir(parents=True, exist_ok=True)
        export(out)
    elif len(sys.argv) >= 5 and len(sys.argv) % 2 == 1 and sys.argv[1] == "check":
        check(sys.argv[2], list(zip(sys.argv[3::2], sys.argv[4::2])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
